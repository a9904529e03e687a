"""HCL (Robinson et al.) and the debiased loss (Chuang et al.): values against the authors'
formula in float64, gradients against autograd of that float64 reference, the limits that
are InfoNCE, the kernel's importance-weighted row reduction, and the argument checks."""

from __future__ import annotations

import math

import pytest
import torch
from lightly.loss import NTXentLoss

from lightly_temperature import DebiasedContrastiveLoss, HardContrastiveLoss, HCLLoss
from lightly_temperature.kernels import WEIGHTED_LOGMEANEXP, reduce_logits, reduce_similarities
from tests._reference import authors_hcl


def _embeddings(seed: int, n: int = 6, dim: int = 5, noise: float = 0.6):
    g = torch.Generator().manual_seed(seed)
    out0 = torch.randn(n, dim, generator=g, dtype=torch.float64)
    out1 = out0 + noise * torch.randn(n, dim, generator=g, dtype=torch.float64)
    return out0, out1


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize(
    ("temperature", "beta", "tau_plus"),
    [(0.5, 1.0, 0.1), (0.2, 0.5, 0.05), (1.0, 2.0, 0.3), (0.1, 1.0, 0.0), (0.5, 0.0, 0.1)],
)
def test_values_and_gradients_match_the_authors_formula(seed, temperature, beta, tau_plus):
    out0, out1 = _embeddings(seed)
    x0 = out0.float().requires_grad_(True)
    x1 = out1.float().requires_grad_(True)
    loss = HCLLoss(temperature=temperature, beta=beta, tau_plus=tau_plus)(x0, x1)
    r0, r1 = out0.clone().requires_grad_(True), out1.clone().requires_grad_(True)
    reference = authors_hcl(r0, r1, temperature, beta, tau_plus)
    torch.testing.assert_close(loss.double(), reference, rtol=1e-5, atol=1e-6)
    loss.backward()
    reference.backward()
    torch.testing.assert_close(x0.grad.double(), r0.grad, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(x1.grad.double(), r1.grad, rtol=1e-4, atol=1e-6)


def test_the_clamp_binds_as_in_the_authors_code():
    # A large class prior makes N (mean - τ⁺ e^{p/τ}) / (1 - τ⁺) negative for aligned views:
    # the clamp at N e^{-1/τ} sets the value, and gives no gradient through the negatives.
    out0, out1 = _embeddings(3, noise=0.05)
    temperature, beta, tau_plus = 0.5, 1.0, 0.9
    x0 = out0.float().requires_grad_(True)
    loss = HCLLoss(temperature=temperature, beta=beta, tau_plus=tau_plus)
    value = loss(x0, out1.float())
    r0 = out0.clone().requires_grad_(True)
    reference = authors_hcl(r0, out1, temperature, beta, tau_plus)
    torch.testing.assert_close(value.double(), reference, rtol=1e-5, atol=1e-6)
    value.backward()
    reference.backward()
    torch.testing.assert_close(x0.grad.double(), r0.grad, rtol=1e-4, atol=1e-6)
    # Every anchor is clamped: the loss is log(1 + N e^{-1/τ} / e^{p/τ}) exactly.
    n = 2 * out0.shape[0] - 2
    pos = torch.nn.functional.cosine_similarity(out0, out1).repeat(2)
    clamped = torch.log1p(n * math.exp(-1 / temperature) / torch.exp(pos / temperature)).mean()
    torch.testing.assert_close(reference, clamped)


@pytest.mark.parametrize(("beta", "tau_plus", "k"), [(1.0, 0.1, 3), (0.5, 0.0, 5), (2.0, 0.2, 1)])
def test_hcl_over_the_top_k(beta, tau_plus, k):
    out0, out1 = _embeddings(4, n=7)
    x0 = out0.float().requires_grad_(True)
    loss = HCLLoss(temperature=0.3, beta=beta, tau_plus=tau_plus, hard_negatives=k)(x0, out1)
    r0 = out0.clone().requires_grad_(True)
    reference = authors_hcl(r0, out1, 0.3, beta, tau_plus, k=k)
    torch.testing.assert_close(loss.double(), reference, rtol=1e-5, atol=1e-6)
    loss.backward()
    reference.backward()
    torch.testing.assert_close(x0.grad.double(), r0.grad, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("k", [None, 3])
def test_memory_bank_layout_matches_the_formula_over_the_bank(k):
    out0, out1 = _embeddings(5, n=4, dim=6)
    warm0, warm1 = _embeddings(6, n=4, dim=6)
    loss = HCLLoss(0.4, 1.0, 0.1, memory_bank_size=(8, 6), hard_negatives=k)
    loss(warm0.float().requires_grad_(True), warm1.float())  # fills half the bank
    bank = loss.memory_bank.bank.detach().clone().double()
    x0 = out0.float().requires_grad_(True)
    value = loss(x0, out1.float())
    r0 = out0.clone().requires_grad_(True)
    reference = authors_hcl(r0, out1, 0.4, 1.0, 0.1, k=k, bank=bank)
    torch.testing.assert_close(value.double(), reference, rtol=1e-5, atol=1e-6)
    value.backward()
    reference.backward()
    torch.testing.assert_close(x0.grad.double(), r0.grad, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("temperature", [0.05, 0.5])
def test_beta_zero_and_tau_plus_zero_is_the_plain_loss(temperature):
    out0, out1 = (x.float() for x in _embeddings(7, n=16, dim=8))
    hcl = HCLLoss(temperature=temperature, beta=0.0, tau_plus=0.0)(out0, out1)
    torch.testing.assert_close(hcl, NTXentLoss(temperature=temperature)(out0, out1))
    debiased = DebiasedContrastiveLoss(temperature=temperature, tau_plus=0.0)(out0, out1)
    torch.testing.assert_close(debiased, hcl)
    # Over the top-K it is the hard contrastive loss.
    top = HCLLoss(temperature=temperature, beta=0.0, tau_plus=0.0, hard_negatives=4)
    hard = HardContrastiveLoss(temperature=temperature, hard_negatives=4)
    torch.testing.assert_close(top(out0, out1), hard(out0, out1))


def test_debiased_is_hcl_at_beta_zero_and_matches_its_formula():
    out0, out1 = _embeddings(8)
    debiased = DebiasedContrastiveLoss(temperature=0.5, tau_plus=0.1)
    assert debiased.beta == 0.0 and debiased.tau_plus == 0.1
    value = debiased(out0.float(), out1.float())
    torch.testing.assert_close(
        value.double(), authors_hcl(out0, out1, 0.5, 0.0, 0.1), rtol=1e-5, atol=1e-6
    )
    torch.testing.assert_close(value, HCLLoss(0.5, 0.0, 0.1)(out0.float(), out1.float()))


@pytest.mark.parametrize("beta", [0.0, 0.7])
@pytest.mark.parametrize("k", [None, 3])
def test_weighted_logmeanexp_kernel_value_and_gradient(beta, k):
    g = torch.Generator().manual_seed(9)
    logits = torch.randn(4, 7, generator=g, dtype=torch.float64) * 3
    logits[:, 2] = float("-inf")  # not a negative: no weight, no gradient
    logits.requires_grad_(True)
    before = logits.detach().clone()
    out = reduce_logits(logits, k, WEIGHTED_LOGMEANEXP, beta)
    assert torch.equal(logits.detach(), before)  # the caller's logits are not overwritten
    finite = logits.detach()[:, [0, 1, 3, 4, 5, 6]]
    if k is not None:
        finite = finite.sort(dim=1, descending=True).values[:, :k]
    weights = torch.softmax(beta * finite, dim=1)
    expected = torch.log((weights * finite.exp()).sum(dim=1))
    torch.testing.assert_close(out, expected)
    assert torch.autograd.gradcheck(
        lambda x: reduce_logits(x, k, WEIGHTED_LOGMEANEXP, beta),
        (logits.detach().masked_fill(torch.isinf(logits.detach()), -1e4).requires_grad_(True),),
    )
    out.sum().backward()
    assert torch.all(logits.grad[:, 2] == 0)
    # the fused product-and-reduction node gives the same reduction
    q, c = torch.randn(4, 3, generator=g), torch.randn(6, 3, generator=g)
    fused = reduce_similarities(q, c, None, k, WEIGHTED_LOGMEANEXP, beta)
    torch.testing.assert_close(fused, reduce_logits(q @ c.T, k, WEIGHTED_LOGMEANEXP, beta))


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"beta": -0.1}, "beta"),
        ({"beta": float("nan")}, "beta"),
        ({"tau_plus": -0.01}, "tau_plus"),
        ({"tau_plus": 1.0}, "tau_plus"),
        ({"tau_plus": 1.5}, "tau_plus"),
        ({"temperature": 0.0}, "temperature"),
        ({"hard_negatives": 0}, "hard_negatives"),
    ],
)
def test_bad_arguments_raise_value_errors_naming_them(kwargs, name):
    with pytest.raises(ValueError, match=name):
        HCLLoss(**kwargs)


def test_bad_kernel_arguments_name_them():
    with pytest.raises(ValueError, match="beta"):
        reduce_logits(torch.zeros(2, 3), None, WEIGHTED_LOGMEANEXP, -1.0)
    with pytest.raises(ValueError, match="kind"):
        reduce_logits(torch.zeros(2, 3), None, "mean")
    with pytest.raises(ValueError, match="tau_plus"):
        DebiasedContrastiveLoss(tau_plus=1.0)


def test_a_learnable_temperature_gets_the_reference_gradient():
    out0, out1 = _embeddings(11)
    temperature = torch.nn.Parameter(torch.tensor(0.4))
    value = HCLLoss(temperature=temperature, beta=1.0, tau_plus=0.1)(out0.float(), out1.float())
    value.backward()
    reference_temperature = torch.tensor(0.4, dtype=torch.float64, requires_grad=True)
    reference = authors_hcl(out0, out1, reference_temperature, 1.0, 0.1)
    reference.backward()
    torch.testing.assert_close(value.double(), reference, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(
        temperature.grad.double(), reference_temperature.grad, rtol=1e-4, atol=1e-6
    )
