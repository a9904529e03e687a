"""Positive similarity and the hardest negatives of each anchor (Wang & Liu, Fig. 8).

Example:
    >>> import torch
    >>> from lightly_temperature.metrics import positive_and_top_negative_similarities
    >>> z0 = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    >>> z1 = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])
    >>> positive, negatives = positive_and_top_negative_similarities(z0, z1, k=2)
    >>> positive.tolist(), negatives.tolist()
    ([1.0, 0.0], [[0.0, -1.0], [0.0, 0.0]])
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.nn import functional as F

from lightly_temperature.metrics._common import (
    DEFAULT_CHUNK_SIZE,
    check_chunk_size,
    check_pair,
    chunks,
)


def positive_and_top_negative_similarities(
    z0: Tensor, z1: Tensor, k: int = 10, chunk_size: int = DEFAULT_CHUNK_SIZE
) -> tuple[Tensor, Tensor]:
    """Cosine similarity of each anchor to its positive and to its k hardest negatives.

    The anchors are the rows of ``z0``; the positive of anchor i is ``z1[i]``; its negatives
    are both views of every other sample, ``z0[j]`` and ``z1[j]`` for j != i (2N - 2 of them),
    as in SimCLR. Extra memory is O(chunk_size x N). The products with the other view are
    computed in full, those within ``z0`` once per pair of blocks (the matrix is symmetric).

    Args:
        z0: ``(N, D)`` anchors (first views); L2-normalised here.
        z1: ``(N, D)`` positives (second views).
        k: how many of the largest negative similarities to keep, 1 <= k <= 2N - 2.
        chunk_size: anchors per chunk.

    Returns:
        ``positive`` of shape ``(N,)`` and ``negatives`` of shape ``(N, k)``, each row sorted
        in descending order.
    """
    z0, z1 = check_pair(z0, z1, min_rows=2)
    chunk_size = check_chunk_size(chunk_size)
    n = z0.shape[0]
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= 2 * n - 2:
        raise ValueError(
            f"k must be an int in [1, {2 * n - 2}] (2N - 2 negatives for N = {n} samples), "
            f"got {k!r}"
        )
    z0 = F.normalize(z0, dim=1)
    z1 = F.normalize(z1, dim=1)
    positive = (z0 * z1).sum(dim=1)
    best = torch.full((n, k), float("-inf"), dtype=z0.dtype, device=z0.device)
    blocks = list(chunks(n, chunk_size))
    for start, stop in blocks:
        # The other view: every z1[j] but the positive.
        sims = z0[start:stop] @ z1.T  # (c, N)
        rows = torch.arange(stop - start, device=z0.device)
        sims[rows, rows + start] = float("-inf")
        _merge(best, start, stop, sims, k)
    # The same view: z0 @ z0.T is symmetric, so each block above the diagonal serves the rows
    # of both its row block and its column block (half the products of the full matrix).
    for i, (start, stop) in enumerate(blocks):
        for col_start, col_stop in blocks[i:]:
            sims = z0[start:stop] @ z0[col_start:col_stop].T  # (c, c')
            if col_start == start:
                rows = torch.arange(stop - start, device=z0.device)
                sims[rows, rows] = float("-inf")  # the anchor itself
                _merge(best, start, stop, sims, k)
            else:
                _merge(best, start, stop, sims, k)
                _merge(best, col_start, col_stop, sims.T.contiguous(), k)
    return positive, best


def _merge(best: Tensor, start: int, stop: int, sims: Tensor, k: int) -> None:
    """Keeps in ``best[start:stop]`` the k largest of its values and of the rows of ``sims``."""
    top = _top_k_values(sims, k) if sims.shape[1] > k else sims
    best[start:stop] = torch.cat([best[start:stop], top], dim=1).topk(k, dim=1).values


def _top_k_values(sims: Tensor, k: int) -> Tensor:
    """``sims.topk(k, dim=1).values`` (sorted), with the full rows read only once.

    ``topk`` on the CPU copies every row into (value, index) pairs; for a small k most of that
    is wasted. Instead the rows are cut into groups of g columns and each group's maximum is
    taken (one vectorised pass). The k largest entries of a row lie in the k groups with the
    largest maxima: the groups holding them have maxima >= the k-th largest entry, and at most
    k groups do (with ties, the k chosen groups still hold the same values). So ``topk`` runs
    on the group maxima and on the k * g entries of the chosen groups (plus the < g columns
    left over), never on the full row. Exact, same values as ``topk``.
    """
    rows, width = sims.shape
    group = max(4, math.isqrt(width // k))
    groups = width // group
    if groups < 2 * k:  # too few groups to save anything
        return sims.topk(k, dim=1, sorted=True).values
    main = groups * group
    maxima = sims[:, :main].unflatten(1, (groups, group)).amax(dim=2)  # (rows, groups)
    chosen = maxima.topk(k, dim=1, sorted=False).indices  # (rows, k)
    offsets = torch.arange(group, device=sims.device)
    columns = (chosen.unsqueeze(2) * group + offsets).flatten(1)  # (rows, k * group)
    candidates = torch.cat([sims.gather(1, columns), sims[:, main:]], dim=1)
    return candidates.topk(k, dim=1, sorted=True).values
