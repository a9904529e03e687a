"""With all negatives, the hard contrastive loss is Lightly's NTXentLoss: value and gradient."""

from __future__ import annotations

import pytest
import torch
from lightly.loss import NTXentLoss

from lightly_temperature import HardContrastiveLoss


def _value_and_grads(loss_fn, out0, out1):
    a = out0.clone().requires_grad_(True)
    b = out1.clone().requires_grad_(True)
    loss = loss_fn(a, b)
    ga, gb = torch.autograd.grad(loss, [a, b])
    return loss.detach(), ga, gb


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("batch_size", [2, 7, 32])
@pytest.mark.parametrize("temperature", [0.07, 0.5, 1.0])
@pytest.mark.parametrize("hard_negatives", [None, 10_000, 1.0])
def test_simclr_mode_equals_ntxent(seed, batch_size, temperature, hard_negatives):
    torch.manual_seed(seed)
    out0, out1 = torch.randn(batch_size, 16), torch.randn(batch_size, 16)
    expected = _value_and_grads(NTXentLoss(temperature=temperature), out0, out1)
    ours = HardContrastiveLoss(temperature=temperature, hard_negatives=hard_negatives)
    actual = _value_and_grads(ours, out0, out1)
    for e, a in zip(expected, actual):
        torch.testing.assert_close(a, e, atol=1e-6, rtol=1e-5)


def test_hard_loss_differs_from_ntxent_when_negatives_are_dropped():
    torch.manual_seed(0)
    out0, out1 = torch.randn(16, 8), torch.randn(16, 8)
    plain = NTXentLoss(temperature=0.5)(out0, out1)
    hard = HardContrastiveLoss(temperature=0.5, hard_negatives=3)(out0, out1)
    # Dropping terms from the denominator can only lower the loss.
    assert hard < plain - 1e-3


@pytest.mark.parametrize("seed", [0, 3])
@pytest.mark.parametrize("temperature", [0.1, 0.7])
def test_moco_mode_equals_ntxent_through_bank_wraparound(seed, temperature):
    torch.manual_seed(seed)
    size = (10, 8)  # 10 entries, batches of 4: the bank pointer wraps on the third step
    ntxent = NTXentLoss(temperature=temperature, memory_bank_size=size)
    ours = HardContrastiveLoss(temperature=temperature, memory_bank_size=size, hard_negatives=None)
    ours.memory_bank.bank.copy_(ntxent.memory_bank.bank)
    pointers = []
    for _ in range(6):
        out0, out1 = torch.randn(4, 8), torch.randn(4, 8)
        expected = _value_and_grads(ntxent, out0, out1)
        actual = _value_and_grads(ours, out0, out1)
        for e, a in zip(expected, actual):
            torch.testing.assert_close(a, e, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(ours.memory_bank.bank, ntxent.memory_bank.bank)
        torch.testing.assert_close(ours.memory_bank.bank_ptr, ntxent.memory_bank.bank_ptr)
        pointers.append(int(ours.memory_bank.bank_ptr))
    assert pointers[:3] == [4, 8, 0]  # the bank wrapped around on the third step


def test_moco_mode_does_not_update_bank_without_grad():
    torch.manual_seed(0)
    ours = HardContrastiveLoss(memory_bank_size=(12, 8))
    before = ours.memory_bank.bank.clone()
    with torch.no_grad():
        ours(torch.randn(4, 8), torch.randn(4, 8))
    torch.testing.assert_close(ours.memory_bank.bank, before)
    ours(torch.randn(4, 8, requires_grad=True), torch.randn(4, 8))
    assert not torch.equal(ours.memory_bank.bank, before)


def test_gather_distributed_single_process_equals_ntxent():
    torch.manual_seed(0)
    out0, out1 = torch.randn(6, 8), torch.randn(6, 8)
    expected = _value_and_grads(NTXentLoss(gather_distributed=True), out0, out1)
    actual = _value_and_grads(
        HardContrastiveLoss(gather_distributed=True, hard_negatives=None), out0, out1
    )
    for e, a in zip(expected, actual):
        torch.testing.assert_close(a, e, atol=1e-6, rtol=1e-5)


def test_batch_of_one_gives_zero_loss_like_ntxent():
    out0 = torch.randn(1, 8, requires_grad=True)
    out1 = torch.randn(1, 8)
    loss = HardContrastiveLoss()(out0, out1)
    assert loss.item() == NTXentLoss()(out0, out1).item() == 0.0
    (grad,) = torch.autograd.grad(loss, out0)
    assert torch.equal(grad, torch.zeros_like(grad))
