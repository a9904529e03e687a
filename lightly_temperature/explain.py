"""Explain what the temperature does to one anchor's contrastive loss.

The default anchors and temperatures are those of the article *Intuitive Guide for Temperature
Coefficients in Contrastive Learning* (its tables of softmax probabilities and losses).

For one anchor with a positive similarity ``s_ii`` and negative similarities ``s_ij``, and for
each temperature tau, this computes the scaled similarities ``s / tau``, the softmax
probabilities, the cross-entropy (InfoNCE) loss, the gradient of the loss with respect to each
similarity and the paper's relative penalty ``r_i(s_ij)`` of each negative, for the plain
contrastive loss and the hard contrastive loss (only the K most similar negatives in the
denominator). All values come from :mod:`lightly_temperature.functional` (gradients by autograd).

Example:
    >>> from lightly_temperature.explain import explain, format_explanation
    >>> result = explain([0.5, 0.25, -0.45, -0.1], temperatures=[1.0, 0.5, 0.05, 0.01])
    >>> [round(row.loss, 4) for row in result.rows]
    [0.9986, 0.7214, 0.0067, 0.0]
    >>> print(format_explanation(result))  # the Markdown tables
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from lightly_temperature._validation import HardNegatives, check_hard_negatives, check_temperature
from lightly_temperature.functional import (
    contrastive_loss,
    info_nce_from_logits,
    relative_penalties,
    resolve_hard_negatives,
)

#: The article's two anchors: the positive is the most similar, then a negative is.
SEED_SIMILARITIES: tuple[tuple[float, ...], ...] = (
    (0.5, 0.25, -0.45, -0.1),
    (0.25, 0.5, -0.45, -0.1),
)
#: The temperatures of the article's tables.
SEED_TEMPERATURES: tuple[float, ...] = (1.0, 0.5, 0.05, 0.01)


@dataclass
class TemperatureRow:
    """Everything about one anchor at one temperature (plain and hard loss).

    Lists over the negatives follow the order of the input; gradients are ``dL/ds``.
    """

    temperature: float
    scaled: list[float]
    probabilities: list[float]
    loss: float
    grad_positive: float
    grad_negatives: list[float]
    penalties: list[float]
    hard_loss: float
    hard_grad_positive: float
    hard_grad_negatives: list[float]
    hard_penalties: list[float]


@dataclass
class Explanation:
    """The result of :func:`explain`: the input and one :class:`TemperatureRow` per tau."""

    positive: float
    negatives: list[float]
    hard_negatives: int
    rows: list[TemperatureRow]


def _loss_and_gradients(
    positive: float, negatives: Sequence[float], temperature: float, hard_negatives: int | None
) -> tuple[float, float, list[float]]:
    pos = torch.tensor([positive], dtype=torch.float64, requires_grad=True)
    neg = torch.tensor([list(negatives)], dtype=torch.float64, requires_grad=True)
    # contrastive_loss computes in float32, where P_ii rounds to 1 at small tau and the
    # positive's gradient to 0: the same function on float64 logits keeps tiny values exact.
    loss = info_nce_from_logits(pos / temperature, neg / temperature, hard_negatives).mean()
    loss.backward()
    return loss.item(), pos.grad.item(), neg.grad[0].tolist()


def explain(
    similarities: Sequence[float],
    temperatures: Sequence[float] = SEED_TEMPERATURES,
    hard_negatives: HardNegatives = None,
) -> Explanation:
    """Tables as in the article, for one anchor, plain and hard contrastive loss.

    Args:
        similarities: the positive similarity first, then at least one negative similarity,
            each a cosine similarity in [-1, 1].
        temperatures: the temperatures tau > 0 to tabulate.
        hard_negatives: K for the hard loss (the K most similar negatives stay in the
            denominator), or a float fraction alpha of the negatives as in the losses;
            default: half of the negatives, rounded up.

    Raises:
        ValueError: fewer than two similarities, a similarity outside [-1, 1], a temperature
            <= 0, or K < 1.
    """
    values = [float(s) for s in similarities]
    if len(values) < 2:
        raise ValueError(
            f"similarities must hold the positive and at least one negative, got {values!r}"
        )
    for value in values:
        if not -1.0 <= value <= 1.0:
            raise ValueError(f"similarities must be cosine similarities in [-1, 1], got {value!r}")
    if not temperatures:
        raise ValueError("temperatures must hold at least one temperature, got none")
    taus = [check_temperature(float(t), name="temperature") for t in temperatures]
    positive, negatives = values[0], values[1:]
    if hard_negatives is None:
        hard_negatives = (len(negatives) + 1) // 2
    k = resolve_hard_negatives(check_hard_negatives(hard_negatives), len(negatives))

    rows = []
    negative_tensor = torch.tensor([negatives], dtype=torch.float64)
    for tau in taus:
        scaled = torch.tensor(values, dtype=torch.float64) / tau
        probabilities = torch.softmax(scaled, dim=0)
        loss, grad_pos, grad_neg = _loss_and_gradients(positive, negatives, tau, None)
        hard_loss, hard_grad_pos, hard_grad_neg = _loss_and_gradients(positive, negatives, tau, k)
        rows.append(
            TemperatureRow(
                temperature=tau,
                scaled=scaled.tolist(),
                probabilities=probabilities.tolist(),
                loss=loss,
                grad_positive=grad_pos,
                grad_negatives=grad_neg,
                penalties=relative_penalties(negative_tensor, tau)[0].tolist(),
                hard_loss=hard_loss,
                hard_grad_positive=hard_grad_pos,
                hard_grad_negatives=hard_grad_neg,
                hard_penalties=relative_penalties(negative_tensor, tau, k)[0].tolist(),
            )
        )
    return Explanation(positive, negatives, k, rows)


def format_number(value: float) -> str:
    """4 decimals; values too small to show that way (but not 0) in scientific notation."""
    if value != 0.0 and abs(value) < 5e-5:
        return f"{value:.1e}"
    return f"{value:.4f}"


def _vector(values: Sequence[float]) -> str:
    return "[" + ", ".join(format_number(v) for v in values) + "]"


def _tau(value: float) -> str:
    return f"{value:g}"


def format_explanation(result: Explanation) -> str:
    """The explanation as Markdown tables (losses with 4 decimals, as in the article)."""
    n = len(result.negatives)
    lines = [
        f"Anchor: positive similarity s_ii = {result.positive:g}, "
        f"negative similarities s_ij = [{', '.join(f'{s:g}' for s in result.negatives)}]",
        f"Hard loss: only the K = {result.hard_negatives} most similar of the {n} negatives "
        "stay in the denominator.",
        "",
        "Loss: L = -log softmax(s / tau)[positive] (cross-entropy with the positive as label)",
        "",
        "| tau | s / tau | softmax probabilities | loss | hard loss |",
        "|---|---|---|---|---|",
    ]
    for row in result.rows:
        lines.append(
            f"| {_tau(row.temperature)} | {_vector(row.scaled)} | {_vector(row.probabilities)} "
            f"| {row.loss:.4f} | {row.hard_loss:.4f} |"
        )
    lines += [
        "",
        "Gradients: dL/ds_ii = -(1/tau) * sum_k P_ik (pulls the positive closer), "
        "dL/ds_ij = (1/tau) * P_ij (pushes negative j away)",
        "",
        "| tau | dL/ds_ii | dL/ds_ij | hard dL/ds_ii | hard dL/ds_ij |",
        "|---|---|---|---|---|",
    ]
    for row in result.rows:
        lines.append(
            f"| {_tau(row.temperature)} | {format_number(row.grad_positive)} "
            f"| {_vector(row.grad_negatives)} | {format_number(row.hard_grad_positive)} "
            f"| {_vector(row.hard_grad_negatives)} |"
        )
    lines += [
        "",
        "Relative penalties: r(s_ij) = exp(s_ij/tau) / sum_k exp(s_ik/tau) = "
        "|dL/ds_ij| / |dL/ds_ii| (share of the push each negative gets; sums to 1)",
        "",
        "| tau | r(s_ij) | hard r(s_ij) |",
        "|---|---|---|",
    ]
    for row in result.rows:
        lines.append(
            f"| {_tau(row.temperature)} | {_vector(row.penalties)} "
            f"| {_vector(row.hard_penalties)} |"
        )
    return "\n".join(lines)


def plot_explanation(results: Sequence[Explanation], path: str | Path) -> Path:
    """Draws each explanation as one row of three panels and saves a PNG (or any matplotlib
    format, from the suffix): softmax probabilities per tau, relative penalties of the plain
    and the hard loss per tau, and the loss as a function of tau (plain and hard).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.patches import Patch

    from lightly_temperature.figures import NEGATIVE_COLOR, POSITIVE_COLOR

    path = Path(path)
    fig, axes = plt.subplots(len(results), 3, figsize=(15, 4 * len(results)), squeeze=False)
    for axis_row, result in zip(axes, results):
        taus = [row.temperature for row in result.rows]
        labels = ["positive"] + [f"neg {s:g}" for s in result.negatives]
        # Positives and negatives in the colours of every figure of the package; tau as the
        # shade, from light (the first tau) to full (the last).
        shades = [0.3 + 0.7 * i / max(1, len(taus) - 1) for i in range(len(taus))]
        colors = [POSITIVE_COLOR] + [NEGATIVE_COLOR] * len(result.negatives)
        tau_handles = [
            Patch(color="0.3", alpha=shade, label=f"tau={_tau(tau)}")
            for tau, shade in zip(taus, shades)
        ]
        width = 0.8 / len(taus)
        x = np.arange(len(labels))
        for i, row in enumerate(result.rows):
            axis_row[0].bar(x + i * width, row.probabilities, width, color=colors, alpha=shades[i])
        axis_row[0].set_xticks(x + width * (len(taus) - 1) / 2, labels)
        axis_row[0].set_ylabel("softmax probability")
        axis_row[0].set_title(
            f"s = [{result.positive:g}, " + ", ".join(f"{s:g}" for s in result.negatives) + "]"
        )
        axis_row[0].legend(
            handles=[
                Patch(color=POSITIVE_COLOR, label="positive"),
                Patch(color=NEGATIVE_COLOR, label="negatives"),
                *tau_handles,
            ],
            fontsize=8,
        )

        xn = np.arange(len(result.negatives))
        for i, row in enumerate(result.rows):
            axis_row[1].bar(
                xn + i * width, row.penalties, width, color=NEGATIVE_COLOR, alpha=shades[i]
            )
            axis_row[1].scatter(
                xn + i * width, row.hard_penalties, marker="x", color="black", alpha=shades[i]
            )
        axis_row[1].set_xticks(xn + width * (len(taus) - 1) / 2, labels[1:])
        axis_row[1].set_ylabel("relative penalty r (bars: plain, x: hard)")
        axis_row[1].set_title(f"relative penalties (hard: K = {result.hard_negatives})")
        axis_row[1].legend(handles=tau_handles, fontsize=8)

        sweep = np.geomspace(min(taus + [0.01]), max(taus + [2.0]), 200)
        pos = torch.tensor([result.positive], dtype=torch.float64)
        neg = torch.tensor([result.negatives], dtype=torch.float64)
        plain = [contrastive_loss(pos, neg, float(t)).item() for t in sweep]
        hard = [contrastive_loss(pos, neg, float(t), result.hard_negatives).item() for t in sweep]
        # Losses, not positives or negatives: neutral colours.
        axis_row[2].plot(sweep, plain, color="black", label="contrastive")
        axis_row[2].plot(
            sweep, hard, "--", color="0.5", label=f"hard contrastive (K={result.hard_negatives})"
        )
        axis_row[2].scatter(taus, [row.loss for row in result.rows], color="black", zorder=3)
        axis_row[2].set_xscale("log")
        axis_row[2].set_yscale("symlog", linthresh=0.01)
        axis_row[2].set_ylim(bottom=0.0)
        axis_row[2].set_xlabel("tau")
        axis_row[2].set_ylabel("loss")
        axis_row[2].set_title("loss against tau")
        axis_row[2].legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
