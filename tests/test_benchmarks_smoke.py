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

    def run(name: str, *args: str) -> str:
        try:
            argv = ["--quick", "--threads", "1", *args]
            assert load_script(BENCHMARKS / f"{name}.py").main(argv) == 0
        finally:
            torch.set_num_threads(threads)
        return capsys.readouterr().out

    yield run
    after = docs.read_text() if docs.exists() else None
    assert after == before, "a benchmark wrote into docs/benchmarks.md without --output"


def test_bench_losses_quick_prints_table_and_verdicts(run_quick):
    out = run_quick("bench_losses")
    assert "| setting | loss |" in out
    for name in ("NTXentLoss", "HardContrastive(None)", "HardSimple", "Simple", "floor", "HCL("):
        assert name in out
    # SimCLR: 2 + HCL + debiased times, memory; MoCo: 1 + HCL + debiased times, memory
    assert out.count("(target <=") == 9


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


def test_results_go_to_the_output_file_only(run_quick, tmp_path):
    output = tmp_path / "results" / "bench.md"
    out = run_quick("bench_metrics", "--output", str(output))
    text = output.read_text()
    assert text.startswith("# Benchmarks\n")
    assert text.count("\n## Metrics: time and memory against the floor (") == 1
    assert "- Machine: CPU " in text and "- Command: `python " in text
    # the printed table is the one written
    table = [line for line in out.splitlines() if line.startswith("| N=500 |")]
    assert len(table) == 4 and all(line in text for line in table)
    run_quick("bench_metrics", "--output", str(output))
    assert output.read_text().count("\n## Metrics: time and memory against the floor (") == 2
