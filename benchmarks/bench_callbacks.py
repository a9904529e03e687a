"""Epoch-time overhead of the callbacks ``TemperatureAnalysis`` and ``HardnessMonitor``.

Times the study's default training itself, built by the study's own functions: the embedded
digits (:func:`~lightly_temperature.study.data.load_digits_data`: 1,437 training images,
batched ``DigitsAugment`` views), the module of
:func:`~lightly_temperature.study.runner.build_module` and the trainer of the study's runner,
with :class:`~lightly_temperature.study.config.StudyConfig`'s defaults (SimCLR, small CNN,
128 -> 128 head, batch 256, AdamW 2e-3, CSV and TensorBoard loggers, one torch thread as the
study sets for the small CNN) and the hard contrastive loss at its default temperature and the
study's ``hard_negatives``. Configurations: no callback, each callback at its default constructor
settings, both. ``TemperatureAnalysis`` gets the study's test split as Lightly-shaped two-view
batches (``StudyData.probe_loader``), as a user would pass it.

An epoch is timed from one ``on_train_epoch_start`` to the next (the last one to
``on_train_end``), so that the callbacks' end-of-epoch work is inside it; the first epoch of
every run is a warm-up and is not counted. Configurations are interleaved over repeats; the
overhead (the verdict) is the median over repeats of the paired ratio of median epoch times;
the same ratio of each run's fastest epoch is printed beside it, a figure less disturbed by the
other jobs of a shared machine.

``--breakdown`` also times the parts of one ``TemperatureAnalysis`` evaluation (embedding the
probe, metrics, histograms, PNG, CSV) on the trained module.

Usage:
    python benchmarks/bench_callbacks.py               # prints the table
    python benchmarks/bench_callbacks.py --output docs/benchmarks.md   # and appends it there
    python benchmarks/bench_callbacks.py --quick       # smoke test
    python benchmarks/bench_callbacks.py --repeats 7 --epochs 8 --breakdown
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch.utils.data import Subset

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    add_output_argument,
    append_section,
    machine_description,
    markdown_table,
)

from lightly_temperature import HardContrastiveLoss  # noqa: E402
from lightly_temperature.callbacks import HardnessMonitor, TemperatureAnalysis  # noqa: E402
from lightly_temperature.study import runner  # noqa: E402
from lightly_temperature.study.config import RunSpec, StudyConfig  # noqa: E402
from lightly_temperature.study.data import StudyData, load_digits_data  # noqa: E402

TARGET = 0.03  # at most +3 % epoch time
BASELINE = "no callback"
CONFIGS = (BASELINE, "TemperatureAnalysis", "HardnessMonitor", "both")
DEFAULT_TAU = inspect.signature(HardContrastiveLoss).parameters["temperature"].default


class EpochTimer(pl.Callback):
    """Seconds from one ``on_train_epoch_start`` to the next (the last: to ``on_train_end``)."""

    def __init__(self) -> None:
        self.starts: list[float] = []
        self.end = 0.0

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.starts.append(time.perf_counter())

    def on_train_end(self, trainer, pl_module) -> None:
        self.end = time.perf_counter()

    def epoch_times(self) -> list[float]:
        marks = self.starts + [self.end]
        return [b - a for a, b in zip(marks[:-1], marks[1:])]


def study_data(quick: bool) -> StudyData:
    data = load_digits_data()
    if quick:  # 300 training images: one batch of 256 per epoch
        data = dataclasses.replace(data, train_views=Subset(data.train_views, range(300)))
    return data


def study_run(config: StudyConfig, epochs: int) -> RunSpec:
    """The study's hard contrastive run at the loss's default temperature."""
    return RunSpec(config.method, "hard_contrastive", DEFAULT_TAU, config.hard_negatives, 0, epochs)


def train(
    config: StudyConfig, run: RunSpec, data: StudyData, name: str, workdir: Path
) -> tuple[tuple[float, float], pl.LightningModule, pl.Trainer, list[pl.Callback]]:
    """Trains one configuration as the study's runner does; (median, fastest) epoch time (s)
    without the first epoch, the module, the trainer and the callbacks."""
    timer = EpochTimer()
    callbacks: list[pl.Callback] = []
    if name in ("TemperatureAnalysis", "both"):
        callbacks.append(TemperatureAnalysis(data.probe_loader(config.batch_size)))
    if name in ("HardnessMonitor", "both"):
        callbacks.append(HardnessMonitor())
    pl.seed_everything(run.seed, workers=True, verbose=False)
    module = runner.build_module(config, run, data)
    trainer = runner.build_trainer(
        config, run, workdir / name.replace(" ", "_"), callbacks=[timer, *callbacks]
    )
    loader = data.train_loader(config.batch_size, seed=run.seed, num_workers=config.num_workers)
    trainer.fit(module, train_dataloaders=loader)
    epochs = timer.epoch_times()[1:]
    return (statistics.median(epochs), min(epochs)), module, trainer, callbacks


def breakdown(
    analysis: TemperatureAnalysis, trainer: pl.Trainer, module: pl.LightningModule, repeats: int
) -> dict[str, float]:
    """Median milliseconds of the parts of one ``TemperatureAnalysis.evaluate`` on the trained
    module: embedding the probe, the metrics, the logger histograms, the PNG, the CSV row."""
    from lightly_temperature.callbacks import temperature_analysis

    parts: dict[str, list[float]] = {}

    def timed(name: str, fn):
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                parts.setdefault(name, []).append((time.perf_counter() - start) * 1e3)

        return wrapper

    log_histograms = temperature_analysis.log_histograms
    csv_write = analysis._csv.write
    temperature_analysis.log_histograms = timed("logger histograms", log_histograms)
    analysis._embed = timed("embed probe", analysis._embed)
    analysis._compute = timed("metrics", analysis._compute)
    analysis._figure.save = timed("PNG figure", analysis._figure.save)
    analysis._csv.write = timed("CSV row", csv_write)
    try:
        for _ in range(repeats):
            timed("total evaluate()", analysis.evaluate)(trainer, module)
    finally:
        temperature_analysis.log_histograms = log_histograms
        for name in ("_embed", "_compute"):
            delattr(analysis, name)
        del analysis._figure.save
        del analysis._csv.write
    return {name: statistics.median(values) for name, values in parts.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny run (smoke test)")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: the study's)"
    )
    parser.add_argument("--breakdown", action="store_true", help="time the parts of an evaluation")
    add_output_argument(parser)
    args = parser.parse_args(argv)
    config = StudyConfig(progress_bar=False, threads=args.threads)
    # the study's own thread choice (runner.run_study): 1 for the small CNN
    threads = runner.study_threads(config)
    if threads:
        torch.set_num_threads(threads)
    repeats = args.repeats or (1 if args.quick else 7)
    epochs = args.epochs or (2 if args.quick else 8)
    run = study_run(config, epochs)
    data = study_data(args.quick)
    print(f"machine: {machine_description(torch.device('cpu'))}", flush=True)
    print(f"run: {run.describe()}, {len(data.train_views)} training images", flush=True)
    times: dict[str, list[float]] = {c: [] for c in CONFIGS}
    fastest: dict[str, list[float]] = {c: [] for c in CONFIGS}
    parts: dict[str, float] = {}
    runner._quiet_lightning()
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for rep in range(repeats):
            order = CONFIGS[rep % len(CONFIGS) :] + CONFIGS[: rep % len(CONFIGS)]
            for name in order:
                (seconds, best), module, trainer, callbacks = train(
                    config, run, data, name, Path(tmp)
                )
                times[name].append(seconds)
                fastest[name].append(best)
                print(
                    f"repeat {rep}: {name}: {seconds * 1e3:.1f} ms/epoch (fastest "
                    f"{best * 1e3:.1f})",
                    flush=True,
                )
                if args.breakdown and name == "TemperatureAnalysis" and rep == repeats - 1:
                    parts = breakdown(callbacks[0], trainer, module, 3 if args.quick else 15)
    rows, verdicts = [], []
    for name in CONFIGS:
        ratio = statistics.median(a / b for a, b in zip(times[name], times[BASELINE]))
        extra_ms = statistics.median(a - b for a, b in zip(times[name], times[BASELINE])) * 1e3
        best_ratio = statistics.median(a / b for a, b in zip(fastest[name], fastest[BASELINE]))
        rows.append(
            [
                name,
                f"{statistics.median(times[name]) * 1e3:.1f}",
                f"{extra_ms:+.1f}",
                f"{(ratio - 1) * 100:+.1f} %",
                f"{(best_ratio - 1) * 100:+.1f} %",
            ]
        )
        if name != BASELINE:
            met = "met" if ratio - 1 <= TARGET else "NOT met"
            verdicts.append(
                f"{name}: {(ratio - 1) * 100:+.1f} % epoch time "
                f"(target <= +{TARGET * 100:.0f} %): {met}"
            )
    table = markdown_table(
        ["callbacks", "epoch ms (median)", "extra ms", "overhead", "overhead, fastest epochs"],
        rows,
    )
    print()
    print(table)
    print()
    for line in verdicts:
        print(line)
    parts_table = ""
    if parts:
        order = [
            "embed probe",
            "metrics",
            "logger histograms",
            "PNG figure",
            "CSV row",
            "total evaluate()",
        ]
        parts_table = markdown_table(
            ["part of one TemperatureAnalysis evaluation", "ms (median)"],
            [[name, f"{parts[name]:.1f}"] for name in order if name in parts],
        )
        print()
        print(parts_table)
    if args.output:
        body = (
            f"The study's default training (`StudyConfig()`: {run.describe()}; digits, "
            f"{len(data.train_views)} training images, batch {config.batch_size}, small CNN, "
            f"{config.hidden_dim} -> {config.output_dim} head, {config.optimizer} lr "
            f"{config.lr:g}, CSV and TensorBoard loggers, log_every_n_steps 5), built by the "
            f"study's `load_digits_data`, `build_module` and trainer; {epochs} epochs per run "
            f"(first one not counted), {repeats} interleaved repeats; callbacks at their default "
            f"settings; the probe of TemperatureAnalysis is the study's {len(data.test_views)} "
            "test digits as two-view batches (`StudyData.probe_loader`). The machine was shared "
            "with other jobs.\n\n" + table + "\n\n" + "\n".join(f"- {v}" for v in verdicts)
        )
        if parts_table:
            body += "\n\n" + parts_table
        append_section(args.output, "Callbacks: epoch-time overhead", torch.device("cpu"), body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
