"""The 2-D quadrant demo of the article *Intuitive Guide for Temperature Coefficients in
Contrastive Learning*, trained with the package's losses at five temperatures.

100 points in the four quadrants of the plane (25 each, the quadrant is the class) go through a
tiny encoder ``Linear(2, 10) -> Linear(10, 2) -> Tanh``. Each step picks an anchor, a positive of
the same quadrant and 3 negatives from the other quadrants, and minimises the contrastive loss of
their cosine similarities with :func:`lightly_temperature.functional.contrastive_loss` (plain
InfoNCE, as the article's cross-entropy) or its hard version (only the hardest negative). The
learned 2-D features are drawn for tau in {0.99, 0.5, 0.05, 0.01, 0.001}, one row per loss,
into one PNG.

Run:
    python examples/toy_quadrants.py                      # the article's 10,000 steps, 1-2 minutes
    python examples/toy_quadrants.py --quick              # 100 steps, a few seconds
    python examples/toy_quadrants.py --output quadrants.png --losses contrastive
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from lightly_temperature.functional import contrastive_loss

TEMPERATURES = (0.99, 0.5, 0.05, 0.01, 0.001)
#: loss name -> hard_negatives of contrastive_loss (None: all 3 negatives).
LOSSES = {"contrastive": None, "hard_contrastive": 1}
COLORS = ("blue", "gold", "black", "red")


def make_samples(seed: int = 0) -> tuple[Tensor, Tensor]:
    """The article's 100 points: 25 per quadrant, labels 0..3 (quadrants I, II, III, IV)."""
    generator = torch.Generator().manual_seed(seed)
    samples = torch.rand(100, 2, generator=generator)
    samples[25:50, 0] -= 1
    samples[50:75, :] -= 1
    samples[75:100, 1] -= 1
    labels = torch.tensor([0] * 25 + [1] * 25 + [2] * 25 + [3] * 25)
    return samples, labels


def make_encoder(seed: int = 0) -> nn.Module:
    """The article's encoder; its output features lie in (-1, 1)^2."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(2, 10, bias=False), nn.Linear(10, 2, bias=False), nn.Tanh())


def train(
    encoder: nn.Module,
    samples: Tensor,
    labels: Tensor,
    temperature: float,
    hard_negatives: int | None = None,
    steps: int = 10000,
    lr: float = 3e-4,
    num_negatives: int = 3,
    seed: int = 0,
) -> nn.Module:
    """A copy of ``encoder`` trained as in the article (SGD, one anchor per step)."""
    encoder = copy.deepcopy(encoder)
    optimizer = torch.optim.SGD(encoder.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    by_class = [torch.nonzero(labels == c).flatten() for c in range(4)]
    others = [torch.nonzero(labels != c).flatten() for c in range(4)]
    for _ in range(steps):
        c = int(torch.randint(4, (1,), generator=generator))
        same = by_class[c][torch.randint(len(by_class[c]), (2,), generator=generator)]
        negative = others[c][torch.randperm(len(others[c]), generator=generator)[:num_negatives]]
        anchor, positive, negatives = (
            encoder(samples[same[:1]]),
            encoder(samples[same[1:]]),
            encoder(samples[negative]),
        )
        positive_similarity = F.cosine_similarity(anchor, positive)  # (1,)
        negative_similarity = F.cosine_similarity(anchor, negatives).unsqueeze(0)  # (1, 3)
        loss = contrastive_loss(
            positive_similarity, negative_similarity, temperature, hard_negatives=hard_negatives
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return encoder


def _scatter(ax, features: Tensor, labels: Tensor, title: str) -> None:
    for c, color in enumerate(COLORS):
        points = features[labels == c]
        ax.scatter(points[:, 0], points[:, 1], s=8, color=color)
    ax.axhline(0, color="grey", linewidth=0.5)
    ax.axvline(0, color="grey", linewidth=0.5)
    ax.set_xlim(-1.1, 1.1)
    ax.set_ylim(-1.1, 1.1)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=9)


def run(
    output: str | Path = "toy_quadrants.png",
    losses: tuple[str, ...] = tuple(LOSSES),
    temperatures: tuple[float, ...] = TEMPERATURES,
    steps: int = 10000,
    lr: float = 3e-4,
    seed: int = 0,
) -> Path:
    """Trains one encoder per loss x temperature and saves the grid of scatter plots."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples, labels = make_samples(seed)
    encoder = make_encoder(seed)
    columns = len(temperatures) + 2
    # constrained layout keeps every title and label clear of the neighbouring panels.
    fig, axes = plt.subplots(
        len(losses),
        columns,
        figsize=(2.2 * columns, 2.4 * len(losses) + 0.6),
        squeeze=False,
        layout="constrained",
    )
    for index, (row, loss) in enumerate(zip(axes, losses)):
        # Column titles on the first row only; each row names its loss on the left.
        first = index == 0
        _scatter(row[0], samples, labels, "input points" if first else "")
        with torch.no_grad():
            _scatter(row[1], encoder(samples), labels, "untrained encoder" if first else "")
        for ax, tau in zip(row[2:], temperatures):
            trained = train(encoder, samples, labels, tau, LOSSES[loss], steps, lr, seed=seed)
            with torch.no_grad():
                features = trained(samples)
            _scatter(ax, features, labels, f"τ = {tau:g}" if first else "")
        name = "hard contrastive\n(K = 1)" if LOSSES[loss] else "contrastive"
        row[0].set_ylabel(name, fontsize=10)
    fig.suptitle(
        "Quadrant demo of the article 'Intuitive Guide for Temperature Coefficients in "
        f"Contrastive Learning': features after {steps} steps (one anchor, one positive and "
        "3 negatives per step)",
        fontsize=11,
    )
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=90)
    plt.close(fig)
    return output


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default="toy_quadrants.png", help="PNG file to write")
    parser.add_argument("--losses", nargs="+", choices=tuple(LOSSES), default=tuple(LOSSES))
    parser.add_argument("--temperatures", nargs="+", type=float, default=TEMPERATURES)
    parser.add_argument("--steps", type=int, default=10000)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="100 steps (for tests)")
    args = parser.parse_args()
    steps = 100 if args.quick else args.steps
    path = run(args.output, tuple(args.losses), tuple(args.temperatures), steps, args.lr, args.seed)
    print(f"saved {path}")


if __name__ == "__main__":
    main()
