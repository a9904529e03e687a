"""Naive reference implementations written from the paper's formulas, for the tests."""

from __future__ import annotations

import math

import torch
from torch import Tensor


def naive_simclr_pairs(out0: Tensor, out1: Tensor) -> tuple[Tensor, list[Tensor]]:
    """Per-anchor positive and negative similarities in Lightly's SimCLR layout, by loops.

    Anchors are the rows of out0 then out1; negatives of anchor i are all other samples in both
    views except the anchor itself and its positive (2N - 2 negatives).
    """
    z0 = torch.nn.functional.normalize(out0.double(), dim=1)
    z1 = torch.nn.functional.normalize(out1.double(), dim=1)
    n = z0.shape[0]
    views = [z0, z1]
    positives, negatives = [], []
    for v in range(2):
        for i in range(n):
            anchor = views[v][i]
            positives.append(anchor @ views[1 - v][i])
            negs = [anchor @ views[w][j] for w in range(2) for j in range(n) if j != i]
            negatives.append(torch.stack(negs) if negs else torch.zeros(0, dtype=z0.dtype))
    return torch.stack(positives), negatives


def naive_hard_contrastive(out0: Tensor, out1: Tensor, temperature: float, k: int | None) -> Tensor:
    positives, negatives = naive_simclr_pairs(out0, out1)
    losses = []
    for pos, neg in zip(positives, negatives):
        if k is not None:
            neg = neg.sort(descending=True).values[: min(k, neg.numel())]
        logits = torch.cat([pos.view(1), neg]) / temperature
        losses.append(torch.logsumexp(logits, 0) - pos / temperature)
    return torch.stack(losses).mean()


def authors_hcl(
    out0: Tensor,
    out1: Tensor,
    temperature: float,
    beta: float,
    tau_plus: float,
    k: int | None = None,
    bank: Tensor | None = None,
) -> Tensor:
    """Robinson et al.'s HCL loss in float64, written out as in the authors' code (exponentials
    of the similarities, the importance weights ``e^{β s/τ}`` divided by their mean, the
    debiasing by τ⁺ and the clamp at ``N e^{-1/τ}``), one anchor at a time.

    SimCLR layout when ``bank`` is None; MoCo (anchors ``out0``, negatives the bank) otherwise.
    ``k`` keeps each anchor's k most similar negatives (N = k).
    """
    if bank is None:
        positives, negatives = naive_simclr_pairs(out0, out1)
    else:
        z0 = torch.nn.functional.normalize(out0.double(), dim=1)
        z1 = torch.nn.functional.normalize(out1.double(), dim=1)
        queue = torch.nn.functional.normalize(bank.double(), dim=1)
        positives = (z0 * z1).sum(dim=1)
        negatives = list(z0 @ queue.T)
    losses = []
    for s_pos, s_neg in zip(positives, negatives):
        if k is not None:
            s_neg = s_neg.sort(descending=True).values[:k]
        n = s_neg.numel()
        pos = torch.exp(s_pos / temperature)
        neg = torch.exp(s_neg / temperature)
        imp = torch.exp(beta * torch.log(neg))
        reweight_neg = (imp * neg).sum() / imp.mean()
        ng = (-tau_plus * n * pos + reweight_neg) / (1 - tau_plus)
        floor = n * torch.exp(-1 / torch.as_tensor(temperature, dtype=torch.float64))
        ng = torch.clamp(ng, min=floor)
        losses.append(-torch.log(pos / (pos + ng)))
    return torch.stack(losses).mean()


def naive_decoupled(
    out0: Tensor, out1: Tensor, temperature: float | Tensor, sigma: float | None = None
) -> Tensor:
    """Yeh et al.'s decoupled contrastive loss in float64, one anchor at a time: ``-w p/τ +
    log Σ_negatives e^{n/τ}``, the mean over both views' anchors; ``sigma``: DCLW's weights
    ``w_i = 2 - N e^{p_i/σ} / Σ_j e^{p_j/σ}`` over the N samples (no gradient), else 1."""
    positives, negatives = naive_simclr_pairs(out0, out1)
    n = out0.shape[0]
    weights = [1.0] * (2 * n)
    if sigma is not None:
        scaled = [float(p.detach()) / sigma for p in positives[:n]]
        top = max(scaled)
        exps = [math.exp(s - top) for s in scaled]
        weights = [2 - n * e / sum(exps) for e in exps] * 2
    losses = [
        -w * pos / temperature + torch.logsumexp(neg / temperature, 0)
        for w, pos, neg in zip(weights, positives, negatives)
    ]
    return torch.stack(losses).mean()
