"""Peak memory of one forward+backward by process RSS, against Lightly's NTXentLoss.

``torch.profiler`` (``bench_losses.py``) sees only torch's allocator; memory that NumPy or a
library allocates on its own (the CPU top-K selection's scratch) is invisible to it. The
resident set size of the process sees all of it. Each measurement runs in a fresh Python
process, so that no earlier candidate's freed memory stays resident and hides a peak:

1. build the candidate loss (a memory bank is filled here) and its (N, d) inputs;
2. one forward+backward on tiny inputs, so that one-time costs (code pages, thread pools) do
   not count;
3. reset the process's peak RSS (``VmHWM``) to its current RSS by writing ``5`` to
   ``/proc/self/clear_refs``, run one forward+backward and read ``VmHWM``: the increase is
   the step's peak extra memory. Where the reset is not permitted, the increase of ``VmHWM``
   over the step is reported, a lower bound;
4. in the same process, the profiler's peak of a second call (as in ``bench_losses.py``).

Each setting is measured ``--repeats`` times, each time in a new process per candidate; a
ratio is the median of the per-repeat ratios to ``NTXentLoss``. Linux only (``/proc``).

Usage:
    python benchmarks/bench_memory.py              # full run, prints the table
    python benchmarks/bench_memory.py --output docs/benchmarks.md   # and appends it there
    python benchmarks/bench_memory.py --quick      # smoke test: tiny sizes, one repeat
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    add_output_argument,
    append_section,
    machine_description,
    markdown_table,
    median,
    peak_memory,
)
from bench_losses import (  # noqa: E402
    DIM,
    HARD,
    MOCO,
    PLAIN,
    QUICK_MOCO,
    QUICK_SIMCLR_BATCHES,
    REFERENCE,
    SIMCLR_BATCHES,
    SIMCLR_K,
    describe_k,
    loss_factories,
    loss_step,
)

CANDIDATES = (REFERENCE, PLAIN, HARD)
# Peak memory of the hard contrastive loss, by RSS and by the profiler: <= 0.7x NTXentLoss.
MEMORY_TARGET = 0.70
WARMUP_BATCH = 8
MIB = 2**20


def memory_status() -> dict[str, int]:
    """The ``VmXXX`` fields of ``/proc/self/status`` in KiB, from one read."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("Vm"):
            key, value = line.split(":", 1)
            fields[key] = int(value.split()[0])
    return fields


def reset_peak_rss() -> dict[str, int] | None:
    """Sets ``VmHWM`` to the current RSS and returns the status after it; None where the
    kernel does not permit it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return None
    status = memory_status()
    return status if status["VmHWM"] == status["VmRSS"] else None


def measure_one(name: str, batch: int, bank: int, k: object, threads: int) -> dict[str, object]:
    """In this (fresh) process: the peak RSS increase and the profiler peak of one
    forward+backward of the candidate ``name``, in bytes."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    loss_fn = loss_factories(bank, DIM, k)[name]()
    x = torch.randn(batch, DIM, requires_grad=True)
    y = torch.randn(batch, DIM, requires_grad=True)
    warm_x = torch.randn(WARMUP_BATCH, DIM, requires_grad=True)
    warm_y = torch.randn(WARMUP_BATCH, DIM, requires_grad=True)
    loss_step(loss_fn, warm_x, warm_y)()
    del warm_x, warm_y
    step = loss_step(loss_fn, x, y)
    status = reset_peak_rss()
    exact = status is not None
    before = status["VmRSS"] if exact else memory_status()["VmHWM"]
    step()
    rss = (memory_status()["VmHWM"] - before) * 1024
    return {"rss": rss, "exact": exact, "profiler": peak_memory(step, torch.device("cpu"))}


def measure_in_fresh_process(
    name: str, batch: int, bank: int, k: object, threads: int
) -> dict[str, object]:
    spec = json.dumps({"name": name, "batch": batch, "bank": bank, "k": k, "threads": threads})
    out = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", spec],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"measuring {name} at N={batch} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one repeat (smoke)")
    parser.add_argument("--repeats", type=int, default=None, help="fresh processes per loss")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    add_output_argument(parser)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        spec = json.loads(args.child)
        print(json.dumps(measure_one(**spec)))
        return 0
    torch.set_num_threads(args.threads)  # as in the measuring processes, for the description
    if args.quick:
        simclr_batches, moco, repeats = QUICK_SIMCLR_BATCHES, QUICK_MOCO, args.repeats or 1
    else:
        simclr_batches, moco, repeats = SIMCLR_BATCHES, MOCO, args.repeats or 3
    configs = [("SimCLR", b, 0, SIMCLR_K) for b in simclr_batches] + [("MoCo", *moco)]
    device = torch.device("cpu")
    print(
        f"machine: {machine_description(device)}; {repeats} fresh processes per loss and "
        f"setting, {args.threads} torch thread(s)",
        flush=True,
    )
    rows, verdicts, lower_bound = [], [], False
    for mode, batch, bank, k in configs:
        setting = f"{mode} N={batch}" + (f" bank={bank}" if bank else "")
        runs: dict[str, list[dict[str, object]]] = {name: [] for name in CANDIDATES}
        for _ in range(repeats):
            for name in CANDIDATES:
                runs[name].append(measure_in_fresh_process(name, batch, bank, k, args.threads))
        lower_bound |= not all(r["exact"] for rs in runs.values() for r in rs)
        ratios = {}
        for name in CANDIDATES:
            ratios[name] = {
                kind: median(
                    [
                        r[kind] / ref[kind] if ref[kind] else float("nan")
                        for r, ref in zip(runs[name], runs[REFERENCE])
                    ]
                )
                for kind in ("rss", "profiler")
            }
            label = name.replace("(K)", f"(K={describe_k(mode, batch, k)})")
            rows.append(
                [
                    setting,
                    label,
                    f"{median([r['rss'] for r in runs[name]]) / MIB:.1f}",
                    f"{ratios[name]['rss']:.2f}",
                    f"{median([r['profiler'] for r in runs[name]]) / MIB:.1f}",
                    f"{ratios[name]['profiler']:.2f}",
                ]
            )
            print(" | ".join(rows[-1]), flush=True)
        for name in (PLAIN, HARD):
            rss, prof = ratios[name]["rss"], ratios[name]["profiler"]
            met = "met" if max(rss, prof) <= MEMORY_TARGET else "NOT met"
            verdicts.append(
                f"{setting}: {name} peak memory {rss:.2f}x NTXent by RSS, {prof:.2f}x by the "
                f"profiler (target <= {MEMORY_TARGET:.2f}x by both): {met}"
            )
    table = markdown_table(
        [
            "setting",
            "loss",
            "peak RSS MiB (median)",
            "RSS / NTXent",
            "profiler peak MiB",
            "profiler / NTXent",
        ],
        rows,
    )
    note = (
        "The kernel did not permit resetting the peak RSS: the RSS figures are lower bounds."
        if lower_bound
        else ""
    )
    print()
    print(table)
    print()
    for line in verdicts + ([note] if note else []):
        print(line)
    if args.output:
        body = (
            f"Peak extra memory of one forward+backward on random (N, {DIM}) embeddings, each "
            f"candidate in a fresh process, {repeats} processes per loss and setting: the "
            "increase of the process's peak RSS (VmHWM, reset before the call) and the profiler's "
            "peak of the torch allocations. Ratios are medians of the per-repeat ratios.\n\n"
            + table
            + "\n\n"
            + "\n".join(f"- {v}" for v in verdicts + ([note] if note else []))
        )
        append_section(args.output, "Losses: peak memory by process RSS", device, body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
