"""Autograd gradients equal the paper's analytic formulas (Wang & Liu, eq. 3-4)."""

from __future__ import annotations

import pytest
import torch

from lightly_temperature import HardContrastiveLoss, contrastive_loss, relative_penalties


def _sims(seed: int, anchors: int = 5, negatives: int = 12):
    g = torch.Generator().manual_seed(seed)
    pos = (torch.rand(anchors, generator=g) * 2 - 1).double().requires_grad_(True)
    neg = (torch.rand(anchors, negatives, generator=g) * 2 - 1).double().requires_grad_(True)
    return pos, neg


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("temperature", [0.05, 0.2, 1.0])
def test_plain_loss_gradients_match_paper(seed, temperature):
    pos, neg = _sims(seed)
    loss = contrastive_loss(pos, neg, temperature, reduction="sum")
    g_pos, g_neg = torch.autograd.grad(loss, [pos, neg])
    logits = torch.cat([pos.unsqueeze(1), neg], 1).float() / temperature
    p = torch.softmax(logits, dim=1)
    # dL/ds_ii = -(1/tau) sum_{k != i} P_ik ; dL/ds_ij = P_ij / tau
    torch.testing.assert_close(g_pos.float(), -p[:, 1:].sum(1) / temperature)
    torch.testing.assert_close(g_neg.float(), p[:, 1:] / temperature)
    # The positive's gradient balances the negatives': relative penalties sum to 1.
    ratio = g_neg.abs() / g_pos.abs().unsqueeze(1)
    torch.testing.assert_close(ratio.sum(1).float(), torch.ones(pos.shape[0]))
    torch.testing.assert_close(ratio.float(), relative_penalties(neg.detach(), temperature))


@pytest.mark.parametrize("k", [1, 3, 7])
def test_hard_loss_gradient_is_zero_outside_top_k(k):
    pos, neg = _sims(7)
    temperature = 0.3
    loss = contrastive_loss(pos, neg, temperature, hard_negatives=k, reduction="sum")
    g_pos, g_neg = torch.autograd.grad(loss, [pos, neg])
    top = neg.detach().topk(k, dim=1).indices
    in_top = torch.zeros_like(neg, dtype=torch.bool).scatter(1, top, True)
    assert torch.all(g_neg[~in_top] == 0.0)  # exactly zero, not merely small
    assert torch.all(g_neg[in_top] > 0.0)
    # Inside the top-K the paper's formulas hold with the reduced denominator.
    masked = neg.detach().masked_fill(~in_top, float("-inf"))
    p = torch.softmax(torch.cat([pos.detach().unsqueeze(1), masked], 1).float() / temperature, 1)
    torch.testing.assert_close(g_neg.float(), p[:, 1:] / temperature)
    torch.testing.assert_close(g_pos.float(), -p[:, 1:].sum(1) / temperature)
    r = relative_penalties(neg.detach(), temperature, hard_negatives=k)
    torch.testing.assert_close(r.sum(1), torch.ones(pos.shape[0]))
    assert torch.all(r[~in_top] == 0.0)


def test_hard_loss_module_gradient_zero_for_embeddings_outside_top_k():
    # One anchor whose only hard negative is sample 1: with K=1 in MoCo mode, the bank
    # entries outside the top-1 do not influence the loss (their similarities get no gradient).
    torch.manual_seed(0)
    loss_fn = HardContrastiveLoss(temperature=0.5, memory_bank_size=(6, 4), hard_negatives=1)
    out0 = torch.randn(3, 4, requires_grad=True)
    out1 = torch.randn(3, 4)
    sims = loss_fn.similarities(out0, out1)  # read before the loss updates its bank
    loss = loss_fn(out0, out1)
    assert sims is not None and sims.negatives.shape == (3, 6) and sims.num_negatives == 6
    expected = contrastive_loss(sims.positive, sims.negatives, 0.5, hard_negatives=1)
    torch.testing.assert_close(loss.detach(), expected)


def test_hard_relative_penalties_follow_the_loss_gradients_with_ties():
    # Three negatives tie for the hardest: with K = 1 the loss keeps exactly one of them, and
    # the relative penalties must describe that same selection: r = |dL/ds_ij| / |dL/ds_ii|.
    pos = torch.tensor([0.5], dtype=torch.float64, requires_grad=True)
    neg = torch.tensor([[0.3, 0.3, 0.3, -0.5]], dtype=torch.float64, requires_grad=True)
    loss = contrastive_loss(pos, neg, 1.0, hard_negatives=1)
    g_pos, g_neg = torch.autograd.grad(loss, [pos, neg])
    r = relative_penalties(neg.detach(), 1.0, hard_negatives=1)
    assert (r > 0).sum().item() == 1
    torch.testing.assert_close(r.double(), g_neg.abs() / g_pos.abs())
