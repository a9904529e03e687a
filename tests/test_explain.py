"""`lightly-temperature explain`: the Intuitive Guide's tables, the paper's gradients, penalties."""

from __future__ import annotations

import math

import pytest
import torch

from lightly_temperature.cli import main
from lightly_temperature.explain import explain, format_explanation, format_number, plot_explanation
from tests.conftest import NEGATIVE_FIRST, POSITIVE_FIRST

TAUS = [1.0, 0.5, 0.05, 0.01]


def test_losses_and_probabilities_match_seed_tables():
    first = explain(POSITIVE_FIRST, TAUS)
    assert [f"{row.loss:.4f}" for row in first.rows] == ["0.9986", "0.7214", "0.0067", "0.0000"]
    assert [round(p, 4) for p in first.rows[0].probabilities] == [0.3684, 0.2869, 0.1425, 0.2022]
    assert [round(p, 4) for p in first.rows[1].probabilities] == [0.4861, 0.2948, 0.0727, 0.1464]
    assert first.rows[2].scaled == pytest.approx([10.0, 5.0, -9.0, -2.0])
    second = explain(NEGATIVE_FIRST, TAUS)
    assert [f"{row.loss:.4f}" for row in second.rows] == ["1.2486", "1.2214", "5.0067", "25.0000"]


@pytest.mark.parametrize(
    "similarities", [POSITIVE_FIRST, NEGATIVE_FIRST, [0.9, 0.8, 0.1, -0.7, 0.3]]
)
def test_gradients_and_penalties_follow_the_paper(similarities):
    """dL/ds_ij = P_ij / tau, dL/ds_ii = -(1/tau) sum_k P_ik, r_j = P_ij / sum_k P_ik."""
    result = explain(similarities, TAUS, hard_negatives=2)
    for row in result.rows:
        p = torch.softmax(torch.tensor(similarities, dtype=torch.float64) / row.temperature, 0)
        tau = row.temperature
        assert row.grad_negatives == pytest.approx((p[1:] / tau).tolist(), rel=1e-9, abs=1e-300)
        assert row.grad_positive == pytest.approx(-(p[1:].sum() / tau).item(), rel=1e-9)
        expected_r = (p[1:] / p[1:].sum()).tolist()
        assert row.penalties == pytest.approx(expected_r, rel=1e-5, abs=1e-30)
        assert sum(row.penalties) == pytest.approx(1.0)
        # r_j = |dL/ds_ij| / |dL/ds_ii| where both are representable
        if abs(row.grad_positive) > 1e-6:
            ratio = [g / -row.grad_positive for g in row.grad_negatives]
            assert ratio == pytest.approx(row.penalties, rel=1e-5, abs=1e-12)


def test_hard_loss_drops_all_but_the_k_hardest_negatives():
    result = explain(POSITIVE_FIRST, [1.0], hard_negatives=2)
    row = result.rows[0]
    # -0.45 is the easiest negative: no gradient, no penalty, and not in the denominator.
    assert row.hard_grad_negatives[1] == 0.0
    assert row.hard_penalties[1] == 0.0
    assert sum(row.hard_penalties) == pytest.approx(1.0)
    expected = -0.5 + math.log(math.exp(0.5) + math.exp(0.25) + math.exp(-0.1))
    assert row.hard_loss == pytest.approx(expected, rel=1e-12)
    assert row.hard_loss < row.loss
    # K = all negatives is the plain loss.
    full = explain(POSITIVE_FIRST, [1.0], hard_negatives=3).rows[0]
    assert full.hard_loss == pytest.approx(full.loss)
    assert full.hard_penalties == pytest.approx(full.penalties, rel=1e-6)


def test_format_number_keeps_tiny_values_visible():
    assert format_number(0.99861) == "0.9986"
    assert format_number(0.0) == "0.0000"
    assert format_number(5.5e-9) == "5.5e-09"
    assert format_number(-1.4e-9) == "-1.4e-09"


@pytest.mark.parametrize(
    ("similarities", "temperatures", "hard_negatives", "message"),
    [
        ([0.5], [1.0], None, "at least one negative"),
        ([0.5, 1.5], [1.0], None, "[-1, 1]"),
        ([0.5, 0.1], [0.0], None, "temperature"),
        ([0.5, 0.1], [1.0], 0, "hard_negatives"),
    ],
)
def test_bad_input_is_a_value_error(similarities, temperatures, hard_negatives, message):
    with pytest.raises(ValueError, match="^.*" + message.replace("[", r"\[").replace("]", r"\]")):
        explain(similarities, temperatures, hard_negatives)


def test_cli_prints_the_seed_values(capsys):
    args = ["explain", "--similarities", "0.5", "0.25", "-0.45", "-0.1"]
    assert main(args + ["--temperatures", "1", "0.5", "0.05", "0.01"]) == 0
    out = capsys.readouterr().out
    for value in ("0.9986", "0.7214", "0.0067", "0.3684, 0.2869, 0.1425, 0.2022"):
        assert value in out
    assert main(["explain", "--similarities", "0.25", "0.5", "-0.45", "-0.1"]) == 0
    out = capsys.readouterr().out
    for value in ("1.2486", "1.2214", "5.0067", "25.0000"):
        assert value in out
    assert "dL/ds_ij" in out and "r(s_ij)" in out


def test_cli_default_shows_both_seed_anchors_and_hard_k(capsys):
    assert main(["explain", "--hard-negatives", "1"]) == 0
    out = capsys.readouterr().out
    assert "0.9986" in out and "25.0000" in out
    assert out.count("K = 1 most similar") == 2
    assert format_explanation(explain(POSITIVE_FIRST, TAUS, 1)) in out


def test_cli_plot_writes_a_png(tmp_path, capsys):
    path = tmp_path / "explain.png"
    assert main(["explain", "--temperatures", "1", "0.05", "--plot", str(path)]) == 0
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert str(path) in capsys.readouterr().out


def test_plot_explanation_accepts_one_anchor(tmp_path):
    path = plot_explanation([explain(NEGATIVE_FIRST, TAUS)], tmp_path / "sub" / "one.png")
    assert path.exists() and path.stat().st_size > 1000
