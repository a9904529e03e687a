"""``results.csv`` of a study: one row per finished run, appended as runs finish.

Example:
    >>> from lightly_temperature.study.results import ResultsFile
    >>> results = ResultsFile("study_output/results.csv")
    >>> done = results.finished_keys()  # skip these runs when resuming
    >>> results.append(row)  # a dict with the COLUMNS below
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from lightly_temperature.study.config import run_key

#: The columns of ``results.csv``, in order.
COLUMNS = (
    "method",
    "loss",
    "temperature",
    "hard_negatives",
    "seed",
    "epochs",
    "knn_accuracy",
    "linear_accuracy",
    "uniformity",
    "alignment",
    "tolerance",
    "positive_similarity",
    "top10_negative_similarity",
    "false_negative_rate",
    "effective_negatives",
    "train_seconds",
)
#: The columns holding measurements (floats).
METRIC_COLUMNS = COLUMNS[6:]


def row_key(row: dict[str, str]) -> tuple[str, ...]:
    """The resume key of a ``results.csv`` row: equal to :attr:`RunSpec.key` of its run."""
    columns = ("method", "loss", "temperature", "hard_negatives", "seed", "epochs")
    return run_key(*(row[c] for c in columns))


class ResultsFile:
    """Reads and appends ``results.csv``; each appended row is flushed and fsynced so an
    interrupted study loses no finished run."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def rows(self) -> list[dict[str, str]]:
        """All rows as dicts of strings (empty if the file does not exist yet)."""
        if not self.path.exists():
            return []
        with self.path.open(newline="") as file:
            reader = csv.DictReader(file)
            if reader.fieldnames is None:
                return []
            missing = [c for c in COLUMNS if c not in reader.fieldnames]
            if missing:
                raise ValueError(
                    f"{self.path} is not a study results file: columns {missing} are missing"
                )
            return [row for row in reader if row.get("method")]

    def finished_keys(self) -> set[tuple[str, ...]]:
        """Resume keys (method, loss, temperature, hard_negatives, seed, epochs) already done."""
        return {row_key(r) for r in self.rows()}

    def append(self, row: dict[str, object]) -> None:
        """Appends one row (keys: :data:`COLUMNS`), writing the header first if needed."""
        unknown = set(row) - set(COLUMNS)
        if unknown:
            raise ValueError(f"unknown results columns: {sorted(unknown)}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.path.exists() or self.path.stat().st_size == 0
        with self.path.open("a", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=COLUMNS)
            if new:
                writer.writeheader()
            writer.writerow({c: _format(row.get(c, "")) for c in COLUMNS})
            file.flush()
            os.fsync(file.fileno())


def _format(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)
