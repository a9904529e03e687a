"""The compute kernels: top-K selection per row, and row reductions of logits.

Used by the losses, the functional core and the metrics; nothing else computes them.

- :func:`top_k_indices` / :func:`top_k_values`: the K largest entries of each row (on the CPU
  NumPy's introselect, for indices on the entries above a threshold taken from a sample of the
  row; ``torch.topk`` on CUDA).
- :func:`reduce_similarities`: one autograd node for "similarity matrix, then a per-row
  reduction": the implementation of every loss of the package, in every mode.
- :func:`reduce_logits`: the same row reduction on logits that are already computed (the
  functional core, on similarity values).

A row reduction is a log-sum-exp over all columns (InfoNCE), or a log-sum-exp or a sum over
the top-K columns (hard losses), or the importance-weighted log-mean-exp
``log Σ_j w_j e^{L_j}`` with ``w = softmax(β L)`` over all or the top-K columns (the
reweighted negatives of Robinson et al.'s HCL; Chuang et al.'s debiased loss at β = 0), with
``-inf`` marking columns that are not negatives.
Written with ordinary tensor operations, autograd keeps several ``(A, C)`` blocks alive (the
product, the masked copy, the scaled copy, the softmax) and builds as many again in backward.
These nodes keep one:

- forward: (one matrix product, the excluded columns set to ``-inf`` in place,) then either a
  fused softmax (all columns; the log-sum-exp is read off the softmax at the row maximum, which
  never underflows) or a top-K selection (only the K values' weights and their indices are
  kept); the importance-weighted kind is ``lse((1+β)L) - lse(βL)``, two softmaxes of the same
  logits, and keeps their combination ``(1+β) softmax((1+β)L) - β softmax(βL)``, its exact
  gradient;
- backward: the gradient of the logits is the saved softmax (all columns) or a scatter of K
  weights into zeros (top-K: exactly zero elsewhere), and each row's incoming gradient scales
  the rows of the ``(A, d)`` operands and results, not the ``(A, C)`` weights (over all
  columns: no ``(A, C)`` pass at all); then the two products of the similarity product's own
  backward, or one when the candidates are the query itself (SimCLR on one device:
  ``dZ = (G + G^T) Z / τ``; over the top K, the K entries of each row scattered by row and by
  column; over all columns on the CPU, from exponentials that share one shift across rows, so
  that ``e^{L_ij - m}`` serves both ``G_ij`` and ``G_ji``). The temperature enters the node as
  an argument, so that its gradient (a learnable τ) comes from the same products.
- top-K with most columns kept (K > C/2): the C - K smallest of each row are set to ``-inf``
  and the row is reduced over all columns (the same set, no ``(A, K)`` index or scatter).

No host synchronisation: every shape is known from the arguments.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from lightly_temperature._device import on_host

LOGSUMEXP = "logsumexp"
SUM = "sum"
#: ``log Σ_j softmax(β L)_j e^{L_j}``: the log of the importance-weighted mean of ``e^L``.
WEIGHTED_LOGMEANEXP = "weighted_logmeanexp"
KINDS = (LOGSUMEXP, SUM, WEIGHTED_LOGMEANEXP)

#: Rows per chunk of the CPU selection: bounds its scratch memory to about 1 MiB (8 bytes per
#: entry of a chunk for whole-row index selection).
_SELECTION_CHUNK_ELEMENTS = 1 << 17


def top_k_indices(values: Tensor, k: int) -> Tensor:
    """Column indices ``(A, k)`` of the ``k`` largest entries of each row, in no order.

    The same selection as ``values.topk(k, dim=1, sorted=False).indices`` (ties broken
    arbitrarily, as topk does). On the CPU, NumPy (:func:`_top_k_rows`), rows in chunks on one
    thread so that the scratch memory stays small (no thread pool: it would not survive a fork,
    and the benchmarks were measured with one torch thread); it is 1.2 to 2 times faster than
    ``torch.topk``, which copies every row into a vector of (value, index) pairs before its
    selection. Elsewhere (CUDA), ``torch.topk``. Not differentiable: gather the values with
    ``values.gather(1, index)`` for a gradient that is exactly zero outside the top k.
    """
    if not _host_full_precision(values):
        return values.topk(k, dim=1, sorted=False).indices
    return _select_in_chunks(values, k, _top_k_rows)


def _host_full_precision(values: Tensor) -> bool:
    """A float32 or float64 CPU tensor: what the host paths need. The CPU selections run in
    NumPy on these (``torch.topk`` serves CUDA and half precision); the one-shift path reads a
    value back (CPU only) and its allowed spread would underflow in float16."""
    return on_host(values) and values.dtype in (torch.float32, torch.float64)


def _select_in_chunks(
    values: Tensor, k: int, select: Callable[[np.ndarray, int], np.ndarray]
) -> Tensor:
    """``select(chunk, k)``, ``(r, k)`` column indices per row, over chunks of rows of the CPU
    tensor ``values`` (one thread; the chunks bound the scratch memory)."""
    array = values.detach().contiguous().numpy()
    out = np.empty((array.shape[0], k), dtype=np.int64)
    rows = max(1, _SELECTION_CHUNK_ELEMENTS // max(1, array.shape[1]))
    for start in range(0, array.shape[0], rows):
        out[start : start + rows] = select(array[start : start + rows], k)
    return torch.from_numpy(out)


#: The sampled selection runs when k <= n / _SAMPLED_MIN_RATIO (below, sampling saves little).
_SAMPLED_MIN_RATIO = 8
#: From this row length on, rows are handled one by one (few long rows: MoCo's memory bank),
#: with a sparser sample; below it, a chunk of rows at once (many short rows: SimCLR).
_LONG_ROW = 16384


def _whole_row_top_k(array: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` largest entries along the last axis: ``argpartition`` of whole rows."""
    n = array.shape[-1]
    return np.argpartition(array, n - k, axis=-1)[..., n - k :]


def _top_k_rows(chunk: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the ``k`` largest entries of each row of a NumPy ``(r, n)`` array.

    Exact, with a cheap first pass when ``k`` is small next to ``n``: a regular sample of the
    columns (every 4th, or every 16th in rows of 16,384 or more) gives each row a threshold a
    little below its estimated k-th largest value. A row with at least ``k`` entries at or above
    its threshold has its top ``k`` among them, and the exact selection (NumPy's
    ``argpartition``, an introselect) runs on those entries only (about ``k + 3 sqrt(step k)``).
    A row whose threshold keeps fewer than ``k`` is selected from its whole row; so is the whole
    chunk when a threshold keeps half a row or more (no saving), or when it holds a NaN
    (selected as the largest, as ``torch.topk`` does). The result never depends on the sample,
    only the time.
    """
    r, n = chunk.shape
    if k * _SAMPLED_MIN_RATIO > n or np.isnan(chunk.max()):
        return _whole_row_top_k(chunk, k)
    step = 16 if n >= _LONG_ROW else 4
    sample = chunk[:, ::step]
    m = sample.shape[1]
    expected = k // step
    rank = min(m, expected + 3 * math.isqrt(expected) + 2)  # rank within the sample
    threshold = np.partition(sample, m - rank, axis=1)[:, m - rank : m - rank + 1]
    if n >= _LONG_ROW:
        out = np.empty((r, k), dtype=np.int64)
        for i in range(r):
            row = chunk[i]
            columns = np.flatnonzero(row >= threshold[i])
            if columns.size < k:  # the threshold was too high for this row
                out[i] = _whole_row_top_k(row, k)
            else:
                out[i] = columns[_whole_row_top_k(row[columns], k)]
        return out
    kept = chunk >= threshold
    counts = np.count_nonzero(kept, axis=1)
    width = max(int(counts.max()), k)
    if 2 * width > n:
        return _whole_row_top_k(chunk, k)
    flat = np.flatnonzero(kept)  # row-major: row by row, columns ascending
    del kept  # the scratch arrays are dropped as soon as they are used: a lower peak
    rows = np.arange(r)
    starts = np.cumsum(counts) - counts
    # Entry e of the kept ones goes to row i, slot e - starts[i], of the short array.
    slot = np.arange(flat.size) + np.repeat(rows * width - starts, counts)
    short = np.full(r * width, -np.inf, dtype=chunk.dtype)  # padding: never chosen
    short[slot] = chunk.reshape(-1)[flat]
    short_columns = np.zeros(r * width, dtype=np.int64)
    short_columns[slot] = flat - np.repeat(rows * n, counts)
    del slot, flat
    short, short_columns = short.reshape(r, width), short_columns.reshape(r, width)
    out = np.take_along_axis(short_columns, _whole_row_top_k(short, k), axis=1)
    missed = counts < k  # the threshold was too high for these rows
    if missed.any():
        out[missed] = _whole_row_top_k(chunk[missed], k)
    return out


def bottom_k_indices(values: Tensor, k: int) -> Tensor:
    """Column indices ``(A, k)`` of the ``k`` smallest entries of each row, in no order (the
    selection of :func:`top_k_indices`, from the other end)."""
    if not _host_full_precision(values):
        return values.topk(k, dim=1, largest=False, sorted=False).indices
    return _select_in_chunks(
        values, k, lambda chunk, k: np.argpartition(chunk, k - 1, axis=1)[:, :k]
    )


def top_k_values(values: Tensor, k: int) -> Tensor:
    """The ``k`` largest entries of each row, ``(A, k)``, in no order; no gradient.

    ``values.topk(k, dim=1, sorted=False).values`` computed with NumPy's ``partition`` on the
    CPU (values only: no index pairs, SIMD accelerated), ``torch.topk`` elsewhere.
    """
    n = values.shape[1]
    if not _host_full_precision(values):
        return values.topk(k, dim=1, sorted=False).values
    array = values.detach().contiguous().numpy()
    return torch.from_numpy(np.partition(array, n - k, axis=1)[:, n - k :].copy())


def _check_kind(kind: str, beta: float) -> None:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    finite = isinstance(beta, (int, float)) and not isinstance(beta, bool) and math.isfinite(beta)
    if not finite or beta < 0:
        raise ValueError(f"beta must be a finite float >= 0, got {beta!r}")


def _softmax(values: Tensor, owned: bool) -> Tensor:
    """Row softmax, written over ``values`` when they may be overwritten: one ``(A, C)``
    buffer fewer (on a CPU a fresh one costs page faults that take longer than the softmax
    itself). Each row's maximum and sum are reduced before its entries are written, on the
    CPU and on CUDA alike; ``benchmarks/gpu_check.py`` compares values and gradients on the
    device with float64."""
    if owned and values.is_contiguous():
        return torch.ops.aten._softmax.out(values, 1, False, out=values)
    return torch.softmax(values, dim=1)


def _log_softmax_norm(values: Tensor, owned: bool) -> tuple[Tensor, Tensor]:
    """``(lse, softmax)`` of each row, the log-sum-exp read off the softmax at the row maximum:
    there the softmax is ``1 / Σ_j e^{L_j - max}`` exactly, the largest weight of the row
    (``>= 1 / n``: it never underflows). Two ``amax`` passes, no index."""
    top = values.amax(dim=1, keepdim=True)
    weights = _softmax(values, owned)
    return top - weights.amax(dim=1, keepdim=True).log(), weights


def _weighted_logmeanexp(
    values: Tensor, beta: float, count: int | Tensor, owned: bool
) -> tuple[Tensor, Tensor]:
    """``(log Σ_j softmax(βL)_j e^{L_j}, its gradient weights)`` per row of ``values``.

    That is ``lse((1+β)L) - lse(βL)``; its gradient is ``(1+β) softmax((1+β)L) - β
    softmax(βL)``. At β = 0, ``lse(L) - log(count)`` (``count``: the finite columns per row).
    ``owned``: ``values`` may be overwritten (one (A, C) buffer is saved).
    """
    if beta == 0:
        lse, weights = _log_softmax_norm(values, owned)
        if isinstance(count, int):
            log_count: float | Tensor = math.log(count)
        else:
            log_count = count.to(values.dtype).log().unsqueeze(1)
        return (lse - log_count).squeeze(1), weights
    # Both exponentials from the shifted logits L - max (<= 0: no overflow; the row maximum
    # gives e^0 = 1 to both sums: no underflow), the sharp one in the shifted buffer itself.
    top = values.amax(dim=1, keepdim=True)
    shifted = values.sub_(top) if owned else values - top
    flat = torch.mul(shifted, beta).exp_()
    sharp = shifted.mul_(1.0 + beta).exp_()
    sharp_sum = sharp.sum(dim=1, keepdim=True)
    flat_sum = flat.sum(dim=1, keepdim=True)
    out = top + sharp_sum.log() - flat_sum.log()
    weights = sharp.mul_((1.0 + beta) / sharp_sum).sub_(flat.mul_(beta / flat_sum))
    return out.squeeze(1), weights


def _reduce_rows(
    logits: Tensor, k: int | None, kind: str, beta: float, count: int | Tensor, owned: bool
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """Row reductions of logits and what their backward needs: (out, weights, index).

    ``count``: the finite columns of each row (used by the weighted kind at β = 0);
    ``owned``: ``logits`` may be overwritten."""
    if k is None:
        if kind == WEIGHTED_LOGMEANEXP:
            out, weights = _weighted_logmeanexp(logits, beta, count, owned)
            return out, weights, None
        if kind != LOGSUMEXP:
            raise ValueError(f"kind={kind!r} over all columns is not supported")
        lse, weights = _log_softmax_norm(logits, owned)
        return lse.squeeze(1), weights, None
    if 2 * k > logits.shape[1]:
        # Most columns kept (MoCo's K = 4095 of 4096): the C - K smallest are dropped instead,
        # the same set, reduced over all columns: no (A, K) gather, index or scatter.
        drop = logits.shape[1] - k
        if drop and not owned:
            logits, owned = logits.clone(), True  # dropping writes into the logits
        dropped = None
        if drop:
            dropped = (
                logits.argmin(dim=1, keepdim=True) if drop == 1 else bottom_k_indices(logits, drop)
            )
        if kind == SUM:  # weight 1 on every column kept, 0 on those dropped
            if dropped is not None:
                logits.scatter_(1, dropped, 0.0)
            out = logits.sum(dim=1)
            weights = logits.fill_(1.0) if owned else torch.ones_like(logits)
            return out, weights if dropped is None else weights.scatter_(1, dropped, 0.0), None
        if dropped is not None:
            logits.scatter_(1, dropped, float("-inf"))
        return _reduce_rows(logits, None, kind, beta, k, owned)
    index = top_k_indices(logits, k)
    values = logits.gather(1, index)
    if kind == WEIGHTED_LOGMEANEXP:
        out, weights = _weighted_logmeanexp(values, beta, k, owned=True)
        return out, weights, index
    if kind == LOGSUMEXP:
        return torch.logsumexp(values, dim=1), torch.softmax(values, dim=1), index
    return values.sum(dim=1), None, index


def _logit_gradient(
    grad_out: Tensor, weights: Tensor | None, index: Tensor | None, shape: torch.Size
) -> Tensor:
    """The gradient of the logits: the weights times the incoming gradient of each row."""
    grad_row = grad_out.unsqueeze(1)
    if index is None:
        return weights * grad_row
    picked = grad_row.expand(index.shape) if weights is None else weights * grad_row
    return _zeros(shape, grad_out, None).scatter_(1, index, picked)


def _zeros(shape: torch.Size, like: Tensor, workspace: Tensor | None) -> Tensor:
    """Zeros of ``shape``: the forward's own ``(A, C)`` logits buffer when it is handed over
    (already in memory: a fresh buffer of that size costs page faults on a CPU), else new."""
    if workspace is not None and workspace.shape == shape and workspace.dtype == like.dtype:
        return workspace.zero_()
    return torch.zeros(shape, dtype=like.dtype, device=like.device)


def _unit_row_gradient(
    weights: Tensor | None,
    index: Tensor | None,
    shape: torch.Size,
    like: Tensor,
    workspace: Tensor | None = None,
) -> Tensor:
    """The gradient of the logits for an incoming gradient of 1 per row: the saved softmax
    itself (no ``(A, C)`` pass), or the K weights (ones for a sum) scattered into zeros."""
    if index is None:
        return weights
    picked = torch.ones(index.shape, dtype=like.dtype, device=like.device)
    zeros = _zeros(shape, like, workspace)
    return zeros.scatter_(1, index, picked if weights is None else weights)


def _symmetrized_top_k_gradient(
    grad_out: Tensor,
    weights: Tensor | None,
    index: Tensor,
    shape: torch.Size,
    workspace: Tensor | None = None,
) -> Tensor:
    """``G + G^T`` for the top-K logits' gradient ``G`` of a square ``(A, A)`` similarity
    matrix: its ``A K`` entries scattered by row, then added by column, into one buffer of
    zeros (no transposed copy of an ``(A, A)`` matrix)."""
    grad_row = grad_out.unsqueeze(1)
    picked = grad_row.expand(index.shape) if weights is None else weights * grad_row
    both = _zeros(shape, grad_out, workspace)
    both.scatter_(1, index, picked)
    rows = torch.arange(shape[0], device=index.device).unsqueeze(1)
    transposed = (index * shape[1] + rows).flatten()  # G[i, j] added at (j, i)
    both.view(-1).index_add_(0, transposed, picked.reshape(-1))
    return both


def _scaled(query: Tensor, temperature: float | Tensor) -> Tensor:
    return (
        query if isinstance(temperature, (int, float)) and temperature == 1 else query / temperature
    )


#: Entries per row block of the shared-shift path (512 KiB of float32: in cache), and of the
#: one scratch block of its backward (256 KiB: the loss's peak memory stays low at small A).
_BLOCK_ELEMENTS = 1 << 17
_GRADIENT_BLOCK_ELEMENTS = 1 << 16
#: Largest gap between the matrix's largest logit and a row's largest for which one shift
#: serves every row: the entries of a row that matter (within e^-27 of its largest, far
#: below float32's resolution) stay above the smallest normal float32, e^-87.
_SHARED_SHIFT_SPREAD = 60.0


def _mirrored(excluded: Tensor | None, size: int) -> bool:
    """Whether the excluded entries ``(i, excluded[i, e])`` of a square matrix are the same
    set as their transposes (SimCLR's: each anchor itself and its positive pair)."""
    if excluded is None:
        return True
    rows = torch.arange(excluded.shape[0], device=excluded.device).unsqueeze(1)
    keys = (rows * size + excluded).flatten().sort().values
    transposed = (excluded * size + rows).flatten().sort().values
    return torch.equal(keys, transposed)


def _shared_shift_logsumexp(logits: Tensor) -> tuple[Tensor, Tensor] | None:
    """Row log-sum-exps of a symmetric logit matrix with one shift ``m`` (its largest entry)
    for every row: ``logits`` is overwritten by ``e^{L - m}`` and ``(lse, Σ_j e^{L_ij - m})``
    is returned. ``None``, with ``logits`` untouched, when a row's largest entry lies more than
    ``_SHARED_SHIFT_SPREAD`` below ``m`` (or the maxima are not finite).

    One shift makes the exponentials symmetric, so the backward of ``L = Z Z^T / τ`` is one
    product: ``(G + G^T)_ij = e^{L_ij - m} (w_i + w_j)`` with ``w_i = g_i / Σ_j e^{L_ij - m}``.
    Reads the spread back to the host: for CPU tensors only."""
    row_max = logits.amax(dim=1)
    shift = row_max.max()
    if not bool(shift - row_max.min() <= _SHARED_SHIFT_SPREAD):
        return None
    sums = logits.new_empty(logits.shape[0])
    rows = max(1, _BLOCK_ELEMENTS // logits.shape[1])
    for start in range(0, logits.shape[0], rows):  # each block exponentiated and summed in cache
        block = logits[start : start + rows]
        torch.sum(block.sub_(shift).exp_(), dim=1, out=sums[start : start + rows])
    return shift + sums.log(), sums


def _shared_shift_gradient_product(
    exponentials: Tensor, sums: Tensor, grad_out: Tensor, query: Tensor
) -> Tensor:
    """``(G + G^T) Z`` from the saved ``e^{L - m}``: each row block of
    ``e^{L_ij - m} (w_i + w_j)`` is built in cache and multiplied at once (no ``(A, A)``
    buffer is written, so a second backward reads the exponentials unchanged)."""
    weights = grad_out / sums
    out = torch.empty_like(query)
    size = exponentials.shape[0]
    rows = min(size, max(1, _GRADIENT_BLOCK_ELEMENTS // size))
    block = exponentials.new_empty(rows, size)  # one block of scratch, reused
    for start in range(0, size, rows):
        stop = min(start + rows, size)
        part = block[: stop - start]
        torch.add(weights[start:stop, None], weights[None, :], out=part)
        torch.mm(part.mul_(exponentials[start:stop]), query, out=out[start:stop])
    return out


class _ReduceSimilarities(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx,
        query: Tensor,
        candidates: Tensor,
        excluded: Tensor | None,
        k: int | None,
        kind: str,
        beta: float,
        temperature: float | Tensor,
        symmetric: bool,
    ) -> Tensor:
        scaled = _scaled(query, temperature)
        logits = scaled @ candidates.T
        count = logits.shape[1]
        if excluded is not None:
            logits.scatter_(1, excluded, float("-inf"))
            count -= excluded.shape[1]  # distinct columns per row (the anchor, its positive)
        shared = None
        if (
            symmetric
            and k is None
            and kind == LOGSUMEXP
            and _host_full_precision(logits)
            and _mirrored(excluded, logits.shape[1])
        ):
            shared = _shared_shift_logsumexp(logits)
        if shared is not None:  # one shift for all rows: a one-product backward
            (out, sums), weights, index = shared, logits, None
        else:
            out, weights, index = _reduce_rows(logits, k, kind, beta, count, owned=True)
            sums = None
        ctx.shape = logits.shape
        # The top-K path is done with the (A, C) logits: backward fills its zeros into them
        # (once; a second backward, with retain_graph, allocates new ones).
        ctx.workspace = logits if index is not None else None
        ctx.temperature = temperature if not isinstance(temperature, Tensor) else None
        saved_temperature = temperature if isinstance(temperature, Tensor) else None
        # SimCLR on one device over the top K, or over all columns with one shift: the backward
        # is one product of G + G^T with the query. The two-product backward reads the scaled
        # query for the candidates' gradient (not divided by tau again); the others do not.
        ctx.one_product = symmetric and (index is not None or sums is not None)
        if ctx.one_product or not ctx.needs_input_grad[1]:
            scaled = None
        ctx.save_for_backward(query, candidates, weights, index, saved_temperature, sums, scaled)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor):  # type: ignore[override]
        query, candidates, weights, index, saved_temperature, sums, scaled = ctx.saved_tensors
        temperature = saved_temperature if saved_temperature is not None else ctx.temperature
        needs_query, needs_candidates = ctx.needs_input_grad[:2]
        needs_temperature = ctx.needs_input_grad[6]
        grad_query = grad_candidates = grad_temperature = None
        grad_row = grad_out.unsqueeze(1)
        workspace, ctx.workspace = ctx.workspace, None
        if ctx.one_product:
            # L = Z Z^T / tau: dZ = (G + G^T) Z / tau, one product. Over all columns G + G^T
            # comes from the exponentials with one shift; over the top K it is built by
            # scattering the A K entries twice (by row, by column) into the zeros that the
            # top-K gradient needs anyway.
            if sums is not None:
                both = _shared_shift_gradient_product(weights, sums, grad_out, query)
            else:
                both = _symmetrized_top_k_gradient(grad_out, weights, index, ctx.shape, workspace)
                both = both @ query
            if needs_query or needs_candidates:
                grad_query = _scaled(both, temperature)
            if needs_temperature:  # sum_ij G_ij z_i.z_j = 1/2 sum_i z_i.((G + G^T) Z)_i
                grad_temperature = -0.5 * (both * query).sum() / (temperature * temperature)
            return grad_query, None, None, None, None, None, grad_temperature, None
        # The incoming gradient of each row scales rows of (A, d) operands and results, never
        # the (A, C) weights: dQ = g * (W C) / tau, dC = W^T (g * Q / tau). Over all columns
        # of a square matrix whose rows were normalised each by its own maximum (on CUDA, or
        # maxima too far apart), G + G^T would need a transposed copy of the softmax, which
        # costs as much as a product on a CPU.
        unit = _unit_row_gradient(weights, index, ctx.shape, query, workspace)
        if needs_query or needs_temperature:
            grad_scaled = (unit @ candidates).mul_(grad_row)
            if needs_query:
                grad_query = _scaled(grad_scaled, temperature)
            if needs_temperature:
                grad_temperature = -(grad_scaled * query).sum() / (temperature * temperature)
        if needs_candidates:
            grad_candidates = unit.T @ (scaled * grad_row)
        return grad_query, grad_candidates, None, None, None, None, grad_temperature, None


class _ReduceLogits(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits: Tensor, k: int | None, kind: str, beta: float) -> Tensor:  # type: ignore[override]
        count = torch.isfinite(logits).sum(dim=1) if kind == WEIGHTED_LOGMEANEXP else 0
        out, weights, index = _reduce_rows(logits, k, kind, beta, count, owned=False)
        ctx.shape = logits.shape
        ctx.save_for_backward(weights, index)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor):  # type: ignore[override]
        weights, index = ctx.saved_tensors
        return _logit_gradient(grad_out, weights, index, ctx.shape), None, None, None


def reduce_similarities(
    query: Tensor,
    candidates: Tensor,
    excluded: Tensor | None = None,
    k: int | None = None,
    kind: str = LOGSUMEXP,
    beta: float = 0.0,
    temperature: float | Tensor = 1.0,
) -> Tensor:
    """Per-row reduction of ``L = (query / temperature) @ candidates.T`` over the columns that
    are not excluded.

    Args:
        query: ``(A, d)`` rows.
        candidates: ``(C, d)``; when it is ``query`` itself (SimCLR on one device), the
            top-K backward is one product, ``dZ = (G + G^T) Z / temperature``.
        excluded: ``(A, e)`` column indices per row that are set to ``-inf`` (not negatives).
        k: ``None`` reduces over every column that is not excluded (log-sum-exp only);
            an int reduces over the ``k`` largest.
        kind: ``"logsumexp"``, ``"sum"`` (top-K only) or ``"weighted_logmeanexp"``:
            ``log Σ_j softmax(β L)_j e^{L_j}`` over the columns reduced.
        beta: β >= 0 of ``"weighted_logmeanexp"`` (ignored by the other kinds).
        temperature: a number or a 0-d tensor (a learnable one gets its gradient).

    Returns:
        ``(A,)`` reductions.

    Example:
        >>> q, c = torch.randn(4, 8), torch.randn(6, 8)
        >>> lse = reduce_similarities(q, c)
        >>> torch.allclose(lse, torch.logsumexp(q @ c.T, dim=1))
        True
    """
    _check_kind(kind, beta)
    symmetric = query is candidates
    return _ReduceSimilarities.apply(
        query, candidates, excluded, k, kind, float(beta), temperature, symmetric
    )


def reduce_logits(
    logits: Tensor, k: int | None = None, kind: str = LOGSUMEXP, beta: float = 0.0
) -> Tensor:
    """The row reduction of :func:`reduce_similarities` on logits already computed.

    ``-inf`` entries are not negatives (weight and gradient 0). ``k=None``: log-sum-exp over
    every column; an int: over the ``k`` largest (``kind="logsumexp"``, ``"sum"`` or
    ``"weighted_logmeanexp"`` with its ``beta``).

    Example:
        >>> logits = torch.tensor([[1.0, 2.0, float("-inf")]])
        >>> reduce_logits(logits, k=1, kind="sum")
        tensor([2.])
    """
    _check_kind(kind, beta)
    return _ReduceLogits.apply(logits, k, kind, float(beta))
