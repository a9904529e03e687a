"""The study's temperature-policy axis: the grid, results.csv, the τ recorded over training and
the report's comparison, on a short real digits run."""

from __future__ import annotations

import pytest

from lightly_temperature.study.config import StudyConfig
from lightly_temperature.study.data import load_digits_data
from lightly_temperature.study.report import TEMPERATURE_DIR, load_temperatures
from lightly_temperature.study.results import ResultsFile
from lightly_temperature.study.runner import run_study
from lightly_temperature.temperature import CosineTemperature


def test_policy_axis_of_the_grid():
    config = StudyConfig(
        losses=("ntxent", "simple"),
        temperatures=(0.1, 0.5),
        temperature_policies=("constant", "cosine", "adaptive"),
        seeds=(0,),
    )
    runs = config.runs()
    # A τ that only rescales the loss (Simple) runs once, at a constant τ.
    assert [(r.loss, r.temperature, r.temperature_policy) for r in runs] == [
        ("ntxent", 0.1, "constant"),
        ("ntxent", 0.1, "cosine"),
        ("ntxent", 0.1, "adaptive"),
        ("ntxent", 0.5, "constant"),
        ("ntxent", 0.5, "cosine"),
        ("ntxent", 0.5, "adaptive"),
        ("simple", 1.0, "constant"),
    ]
    assert len({r.key for r in runs}) == len(runs) and len({r.name for r in runs}) == len(runs)
    with pytest.raises(ValueError, match="temperature_policies must not repeat"):
        StudyConfig(temperature_policies=("cosine", "cosine"))
    with pytest.raises(ValueError, match="temperature_policy must be one of"):
        StudyConfig(temperature_policies=("warm",))


def test_results_refuse_an_unknown_policy(tmp_path):
    from lightly_temperature.study.results import COLUMNS, METRIC_COLUMNS

    results = ResultsFile(tmp_path / "results.csv")
    row = {c: 0.5 for c in METRIC_COLUMNS}
    row.update(method="simclr", loss="ntxent", temperature=0.5, hard_negatives="", seed=0)
    row.update(epochs=1, temperature_policy="cosine")
    results.append(row)
    results.append({**row, "temperature_policy": "warm"})
    assert [r["temperature_policy"] for r in results.rows()] == ["cosine"]
    warnings = results.set_aside_malformed()
    assert len(warnings) == 1 and "temperature_policy 'warm'" in warnings[0]
    assert COLUMNS.index("temperature_policy") == 6


def test_a_short_study_compares_the_policies(tmp_path):
    config = StudyConfig(
        output=str(tmp_path),
        losses=("hard_contrastive",),
        temperatures=(0.3,),
        temperature_policies=("constant", "cosine", "learnable", "adaptive", "individual"),
        seeds=(0,),
        epochs=3,
        progress_bar=False,
    )
    run_study(config, data=load_digits_data(), printer=lambda line: None)
    rows = ResultsFile(tmp_path / "results.csv").rows()
    assert [r["temperature_policy"] for r in rows] == list(config.temperature_policies)
    runs = {run.temperature_policy: run for run in config.runs()}
    assert not (tmp_path / TEMPERATURE_DIR / f"{runs['constant'].name}.csv").exists()
    # The cosine τ in force at the end of each epoch, from the library's monitor.
    steps, means, lows, highs = load_temperatures(
        tmp_path / TEMPERATURE_DIR / f"{runs['cosine'].name}.csv"
    )
    schedule = CosineTemperature(config.policy_tau_min, 0.3, period=3)
    assert means == pytest.approx([schedule.at(epoch) for epoch in range(3)], rel=1e-5)
    assert len(steps) == 3 and steps == sorted(steps)
    # One τ per sample: a spread that opens as the samples' τ are updated.
    _, means, lows, highs = load_temperatures(
        tmp_path / TEMPERATURE_DIR / f"{runs['individual'].name}.csv"
    )
    assert lows[-1] < means[-1] < highs[-1]
    assert all(config.policy_tau_min <= low for low in lows)
    report = (tmp_path / "report.md").read_text()
    assert "## Temperature policies" in report
    # The policies compared on accuracy with few labels too (the study's default 1 and 10).
    header = next(line for line in report.splitlines() if line.startswith("| loss | τ (start) |"))
    assert "| 1-shot acc. (%) | 10-shot acc. (%) |" in header
    for policy in config.temperature_policies:
        assert f"| HardContrastive | 0.3 | {policy} |" in report
    assert (tmp_path / "temperature_policies.png").exists()
