"""Epoch-time overhead of the callbacks ``TemperatureAnalysis`` and ``HardnessMonitor``.

Trains a small SimCLR on scikit-learn's digits (real 8x8 images; a small CNN, 128-d
projection, batch 256, AdamW, ``HardContrastiveLoss``: the setting of the study's default
training) with no callback, with each callback at its default settings, and with both; the
configurations are interleaved over repeats. An epoch is timed from one
``on_train_epoch_start`` to the next (the last one to ``on_train_end``), so that the
callbacks' end-of-epoch work is inside it; the first epoch of every run is a warm-up and is not
counted. The overhead is the median over repeats of the paired ratio of median epoch times.

Usage:
    python benchmarks/bench_callbacks.py               # appends to docs/benchmarks.md
    python benchmarks/bench_callbacks.py --quick       # smoke test, docs untouched
    python benchmarks/bench_callbacks.py --repeats 5 --epochs 6 --threads 1
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import pytorch_lightning as pl
import torch
from lightly.models.modules import SimCLRProjectionHead
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import append_to_docs, machine_description, markdown_table  # noqa: E402

from lightly_temperature import HardContrastiveLoss  # noqa: E402

TARGET = 0.03  # at most +3 % epoch time
BASELINE = "no callback"


def load_callbacks():
    try:
        from lightly_temperature.callbacks import HardnessMonitor, TemperatureAnalysis
    except ImportError as error:  # issue 4 not merged yet
        raise SystemExit(f"lightly_temperature.callbacks is not available: {error}") from error
    return TemperatureAnalysis, HardnessMonitor


def digits(limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    data = load_digits()
    images = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0  # (N, 1, 8, 8)
    labels = torch.tensor(data.target)
    if limit:
        images, labels = images[:limit], labels[:limit]
    return images, labels


def augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random shift by up to one pixel, random contrast and Gaussian noise, batched."""
    n = images.shape[0]
    padded = nn.functional.pad(images, (1, 1, 1, 1))
    dx, dy = torch.randint(0, 3, (2,), generator=generator).tolist()
    shifted = padded[:, :, dy : dy + 8, dx : dx + 8]
    contrast = 0.7 + 0.6 * torch.rand(n, 1, 1, 1, generator=generator)
    noise = 0.1 * torch.randn(shifted.shape, generator=generator)
    return (shifted * contrast + noise).clamp(0.0, 1.0)


class TwoViews:
    """Collates ``(image, label)`` samples into Lightly's ``([view0, view1], labels)``."""

    def __init__(self, seed: int) -> None:
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, samples):
        images = torch.stack([s[0] for s in samples])
        labels = torch.stack([s[1] for s in samples])
        return [augment(images, self.generator), augment(images, self.generator)], labels


def small_cnn(width: int = 32, feature_dim: int = 128) -> nn.Module:
    def block(cin: int, cout: int) -> list:
        return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU()]

    return nn.Sequential(
        *block(1, width), *block(width, width), nn.MaxPool2d(2),
        *block(width, 2 * width), nn.MaxPool2d(2),
        *block(2 * width, feature_dim), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
    )


class SimCLR(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.backbone = small_cnn()
        self.projection_head = SimCLRProjectionHead(128, 128, 128)
        self.criterion = HardContrastiveLoss(temperature=0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projection_head(self.backbone(x))

    def training_step(self, batch, batch_idx):
        (x0, x1), _ = batch
        loss = self.criterion(self(x0), self(x1))
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=2e-3, weight_decay=1e-5)


class EpochTimer(pl.Callback):
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


def run(config: str, epochs: int, limit: int | None, workdir: Path) -> float:
    """Median epoch time (s) of one training, first epoch excluded."""
    TemperatureAnalysis, HardnessMonitor = load_callbacks()
    images, labels = digits(limit)
    n_train = int(0.8 * len(images))
    train = DataLoader(TensorDataset(images[:n_train], labels[:n_train]), batch_size=256,
                       shuffle=True, drop_last=True, collate_fn=TwoViews(seed=0),
                       generator=torch.Generator().manual_seed(0))
    probe = DataLoader(TensorDataset(images[n_train:], labels[n_train:]), batch_size=256,
                       collate_fn=TwoViews(seed=1))
    timer = EpochTimer()
    callbacks: list[pl.Callback] = [timer]
    if config in ("TemperatureAnalysis", "both"):
        callbacks.append(TemperatureAnalysis(dataloader=probe))  # otherwise default settings
    if config in ("HardnessMonitor", "both"):
        callbacks.append(HardnessMonitor())
    torch.manual_seed(0)
    trainer = pl.Trainer(
        max_epochs=epochs, accelerator="cpu", devices=1, callbacks=callbacks,
        logger=pl.loggers.CSVLogger(str(workdir), name=config.replace(" ", "_")),
        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
    )
    trainer.fit(SimCLR(), train_dataloaders=train)
    return statistics.median(timer.epoch_times()[1:])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny run, no docs (smoke test)")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--no-docs", action="store_true", help="do not append to docs")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    load_callbacks()
    repeats = args.repeats or (1 if args.quick else 5)
    epochs = args.epochs or (2 if args.quick else 6)
    limit = 400 if args.quick else None
    configs = [BASELINE, "TemperatureAnalysis", "HardnessMonitor", "both"]
    print(f"machine: {machine_description(torch.device('cpu'))}", flush=True)
    times: dict[str, list[float]] = {c: [] for c in configs}
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for rep in range(repeats):
            order = configs[rep % len(configs):] + configs[: rep % len(configs)]
            for config in order:
                times[config].append(run(config, epochs, limit, Path(tmp)))
                print(f"repeat {rep}: {config}: {times[config][-1] * 1e3:.1f} ms/epoch",
                      flush=True)
    rows, verdicts = [], []
    for config in configs:
        ratio = statistics.median(a / b for a, b in zip(times[config], times[BASELINE]))
        rows.append([config, f"{statistics.median(times[config]) * 1e3:.1f}",
                     f"{(ratio - 1) * 100:+.1f} %"])
        if config != BASELINE:
            met = "met" if ratio - 1 <= TARGET else "NOT met"
            verdicts.append(f"{config}: {(ratio - 1) * 100:+.1f} % epoch time "
                            f"(target <= +{TARGET * 100:.0f} %): {met}")
    table = markdown_table(["callbacks", "epoch ms (median)", "overhead"], rows)
    print()
    print(table)
    print()
    for line in verdicts:
        print(line)
    if not (args.quick or args.no_docs):
        body = (
            f"SimCLR on scikit-learn's digits (1,437 training images, batch 256, a small CNN, "
            f"128-d projection, HardContrastiveLoss), {epochs} epochs per run (first one not "
            f"counted), {repeats} interleaved repeats; callbacks at their default settings "
            "with a CSVLogger; the probe of TemperatureAnalysis is the 360 held-out digits, two "
            "augmented views each. The machine was shared with other jobs.\n\n"
            + table + "\n\n" + "\n".join(f"- {v}" for v in verdicts)
        )
        append_to_docs("Callbacks: epoch-time overhead", torch.device("cpu"), body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
