"""Metrics against naive references and closed forms."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.nn import functional as F

from lightly_temperature import metrics
from lightly_temperature.metrics import (
    alignment,
    effective_rank,
    positive_and_top_negative_similarities,
    tolerance,
    uniformity,
    uniformity_loss,
)


def _randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# --- naive references, float64, full matrices -------------------------------------------


def ref_uniformity_loss(z, t=2.0):
    z = F.normalize(z.double(), dim=1)
    return torch.pdist(z, p=2).pow(2).mul(-t).exp().mean().log()


def ref_alignment(z0, z1, alpha=2.0):
    z0, z1 = F.normalize(z0.double(), dim=1), F.normalize(z1.double(), dim=1)
    return (z0 - z1).norm(p=2, dim=1).pow(alpha).mean()


def ref_tolerance(z, labels):
    z = F.normalize(z.double(), dim=1)
    total, count = 0.0, 0
    for i in range(len(z)):
        for j in range(len(z)):
            if i != j and labels[i] == labels[j]:
                total += float(z[i] @ z[j])
                count += 1
    return total / count


def ref_pos_neg(z0, z1, k):
    z0, z1 = F.normalize(z0.double(), dim=1), F.normalize(z1.double(), dim=1)
    n = len(z0)
    pos = (z0 * z1).sum(1)
    negs = []
    for i in range(n):
        others = [z0[j] for j in range(n) if j != i] + [z1[j] for j in range(n) if j != i]
        sims = torch.stack(others) @ z0[i]
        negs.append(sims.sort(descending=True).values[:k])
    return pos, torch.stack(negs)


def ref_effective_rank(z, eps=1e-7):
    s = torch.linalg.svdvals(z.double())
    p = s / s.sum() + eps
    return torch.exp(-(p * p.log()).sum())


def simplex(n):
    """n unit vectors with pairwise cosine -1/(n-1) (a regular simplex), in R^n."""
    e = torch.eye(n, dtype=torch.float64)
    return F.normalize(e - e.mean(0, keepdim=True), dim=1)


# --- against references ------------------------------------------------------------------

SIZES_AND_CHUNKS = [(2, 1), (3, 2), (7, 3), (16, 16), (17, 16), (33, 8), (50, 1024), (130, 64)]


@pytest.mark.parametrize("n,chunk", SIZES_AND_CHUNKS)
@pytest.mark.parametrize("t", [0.5, 2.0, 7.0])
def test_uniformity_loss_matches_pdist(n, chunk, t):
    z = _randn(n, 5, seed=n)
    got = uniformity_loss(z, t=t, chunk_size=chunk)
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(ref_uniformity_loss(z, t).item(), abs=2e-5, rel=1e-5)
    assert uniformity(z, t=t, chunk_size=chunk).item() == pytest.approx(-got.item())


def test_uniformity_loss_is_stable_where_pdist_underflows():
    # Large t: every exp(-t d^2) underflows in float32 and the naive formula gives -inf.
    z = simplex(6).float()  # all pairs at squared distance 2 * (1 + 1/5) = 2.4
    naive = torch.pdist(z).pow(2).mul(-100.0).exp().mean().log()
    assert naive.item() == float("-inf")
    assert uniformity_loss(z, t=100.0).item() == pytest.approx(-240.0, rel=1e-5)


@pytest.mark.parametrize("n", [1, 4, 33])
@pytest.mark.parametrize("alpha", [1.0, 2.0, 3.0])
def test_alignment_matches_reference(n, alpha):
    z0, z1 = _randn(n, 6, seed=1), _randn(n, 6, seed=2)
    assert alignment(z0, z1, alpha).item() == pytest.approx(
        ref_alignment(z0, z1, alpha).item(), rel=1e-5
    )


@pytest.mark.parametrize("n,num_classes", [(2, 1), (9, 3), (40, 4), (61, 10)])
def test_tolerance_matches_reference(n, num_classes):
    z = _randn(n, 7, seed=n)
    labels = torch.arange(n) % num_classes * 3 - 5  # arbitrary (negative) label values
    assert tolerance(z, labels).item() == pytest.approx(ref_tolerance(z, labels), abs=1e-5)


@pytest.mark.parametrize("n,k,chunk", [(2, 1, 1), (2, 2, 5), (6, 10, 4), (11, 10, 3), (40, 10, 16)])
def test_positive_and_top_negatives_match_reference(n, k, chunk):
    k = min(k, 2 * n - 2)
    z0, z1 = _randn(n, 4, seed=3), _randn(n, 4, seed=4)
    pos, neg = positive_and_top_negative_similarities(z0, z1, k=k, chunk_size=chunk)
    ref_pos, ref_neg = ref_pos_neg(z0, z1, k)
    assert pos.shape == (n,) and neg.shape == (n, k)
    torch.testing.assert_close(pos.double(), ref_pos, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(neg.double(), ref_neg, atol=1e-6, rtol=1e-5)
    assert (neg[:, :-1] >= neg[:, 1:]).all()


@pytest.mark.parametrize("shape", [(5, 3), (3, 5), (64, 16), (1, 4)])
def test_effective_rank_matches_reference(shape):
    z = _randn(*shape, seed=5)
    assert effective_rank(z).item() == pytest.approx(ref_effective_rank(z).item(), rel=1e-5)


def test_std_of_l2_normalized_of_the_four_axis_directions():
    # +-e1, +-e2 (any length): each coordinate is (1, -1, 0, 0) in some order, whose sample
    # standard deviation is sqrt(2/3); a collapsed batch gives 0 (test_identical_embeddings).
    z = torch.tensor([[3.0, 0.0], [-0.5, 0.0], [0.0, 2.0], [0.0, -7.0]])
    assert metrics.std_of_l2_normalized(z).item() == pytest.approx(math.sqrt(2 / 3), rel=1e-6)
    z = _randn(64, 8, seed=6)
    expected = F.normalize(z.double(), dim=1).std(dim=0).mean()
    assert metrics.std_of_l2_normalized(z).item() == pytest.approx(expected.item(), rel=1e-5)


def test_relative_penalties_are_the_softmax_over_the_negatives():
    # Similarities tau * log(1, 2, 5): r = (1, 2, 5) / 8; with K = 2 only (2, 5) / 7 remain.
    tau = 0.3
    negatives = tau * torch.log(torch.tensor([[1.0, 2.0, 5.0]]))
    torch.testing.assert_close(
        metrics.relative_penalties(negatives, tau), torch.tensor([[1 / 8, 2 / 8, 5 / 8]])
    )
    torch.testing.assert_close(
        metrics.relative_penalties(negatives, tau, hard_negatives=2),
        torch.tensor([[0.0, 2 / 7, 5 / 7]]),
    )


# --- closed forms ------------------------------------------------------------------------


def test_identical_embeddings():
    z = torch.ones(10, 4) * torch.tensor([3.0, -1.0, 0.5, 2.0])
    assert uniformity_loss(z).item() == pytest.approx(0.0, abs=1e-5)  # every distance is 0
    assert tolerance(z, torch.zeros(10, dtype=torch.long)).item() == pytest.approx(1.0, abs=1e-5)
    assert alignment(z, 2 * z).item() == pytest.approx(0.0, abs=1e-6)
    pos, neg = positive_and_top_negative_similarities(z, z, k=10)
    torch.testing.assert_close(pos, torch.ones(10))
    torch.testing.assert_close(neg, torch.ones(10, 10))
    assert effective_rank(z).item() == pytest.approx(1.0, abs=1e-4)
    assert metrics.std_of_l2_normalized(z).item() == pytest.approx(0.0, abs=1e-6)


def test_antipodal_pairs():
    # Two points at opposite poles: one pair at squared distance 4.
    z = torch.tensor([[0.0, 2.0], [0.0, -5.0]])
    assert uniformity_loss(z, t=2.0).item() == pytest.approx(-8.0, rel=1e-6)
    assert tolerance(z, torch.tensor([1, 1])).item() == pytest.approx(-1.0)
    assert alignment(z, -z).item() == pytest.approx(4.0)  # positives antipodal: |2|^2
    assert alignment(z, -z, alpha=1.0).item() == pytest.approx(2.0)
    pos, neg = positive_and_top_negative_similarities(z, -z, k=2)
    torch.testing.assert_close(pos, torch.tensor([-1.0, -1.0]))
    # Negatives of anchor 0: z[1] (cos -1) and -z[1] (cos +1).
    torch.testing.assert_close(neg, torch.tensor([[1.0, -1.0], [1.0, -1.0]]))


@pytest.mark.parametrize("n", [2, 3, 5, 12])
def test_regular_simplex(n):
    z = simplex(n).float()
    cos = -1.0 / (n - 1)
    # Every pair at squared distance 2 - 2 cos: L_unif = -t (2 - 2 cos).
    assert uniformity_loss(z).item() == pytest.approx(-2.0 * (2 - 2 * cos), rel=1e-5)
    assert tolerance(z, torch.zeros(n, dtype=torch.long)).item() == pytest.approx(cos, abs=1e-6)
    assert effective_rank(z).item() == pytest.approx(n - 1, rel=1e-4)  # n-1 equal sing. values
    pos, neg = positive_and_top_negative_similarities(z, z, k=2 * n - 2)
    torch.testing.assert_close(pos, torch.ones(n))
    # Negatives: z[j] and z[j] again (second view), all at cos.
    torch.testing.assert_close(neg, torch.full((n, 2 * n - 2), cos), atol=1e-6, rtol=0)


def test_uniformity_upper_bound_is_attained_by_the_simplex():
    # -L_unif <= 2t N/(N-1) (Jensen on the mean squared distance 2N/(N-1)); the simplex attains it.
    for n in (3, 8):
        assert uniformity(simplex(n).float()).item() == pytest.approx(4 * n / (n - 1), rel=1e-5)


def test_effective_rank_of_zero_matrix_is_zero():
    assert effective_rank(torch.zeros(4, 3)).item() == 0.0


# --- properties ---------------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(2, 24),
    d=st.integers(1, 6),
    chunk=st.integers(1, 30),
    seed=st.integers(0, 2**16),
    scale=st.floats(1e-3, 1e3),
)
def test_uniformity_properties(n, d, chunk, seed, scale):
    z = _randn(n, d, seed=seed)
    got = uniformity(z, chunk_size=chunk)
    # Invariant to scaling, bounded by [0, 4 N/(N-1)], and chunking does not change it.
    assert got.item() == pytest.approx(uniformity(z * scale).item(), abs=1e-4)
    assert -1e-5 <= got.item() <= 4 * n / (n - 1) + 1e-4
    assert got.item() == pytest.approx(-ref_uniformity_loss(z).item(), abs=1e-4)


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(2, 20), k=st.integers(1, 38), chunk=st.integers(1, 25), seed=st.integers(0, 999)
)
def test_top_negatives_properties(n, k, chunk, seed):
    k = min(k, 2 * n - 2)
    z0, z1 = _randn(n, 3, seed=seed), _randn(n, 3, seed=seed + 1)
    pos, neg = positive_and_top_negative_similarities(z0, z1, k=k, chunk_size=chunk)
    full_pos, full_neg = positive_and_top_negative_similarities(z0, z1, k=2 * n - 2)
    torch.testing.assert_close(neg, full_neg[:, :k])  # the top-k are the first k of all
    assert (neg.abs() <= 1 + 1e-6).all() and (pos.abs() <= 1 + 1e-6).all()


@settings(max_examples=20, deadline=None)
@given(n=st.integers(2, 30), num_classes=st.integers(1, 5), seed=st.integers(0, 999))
def test_tolerance_permutation_invariant(n, num_classes, seed):
    z = _randn(n, 4, seed=seed)
    labels = torch.randint(0, num_classes, (n,), generator=torch.Generator().manual_seed(seed))
    if torch.bincount(labels).max() < 2:
        return
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed + 7))
    permuted = tolerance(z[perm], labels[perm]).item()
    assert tolerance(z, labels).item() == pytest.approx(permuted, abs=1e-5)
    assert tolerance(z, labels).item() == pytest.approx(ref_tolerance(z, labels), abs=1e-5)


def test_low_precision_inputs_are_computed_in_float32():
    z = _randn(20, 8).bfloat16()
    got = uniformity_loss(z)
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(ref_uniformity_loss(z.float()).item(), abs=1e-5)
    assert uniformity_loss(z.double()).dtype == torch.float64


_top = positive_and_top_negative_similarities


# --- bad input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: uniformity_loss(torch.randn(1, 3)), "at least 2 samples"),
        (lambda: uniformity_loss(torch.randn(5)), "2-D"),
        (lambda: uniformity_loss(torch.randn(4, 3), t=0.0), "t must be"),
        (lambda: uniformity_loss(torch.randn(4, 3), t=float("nan")), "t must be"),
        (lambda: uniformity_loss(torch.randn(4, 3), chunk_size=0), "chunk_size"),
        (lambda: alignment(torch.randn(4, 3), torch.randn(5, 3)), "same shape"),
        (lambda: alignment(torch.randn(4, 3), torch.randn(4, 3), alpha=-1), "alpha"),
        (lambda: tolerance(torch.randn(4, 3), torch.tensor([0, 1, 2, 3])), "same label"),
        (lambda: tolerance(torch.randn(4, 3), torch.tensor([0, 1])), "labels must be 1-D"),
        (lambda: tolerance(torch.randn(4, 3), torch.zeros(4)), "integer"),
        (lambda: _top(torch.randn(3, 2), torch.randn(3, 2), k=5), r"k must be .*\[1, 4\]"),
        (lambda: _top(torch.randn(3, 2), torch.randn(3, 2), k=0), "k must be"),
        (lambda: _top(torch.randn(3, 2), torch.randn(3, 2), k=2.0), "k must be"),
        (lambda: _top(torch.randn(1, 2), torch.randn(1, 2)), "at least 2"),
        (lambda: effective_rank(torch.randn(2, 3, 4)), "2-D"),
        (lambda: effective_rank(torch.randn(4, 3), eps=1.5), "eps"),
    ],
)
def test_bad_input_raises_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_many_chunks_equal_one_chunk():
    # 1500 samples in 6 chunks (the last one partial) against a single chunk.
    z = _randn(1500, 8, seed=9)
    a = uniformity_loss(z, chunk_size=256).item()
    b = uniformity_loss(z, chunk_size=1500).item()
    assert a == pytest.approx(b, abs=1e-6)
    assert math.isfinite(a)


def test_uniformity_of_rows_without_a_direction_is_nan_and_says_so():
    """A collapse is never reported as uniformity: zero rows used to score a perfect 4."""
    with pytest.warns(RuntimeWarning, match="10 of 10 embeddings are zero or not finite"):
        assert math.isnan(uniformity(torch.zeros(10, 8)).item())
    torch.manual_seed(0)
    z = torch.randn(64, 8)
    for bad in (0.0, float("nan"), float("inf")):
        damaged = z.clone()
        damaged[5] = bad
        with pytest.warns(RuntimeWarning, match="1 of 64 embeddings are zero or not finite"):
            assert math.isnan(uniformity(damaged).item())
    # Rows with a direction: Wang & Isola's pdist formula.
    kept = torch.nn.functional.normalize(z.double(), dim=1)
    reference = -torch.pdist(kept).pow(2).mul(-2).exp().mean().log()
    assert uniformity(z).item() == pytest.approx(reference.item(), rel=1e-5)


def test_embedding_spread_is_one_on_the_sphere_and_zero_for_one_direction():
    from lightly_temperature.metrics import COLLAPSE_THRESHOLD, embedding_spread

    torch.manual_seed(0)
    sphere = torch.randn(20_000, 16, dtype=torch.float64)  # directions uniform on the sphere
    assert embedding_spread(sphere).item() == pytest.approx(1.0, abs=0.01)
    # The definition: Lightly's std_of_l2_normalized times sqrt(D), here by hand in float64.
    z = torch.nn.functional.normalize(sphere[:50], dim=1)
    expected = z.std(dim=0).mean().item() * math.sqrt(16)
    assert embedding_spread(sphere[:50]).item() == pytest.approx(expected, rel=1e-6)
    one_direction = torch.ones(8, 16) * torch.arange(1, 9).unsqueeze(1)  # scaled copies
    assert embedding_spread(one_direction).item() == pytest.approx(0.0, abs=1e-6)
    # A cap of cosine similarity ~0.99 around one direction (a collapse) is flagged.
    cap = torch.nn.functional.normalize(torch.ones(200, 16) + 0.03 * torch.randn(200, 16), dim=1)
    assert embedding_spread(cap).item() < COLLAPSE_THRESHOLD
