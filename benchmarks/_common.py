"""Shared helpers of the benchmark scripts: interleaved timing, peak memory, the results file.

Timing: every repeat runs each candidate once, in a rotating order, so that the load of a
shared machine falls on all candidates alike; the figure kept is the median over repeats and a
ratio is the median of the per-repeat ratios (paired measurements).

Peak memory: on CUDA, ``torch.cuda.max_memory_allocated`` above the memory held before the call.
On CPU, the allocator's own events recorded by ``torch.profiler`` (``profile_memory=True``):
every allocation and free of a tensor's storage during the call, summed in time order; the
peak of that running sum is the peak extra memory of the call (tensors alive before it, such as
the inputs, are not counted).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Callable

import torch

REPO_ROOT = Path(__file__).resolve().parent.parent


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_interleaved(
    fns: dict[str, Callable[[], object]],
    repeats: int,
    warmup: int = 1,
    device: torch.device | None = None,
) -> dict[str, list[float]]:
    """Seconds per call of each function, ``repeats`` samples each, interleaved by repeat."""
    device = device or torch.device("cpu")
    names = list(fns)
    times: dict[str, list[float]] = {name: [] for name in names}
    for rep in range(warmup + repeats):
        shift = rep % len(names)
        for name in names[shift:] + names[:shift]:
            synchronize(device)
            start = time.perf_counter()
            fns[name]()
            synchronize(device)
            if rep >= warmup:
                times[name].append(time.perf_counter() - start)
    return times


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def paired_ratio(times: dict[str, list[float]], name: str, reference: str) -> float:
    """Median over repeats of ``time(name) / time(reference)`` measured in the same repeat."""
    return median([a / b for a, b in zip(times[name], times[reference])])


def peak_memory(fn: Callable[[], object], device: torch.device) -> int:
    """Peak bytes allocated by ``fn`` above what was allocated when it started (see module doc)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - base
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    events.sort(key=lambda e: e.start_ns())
    current = peak = 0
    for event in events:
        current += event.nbytes()
        peak = max(peak, current)
    return peak


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_description(device: torch.device) -> str:
    if device.type == "cuda":
        hw = f"GPU {torch.cuda.get_device_name(device)}"
    else:
        hw = (
            f"CPU {cpu_name()}, {os.cpu_count()} logical cores, "
            f"torch threads {torch.get_num_threads()}"
        )
    return (
        f"{hw}; Python {platform.python_version()}, torch {torch.__version__}, "
        f"{platform.system()} {platform.release()}"
    )


def git_revision() -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        )
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def gpu_script_device(parser: argparse.ArgumentParser, dry_run: bool) -> torch.device:
    """The device of a GPU script: CUDA, or the CPU for its ``--dry-run`` (toy sizes); without
    CUDA and without ``--dry-run``, a usage error (exit 2) before anything runs."""
    if dry_run:
        return torch.device("cpu")
    if not torch.cuda.is_available():
        parser.error("no CUDA device: run on a GPU, or pass --dry-run")
    return torch.device("cuda")


def command_line() -> str:
    return "python " + " ".join([os.path.relpath(sys.argv[0], REPO_ROOT)] + sys.argv[1:])


def add_output_argument(parser: argparse.ArgumentParser) -> None:
    """``--output FILE``: where the script appends its results; without it, it only prints."""
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        metavar="FILE",
        help="append the results as a dated Markdown section (machine, command, table) to FILE, "
        "e.g. docs/benchmarks.md (default: print only)",
    )


def append_section(path: Path, title: str, device: torch.device, body: str) -> None:
    """Appends one dated section (machine, command, ``body``) to the Markdown file ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        path.write_text(
            "# Benchmarks\n\nEach section below was appended by a script in `benchmarks/`; the "
            "newest run of a table is the last one. Timings are medians over interleaved "
            "repeats; ratios are medians of per-repeat ratios.\n"
        )
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    section = (
        f"\n## {title} ({stamp}, commit {git_revision()})\n\n"
        f"- Machine: {machine_description(device)}\n"
        f"- Command: `{command_line()}`\n\n{body.strip()}\n"
    )
    with path.open("a") as f:
        f.write(section)
