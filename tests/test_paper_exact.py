"""The paper-code variants (``paper_exact=True``, the reductions' ``positive_as_candidate``)
against float64 references of Wang & Liu's code, where the positive is one more entry of the
row the selection and the sum run over."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from lightly_temperature import (
    HardContrastiveLoss,
    HardSimpleLoss,
    SampleMemoryBank,
    SimpleLoss,
)
from lightly_temperature.losses import LinearReduction, LogSumExpReduction, PairwiseLoss
from tests._reference import naive_simclr_pairs

NUM_SAMPLES, DIM, BATCH = 30, 8, 6


def paper_code_losses(name: str, positives, negatives, temperature: float, k: int | None):
    """The paper's code, row by row: ``sims`` is the anchor's row with its positive as one
    entry. ``hard_contrastive``: ``-log(e^{p/τ} / Σ topk(e^{sims/τ}, K+1))``; ``simple``:
    ``-p + mean(sims)`` (λ = 1/(N+1)); ``hard_simple``: ``-p + mean(topk(sims, K+1))``."""
    losses, positive_outside = [], 0
    for pos, neg in zip(positives, negatives):
        sims = torch.cat([pos.view(1), neg])
        if k is not None:
            top = sims.topk(k + 1).values
            positive_outside += int(pos < top.min())
        if name == "hard_contrastive":
            exps = torch.exp(sims / temperature)
            denominator = exps.topk(k + 1).values.sum() if k is not None else exps.sum()
            losses.append(-torch.log(torch.exp(pos / temperature) / denominator))
        elif name == "simple":
            losses.append((-pos + sims.mean()) / temperature)
        else:
            losses.append((-pos + sims.topk(k + 1).values.mean()) / temperature)
    return torch.stack(losses).mean(), positive_outside


def _bank_rows(z, bank, indices):
    z = F.normalize(z.double(), dim=1)
    positives = (z * bank.double()[indices]).sum(1)
    negatives = []
    for i, index in enumerate(indices.tolist()):
        others = [j for j in range(bank.shape[0]) if j != index]
        negatives.append(bank.double()[others] @ z[i])
    return positives, negatives


LOSSES = {
    "hard_contrastive": HardContrastiveLoss,
    "simple": SimpleLoss,
    "hard_simple": HardSimpleLoss,
}
CASES = [("hard_contrastive", 2), ("hard_contrastive", 12), ("simple", None), ("hard_simple", 2)]


def _build(name, k, temperature, paper_exact, bank=None):
    kwargs = {"temperature": temperature, "paper_exact": paper_exact}
    if k is not None:
        kwargs["hard_negatives"] = k
    if bank is not None:
        kwargs["sample_memory_bank"] = bank
    return LOSSES[name](**kwargs)


@pytest.mark.parametrize(("name", "k"), CASES)
@pytest.mark.parametrize("temperature", [0.1, 1.0])
def test_paper_exact_over_the_sample_bank_is_the_paper_s_code(name, k, temperature):
    torch.manual_seed(0)
    bank = SampleMemoryBank(NUM_SAMPLES, DIM)
    before = bank.bank.clone()
    z = torch.randn(BATCH, DIM, dtype=torch.float64)
    indices = torch.randperm(NUM_SAMPLES)[:BATCH]
    z32 = z.float().requires_grad_()
    value = _build(name, k, temperature, True, bank)(z32, z32, indices=indices)
    value.backward()
    z64 = z.clone().requires_grad_()
    expected, outside = paper_code_losses(name, *_bank_rows(z64, before, indices), temperature, k)
    expected.backward()
    torch.testing.assert_close(value.double(), expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(z32.grad.double(), z64.grad, rtol=1e-4, atol=1e-6)
    if k == 2:  # random rows: the positive is outside the top K + 1 of some of them
        assert 0 < outside < BATCH


@pytest.mark.parametrize(("name", "k"), CASES)
def test_paper_exact_in_batch_is_the_paper_s_code(name, k):
    torch.manual_seed(1)
    out0 = torch.randn(8, DIM, dtype=torch.float64)
    out1 = out0 + 0.8 * torch.randn(8, DIM, dtype=torch.float64)
    a0, a1 = out0.float().requires_grad_(), out1.float().requires_grad_()
    value = _build(name, k, 0.2, True)(a0, a1)
    value.backward()
    r0, r1 = out0.clone().requires_grad_(), out1.clone().requires_grad_()
    expected, _ = paper_code_losses(name, *naive_simclr_pairs(r0, r1), 0.2, k)
    expected.backward()
    torch.testing.assert_close(value.double(), expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(a0.grad.double(), r0.grad, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(a1.grad.double(), r1.grad, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(("name", "k"), CASES)
def test_the_default_differs_from_the_paper_s_code_as_documented(name, k):
    """Where the positive is outside the top K + 1 (hard losses) and always for Simple's
    λ = 1/(N+1), the package's default and the paper's code give different values."""
    torch.manual_seed(0)
    z = torch.randn(BATCH, DIM)
    indices = torch.randperm(NUM_SAMPLES)[:BATCH]
    values = []
    for paper_exact in (False, True):
        torch.manual_seed(5)
        bank = SampleMemoryBank(NUM_SAMPLES, DIM)
        values.append(_build(name, k, 0.5, paper_exact, bank)(z, z, indices=indices))
    assert not torch.allclose(values[0], values[1], rtol=1e-4, atol=0)


def test_paper_exact_without_selection_is_infonce():
    z0, z1 = torch.randn(8, DIM), torch.randn(8, DIM)
    plain = HardContrastiveLoss(hard_negatives=None)(z0, z1)
    paper = HardContrastiveLoss(hard_negatives=None, paper_exact=True)(z0, z1)
    assert torch.equal(plain, paper)


def test_the_parts_compose_in_a_pairwise_loss():
    z0, z1 = torch.randn(8, DIM), torch.randn(8, DIM)
    part = PairwiseLoss(LinearReduction(positive_as_candidate=True), 3, temperature=1.0)
    torch.testing.assert_close(
        part(z0, z1), HardSimpleLoss(hard_negatives=3, paper_exact=True)(z0, z1)
    )


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: HardContrastiveLoss(paper_exact=1), "paper_exact must be True or False, got 1"),
        (lambda: SimpleLoss(paper_exact="yes"), "paper_exact must be True or False, got 'yes'"),
        (
            lambda: LogSumExpReduction(positive_as_candidate=None),
            "positive_as_candidate must be True or False, got None",
        ),
        (
            lambda: HardSimpleLoss(memory_bank_size=(64, DIM), paper_exact=True),
            r"memory_bank_size=\(64, 8\).*MoCo's bank does not",
        ),
    ],
)
def test_bad_arguments_are_refused(build, match):
    with pytest.raises(ValueError, match=match):
        build()
