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

from lightly_temperature._device import on_host
from lightly_temperature.kernels import top_k_indices, top_k_values
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
    as in SimCLR. Extra memory is O(chunk_size x N). On the CPU with k <= N / 8, the
    products within ``z0`` are computed once per pair of blocks (the matrix is symmetric) and
    a block's entries are merged only past each row's running k-th largest; otherwise (a GPU,
    or a large k) each block of anchors meets all 2N candidates in one product. Nothing is
    read back to the host on a GPU.

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
    if on_host(z0) and _PRUNE_MIN_RATIO * k <= n:
        return positive, _top_negatives_pruned(z0, z1, k, chunk_size)
    return positive, _top_negatives_by_row_block(z0, z1, k, chunk_size)


def _top_negatives_by_row_block(z0: Tensor, z1: Tensor, k: int, chunk_size: int) -> Tensor:
    """Each block of anchors against all 2N candidates in one product, then one grouped
    selection per block: few, large operations, for a GPU, where their number bounds the time,
    and for a k too large to prune. No value is read back to the host."""
    n = z0.shape[0]
    candidates = torch.cat([z0, z1])  # column j: z0[j]; column N + j: z1[j]
    blocks = list(chunks(n, chunk_size))
    buffer = torch.empty(blocks[0][1] - blocks[0][0], 2 * n, dtype=z0.dtype, device=z0.device)
    top = torch.empty(n, k, dtype=z0.dtype, device=z0.device)
    for start, stop in blocks:
        sims = buffer[: stop - start]
        torch.mm(z0[start:stop], candidates.T, out=sims)  # (c, 2N)
        sims[:, start:stop].diagonal().fill_(float("-inf"))  # the anchor itself
        sims[:, n + start : n + stop].diagonal().fill_(float("-inf"))  # its positive
        top[start:stop] = _top_k_values(sims, k, sorted=True)
    return top


def _top_negatives_pruned(z0: Tensor, z1: Tensor, k: int, chunk_size: int) -> Tensor:
    """On the CPU, with k well below N: the k largest so far of each row, and the smallest of
    them (a bar that a value must pass to enter; an equal value changes no value kept). The
    products with the other view are computed in full, those within ``z0`` once per pair of
    blocks (the matrix is symmetric)."""
    n = z0.shape[0]
    blocks = list(chunks(n, chunk_size))
    width = blocks[0][1] - blocks[0][0]
    # Reused buffers: a fresh (c, N) allocation per block costs as much as its product here.
    other_view = torch.empty(width, n, dtype=z0.dtype, device=z0.device)
    same_view = torch.empty(width, width, dtype=z0.dtype, device=z0.device)
    best = torch.empty(n, k, dtype=z0.dtype)
    bar = torch.empty(n, dtype=z0.dtype)
    for start, stop in blocks:
        # The other view: every z1[j] but the positive.
        sims = other_view[: stop - start]
        torch.mm(z0[start:stop], z1.T, out=sims)  # (c, N)
        sims[:, start:stop].diagonal().fill_(float("-inf"))
        best[start:stop] = _top_k_values(sims, k)
        bar[start:stop] = best[start:stop].amin(dim=1)
    # The same view: z0 @ z0.T is symmetric, so each block above the diagonal serves the rows
    # of both its row block and its column block (half the products of the full matrix); the
    # column block's candidates are merged down the columns, without a transposed copy.
    for b, (start, stop) in enumerate(blocks):
        for col_start, col_stop in blocks[b:]:
            sims = same_view[: stop - start, : col_stop - col_start]
            torch.mm(z0[start:stop], z0[col_start:col_stop].T, out=sims)  # (c, c')
            if col_start == start:
                sims.diagonal().fill_(float("-inf"))  # the anchor itself
            _raise_bar(best, bar, start, sims, k)
            if col_start != start:
                _raise_bar(best, bar, col_start, sims, k, columns=True)
    return best.sort(dim=1, descending=True).values


#: The pruned selection runs when k <= N / _PRUNE_MIN_RATIO (the usual k = 10).
_PRUNE_MIN_RATIO = 8


#: Columns per group of :func:`_raise_bar`: a block is read once for the group maxima, and only
#: the groups whose maximum passes a row's bar are read again.
_BAR_GROUP = 16


def _raise_bar(
    best: Tensor, bar: Tensor, offset: int, sims: Tensor, k: int, columns: bool = False
) -> None:
    """Merges into ``best[offset:offset + r]`` the entries of each row of ``sims`` (``(r, w)``,
    a view of a reused buffer; each column, ``(w, r)``, with ``columns``) above the bar of
    that row, and raises the bars.

    Once each row holds the k largest of its other-view row (N - 1 values), few entries of a
    later block pass its bar (about ``k w / N`` per row). So the block's entries are dealt into
    interleaved groups of 16 (group j: entries j, j + G, j + 2G, ... of a row; the maxima are
    an elementwise maximum of contiguous slices, also down the columns), and only the groups
    whose maximum passes the row's bar are gathered (with the < 16 entries left over) and
    merged with the row's k values: one vectorised pass over the block instead of a selection.
    """
    length = sims.shape[0] if columns else sims.shape[1]
    rows = sims.shape[1] if columns else sims.shape[0]
    limit = bar[offset : offset + rows].unsqueeze(1)
    groups = length // _BAR_GROUP
    main = groups * _BAR_GROUP
    parts = [best[offset : offset + rows]]
    if groups:
        maxima = _group_maxima(sims, _BAR_GROUP, groups, columns)
        hit_rows, hit_groups = (maxima > limit).nonzero().unbind(1)  # row-major order
        if hit_rows.shape[0]:
            counts = torch.bincount(hit_rows, minlength=rows)
            slot = torch.arange(hit_rows.shape[0]) - (counts.cumsum(0) - counts)[hit_rows]
            members = _group_members(hit_groups, _BAR_GROUP, groups)  # (h, 16)
            values = (
                sims[members, hit_rows.unsqueeze(1)]
                if columns
                else sims[hit_rows.unsqueeze(1), members]
            )
            extra = torch.full(
                (rows, int(counts.max()), _BAR_GROUP), float("-inf"), dtype=sims.dtype
            )
            extra[hit_rows, slot] = values
            parts.append(extra.flatten(1))
    if main < length:
        parts.append(sims[main:].T if columns else sims[:, main:])
    if len(parts) == 1:
        return
    kept = top_k_values(torch.cat(parts, dim=1), k)
    best[offset : offset + rows] = kept
    bar[offset : offset + rows] = kept.amin(dim=1)


def _top_k_values(sims: Tensor, k: int, sorted: bool = False) -> Tensor:
    """``sims.topk(k, dim=1, sorted=sorted).values``, with the full rows read only once.

    ``topk`` copies every row into (value, index) pairs on the CPU and sorts long rows on a
    GPU; for a small k most of that is wasted. Instead the entries of each row are dealt into
    sets of g, whose maxima are one vectorised pass. The k largest entries of a row lie in the
    k sets with the largest maxima: the sets holding them have maxima >= the k-th largest
    entry, and at most k sets do (with ties, the k chosen sets still hold the same values). So
    the selection runs on the maxima and on the k * g entries of the chosen sets (plus the
    < g columns left over), never on the full row; on the CPU it is NumPy's partition (see
    :mod:`lightly_temperature.kernels`). Exact, the same values as ``topk``.

    The sets differ by device. On the CPU they are runs of 32 consecutive entries (64 in rows
    of 4,096 k entries or more), gathered a cache line or two at a time (entries spread across
    the row cost a cache miss each). On a GPU they are interleaved groups of about
    ``sqrt(width / k)`` (group j: entries j, j + G, j + 2G, ... for G groups), whose maxima
    are an elementwise maximum of contiguous slices: reads that neighbouring threads share.
    On an H200 the maximum over runs of 32 consecutive entries alone took 0.78 ms per
    1,024 x 100,000 block, and the top-10 negatives of 50,000 took 65.8 ms with runs against
    52.1 ms with groups (see docs/benchmarks.md).
    """
    rows, width = sims.shape
    host = on_host(sims)
    if host:
        size = _RUN if math.isqrt(width // k) < 2 * _RUN else 2 * _RUN
    else:
        size = max(4, math.isqrt(width // k))
    count = width // size
    if count < 2 * k:  # too few sets to save anything
        return _select(sims, k, sorted)
    main = count * size
    if host:
        chosen = top_k_indices(_run_maxima(sims, size, count), k)  # (rows, k)
        columns = _run_members(chosen, size).flatten(1)  # (rows, k * size)
    else:
        chosen = top_k_indices(_group_maxima(sims, size, count), k)
        columns = _group_members(chosen, size, count).flatten(1)
    candidates = torch.cat([sims.gather(1, columns), sims[:, main:]], dim=1)
    return _select(candidates, k, sorted)


#: Entries per run of :func:`_top_k_values`: runs of 16 took longer to reduce on our CPU.
_RUN = 32


def _group_maxima(sims: Tensor, group: int, groups: int, columns: bool = False) -> Tensor:
    """``(rows, groups)`` maxima of interleaved groups of ``group`` entries of each row of
    ``sims`` (of each column with ``columns``): group j holds entries j, j + G, j + 2G, ... for
    G = ``groups``, so the maxima are an elementwise maximum of contiguous slices, one
    vectorised pass (down the rows of ``sims`` for its columns: no transposed view is read).
    The entries after the first ``group * groups`` are in no group."""
    main = group * groups
    if columns:
        return sims[:main].unflatten(0, (group, groups)).amax(dim=0).T
    return sims[:, :main].unflatten(1, (group, groups)).amax(dim=1)


def _group_members(group_index: Tensor, group: int, groups: int) -> Tensor:
    """``(..., group)`` positions within a row of the entries of the groups ``group_index`` of
    :func:`_group_maxima`."""
    return group_index.unsqueeze(-1) + torch.arange(group, device=group_index.device) * groups


def _run_maxima(sims: Tensor, run: int, runs: int) -> Tensor:
    """``(rows, runs)`` maxima of the runs of ``run`` consecutive entries of each row of
    ``sims``. The entries after the first ``run * runs`` are in no run."""
    return sims[:, : run * runs].unflatten(1, (runs, run)).amax(dim=2)


def _run_members(run_index: Tensor, run: int) -> Tensor:
    """``(..., run)`` positions within a row of the entries of the runs ``run_index`` of
    :func:`_run_maxima`."""
    return run_index.unsqueeze(-1) * run + torch.arange(run, device=run_index.device)


def _select(values: Tensor, k: int, sorted: bool) -> Tensor:
    if sorted:
        return values.topk(k, dim=1, sorted=True).values
    return top_k_values(values, k)
