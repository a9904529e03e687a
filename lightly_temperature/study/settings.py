"""``study.json``: the settings an output folder's runs were trained with, so that a rerun
resumes only into a folder made with the same settings.

A run's resume key in ``results.csv`` is (method, loss, tau, K, seed, epochs): the grid. Every
other setting that changes a run's numbers (data, backbone, batch size, optimizer, ...) is
written to ``study.json`` on the first run; a rerun with other settings is refused instead of
silently reusing the old runs. The grid (losses, temperatures, K, seeds, epochs, method) is
not part of it, so a grid can be extended in the same folder.

Example:
    >>> from lightly_temperature.study.settings import check_output_settings, study_settings
    >>> check_output_settings("study_output", study_settings(config, data))  # before training
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lightly_temperature._validation import check_writable_folder
from lightly_temperature.study.config import StudyConfig
from lightly_temperature.study.data import TORCHVISION_DATASETS, StudyData
from lightly_temperature.study.files import write_atomically

SETTINGS_FILE = "study.json"
FORMAT = 1


class StudySettingsError(ValueError):
    """The output folder holds runs trained with other settings."""


def _data_source(config: StudyConfig) -> str:
    if config.data is not None:
        return f"folder {Path(config.data).resolve()}"
    if config.dataset is not None and config.dataset.lower() in TORCHVISION_DATASETS:
        return f"{config.dataset.lower()} {Path(config.data_dir or '.').resolve()}"
    return "digits"


def study_settings(config: StudyConfig, data: StudyData) -> dict[str, Any]:
    """The settings that change a run's numbers but are not in its resume key (JSON types)."""
    return {
        "data": _data_source(config),
        "image_size": data.image_size,
        "train_images": len(data.train_views),  # type: ignore[arg-type]
        "eval_train_images": len(data.train_plain),  # type: ignore[arg-type]
        "test_images": len(data.test_plain),  # type: ignore[arg-type]
        "backbone": config.backbone,
        "hidden_dim": config.hidden_dim,
        "output_dim": config.output_dim,
        "batch_size": config.batch_size,
        "optimizer": config.optimizer,
        "lr": config.lr,
        "weight_decay": config.weight_decay,
        "lr_milestones": list(config.lr_milestones),
        "memory_bank_size": config.memory_bank_size,
        "precision": None if config.precision is None else str(config.precision),
        "knn_k": config.knn_k,
        "knn_t": config.knn_t,
        "few_shot": list(config.few_shot),
        "few_shot_draws": config.few_shot_draws,
        **config.policy_settings(),  # only when a policy other than constant is in the grid
    }


def _differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    names = list(new) + [name for name in old if name not in new]
    return [
        f"{name} {old.get(name, '(unset)')!s} there, {new.get(name, '(unset)')!s} now"
        for name in names
        if old.get(name) != new.get(name)
    ]


def check_output_folder(output: str | Path) -> None:
    """Creates the output folder if needed; ValueError naming ``--output`` if it is a file,
    lies below a file or cannot be written to (checked before training)."""
    check_writable_folder(output, "--output")


def check_output_settings(output: str | Path, settings: dict[str, Any], write: bool = True) -> None:
    """Writes ``settings`` to ``output/study.json`` if there is none yet (atomically, when
    ``write``); raises :class:`StudySettingsError` naming the differences if it holds others."""
    path = Path(output) / SETTINGS_FILE
    if path.exists():
        try:
            stored = json.loads(path.read_text())
            old = stored["settings"]
            if not isinstance(old, dict):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            raise StudySettingsError(
                f"{path} is not a study settings file; use another --output"
            ) from None
        differences = _differences(old, json.loads(json.dumps(settings)))
        if differences:
            raise StudySettingsError(
                f"--output {output} holds runs trained with other settings "
                f"({'; '.join(differences)}): use another --output, or the same settings to "
                "resume"
            )
        return
    if not write:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps({"format": FORMAT, "settings": settings}, indent=2) + "\n"
    write_atomically(path, text)
