"""The benchmark scripts run end to end in their --quick mode (no timing is asserted).

The scripts are run in this process (their ``main(argv)``): a subprocess would spend most of
the test importing torch and Lightly again.
"""

from __future__ import annotations

import pytest
import torch

from tests.conftest import ROOT, load_script

BENCHMARKS = ROOT / "benchmarks"


@pytest.fixture
def run_quick(capsys):
    docs = ROOT / "docs" / "benchmarks.md"
    before = docs.read_text() if docs.exists() else None
    threads = torch.get_num_threads()

    def run(name: str) -> str:
        try:
            assert load_script(BENCHMARKS / f"{name}.py").main(["--quick", "--threads", "1"]) == 0
        finally:
            torch.set_num_threads(threads)
        return capsys.readouterr().out

    yield run
    after = docs.read_text() if docs.exists() else None
    assert after == before, "--quick must not append to docs/benchmarks.md"


def test_bench_losses_quick_prints_table_and_verdicts(run_quick):
    out = run_quick("bench_losses")
    assert "| setting | loss |" in out
    for name in ("NTXentLoss", "HardContrastive(None)", "HardSimple", "Simple", "floor", "HCL("):
        assert name in out
    # SimCLR: 2 + HCL + debiased times, memory; MoCo: 1 + HCL + debiased times, memory;
    # each: a constant and a per-sample temperature policy against the same loss with a number
    assert out.count("(target <=") == 13
    assert out.count("the same loss with a number") == 4


def test_bench_metrics_quick_checks_exactness(run_quick):
    out = run_quick("bench_metrics")
    for name in ("floor", "uniformity_loss", "tolerance", "top-10 negatives"):
        assert name in out
    diffs = [float(line.rsplit(" ", 1)[1]) for line in out.splitlines() if "|diff|" in line]
    assert len(diffs) == 3 and max(diffs) < 1e-4  # the metrics equal the naive references


def test_bench_callbacks_quick_trains_with_each_configuration(run_quick):
    out = run_quick("bench_callbacks")
    for config in ("no callback", "TemperatureAnalysis", "HardnessMonitor", "both"):
        assert f"| {config} |" in out
    assert out.count("(target <= +3 %)") == 3
