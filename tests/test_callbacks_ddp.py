"""TemperatureAnalysis under 2-process CPU DDP (gloo) gives the 1-process metrics."""

from __future__ import annotations

import csv
import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch.distributed as dist

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent

pytestmark = pytest.mark.skipif(
    not dist.is_available() or not dist.is_gloo_available(), reason="needs torch.distributed gloo"
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_ddp_equals_one_process(tmp_path):
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([str(ROOT), str(TESTS)]),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(_free_port()),
        OMP_NUM_THREADS="1",
    )
    ddp_dir = tmp_path / "ddp"
    proc = subprocess.run(
        [sys.executable, str(TESTS / "_ddp_run.py"), "2", str(ddp_dir)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    ddp = json.loads((ddp_dir / "result.json").read_text())
    assert ddp["world_size"] == 2

    from tests._ddp_run import run

    single = run(1, str(tmp_path / "single"))
    assert single["world_size"] == 1

    (ddp_row,), (single_row,) = ddp["history"], single["history"]
    assert ddp_row["num_samples"] == single_row["num_samples"] == 101
    for name, value in single_row.items():
        if isinstance(value, float):
            assert math.isfinite(value), name
            assert ddp_row[name] == pytest.approx(value, rel=1e-5, abs=1e-6), name
    # What pl_module.log gave the loggers on rank zero equals the computed values.
    for key, value in ddp["logged"].items():
        assert value == pytest.approx(ddp_row[key.split("/", 1)[1]], rel=1e-6), key
    assert set(ddp["logged"]) == set(single["logged"])
    # Files are written once, by rank zero.
    out_dir = ddp_dir / "csv" / "version_0" / "temperature_analysis"
    with open(out_dir / "history.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == 1
    assert len(list(out_dir.glob("*.png"))) == 1
    assert ddp["hardness_steps"] == [0, 1]
