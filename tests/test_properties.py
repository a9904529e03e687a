"""Property-based tests (hypothesis): invariances and orderings of the loss family."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lightly_temperature import HardContrastiveLoss, HardSimpleLoss, SimpleLoss, contrastive_loss

SETTINGS = settings(max_examples=25, deadline=None)


def _embeddings(seed: int, n: int, d: int):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g), torch.randn(n, d, generator=g)


@SETTINGS
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(2, 12),
    k=st.one_of(st.none(), st.integers(1, 30)),
    temperature=st.floats(0.05, 2.0),
)
def test_permuting_the_batch_does_not_change_the_loss(seed, n, k, temperature):
    out0, out1 = _embeddings(seed, n, 5)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed + 1))
    for loss_fn in (
        HardContrastiveLoss(temperature=temperature, hard_negatives=k),
        HardSimpleLoss(hard_negatives=k),
    ):
        a = loss_fn(out0, out1)
        b = loss_fn(out0[perm], out1[perm])
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


@SETTINGS
@given(seed=st.integers(0, 10_000), n=st.integers(2, 10), scale=st.floats(0.01, 100.0))
def test_rescaling_embeddings_does_not_change_the_loss(seed, n, scale):
    out0, out1 = _embeddings(seed, n, 4)
    for loss_fn in (HardContrastiveLoss(hard_negatives=3), SimpleLoss()):
        torch.testing.assert_close(
            loss_fn(out0, out1), loss_fn(out0 * scale, out1), atol=1e-5, rtol=1e-5
        )


@SETTINGS
@given(seed=st.integers(0, 10_000), n=st.integers(2, 10))
def test_swapping_views_does_not_change_the_simclr_loss(seed, n):
    out0, out1 = _embeddings(seed, n, 4)
    loss_fn = HardContrastiveLoss(hard_negatives=2)
    torch.testing.assert_close(loss_fn(out0, out1), loss_fn(out1, out0), atol=1e-5, rtol=1e-5)


@SETTINGS
@given(seed=st.integers(0, 10_000), temperature=st.floats(0.01, 5.0), m=st.integers(1, 20))
def test_loss_grows_with_k_and_is_non_negative(seed, temperature, m):
    g = torch.Generator().manual_seed(seed)
    pos = torch.rand(4, generator=g) * 2 - 1
    neg = torch.rand(4, m, generator=g) * 2 - 1
    losses = [
        contrastive_loss(pos, neg, temperature, hard_negatives=k, reduction="none")
        for k in range(1, m + 1)
    ]
    assert all(torch.all(x >= 0) for x in losses)  # may underflow to 0 at tiny tau
    # Up to float32 rounding of values of the logits' size (1/tau): one unit in the last place
    # of a loss near 90 at tau = 0.01 is 7.6e-6.
    rounding = 1e-6 * max(1.0, 1.0 / temperature)
    for smaller, larger in zip(losses, losses[1:]):
        assert torch.all(larger >= smaller - rounding)
    # K >= all negatives is the plain loss.
    torch.testing.assert_close(
        losses[-1], contrastive_loss(pos, neg, temperature, reduction="none")
    )
