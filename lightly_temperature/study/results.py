"""``results.csv`` of a study: one row per finished run, written as runs finish.

Each row is written atomically (the whole file is replaced), so a crash leaves a run's row
whole or absent. A row damaged some other way (cut, extra or missing fields, a value that is
not a number) is never used: :meth:`ResultsFile.set_aside_malformed` moves it to
``results.rejected.csv`` and names it by line number, and its run counts as not finished.

Example:
    >>> from lightly_temperature.study.results import ResultsFile
    >>> results = ResultsFile("study_output/results.csv")
    >>> warnings = results.set_aside_malformed()  # before resuming
    >>> done = results.finished_keys()  # skip these runs when resuming
    >>> results.append(row)  # a dict with the COLUMNS below
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lightly_temperature.probe import few_shot_names
from lightly_temperature.study.config import (
    DEFAULT_FEW_SHOT,
    METHODS,
    TEMPERATURE_POLICIES,
    run_key,
)
from lightly_temperature.study.files import write_atomically

#: The columns of ``results.csv`` before the few-shot accuracies, in order.
_BASE_COLUMNS = (
    "method",
    "loss",
    "temperature",
    "hard_negatives",
    "seed",
    "epochs",
    "temperature_policy",
    "knn_accuracy",
    "linear_accuracy",
    "uniformity",
    "alignment",
    "tolerance",
    "positive_similarity",
    "top10_negative_similarity",
    "false_negative_rate",
    "effective_negatives",
    "embedding_spread",
)


def results_columns(few_shot: Sequence[int] = DEFAULT_FEW_SHOT) -> tuple[str, ...]:
    """The columns of a ``results.csv`` whose runs measure the few-shot accuracy with these
    labels per class: for each k, ``fewshot_accuracy_{k}`` (mean over the label draws) and
    ``fewshot_accuracy_{k}_draw_std`` (their spread), then ``train_seconds``."""
    shots = [name for k in few_shot for name in few_shot_names(k)]
    return (*_BASE_COLUMNS, *shots, "train_seconds")


#: The columns of ``results.csv`` with the default few-shot label counts, in order.
COLUMNS = results_columns()
#: The columns identifying a run (its resume key), in :func:`run_key`'s order.
KEY_COLUMNS = COLUMNS[:7]
#: The columns holding measurements (floats; empty when not measured), default label counts.
METRIC_COLUMNS = COLUMNS[7:]
#: Where malformed rows of ``results.csv`` are moved, next to it.
REJECTED_FILE = "results.rejected.csv"


def row_key(row: dict[str, str]) -> tuple[str, ...]:
    """The resume key of a ``results.csv`` row: equal to :attr:`RunSpec.key` of its run."""
    return run_key(*(row[c] for c in KEY_COLUMNS))


@dataclass(frozen=True)
class RejectedLine:
    """A line of ``results.csv`` that is not a valid row: its number (the header is line 1),
    its text and why it is refused."""

    number: int
    text: str
    reason: str


def _parse_row(fields: list[str], columns: tuple[str, ...] = COLUMNS) -> dict[str, str]:
    """The row of ``fields`` if every value parses strictly; ValueError saying why otherwise."""
    if len(fields) != len(columns):
        raise ValueError(f"{len(fields)} fields, {len(columns)} expected")
    row = dict(zip(columns, fields))
    if row["method"] not in METHODS:
        raise ValueError(f"method {row['method']!r} is not one of {', '.join(METHODS)}")
    if not row["loss"]:
        raise ValueError("loss is empty")
    temperature = float(row["temperature"])
    if not math.isfinite(temperature) or temperature <= 0:
        raise ValueError(f"temperature {row['temperature']!r} is not a float > 0")
    for name, minimum in (("seed", 0), ("epochs", 1)):
        if int(row[name]) < minimum:
            raise ValueError(f"{name} {row[name]!r} is not an int >= {minimum}")
    if row["temperature_policy"] not in TEMPERATURE_POLICIES:
        raise ValueError(
            f"temperature_policy {row['temperature_policy']!r} is not one of "
            f"{', '.join(TEMPERATURE_POLICIES)}"
        )
    row_key(row)  # hard_negatives, and the key as a whole
    for column in columns[len(KEY_COLUMNS) :]:
        if row[column] != "":
            float(row[column])
    return row


class ResultsFile:
    """Reads and writes ``results.csv``; ``few_shot``: the label counts of its few-shot
    columns (:func:`results_columns`)."""

    def __init__(self, path: str | Path, few_shot: Sequence[int] = DEFAULT_FEW_SHOT) -> None:
        self.path = Path(path)
        self.columns = results_columns(few_shot)

    @property
    def rejected_path(self) -> Path:
        return self.path.with_name(REJECTED_FILE)

    def _read(self) -> tuple[list[dict[str, str]], list[RejectedLine], list[str]]:
        """(valid rows, malformed lines, the valid lines' text with their line ends)."""
        if not self.path.exists():
            return [], [], []
        lines = _lines(_read_text(self.path))
        if not lines:
            return [], [], []
        header = next(csv.reader([lines[0]]), [])
        if tuple(header) != self.columns:
            raise ValueError(
                f"{self.path} is not a study results file of this version: its columns are "
                f"{','.join(header) or '(none)'}, expected {','.join(self.columns)}; use another "
                "--output"
            )
        rows, rejected, kept = [], [], [lines[0]]
        for number, line in enumerate(lines[1:], start=2):
            if not line.strip():
                continue
            try:
                if not line.endswith("\n"):
                    raise ValueError("cut short (no line end)")
                fields = next(csv.reader([line]))
                rows.append(_parse_row(fields, self.columns))
                kept.append(line)
            except ValueError as error:
                rejected.append(RejectedLine(number, line.rstrip("\r\n"), str(error)))
        return rows, rejected, kept

    def rows(self) -> list[dict[str, str]]:
        """The valid rows as dicts of strings (empty if the file does not exist yet);
        malformed lines are left out. ValueError if the file has other columns."""
        return self._read()[0]

    def check_columns(self) -> None:
        """ValueError naming the file if it exists with other columns than :attr:`columns`."""
        self._read()

    def set_aside_malformed(self) -> list[str]:
        """Moves malformed lines to ``results.rejected.csv`` (appended, with the header) and
        rewrites ``results.csv`` without them; returns one message per line moved."""
        _, rejected, kept = self._read()
        if not rejected:
            return []
        new = not self.rejected_path.exists() or self.rejected_path.stat().st_size == 0
        with self.rejected_path.open("a", newline="") as file:
            if new:
                file.write(",".join(self.columns) + "\r\n")
            file.writelines(line.text + "\r\n" for line in rejected)
            file.flush()
            os.fsync(file.fileno())
        write_atomically(self.path, "".join(kept))
        return [
            f"{self.path} line {line.number} is malformed ({line.reason}): moved to "
            f"{self.rejected_path}; its run will be trained again"
            for line in rejected
        ]

    def finished_keys(self) -> set[tuple[str, ...]]:
        """Resume keys (method, loss, temperature, hard_negatives, seed, epochs, temperature
        policy) already done."""
        return {row_key(r) for r in self.rows()}

    def append(self, row: dict[str, object]) -> None:
        """Adds one row (keys: :attr:`columns`), with the header first if needed, by replacing
        the file: a crash leaves the row whole or absent, never cut."""
        unknown = set(row) - set(self.columns)
        if unknown:
            raise ValueError(f"unknown results columns: {sorted(unknown)}")
        text = _read_text(self.path) if self.path.exists() else ""
        if text and not text.endswith("\n"):  # a line cut by some other writer stays apart
            text += "\r\n"
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=self.columns)
        if not text:
            writer.writeheader()
        writer.writerow({c: _format(row.get(c, "")) for c in self.columns})
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(self.path, text + buffer.getvalue())


def _read_text(path: Path) -> str:
    with path.open(newline="") as file:  # line ends as written
        return file.read()


def _lines(text: str) -> list[str]:
    """The lines of ``text``, each with its ``\n``; a last line without one is kept as is."""
    parts = text.split("\n")
    return [part + "\n" for part in parts[:-1]] + ([parts[-1]] if parts[-1] else [])


def _format(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)
