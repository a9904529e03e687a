"""TemperatureAnalysis under 2-process CPU DDP (gloo) gives the 1-process metrics."""

from __future__ import annotations

import json
import math

import pytest
import torch.distributed as dist

from tests.conftest import ROOT, read_csv, run_python

pytestmark = pytest.mark.skipif(
    not dist.is_available() or not dist.is_gloo_available(), reason="needs torch.distributed gloo"
)


def test_two_process_ddp_equals_one_process(tmp_path, free_port):
    ddp_dir = tmp_path / "ddp"
    proc = run_python(
        ROOT / "tests" / "_ddp_run.py",
        "2",
        ddp_dir,
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(free_port),
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
    assert len(read_csv(out_dir / "history.csv")) == 1
    assert len(list(out_dir.glob("*.png"))) == 1
    assert ddp["hardness_steps"] == [0, 1]
