"""Float32 logits under autocast, and finite values at tiny temperatures."""

from __future__ import annotations

import pytest
import torch

from lightly_temperature import HardContrastiveLoss, HardSimpleLoss, SimpleLoss

LOSSES = [
    lambda **kw: HardContrastiveLoss(hard_negatives=None, **kw),
    lambda **kw: HardContrastiveLoss(hard_negatives=3, **kw),
    lambda **kw: SimpleLoss(**kw),
    lambda **kw: HardSimpleLoss(hard_negatives=3, **kw),
]


@pytest.mark.parametrize("make", LOSSES)
@pytest.mark.parametrize("memory_bank_size", [0, (32, 16)])
def test_bf16_autocast_computes_in_float32(make, memory_bank_size):
    torch.manual_seed(0)
    linear = torch.nn.Linear(16, 16)
    x0, x1 = torch.randn(8, 16), torch.randn(8, 16)
    loss_fn = make(temperature=0.1, memory_bank_size=memory_bank_size)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out0, out1 = linear(x0), linear(x1)
        assert out0.dtype == torch.bfloat16
        loss = loss_fn(out0, out1)
    assert loss.dtype == torch.float32
    # Same value as the float32 loss of the same bf16 embeddings: the logits were not rounded.
    ref_fn = make(temperature=0.1, memory_bank_size=memory_bank_size)
    if memory_bank_size:
        ref_fn.memory_bank.bank.copy_(loss_fn.memory_bank.bank)
        loss_fn.memory_bank.bank.copy_(ref_fn.memory_bank.bank)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out0, out1 = linear(x0), linear(x1)
    with torch.no_grad():
        if memory_bank_size:
            bank = ref_fn.memory_bank.bank.clone()
            again = make(temperature=0.1, memory_bank_size=memory_bank_size)
            again.memory_bank.bank.copy_(bank)
            a = again(out0.float(), out1.float())
            again.memory_bank.bank.copy_(bank)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                b = again(out0, out1)
        else:
            a = ref_fn(out0.float(), out1.float())
            with torch.autocast("cpu", dtype=torch.bfloat16):
                b = ref_fn(out0, out1)
    assert b.item() == pytest.approx(a.item(), abs=1e-6)
    loss.backward()
    assert torch.isfinite(linear.weight.grad).all()


@pytest.mark.parametrize("make", LOSSES)
@pytest.mark.parametrize("memory_bank_size", [0, (64, 8)])
def test_tiny_temperature_is_finite(make, memory_bank_size):
    torch.manual_seed(1)
    out0 = torch.randn(16, 8, requires_grad=True)
    out1 = torch.randn(16, 8, requires_grad=True)
    loss = make(temperature=1e-3, memory_bank_size=memory_bank_size)(out0, out1)
    g0, g1 = torch.autograd.grad(loss, [out0, out1], allow_unused=True)
    assert torch.isfinite(loss)
    assert torch.isfinite(g0).all()
    assert g1 is None or torch.isfinite(g1).all()
