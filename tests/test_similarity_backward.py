"""The similarity node's backward: one product over the top K when the candidates are the query
itself (SimCLR on one device), the incoming gradient of each row applied on the (A, d) side, and the
temperature inside the node; each against plain float64 autograd of the definition."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from lightly_temperature import HardContrastiveLoss, HardSimpleLoss, SimpleLoss, kernels
from lightly_temperature.kernels import (
    LOGSUMEXP,
    SUM,
    WEIGHTED_LOGMEANEXP,
    reduce_logits,
    reduce_similarities,
)

# k = 7 of 8 to 10 columns: most columns kept, reduced as "all but the smallest" (same set).
KINDS = [
    (7, LOGSUMEXP),
    (7, WEIGHTED_LOGMEANEXP),
    (7, SUM),
    (None, LOGSUMEXP),
    (5, LOGSUMEXP),
    (5, SUM),
    (None, WEIGHTED_LOGMEANEXP),
    (5, WEIGHTED_LOGMEANEXP),
]


def _reference(query, candidates, excluded, k, kind, beta, temperature):
    logits = (query / temperature) @ candidates.T
    if excluded is not None:
        logits = logits.scatter(1, excluded, float("-inf"))
    if k is not None:
        logits = logits.topk(k, dim=1).values
    if kind == LOGSUMEXP:
        return torch.logsumexp(logits, 1)
    if kind == SUM:
        return logits.sum(1)
    finite = torch.isfinite(logits)
    importance = torch.softmax(beta * logits, dim=1)  # -inf columns: weight 0
    return torch.log((importance * torch.exp(logits).where(finite, 0.0)).sum(1))


def _temperature(learnable: bool):
    return torch.tensor(0.3, dtype=torch.float64, requires_grad=True) if learnable else 0.3


@pytest.mark.parametrize("k, kind", KINDS)
@pytest.mark.parametrize("learnable", [False, True])
def test_backward_when_the_candidates_are_the_query(k, kind, learnable):
    torch.manual_seed(0)
    z = torch.randn(10, 4, dtype=torch.float64, requires_grad=True)
    temperature = _temperature(learnable)
    rows = torch.arange(10)
    excluded = torch.stack([rows, (rows + 5) % 10], 1)  # the anchor and its positive
    weights = torch.rand(10, dtype=torch.float64)  # a non-uniform incoming gradient
    inputs = [z] + ([temperature] if learnable else [])
    out = reduce_similarities(z, z, excluded, k, kind, 0.7, temperature=temperature)
    grads = torch.autograd.grad((out * weights).sum(), inputs)
    # The reference multiplies two distinct tensors equal to z: the two-sided autograd.
    ref = _reference(z, z.clone(), excluded, k, kind, 0.7, temperature)
    expected = torch.autograd.grad((ref * weights).sum(), inputs)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    for got, want in zip(grads, expected):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


def _simclr_excluded(n: int) -> torch.Tensor:
    rows = torch.arange(2 * n)
    return torch.stack([rows, (rows + n) % (2 * n)], 1)  # each anchor and its positive


def _record_one_shift(monkeypatch) -> list:
    """What each call of the one-shift path returned (``None``: it declined), in order."""
    taken = []
    shared = kernels._shared_shift_logsumexp
    monkeypatch.setattr(
        kernels, "_shared_shift_logsumexp", lambda logits: taken.append(shared(logits)) or taken[-1]
    )
    return taken


def _float32_against_float64(z64, excluded, temperature):
    """Value and gradient of the all-negatives log-sum-exp with z = z^T's rows (SimCLR), in
    float32 through the node and in float64 by autograd of the definition."""
    weights = torch.rand(z64.shape[0], dtype=torch.float64)
    z32 = z64.float().requires_grad_(True)
    out = reduce_similarities(z32, z32, excluded, None, temperature=temperature)
    (grad,) = torch.autograd.grad((out * weights.float()).sum(), [z32])
    ref64 = z64.clone().requires_grad_(True)
    ref = _reference(ref64, ref64.clone(), excluded, None, LOGSUMEXP, 0.0, temperature)
    (expected,) = torch.autograd.grad((ref * weights).sum(), [ref64])
    return out, grad, ref, expected


@pytest.mark.parametrize("temperature", [1.0, 0.2, 0.05, 0.034])
def test_all_negatives_share_one_shift_and_match_float64(monkeypatch, temperature):
    """SimCLR over all negatives on the CPU: one shift for every row (the largest logit) makes
    the exponentials symmetric and the backward one product. In float32 against float64, up to
    spreads of 2/tau = 59 between the matrix's largest logit and a row's."""
    taken = _record_one_shift(monkeypatch)
    torch.manual_seed(3)
    z = F.normalize(torch.randn(96, 16, dtype=torch.float64), dim=1)
    z[1] = z[0]  # one pair at cosine 1, far apart from the others' maxima
    out, grad, ref, expected = _float32_against_float64(z, _simclr_excluded(48), temperature)
    assert len(taken) == 1 and taken[0] is not None
    torch.testing.assert_close(out.double(), ref, rtol=2e-6, atol=0)
    torch.testing.assert_close(grad.double(), expected, rtol=1e-4, atol=1e-5 * expected.abs().max())


def test_rows_too_far_apart_for_one_shift_are_reduced_row_by_row(monkeypatch):
    """A row whose largest logit lies more than 60 below the matrix's would underflow under one
    shift: the node falls back to a softmax per row, and stays exact."""
    taken = _record_one_shift(monkeypatch)
    torch.manual_seed(4)
    z = torch.eye(8, 16, dtype=torch.float64) + 0.05 * torch.randn(8, 16, dtype=torch.float64)
    z[1] = z[0]  # cosine 1: logit 100 at tau = 0.01
    z = F.normalize(z, dim=1)  # the other anchors' largest logits lie near 0-20, 80-100 below
    out, grad, ref, expected = _float32_against_float64(z, _simclr_excluded(4), 0.01)
    assert taken == [None]
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out.double(), ref, rtol=2e-6, atol=0)
    torch.testing.assert_close(grad.double(), expected, rtol=1e-4, atol=1e-5 * expected.abs().max())


def test_half_precision_logits_are_reduced_row_by_row(monkeypatch):
    """The spread one shift allows (60) would underflow in float16: half precision keeps a
    softmax per row."""
    taken = _record_one_shift(monkeypatch)
    torch.manual_seed(6)
    z = F.normalize(torch.randn(8, 4), dim=1).half().requires_grad_(True)
    out = reduce_similarities(z, z, _simclr_excluded(4), None, temperature=0.5)
    (grad,) = torch.autograd.grad(out.float().sum(), [z])
    z64 = z.detach().double().requires_grad_(True)
    ref = _reference(z64, z64.clone(), _simclr_excluded(4), None, LOGSUMEXP, 0.0, 0.5)
    (expected,) = torch.autograd.grad(ref.sum(), [z64])
    assert taken == []
    torch.testing.assert_close(out.double(), ref, rtol=2e-3, atol=0)
    torch.testing.assert_close(grad.double(), expected, rtol=0, atol=2e-2)


def test_an_excluded_set_that_is_not_its_own_transpose_is_reduced_row_by_row():
    """One shared shift needs G + G^T from the same exponentials, so the excluded entries must
    mirror: a mask that does not (anchor 0 excludes column 3, anchor 3 keeps column 0) takes
    the per-row path and its gradient stays exact."""
    torch.manual_seed(5)
    z = torch.randn(6, 4, dtype=torch.float64)
    excluded = torch.stack([torch.arange(6), torch.tensor([3, 4, 5, 4, 1, 2])], 1)
    assert not kernels._mirrored(excluded, 6)
    assert kernels._mirrored(_simclr_excluded(3), 6)
    z = z.requires_grad_(True)
    weights = torch.rand(6, dtype=torch.float64)
    out = reduce_similarities(z, z, excluded, None, temperature=0.5)
    (grad,) = torch.autograd.grad((out * weights).sum(), [z])
    ref = _reference(z, z.clone(), excluded, None, LOGSUMEXP, 0.0, 0.5)
    (expected,) = torch.autograd.grad((ref * weights).sum(), [z])
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("k, kind", KINDS)
@pytest.mark.parametrize("learnable", [False, True])
@pytest.mark.parametrize("candidates_need_grad", [False, True])
def test_row_gradient_on_the_query_side_equals_autograd(k, kind, learnable, candidates_need_grad):
    torch.manual_seed(1)
    query = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    candidates = torch.randn(40, 4, dtype=torch.float64, requires_grad=candidates_need_grad)
    temperature = _temperature(learnable)
    weights = torch.rand(6, dtype=torch.float64)
    inputs = [query] + ([candidates] if candidates_need_grad else [])
    inputs += [temperature] if learnable else []
    out = reduce_similarities(query, candidates, None, k, kind, 0.7, temperature=temperature)
    grads = torch.autograd.grad((out * weights).sum(), inputs)
    ref = _reference(query, candidates, None, k, kind, 0.7, temperature)
    expected = torch.autograd.grad((ref * weights).sum(), inputs)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    for got, want in zip(grads, expected):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("k", [5, 7, 8, 9])
@pytest.mark.parametrize("kind", [LOGSUMEXP, WEIGHTED_LOGMEANEXP])
def test_most_columns_kept_equals_the_top_k_definition(k, kind):
    """k > C / 2: the C - k smallest columns set to -inf and the row reduced over all columns
    is the same reduction as over the top k (value, gradients), also on logits given."""
    torch.manual_seed(2)
    query = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    candidates = torch.randn(9, 4, dtype=torch.float64, requires_grad=True)
    weights = torch.rand(6, dtype=torch.float64)
    out = reduce_similarities(query, candidates, None, k, kind, 0.7, temperature=0.3)
    grads = torch.autograd.grad((out * weights).sum(), [query, candidates])
    ref = _reference(query, candidates, None, k, kind, 0.7, 0.3)
    expected = torch.autograd.grad((ref * weights).sum(), [query, candidates])
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    for got, want in zip(grads, expected):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    logits = ((query / 0.3) @ candidates.T).detach()
    logits[:, 2] = float("-inf")  # not a negative: never kept while k <= 8 finite columns
    logits.requires_grad_(True)
    kept = min(k, 8)
    value = reduce_logits(logits, kept, kind, 0.7)
    (grad,) = torch.autograd.grad((value * weights).sum(), [logits])
    top = logits.topk(kept, dim=1).values
    if kind == LOGSUMEXP:
        ref_value = torch.logsumexp(top, 1)
    else:
        ref_value = torch.log((torch.softmax(0.7 * top, 1) * torch.exp(top)).sum(1))
    (ref_grad,) = torch.autograd.grad((ref_value * weights).sum(), [logits])
    torch.testing.assert_close(value, ref_value, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-10, atol=1e-12)
    assert (grad[:, 2] == 0).all()


def _float64_loss(out0, out1, tau, k, bank=None, linear=False):
    """The hard contrastive (or hard Simple) loss from its definition, in float64."""
    z0, z1 = F.normalize(out0, dim=1), F.normalize(out1, dim=1)
    if bank is not None:
        positive, sims = (z0 * z1).sum(1), z0 @ bank.T
        negative = torch.ones_like(sims, dtype=torch.bool)
    else:
        z, n = torch.cat([z0, z1]), z0.shape[0]
        rows = torch.arange(2 * n)
        partner = torch.cat([torch.arange(n, 2 * n), torch.arange(n)])
        sims = z @ z.T
        positive = sims[rows, partner]
        negative = torch.ones_like(sims, dtype=torch.bool)
        negative[rows, rows] = negative[rows, partner] = False
    if k is None:
        count = int(negative[0].sum())
        selected = torch.where(negative, sims / tau, float("-inf"))
        total = torch.where(negative, sims, 0.0).sum(1)
    else:
        count = k
        top = torch.where(negative, sims, float("-inf")).topk(k, dim=1).values
        selected, total = top / tau, top.sum(1)
    if linear:
        return ((-positive + total / count) / tau).mean()
    return F.softplus(torch.logsumexp(selected, 1) - positive / tau).mean()


@pytest.mark.parametrize("mode", ["simclr", "moco"])
@pytest.mark.parametrize("k", [None, 7, "most"])
@pytest.mark.parametrize("linear", [False, True])
def test_losses_match_float64_in_value_and_gradient(mode, k, linear):
    """Through the loss classes: the SimCLR path (one product) and the MoCo path, all,
    top-K and all but the two least similar negatives, against float64, for a plain and a
    learnable temperature."""
    if k == "most":
        k = 48 if mode == "moco" else 20  # of 50 and 22 negatives
    if linear and k is None:
        make = lambda **kw: SimpleLoss(**kw)  # noqa: E731
    elif linear:
        make = lambda **kw: HardSimpleLoss(hard_negatives=k, **kw)  # noqa: E731
    else:
        make = lambda **kw: HardContrastiveLoss(hard_negatives=k, **kw)  # noqa: E731
    g = torch.Generator().manual_seed(3)
    out0 = torch.randn(12, 8, generator=g, dtype=torch.float64)
    out1 = out0 + 0.3 * torch.randn(12, 8, generator=g, dtype=torch.float64)
    bank = F.normalize(torch.randn(50, 8, generator=g, dtype=torch.float64), dim=1)
    size = (50, 8) if mode == "moco" else 0
    for learnable in (False, True):
        tau = torch.nn.Parameter(torch.tensor(0.2)) if learnable else 0.2
        loss_fn = make(temperature=tau, memory_bank_size=size)
        if mode == "moco":
            loss_fn.memory_bank.bank.copy_(bank.float())
        a0, a1 = out0.float().requires_grad_(True), out1.float().requires_grad_(True)
        inputs = [a0, a1] + ([tau] if learnable else [])
        value = loss_fn(a0, a1)
        grads = torch.autograd.grad(value, inputs)
        r0, r1 = out0.clone().requires_grad_(True), out1.clone().requires_grad_(True)
        rtau = torch.tensor(0.2, dtype=torch.float64, requires_grad=True)
        ref = _float64_loss(r0, r1, rtau, k, bank if mode == "moco" else None, linear)
        expected = torch.autograd.grad(ref, [r0, r1] + ([rtau] if learnable else []))
        torch.testing.assert_close(value.double(), ref, rtol=1e-5, atol=1e-6)
        for got, want in zip(grads, expected):
            torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=1e-6)
