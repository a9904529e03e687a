"""examples/callbacks_in_existing_project.py: the callbacks added to a Lightly-style module."""

from __future__ import annotations

import csv
import math
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_quick_mode_logs_the_callbacks_metrics(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples" / "callbacks_in_existing_project.py"),
            "--quick",
            "--logs",
            str(tmp_path / "logs"),
        ],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    run = tmp_path / "logs" / "version_0"
    with (run / "metrics.csv").open() as file:
        rows = list(csv.DictReader(file))
    uniformity = [r["temperature_analysis/uniformity"] for r in rows]
    assert any(u and math.isfinite(float(u)) for u in uniformity)
    hardness = [r["hardness/temperature"] for r in rows if r["hardness/temperature"]]
    assert hardness and float(hardness[0]) == 0.5  # NTXentLoss's temperature, carried over
    assert (run / "temperature_analysis" / "history.csv").exists()
    assert list((run / "temperature_analysis").glob("similarities_*.png"))
