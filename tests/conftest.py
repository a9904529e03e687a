"""Fixtures and helpers shared by the tests.

Fixtures (requested by name): ``free_port``; one torch thread for the whole session (autouse).
Helpers (imported, e.g. ``from tests.conftest import make_trainer``): ``ROOT``, the article's
anchors ``POSITIVE_FIRST`` and ``NEGATIVE_FIRST``, ``make_trainer``, ``RecordLosses``,
``read_csv``, ``run_python``, ``load_script``.
"""

from __future__ import annotations

import csv
import importlib.util
import os
import socket
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint

#: The root of this checkout (the folder holding ``lightly_temperature`` and ``tests``).
ROOT = Path(__file__).resolve().parents[1]
#: The two anchors of the article *Intuitive Guide for Temperature Coefficients in
#: Contrastive Learning*: the positive similarity first, then the negatives'. The positive is
#: the most similar in the first, a negative is in the second.
POSITIVE_FIRST = (0.5, 0.25, -0.45, -0.1)
NEGATIVE_FIRST = (0.25, 0.5, -0.45, -0.1)


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread() -> Iterator[None]:
    """One torch thread: the tests share 2 cores, where one thread is faster and steadier.

    Session-wide, so that module-scoped fixtures that train (set up before any function-scoped
    fixture) run on one thread too.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def free_port() -> int:
    """A TCP port free on 127.0.0.1 now, for a process group's rendezvous."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_trainer(
    root: str | Path | None = None,
    max_epochs: int | None = None,
    callbacks: Sequence[pl.Callback] = (),
    logger: Any = False,
    **trainer_kwargs: Any,
) -> pl.Trainer:
    """A quiet CPU ``Trainer`` on one device: no progress bar, model summary or sanity check,
    and checkpoints only when a ``ModelCheckpoint`` is among ``callbacks``.

    ``trainer_kwargs`` (``max_steps``, ``limit_train_batches``, ``devices``, ``strategy``, ...)
    override these settings.
    """
    callbacks = list(callbacks)
    settings: dict[str, Any] = dict(
        max_epochs=max_epochs,
        accelerator="cpu",
        devices=1,
        logger=logger,
        callbacks=callbacks,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=any(isinstance(c, ModelCheckpoint) for c in callbacks),
        num_sanity_val_steps=0,
    )
    if root is not None:
        settings["default_root_dir"] = str(root)
    settings.update(trainer_kwargs)
    return pl.Trainer(**settings)


class RecordLosses(pl.Callback):
    """Keeps the training loss of every step, as a float."""

    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses.append(float(outputs["loss"]))


def read_csv(path: str | Path) -> list[dict[str, str]]:
    """The rows of a CSV file with a header line, as dicts in column order."""
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def run_python(
    *args: str | Path, cwd: str | Path | None = None, timeout: float = 300, **env: str
) -> subprocess.CompletedProcess:
    """Runs ``python *args`` in a fresh interpreter that imports this checkout's package, on
    one thread; ``env`` adds environment variables. Output is captured as text."""
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **env}
    return subprocess.run(
        [sys.executable, *(str(arg) for arg in args)],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def load_script(path: str | Path) -> ModuleType:
    """Imports a script (an example, a benchmark) as a module without running its
    ``__main__`` block; the script's folder is importable while it loads."""
    path = Path(path)
    sys.path.insert(0, str(path.parent))
    try:
        spec = importlib.util.spec_from_file_location(f"script_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(path.parent))
    return module
