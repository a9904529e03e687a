"""SimpleLoss and HardSimpleLoss against the paper's formulas, in both modes."""

from __future__ import annotations

import pytest
import torch

from lightly_temperature import HardSimpleLoss, SimpleLoss, simple_loss
from tests._reference import naive_simclr_pairs


def _naive_simple(out0, out1, k=None):
    positives, negatives = naive_simclr_pairs(out0, out1)
    losses = []
    for pos, neg in zip(positives, negatives):
        if k is not None:
            neg = neg.sort(descending=True).values[: min(k, neg.numel())]
        losses.append(-pos + neg.sum() / neg.numel())
    return torch.stack(losses).mean()


def test_seed_similarities():
    pos, neg = torch.tensor([0.5]), torch.tensor([[0.25, -0.45, -0.1]])
    assert simple_loss(pos, neg).item() == pytest.approx(-0.5 + (0.25 - 0.45 - 0.1) / 3)
    assert simple_loss(pos, neg, hard_negatives=1).item() == pytest.approx(-0.5 + 0.25)
    assert simple_loss(pos, neg, hard_negatives=2).item() == pytest.approx(-0.5 + (0.25 - 0.1) / 2)
    assert simple_loss(pos, neg, negative_weight=1.0).item() == pytest.approx(-0.5 - 0.3)
    assert simple_loss(pos, neg, temperature=0.5).item() == pytest.approx(2 * (-0.5 - 0.1))


@pytest.mark.parametrize("batch_size", [2, 5, 9])
def test_simple_simclr_mode_matches_reference(batch_size):
    torch.manual_seed(batch_size)
    out0, out1 = torch.randn(batch_size, 4), torch.randn(batch_size, 4)
    assert SimpleLoss()(out0, out1).item() == pytest.approx(
        _naive_simple(out0, out1).item(), abs=1e-5
    )


@pytest.mark.parametrize("k", [1, 3, 100])
def test_hard_simple_simclr_mode_matches_reference(k):
    torch.manual_seed(k)
    out0, out1 = torch.randn(6, 4), torch.randn(6, 4)
    loss = HardSimpleLoss(hard_negatives=k)(out0, out1)
    assert loss.item() == pytest.approx(_naive_simple(out0, out1, k).item(), abs=1e-5)


def test_moco_mode_matches_formula():
    torch.manual_seed(0)
    simple = SimpleLoss(memory_bank_size=(16, 4))
    hard = HardSimpleLoss(memory_bank_size=(16, 4), hard_negatives=5)
    hard.memory_bank.bank.copy_(simple.memory_bank.bank)
    bank = simple.memory_bank.bank.clone()
    out0, out1 = torch.randn(3, 4), torch.randn(3, 4)
    z0 = torch.nn.functional.normalize(out0, dim=1)
    z1 = torch.nn.functional.normalize(out1, dim=1)
    sims = z0 @ bank.T
    pos = (z0 * z1).sum(1)
    expected_simple = (-pos + sims.mean(1)).mean()
    expected_hard = (-pos + sims.topk(5, dim=1).values.mean(1)).mean()
    assert simple(out0, out1).item() == pytest.approx(expected_simple.item(), abs=1e-5)
    assert hard(out0, out1).item() == pytest.approx(expected_hard.item(), abs=1e-5)


def test_hard_simple_gradient_is_zero_outside_top_k_and_one_over_k_inside():
    pos = torch.tensor([0.1, 0.2], requires_grad=True)
    neg = torch.tensor([[0.9, -0.5, 0.3, 0.0], [0.2, 0.4, -0.1, 0.6]], requires_grad=True)
    loss = simple_loss(pos, neg, hard_negatives=2, reduction="sum")
    g_pos, g_neg = torch.autograd.grad(loss, [pos, neg])
    torch.testing.assert_close(g_pos, torch.tensor([-1.0, -1.0]))
    torch.testing.assert_close(g_neg, torch.tensor([[0.5, 0.0, 0.5, 0.0], [0.0, 0.5, 0.0, 0.5]]))
