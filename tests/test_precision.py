"""Float32 logits under autocast, finite values at tiny temperatures, and values and gradients
at least as close to float64 as Lightly's NTXentLoss in every regime."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from lightly.loss import NTXentLoss

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


def _float64_info_nce(out0, out1, tau, bank=None):
    """InfoNCE in float64 from its definition, written as softplus(lse(negatives) - positive)
    so that the reference itself does not cancel at low loss."""
    z0 = torch.nn.functional.normalize(out0, dim=1)
    z1 = torch.nn.functional.normalize(out1, dim=1)
    if bank is not None:
        negatives = z0 @ bank.T / tau
        positive = (z0 * z1).sum(1) / tau
    else:
        z, n = torch.cat([z0, z1]), z0.shape[0]
        sims = z @ z.T / tau
        rows, partner = torch.arange(2 * n), torch.cat([torch.arange(n, 2 * n), torch.arange(n)])
        positive = sims[rows, partner]
        negatives = sims.clone()
        negatives[rows, rows] = float("-inf")
        negatives[rows, partner] = float("-inf")
    return torch.nn.functional.softplus(torch.logsumexp(negatives, 1) - positive).mean()


def _relative_error(value, reference):
    return ((value.double() - reference).norm() / reference.norm().clamp_min(1e-300)).item()


@pytest.mark.parametrize("mode", ["simclr", "moco"])
@pytest.mark.parametrize("tau", [1e-3, 0.01, 0.05, 0.07, 0.5, 10.0])
def test_value_and_gradient_at_least_as_close_to_float64_as_ntxent(mode, tau):
    """Low loss (views aligned to 1e-3) to high loss, tiny to large tau, both layouts: within
    the float32 rounding of NTXentLoss's error everywhere, and a value ten times closer where
    NTXentLoss loses its precision."""
    for batch, noise, seed in itertools.product([8, 64], [1e-3, 1e-2, 0.3], range(2)):
        g = torch.Generator().manual_seed(seed)
        base = torch.randn(batch, 16, generator=g, dtype=torch.float64)
        out0 = base + noise * torch.randn(batch, 16, generator=g, dtype=torch.float64)
        out1 = base + noise * torch.randn(batch, 16, generator=g, dtype=torch.float64)
        bank = torch.randn(32, 16, generator=g, dtype=torch.float64)
        bank = torch.nn.functional.normalize(bank, dim=1) if mode == "moco" else None
        a0, a1 = out0.clone().requires_grad_(True), out1.clone().requires_grad_(True)
        reference = _float64_info_nce(a0, a1, tau, bank)
        ref_grads = torch.autograd.grad(reference, [a0, a1])
        errors = {}
        for name, cls in (("ntxent", NTXentLoss), ("ours", HardContrastiveLoss)):
            kwargs = {"hard_negatives": None} if cls is HardContrastiveLoss else {}
            loss_fn = cls(tau, memory_bank_size=(32, 16) if bank is not None else 0, **kwargs)
            if bank is not None:
                loss_fn.memory_bank.bank.copy_(bank.float())
            b0 = out0.float().requires_grad_(True)
            b1 = out1.float().requires_grad_(True)
            value = loss_fn(b0, b1)
            grads = torch.autograd.grad(value, [b0, b1])
            assert value.item() >= 0.0  # never below the infimum of the loss
            errors[name] = (
                _relative_error(value.detach(), reference.detach()),
                max(
                    (_relative_error(g, r) for g, r in zip(grads, ref_grads) if r.norm() > 0),
                    default=0.0,  # a gradient below float64's range (tau = 1e-3)
                ),
            )
        # Both round values and logits (size 1/tau) in float32: errors of that order are noise.
        rounding = 2e-7 * max(1.0, 1.0 / tau)
        for ours, theirs in zip(errors["ours"], errors["ntxent"]):
            assert ours <= 2.0 * theirs + rounding, (batch, noise, seed, errors)
        value_ours, value_theirs = errors["ours"][0], errors["ntxent"][0]
        if reference.item() > 1e-30 and value_theirs > 1e-4:
            # Where NTXentLoss loses the value's precision (low loss), ours keeps it.
            assert value_ours < value_theirs / 10, (batch, noise, seed, errors)
        if reference.item() > 1e-30:  # representable in float32: close in relative terms
            assert value_ours < 1e-4, (batch, noise, seed, errors)


def test_moco_bank_of_the_anchor_itself_gives_log_2_as_closely_as_ntxent():
    """A bank of one entry equal to the anchor, the positive equal too, tau = 0.1: the loss is
    log 2 exactly, and only the rounding of the positive's and the negative's products (the
    same vector, computed by different products) moves it. Seeded sweep of random unit vectors,
    dims 2..128 and several batch sizes, against NTXentLoss on the same inputs: no more cases
    beyond NTXentLoss's own tolerance for this value (6.9e-7), no larger worst error, and at
    most two float32 roundings of a logit of 1/tau = 10 (2 x 4.8e-7 on the loss): the positive's
    logit is rounded once from float64."""
    log_2 = math.log(2.0)
    worst = {"ntxent": 0.0, "ours": 0.0}
    beyond = {"ntxent": 0, "ours": 0}
    for dim, batch, seed in itertools.product(range(2, 129), [1, 2, 4, 8, 16], range(4)):
        g = torch.Generator().manual_seed(1000 * dim + 10 * batch + seed)
        unit = torch.nn.functional.normalize(torch.randn(1, dim, generator=g), dim=1)
        out0 = unit.repeat(batch, 1)
        for name, cls in (("ntxent", NTXentLoss), ("ours", HardContrastiveLoss)):
            kwargs = {"hard_negatives": None} if cls is HardContrastiveLoss else {}
            loss_fn = cls(0.1, memory_bank_size=(1, dim), **kwargs)
            loss_fn.memory_bank.bank.copy_(torch.nn.functional.normalize(unit, dim=1))
            with torch.no_grad():
                error = abs(loss_fn(out0, out0.clone()).item() - log_2)
            worst[name] = max(worst[name], error)
            beyond[name] += error > 6.9e-7
    assert worst["ours"] <= worst["ntxent"], worst
    assert beyond["ours"] <= beyond["ntxent"], beyond
    assert worst["ours"] <= 1.0e-6, worst
