"""Where the callbacks' results go: the run's folder, loggers (scalars, histograms, images) and
a CSV history (the figure itself is drawn by :mod:`lightly_temperature.figures`)."""

from __future__ import annotations

import csv
import inspect
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


def log_image(trainer: Any, tag: str, pixels: Any, step: int) -> None:
    """An image (a NumPy ``uint8`` array, height x width x 3 or 4) to every attached logger
    with an image API (rank zero only); others (CSV, MLflow, ...) are skipped.

    TensorBoard: its ``SummaryWriter`` experiment's ``add_image``; Weights & Biases and any
    logger with Lightning's ``log_image(key, images, step)`` method: that method (a
    ``wandb.Image`` for W&B).
    """
    rgb = pixels[..., :3]
    for logger in trainer.loggers:
        experiment = logger.experiment
        if hasattr(experiment, "add_image"):
            experiment.add_image(tag, rgb, global_step=step, dataformats="HWC")
        elif _takes_images(getattr(logger, "log_image", None)):
            logger.log_image(key=tag, images=[rgb], step=step)


def _takes_images(method: Any) -> bool:
    """Whether ``method`` can be called as Lightning's ``log_image(key=, images=, step=)``
    (a logger's method of that name with another signature is left alone)."""
    if not callable(method):
        return False
    try:
        inspect.signature(method).bind(key="", images=[], step=0)
    except (TypeError, ValueError):
        return False
    return True


def logger_run_folder(logger: Any, default_root_dir: str) -> str:
    """The folder of one logger's run: its ``log_dir`` (TensorBoard, CSV), else
    ``save_dir/name/version`` (W&B: ``save_dir/project/run id``), the folder where Lightning's
    ``ModelCheckpoint`` puts that run's checkpoints."""
    log_dir = getattr(logger, "log_dir", None)
    if isinstance(log_dir, str):
        return log_dir
    version = logger.version
    version = version if isinstance(version, str) else f"version_{version}"
    return os.path.join(logger.save_dir or default_root_dir, str(logger.name), version)


def run_folder(trainer: Any) -> str:
    """The folder of the run's files: the first logger's run folder, else the trainer's
    ``default_root_dir``. Unlike ``trainer.log_dir`` (a logger's ``save_dir`` for loggers
    other than TensorBoard and CSV), two runs sharing a W&B ``save_dir`` get two folders.
    A collective under DDP, as ``trainer.log_dir`` is: every rank calls it."""
    if trainer.loggers:
        folder = logger_run_folder(trainer.loggers[0], trainer.default_root_dir)
    else:
        folder = trainer.default_root_dir
    return trainer.strategy.broadcast(folder)


def split_run_folders(trainer: Any) -> list[str]:
    """The distinct run folders of the attached TensorBoard / CSV-style loggers (those with a
    ``log_dir``) when there are several: one run then spreads over several folders."""
    folders = []
    for logger in trainer.loggers:
        log_dir = getattr(logger, "log_dir", None)
        if isinstance(log_dir, str) and os.path.abspath(log_dir) not in map(
            os.path.abspath, folders
        ):
            folders.append(log_dir)
    return folders if len(folders) > 1 else []


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
