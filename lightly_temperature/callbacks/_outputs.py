"""Where the callbacks' results go: loggers, histograms and a CSV history (the PNG figure is
:mod:`lightly_temperature.figures`)."""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

from torch import Tensor


def current_log_step(trainer: Any) -> int:
    """The step Lightning logs step metrics at (batches that stepped the optimizer)."""
    epoch_loop = getattr(getattr(trainer, "fit_loop", None), "epoch_loop", None)
    return int(getattr(epoch_loop, "_batches_that_stepped", trainer.global_step))


def log_to_loggers(trainer: Any, metrics: Mapping[str, float], step: int) -> None:
    """Writes scalars to every attached logger at ``step`` (loggers write on rank zero only).

    Used for step-wise values, as Lightning's own LearningRateMonitor does: ``self.log`` with
    ``on_step=True`` only reaches the loggers on the trainer's ``log_every_n_steps``.
    """
    for logger in trainer.loggers:
        logger.log_metrics(dict(metrics), step=step)


def log_histograms(trainer: Any, histograms: Mapping[str, Tensor], step: int) -> None:
    """Histograms to the TensorBoard and Weights & Biases loggers attached (rank zero only).

    Loggers are recognised by duck typing: a TensorBoard ``SummaryWriter`` experiment has
    ``add_histogram``; a ``WandbLogger`` is recognised by its class name and ``wandb`` is
    imported only then (it is not a dependency).
    """
    for logger in trainer.loggers:
        experiment = logger.experiment
        if hasattr(experiment, "add_histogram"):
            for tag, values in histograms.items():
                experiment.add_histogram(tag, values.detach().float().cpu(), global_step=step)
        elif "wandb" in type(logger).__name__.lower():
            import wandb  # noqa: PLC0415 - optional, only when a WandbLogger is attached

            payload: dict[str, Any] = {
                tag: wandb.Histogram(values.detach().float().cpu().numpy())
                for tag, values in histograms.items()
            }
            payload["trainer/global_step"] = step
            experiment.log(payload)


class CSVHistory:
    """A CSV file mirroring a list of rows: appended row by row, rewritten once after a resume.

    The first write after construction (or after :meth:`invalidate`, called on resume)
    rewrites the file from the whole in-memory history: rows written after the checkpoint by
    an interrupted run are dropped, and a new log directory gets the full history.
    """

    def __init__(self, columns: Sequence[str]) -> None:
        self.columns = list(columns)
        self._synced_path: str | None = None

    def invalidate(self) -> None:
        self._synced_path = None

    def write(self, path: str, history: list[Mapping[str, Any]]) -> None:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if self._synced_path == path:
            rows, mode = history[-1:], "a"
        else:
            rows, mode = history, "w"
        with open(path, mode, newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.columns, extrasaction="ignore")
            if mode == "w":
                writer.writeheader()
            for row in rows:
                writer.writerow({c: _format(row.get(c)) for c in self.columns})
        self._synced_path = path


def _format(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    return value
