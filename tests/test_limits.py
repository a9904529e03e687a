"""The limits of the paper notes: tau -> 0 and tau -> infinity."""

from __future__ import annotations

import math

import pytest
import torch

from lightly_temperature import contrastive_loss, relative_penalties, simple_loss


def _sims(seed: int):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(6, generator=g) * 2 - 1, torch.rand(6, 9, generator=g) * 2 - 1


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("k", [None, 1, 4, 9])
def test_small_temperature_limit_is_hinge_on_hardest_negative(seed, k):
    pos, neg = _sims(seed)
    hinge = (neg.max(1).values - pos).clamp(min=0)
    tau = 1e-4
    scaled = tau * contrastive_loss(pos, neg, tau, hard_negatives=k, reduction="none")
    # The remainder is at most tau * log(K + 1).
    torch.testing.assert_close(scaled, hinge, atol=tau * math.log(10) + 1e-6, rtol=0)


def test_large_temperature_penalties_become_uniform():
    _, neg = _sims(3)
    for tau, tol in [(10.0, 0.03), (1000.0, 3e-4)]:
        r = relative_penalties(neg, tau)
        assert (r - 1 / 9).abs().max() < tol * (1 / 9) * 10
    assert (relative_penalties(neg, 0.05) - 1 / 9).abs().max() > 0.3  # small tau: not uniform


def test_small_temperature_penalty_concentrates_on_hardest():
    _, neg = _sims(4)
    r = relative_penalties(neg, 1e-3)
    torch.testing.assert_close(r.argmax(1), neg.argmax(1))
    assert torch.all(r.max(1).values > 0.99)


def test_simple_loss_is_the_large_temperature_limit_of_contrastive():
    pos, neg = _sims(5)
    m = neg.shape[1]
    expected = m / (m + 1) * simple_loss(pos, neg, reduction="none")
    errors = []
    for tau in (3.0, 30.0, 300.0):
        loss = contrastive_loss(pos, neg, tau, reduction="none")
        errors.append((tau * (loss - math.log(m + 1)) - expected).abs().max().item())
    # The gap is O(1/tau) (float32 logits limit how far this can be pushed).
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 2e-3
