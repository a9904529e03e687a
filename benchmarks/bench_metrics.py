"""Time and peak extra memory of the temperature-analysis metrics against the physical floor.

Metrics (``lightly_temperature.metrics``): ``uniformity_loss(z)``, ``tolerance(z, labels)`` and
``positive_and_top_negative_similarities(z0, z1, k=10)``, on N random embeddings of dim 128.
The floor is what any exact pairwise metric must at least do on this machine: one N x N x d
matrix product plus one elementwise ``exp`` over the N x N result (computed in row blocks into
one reused buffer, so that it fits in memory at N = 50,000). Timing is interleaved with the
floor (median of repeats, paired ratios); peak extra memory is measured as in ``_common``.
Exactness is checked against naive references (``torch.pdist``, full similarity matrices)
where those fit in memory.

Usage:
    python benchmarks/bench_metrics.py                  # N = 10,000 and 50,000, printed
    python benchmarks/bench_metrics.py --output results.md   # also appended to results.md
    python benchmarks/bench_metrics.py --quick          # smoke test: N = 500
    python benchmarks/bench_metrics.py --sizes 10000 --repeats 5 --threads 1
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    add_output_argument,
    append_section,
    machine_description,
    markdown_table,
    median,
    paired_ratio,
    peak_memory,
    time_interleaved,
)

from lightly_temperature import metrics  # noqa: E402

FLOOR = "floor: N x N x d matmul + exp"
TIME_TARGET = 2.0  # x the floor, at N = 10,000
MEMORY_TARGET_MIB = 256.0  # at N = 10,000
DIM = 128
BLOCK = 1024  # rows per block of the floor


def floor_step(z: torch.Tensor) -> Callable[[], None]:
    n = z.shape[0]
    block = min(BLOCK, n)

    def step() -> None:
        buffer = torch.empty(block, n, device=z.device)
        for start in range(0, n, block):
            stop = min(start + block, n)
            out = buffer[: stop - start]
            torch.mm(z[start:stop], z.T, out=out)
            out.exp_()

    return step


def make_data(n: int, device: torch.device, classes: int = 10):
    g = torch.Generator().manual_seed(n)
    centers = torch.randn(classes, DIM, generator=g)
    labels = torch.randint(0, classes, (n,), generator=g)
    z0 = centers[labels] + 2.0 * torch.randn(n, DIM, generator=g)
    z1 = z0 + 0.5 * torch.randn(n, DIM, generator=g)
    return z0.to(device), z1.to(device), labels.to(device)


#: The metrics compared with their float64 references, by name.
EXACT_METRICS = ("uniformity_loss", "tolerance", "top-10 negatives")


def metric_values(metrics, z0, z1, labels) -> dict[str, torch.Tensor]:
    """The package's values of :data:`EXACT_METRICS`; the top-10 negatives as each row's
    positive followed by its 10 largest negative similarities, in descending order."""
    positive, top = metrics.positive_and_top_negative_similarities(z0, z1, k=10)
    return {
        "uniformity_loss": metrics.uniformity_loss(z0),
        "tolerance": metrics.tolerance(z0, labels),
        "top-10 negatives": torch.cat([positive[:, None], top], dim=1),
    }


def float64_references(z0, z1, labels) -> dict[str, torch.Tensor]:
    """:func:`metric_values` computed naively in float64 (N x 2N matrices: small N only)."""
    n = z0.shape[0]
    z = F.normalize(z0.double(), dim=1)
    references = {"uniformity_loss": torch.pdist(z).pow(2).mul(-2.0).exp().mean().log()}
    sims = z @ z.T
    same = (labels[:, None] == labels[None, :]) & ~torch.eye(n, dtype=torch.bool, device=z.device)
    references["tolerance"] = sims[same].mean()
    del sims, same
    z1n = F.normalize(z1.double(), dim=1)
    full = z @ torch.cat([z, z1n]).T
    rows = torch.arange(n, device=z.device)
    full[rows, rows] = float("-inf")
    full[rows, rows + n] = float("-inf")
    positive = (z * z1n).sum(1)
    references["top-10 negatives"] = torch.cat([positive[:, None], full.topk(10, dim=1).values], 1)
    return references


def check_exact(metrics, z0, z1, labels) -> list[str]:
    """Max abs differences to naive references (only where those fit in memory)."""
    values = metric_values(metrics, z0, z1, labels)
    references = float64_references(z0, z1, labels)
    return [
        f"{name} |diff| {(values[name].double() - references[name]).abs().max().item():.1e}"
        for name in EXACT_METRICS
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    parser.add_argument("--sizes", type=int, nargs="+", default=None)
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats (small N)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    add_output_argument(parser)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    sizes = args.sizes or ([500] if args.quick else [10_000, 50_000])
    print(f"machine: {machine_description(device)}", flush=True)
    rows, verdicts, checks = [], [], []
    for n in sizes:
        z0, z1, labels = make_data(n, device)
        steps = {
            FLOOR: floor_step(F.normalize(z0, dim=1)),
            "uniformity_loss": lambda z0=z0: metrics.uniformity_loss(z0),
            "tolerance": lambda z0=z0, labels=labels: metrics.tolerance(z0, labels),
            "top-10 negatives": lambda z0=z0, z1=z1: metrics.positive_and_top_negative_similarities(
                z0, z1, k=10
            ),
        }
        repeats = args.repeats or (2 if args.quick else (5 if n <= 10_000 else 1))
        times = time_interleaved(
            steps, repeats=repeats, warmup=1 if n <= 10_000 else 0, device=device
        )
        memory = {name: peak_memory(step, device) for name, step in steps.items()}
        for name in steps:
            ratio = paired_ratio(times, name, FLOOR)
            rows.append(
                [
                    f"N={n:,}",
                    name,
                    f"{median(times[name]) * 1e3:.1f}",
                    f"{ratio:.2f}",
                    f"{memory[name] / 2**20:.1f}",
                    str(repeats),
                ]
            )
            print(" | ".join(rows[-1]), flush=True)
        if n <= 10_000:
            for name in ("uniformity_loss", "tolerance", "top-10 negatives"):
                ratio = paired_ratio(times, name, FLOOR)
                mib = memory[name] / 2**20
                ok = ratio <= TIME_TARGET and mib <= MEMORY_TARGET_MIB
                verdicts.append(
                    f"N={n:,}: {name} {ratio:.2f}x the floor (target <= {TIME_TARGET:.0f}x), "
                    f"{mib:.0f} MiB extra (target <= {MEMORY_TARGET_MIB:.0f} MiB): "
                    + ("met" if ok else "NOT met")
                )
            if n <= 12_000:
                checks += [f"N={n:,}: {c}" for c in check_exact(metrics, z0, z1, labels)]
        else:
            verdicts.append(
                f"N={n:,}: all three metrics completed exactly (the same chunked code as "
                f"checked at small N), peak extra memory "
                f"{max(memory[k] for k in steps if k != FLOOR) / 2**20:.0f} MiB: met"
            )
    table = markdown_table(
        ["size", "metric", "ms (median)", "time / floor", "peak extra MiB", "repeats"], rows
    )
    print()
    print(table)
    print()
    for line in verdicts + checks:
        print(line)
    if args.output:
        body = (
            f"Random embeddings of dim {DIM} (10 classes for the labels); the floor is one "
            "N x N x d product plus one exp over its result, in 1024-row blocks. Timings are "
            "interleaved with the floor; the machine was shared with other jobs. Peak extra "
            "memory: "
            + (
                "CUDA allocator peak"
                if device.type == "cuda"
                else "torch.profiler allocation events"
            )
            + ".\n\n"
            + table
            + "\n\n"
            + "\n".join(f"- {v}" for v in verdicts)
            + ("\n- Exactness against naive references: " + "; ".join(checks) if checks else "")
        )
        append_section(args.output, "Metrics: time and memory against the floor", device, body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
