"""Where a loss step's time goes: PyTorch's profiler over a few forward+backward steps.

For each setting, Lightly's ``NTXentLoss`` and ``HardContrastiveLoss`` (all negatives, and
the top K): the wall time per step, the host's busy time per step, the device's kernel time
per step and the number of kernels launched per step, then the operations that take the most
device time (host time on the CPU). A step whose wall time is far above its kernel time is
bound by the host (Python, dispatch, launches), not by the device.

Usage:
    python benchmarks/profile_losses.py                  # on CUDA when there is one
    python benchmarks/profile_losses.py --device cpu --quick
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from lightly.loss import NTXentLoss
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine_description, synchronize  # noqa: E402
from bench_losses import loss_step  # noqa: E402

from lightly_temperature import HardContrastiveLoss  # noqa: E402

SETTINGS = [("SimCLR", 1024, 0, 164), ("SimCLR", 8192, 0, 1311), ("MoCo", 256, 65536, 4095)]
QUICK = [("SimCLR", 64, 0, 10), ("MoCo", 16, 512, 40)]


def profile_step(
    step, device: torch.device, steps: int, rows: int, trace: Path | None = None
) -> None:
    for _ in range(3):  # warm up: kernels, allocator, selection scratch
        step()
    synchronize(device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    start = time.perf_counter()
    with profile(activities=activities) as prof:
        for _ in range(steps):
            step()
        synchronize(device)
    wall = (time.perf_counter() - start) / steps
    events = prof.key_averages()
    on_device = device.type == "cuda"
    kernels = [e for e in prof.events() if on_device and e.device_type.name == "CUDA"]
    kernel_us = sum(getattr(e, "device_time", getattr(e, "cuda_time", 0.0)) for e in kernels)
    kernel_time = kernel_us / steps * 1e-6
    print(
        f"  wall {wall * 1e3:.2f} ms/step (under the profiler), kernels {len(kernels) / steps:.0f}"
        f" per step taking {kernel_time * 1e3:.2f} ms"
    )
    keys = ["self_device_time_total"] if on_device else []
    for key in keys + ["self_cpu_time_total"]:
        print(events.table(sort_by=key, row_limit=rows, max_name_column_width=60))
    if trace is not None:
        prof.export_chrome_trace(str(trace))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="toy sizes (the smoke test)")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--rows", type=int, default=12, help="operations listed per loss")
    parser.add_argument("--only", default=None, help="settings whose name contains this")
    parser.add_argument("--trace", type=Path, default=None, help="a folder for Chrome traces")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    print(f"machine: {machine_description(device)}")
    for mode, batch, bank, k in QUICK if args.quick else SETTINGS:
        setting = f"{mode} N={batch}" + (f" bank={bank}" if bank else "")
        if args.only is not None and args.only not in setting:
            continue
        torch.manual_seed(0)
        x = torch.randn(batch, 128, device=device, requires_grad=True)
        y = torch.randn(batch, 128, device=device, requires_grad=True)
        size = (bank, 128) if bank else 0
        losses = {
            "NTXentLoss": NTXentLoss(temperature=0.5, memory_bank_size=size),
            "HardContrastive(None)": HardContrastiveLoss(0.5, size, hard_negatives=None),
            f"HardContrastive(K={k})": HardContrastiveLoss(0.5, size, hard_negatives=k),
        }
        for i, (name, loss) in enumerate(losses.items()):
            print(f"\n## {setting}: {name}")
            trace = None
            if args.trace is not None:
                args.trace.mkdir(parents=True, exist_ok=True)
                trace = args.trace / f"{mode}_{batch}_{i}.json"
            profile_step(loss_step(loss.to(device), x, y), device, args.steps, args.rows, trace)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
