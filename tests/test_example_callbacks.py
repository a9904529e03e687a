"""examples/callbacks_in_existing_project.py: the callbacks added to a Lightly-style module."""

from __future__ import annotations

import math

from tests.conftest import ROOT, read_csv, run_python


def test_quick_mode_logs_the_callbacks_metrics(tmp_path):
    done = run_python(
        ROOT / "examples" / "callbacks_in_existing_project.py",
        "--quick",
        "--logs",
        tmp_path / "logs",
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    run = tmp_path / "logs" / "version_0"
    rows = read_csv(run / "metrics.csv")
    uniformity = [r["temperature_analysis/uniformity"] for r in rows]
    assert any(u and math.isfinite(float(u)) for u in uniformity)
    hardness = [r["hardness/temperature"] for r in rows if r["hardness/temperature"]]
    assert hardness and float(hardness[0]) == 0.5  # NTXentLoss's temperature, carried over
    assert (run / "temperature_analysis" / "history.csv").exists()
    assert list((run / "temperature_analysis").glob("similarities_*.png"))
