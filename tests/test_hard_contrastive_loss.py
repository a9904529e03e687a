"""HardContrastiveLoss against a loop-by-loop reference of the paper's formula, both modes."""

from __future__ import annotations

import math

import pytest
import torch

from lightly_temperature import PAPER_ALPHA, HardContrastiveLoss
from lightly_temperature.functional import resolve_hard_negatives
from tests._reference import naive_hard_contrastive


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("batch_size", [3, 8])
@pytest.mark.parametrize("k", [1, 4, 13])
def test_simclr_mode_matches_reference(seed, batch_size, k):
    torch.manual_seed(seed)
    out0, out1 = torch.randn(batch_size, 6), torch.randn(batch_size, 6)
    loss = HardContrastiveLoss(temperature=0.3, hard_negatives=k)(out0, out1)
    expected = naive_hard_contrastive(out0, out1, 0.3, k)
    assert loss.item() == pytest.approx(expected.item(), abs=1e-5)


def test_fraction_selects_round_alpha_times_negatives():
    assert resolve_hard_negatives(PAPER_ALPHA, 50_000) == 4095  # the paper's CIFAR setting
    assert resolve_hard_negatives(0.5, 10) == 5
    assert resolve_hard_negatives(1e-6, 10) == 1  # at least one negative
    assert resolve_hard_negatives(1.0, 10) == 10
    assert resolve_hard_negatives(100, 10) == 10  # clamped, not an error
    assert resolve_hard_negatives(None, 10) == 10
    torch.manual_seed(0)
    out0, out1 = torch.randn(6, 6), torch.randn(6, 6)  # 10 negatives per anchor
    frac = HardContrastiveLoss(temperature=0.3, hard_negatives=0.5)(out0, out1)
    assert frac.item() == pytest.approx(naive_hard_contrastive(out0, out1, 0.3, 5).item(), abs=1e-5)


def test_default_is_paper_alpha():
    assert HardContrastiveLoss().hard_negatives == PAPER_ALPHA


def test_moco_mode_matches_reference():
    torch.manual_seed(0)
    loss_fn = HardContrastiveLoss(temperature=0.2, memory_bank_size=(20, 5), hard_negatives=4)
    bank = torch.nn.functional.normalize(loss_fn.memory_bank.bank.clone(), dim=1)
    out0, out1 = torch.randn(3, 5), torch.randn(3, 5)
    loss = loss_fn(out0, out1)
    z0 = torch.nn.functional.normalize(out0, dim=1)
    z1 = torch.nn.functional.normalize(out1, dim=1)
    expected = []
    for i in range(3):
        pos = z0[i] @ z1[i]
        neg = (bank @ z0[i]).sort(descending=True).values[:4]
        expected.append(torch.logsumexp(torch.cat([pos.view(1), neg]) / 0.2, 0) - pos / 0.2)
    assert loss.item() == pytest.approx(torch.stack(expected).mean().item(), abs=1e-5)


def test_temperature_can_change_between_steps():
    torch.manual_seed(0)
    out0, out1 = torch.randn(8, 6), torch.randn(8, 6)
    loss_fn = HardContrastiveLoss(temperature=0.5, hard_negatives=3)
    first = loss_fn(out0, out1)
    loss_fn.temperature = 0.1
    second = loss_fn(out0, out1)
    assert second.item() == pytest.approx(
        HardContrastiveLoss(temperature=0.1, hard_negatives=3)(out0, out1).item(), abs=1e-6
    )
    assert not math.isclose(first.item(), second.item())


def test_similarities_are_a_read_only_detached_float32_view_of_the_layout():
    torch.manual_seed(0)
    loss_fn = HardContrastiveLoss(hard_negatives=None)
    out0 = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    out1 = torch.randn(4, 3, dtype=torch.float64)
    sims = loss_fn.similarities(out0, out1)
    assert sims.positive.shape == (8,) and sims.negatives.shape == (8, 8)
    assert sims.num_negatives == 6 and not sims.negatives.requires_grad
    assert sims.negatives.dtype == torch.float32
    assert torch.isinf(sims.negatives).sum(1).eq(2).all()  # self and positive excluded
    z = torch.nn.functional.normalize(torch.cat([out0, out1]).detach(), dim=1)
    expected = (z @ z.T).float()
    finite = torch.isfinite(sims.negatives)
    torch.testing.assert_close(sims.negatives[finite], expected[finite])
    torch.testing.assert_close(sims.positive, expected.diagonal(4).repeat(2))
    # MoCo mode: the bank is read, never written.
    moco = HardContrastiveLoss(memory_bank_size=(5, 3), hard_negatives=None)
    bank = moco.memory_bank.bank.clone()
    sims = moco.similarities(out0, out1)
    assert torch.equal(moco.memory_bank.bank, bank) and sims.negatives.shape == (4, 5)
    torch.testing.assert_close(
        sims.negatives, (torch.nn.functional.normalize(out0.detach(), dim=1).float() @ bank.T)
    )


def test_learnable_temperature_is_a_parameter_and_can_be_replaced():
    torch.manual_seed(0)
    out0, out1 = torch.randn(6, 4), torch.randn(6, 4)
    loss_fn = HardContrastiveLoss(temperature=torch.nn.Parameter(torch.tensor(0.3)))
    assert [name for name, _ in loss_fn.named_parameters()] == ["_temperature"]
    loss = loss_fn(out0, out1)
    (grad,) = torch.autograd.grad(loss, [loss_fn.temperature])
    assert torch.isfinite(grad) and grad != 0
    expected = HardContrastiveLoss(temperature=0.3)(out0, out1)
    assert loss.item() == pytest.approx(expected.item(), abs=1e-6)
    # Assigning another parameter, then a float, goes through the same check each time.
    loss_fn.temperature = torch.nn.Parameter(torch.tensor(0.5))
    assert loss_fn.temperature.item() == pytest.approx(0.5)
    loss_fn.temperature = 0.1
    assert loss_fn.temperature == 0.1 and list(loss_fn.parameters()) == []
    with pytest.raises(ValueError, match=r"temperature.*-2"):
        loss_fn.temperature = -2.0
    with pytest.raises(ValueError, match=r"temperature must be a scalar"):
        loss_fn.temperature = torch.nn.Parameter(torch.ones(2))


def test_memory_bank_pointer_is_kept_on_the_host():
    loss_fn = HardContrastiveLoss(memory_bank_size=(10, 4))
    bank = loss_fn.memory_bank
    # Lightly reads int(bank_ptr) back from the device each step; ours never does.
    bank.bank_ptr.fill_(7)  # a stale device value must not be read
    loss_fn(torch.randn(4, 4, requires_grad=True), torch.randn(4, 4))
    assert bank._host_ptr == 4 and int(bank.bank_ptr) == 4
