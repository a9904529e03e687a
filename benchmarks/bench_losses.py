"""Forward+backward time and peak memory of the package's losses against Lightly's NTXentLoss.

Runs every loss in the same process on the same inputs, interleaved (see ``_common``), and
reports the median time, the median of the per-repeat time ratios to ``NTXentLoss``, and the peak
extra memory of one forward+backward call (CUDA allocator statistics on a GPU, the profiler's
allocation events on the CPU). Beside them: the floor, i.e. the similarity matrix product alone
(forward and backward), the one operation every implementation has to do.

Usage:
    python benchmarks/bench_losses.py              # full run, prints the table
    python benchmarks/bench_losses.py --output docs/benchmarks.md   # and appends it there
    python benchmarks/bench_losses.py --quick      # smoke test: tiny sizes
    python benchmarks/bench_losses.py --threads 1 --repeats 15
    python benchmarks/bench_losses.py --only simclr --batches 2048 4096   # larger SimCLR batches
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

import torch
from lightly.loss import NTXentLoss

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

from lightly_temperature import (  # noqa: E402
    DebiasedContrastiveLoss,
    HardContrastiveLoss,
    HardSimpleLoss,
    HCLLoss,
    SimpleLoss,
)
from lightly_temperature.temperature import (  # noqa: E402
    ConstantTemperature,
    IndividualTemperature,
)

REFERENCE = "NTXentLoss"
FLOOR = "floor: similarity matmul"
INFONCE_FLOOR = "floor: InfoNCE"
PLAIN = "HardContrastive(None)"
HARD = "HardContrastive(K)"
HCL = "HCL(beta=1, tau+=0.1)"
DEBIASED = "Debiased(tau+=0.1)"
CONSTANT_POLICY = "HardContrastive(None, ConstantTemperature)"
PER_SAMPLE = "HardContrastive(None, IndividualTemperature)"

# The settings: SimCLR batches with the top 8 % of the negatives; MoCo (batch, bank, K).
DIM = 128
SIMCLR_BATCHES = [256, 512, 1024]
SIMCLR_K = 0.08
MOCO = (256, 65536, 4095)
# A second MoCo setting: batch 4096 against a 4096-entry bank, every key but one (K = C - 1).
MOCO_LARGE_BATCH = (4096, 4096, 4095)
QUICK_SIMCLR_BATCHES = [32]
QUICK_MOCO = (32, 1024, 63)

# Targets (time ratios to NTXentLoss; from batch LARGE_BATCH on, the tighter ones).
SIMCLR_PLAIN_TARGET = 0.70
SIMCLR_HARD_TARGET = 0.70
LARGE_BATCH = 1024
LARGE_PLAIN_TARGET = 0.50
LARGE_HARD_TARGET = 0.60
MOCO_HARD_TARGET = 0.60
# The plain loss against the InfoNCE floor, from batch LARGE_BATCH on.
INFONCE_FLOOR_TARGET = 1.3
MEMORY_TARGET = 1.0
# Reweighted negatives: no slower than NTXentLoss.
REWEIGHTED_TARGET = 1.0
# Temperature policies, against the same loss with a number: a constant policy costs nothing
# measurable, a per-sample τ (gather, per-row scaling, the update in backward) <= 1.1x.
CONSTANT_POLICY_TARGET = 1.02
PER_SAMPLE_TARGET = 1.10


def loss_factories(bank: int, dim: int, k: object) -> dict[str, Callable[[], torch.nn.Module]]:
    """Each candidate loss by name, built on call (``bench_memory.py`` builds one per process)."""
    size = (bank, dim) if bank else 0
    return {
        REFERENCE: lambda: NTXentLoss(temperature=0.5, memory_bank_size=size),
        PLAIN: lambda: HardContrastiveLoss(
            temperature=0.5, memory_bank_size=size, hard_negatives=None
        ),
        HARD: lambda: HardContrastiveLoss(temperature=0.5, memory_bank_size=size, hard_negatives=k),
        "HardSimple(K)": lambda: HardSimpleLoss(memory_bank_size=size, hard_negatives=k),
        "Simple": lambda: SimpleLoss(memory_bank_size=size),
        HCL: lambda: HCLLoss(temperature=0.5, beta=1.0, tau_plus=0.1, memory_bank_size=size),
        DEBIASED: lambda: DebiasedContrastiveLoss(
            temperature=0.5, tau_plus=0.1, memory_bank_size=size
        ),
        "HCL(K)": lambda: HCLLoss(
            temperature=0.5, beta=1.0, tau_plus=0.1, memory_bank_size=size, hard_negatives=k
        ),
        CONSTANT_POLICY: lambda: HardContrastiveLoss(
            temperature=ConstantTemperature(0.5), memory_bank_size=size, hard_negatives=None
        ),
        # One τ per sample of a 100,000-sample data set, indexed by the batch's samples.
        PER_SAMPLE: lambda: HardContrastiveLoss(
            temperature=IndividualTemperature(100_000, init=0.5),
            memory_bank_size=size,
            hard_negatives=None,
        ),
    }


def make_losses(bank: int, dim: int, k: object) -> dict[str, torch.nn.Module]:
    return {name: build() for name, build in loss_factories(bank, dim, k).items()}


def loss_step(
    loss_fn: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, indices: torch.Tensor | None = None
) -> Callable[[], None]:
    def step() -> None:
        x.grad = None
        y.grad = None
        if indices is None:
            loss_fn(x, y).backward()
        else:
            loss_fn(x, y, indices=indices).backward()

    return step


def floor_step(x: torch.Tensor, y: torch.Tensor, bank: torch.Tensor | None) -> Callable[[], None]:
    """The similarity product alone: (2N, d) @ (d, 2N) (SimCLR) or (N, d) @ (d, bank) (MoCo)."""
    if bank is None:
        z = torch.cat([x, y]).detach().requires_grad_(True)
        grad = torch.randn(z.shape[0], z.shape[0], device=x.device)
    else:
        z = x.detach().clone().requires_grad_(True)
        grad = torch.randn(z.shape[0], bank.shape[1], device=x.device)

    def step() -> None:
        z.grad = None
        sims = z @ (z.T if bank is None else bank)
        sims.backward(grad)

    return step


def infonce_floor_step(x: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
    """What any InfoNCE must do (SimCLR): Z Z^T, one exp pass over the logits, and one
    (2N x 2N)(2N x d) product for the backward."""
    z = torch.cat([x, y]).detach()

    def step() -> None:
        weights = torch.mm(z, z.T).exp_()
        torch.mm(weights, z)

    return step


def run_config(
    mode: str, batch: int, dim: int, bank: int, k: object, repeats: int, device: torch.device
) -> tuple[dict[str, list[float]], dict[str, int]]:
    torch.manual_seed(0)
    x = torch.randn(batch, dim, device=device, requires_grad=True)
    y = torch.randn(batch, dim, device=device, requires_grad=True)
    losses = {name: loss.to(device) for name, loss in make_losses(bank, dim, k).items()}
    indices = torch.randperm(100_000, device=device)[:batch]  # the per-sample τ's samples
    steps: dict[str, Callable[[], None]] = {
        name: loss_step(loss, x, y, indices if name == PER_SAMPLE else None)
        for name, loss in losses.items()
    }
    bank_tensor = torch.randn(dim, bank, device=device) if bank else None
    steps[FLOOR] = floor_step(x, y, bank_tensor)
    if not bank:
        steps[INFONCE_FLOOR] = infonce_floor_step(x, y)
    for step in steps.values():  # first call: allocates memory banks, warms caches
        step()
    memory = {name: peak_memory(step, device) for name, step in steps.items()}
    times = time_interleaved(steps, repeats=repeats, warmup=1, device=device)
    return times, memory


def describe_k(mode: str, batch: int, k: object) -> str:
    if isinstance(k, float):
        negatives = 2 * batch - 2
        return f"{round(k * negatives)} of {negatives}"
    return str(k)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats per loss")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    add_output_argument(parser)
    parser.add_argument(
        "--only", choices=["simclr", "moco"], default=None, help="run one mode only"
    )
    parser.add_argument(
        "--batches",
        type=int,
        nargs="+",
        default=None,
        metavar="N",
        help="SimCLR batch sizes (default: 256 512 1024, and 4096 on CUDA)",
    )
    args = parser.parse_args(argv)
    if args.batches is not None and min(args.batches) < 2:
        parser.error(f"--batches must be >= 2, got {min(args.batches)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dim = DIM
    if args.quick:
        simclr_batches, moco_settings = args.batches or QUICK_SIMCLR_BATCHES, [QUICK_MOCO]
        repeats = args.repeats or 2
    else:
        simclr_batches = args.batches or (
            SIMCLR_BATCHES + ([4096] if device.type == "cuda" else [])
        )
        moco_settings = [MOCO, MOCO_LARGE_BATCH]
        repeats = args.repeats or 11
    configs = []
    if args.only in (None, "simclr"):
        configs += [("SimCLR", b, 0, SIMCLR_K) for b in simclr_batches]
    if args.only in (None, "moco"):
        configs += [("MoCo", batch, bank, k) for batch, bank, k in moco_settings]

    print(f"machine: {machine_description(device)}; {repeats} repeats", flush=True)
    rows = []
    verdicts = []
    for mode, batch, bank, k in configs:
        times, memory = run_config(mode, batch, dim, bank, k, repeats, device)
        ref_time, ref_mem = median(times[REFERENCE]), memory[REFERENCE]
        setting = f"{mode} N={batch}" + (f" bank={bank}" if bank else "")
        for name in times:
            ratio = paired_ratio(times, name, REFERENCE)
            mem_ratio = memory[name] / ref_mem if ref_mem else float("nan")
            label = name.replace("(K)", f"(K={describe_k(mode, batch, k)})")
            rows.append(
                [
                    setting,
                    label,
                    f"{median(times[name]) * 1e3:.2f}",
                    f"{ratio:.2f}",
                    f"{memory[name] / 2**20:.1f}",
                    f"{mem_ratio:.2f}",
                ]
            )
            print(" | ".join(rows[-1]), flush=True)
        del ref_time
        verdicts += target_verdicts(mode, setting, times, memory, batch)
    table = markdown_table(
        ["setting", "loss", "fwd+bwd ms (median)", "time / NTXent", "peak MiB", "memory / NTXent"],
        rows,
    )
    print()
    print(table)
    print()
    for line in verdicts:
        print(line)
    if args.output:
        body = (
            f"Forward+backward of each loss on random (N, {dim}) embeddings, {repeats} "
            "interleaved repeats; the machine was shared with other jobs, so absolute times are "
            "noisy and the paired ratios are the figures to read. Peak memory: "
            + (
                "CUDA allocator peak"
                if device.type == "cuda"
                else "torch.profiler allocation events (peak of the running sum of allocations and "
                "frees during one call)"
            )
            + ".\n\n"
            + table
            + "\n\n"
            + "\n".join(f"- {v}" for v in verdicts)
        )
        append_section(args.output, "Losses: time and peak memory against NTXentLoss", device, body)
    return 0


def target_verdicts(
    mode: str,
    setting: str,
    times: dict[str, list[float]],
    memory: dict[str, int],
    batch: int = 0,
) -> list[str]:
    out = []

    def verdict(name: str, target: float, reference: str = REFERENCE) -> str:
        ratio = paired_ratio(times, name, reference)
        met = "met" if ratio <= target else "NOT met"
        against = "NTXent" if reference == REFERENCE else reference
        return f"{setting}: {name} time {ratio:.2f}x {against} (target <= {target:.2f}x): {met}"

    if mode == "SimCLR":
        large = batch >= LARGE_BATCH
        out.append(verdict(PLAIN, LARGE_PLAIN_TARGET if large else SIMCLR_PLAIN_TARGET))
        out.append(verdict(HARD, LARGE_HARD_TARGET if large else SIMCLR_HARD_TARGET))
        if large:
            out.append(verdict(PLAIN, INFONCE_FLOOR_TARGET, INFONCE_FLOOR))
    else:
        out.append(verdict(HARD, MOCO_HARD_TARGET))
    out.append(verdict(HCL, REWEIGHTED_TARGET))
    out.append(verdict(DEBIASED, REWEIGHTED_TARGET))
    for name, target in (
        (CONSTANT_POLICY, CONSTANT_POLICY_TARGET),
        (PER_SAMPLE, PER_SAMPLE_TARGET),
    ):
        ratio = paired_ratio(times, name, PLAIN)
        met = "met" if ratio <= target else "NOT met"
        out.append(
            f"{setting}: {name} time {ratio:.2f}x the same loss with a number "
            f"(target <= {target:.2f}x): {met}"
        )
    worst = max(memory[n] / memory[REFERENCE] for n in (PLAIN, HARD))
    met = "met" if worst <= MEMORY_TARGET else "NOT met"
    out.append(
        f"{setting}: HardContrastive peak memory {worst:.2f}x NTXent (target <= 1.00x): {met}"
    )
    return out


if __name__ == "__main__":
    raise SystemExit(main())
