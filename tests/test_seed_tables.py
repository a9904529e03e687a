"""The temperature tables of the article *Intuitive Guide for Temperature Coefficients in
Contrastive Learning* (positive similarity first), to 4 decimals."""

from __future__ import annotations

import pytest
import torch

from lightly_temperature import contrastive_loss
from tests.conftest import NEGATIVE_FIRST, POSITIVE_FIRST


@pytest.mark.parametrize(
    ("similarities", "temperature", "expected"),
    [
        (POSITIVE_FIRST, 1.0, 0.9986),
        (POSITIVE_FIRST, 0.5, 0.7214),
        (POSITIVE_FIRST, 0.05, 0.0067),
        (NEGATIVE_FIRST, 1.0, 1.2486),
        (NEGATIVE_FIRST, 0.5, 1.2214),
        (NEGATIVE_FIRST, 0.05, 5.0067),
        (NEGATIVE_FIRST, 0.01, 25.0),
    ],
)
def test_cross_entropy_matches_seed_table(similarities, temperature, expected):
    sims = torch.tensor(similarities)
    loss = contrastive_loss(sims[:1], sims[1:].unsqueeze(0), temperature=temperature)
    assert round(loss.item(), 4) == pytest.approx(expected, abs=1e-9)
    # Same value as the article's own recipe: cross-entropy with the positive at index 0.
    reference = torch.nn.functional.cross_entropy(
        (sims / temperature).unsqueeze(0), torch.tensor([0])
    )
    assert loss.item() == pytest.approx(reference.item(), abs=1e-5)


@pytest.mark.parametrize(
    ("temperature", "probabilities"),
    [(1.0, [0.3684, 0.2869, 0.1425, 0.2022]), (0.5, [0.4861, 0.2948, 0.0727, 0.1464])],
)
def test_softmax_probabilities_from_loss_gradients_match_seed_table(temperature, probabilities):
    # Paper eq. 3-4: dL/ds_ij = P_ij / tau and dL/ds_ii = -(1 - P_ii) / tau.
    sims = torch.tensor(POSITIVE_FIRST, requires_grad=True)
    loss = contrastive_loss(sims[:1], sims[1:].unsqueeze(0), temperature=temperature)
    (grad,) = torch.autograd.grad(loss, sims)
    probs = grad * temperature
    probs[0] += 1.0
    assert [round(p, 4) for p in probs.tolist()] == probabilities
