"""One autograd node for "similarity matrix, then a per-anchor reduction over its negatives".

The losses reduce each row of the similarity (logit) matrix ``L = q @ candidates.T`` to one
number: a log-sum-exp over all columns (InfoNCE), or a log-sum-exp or a sum over the top-K
columns (hard losses). Written with ordinary tensor operations, autograd keeps several
``(A, C)`` blocks alive (the product, the masked copy, the scaled copy, the softmax) and builds
as many again in backward. This node keeps one, and it is the only implementation of the
losses' forward and backward (every loss class and every mode goes through it):

- forward: one matrix product, the excluded columns set to ``-inf`` in place, then either a
  fused softmax (all columns; the log-sum-exp is read off the softmax at the row maximum, which
  never underflows) or a top-K selection (:func:`top_k_indices`; only the K values' weights
  and their indices are kept);
- backward: the gradient of the logits is the saved softmax times the incoming gradient (all
  columns) or a scatter of K weights into zeros (top-K: exactly zero elsewhere), then the two
  matrix products of the similarity product's own backward.

No host synchronisation: every shape is known from the arguments.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from lightly_temperature._selection import top_k_indices

LOGSUMEXP = "logsumexp"
SUM = "sum"


class _ReduceSimilarities(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx,
        query: Tensor,
        candidates: Tensor,
        excluded: Tensor | None,
        k: int | None,
        kind: str,
    ) -> Tensor:
        logits = query @ candidates.T
        if excluded is not None:
            logits.scatter_(1, excluded, float("-inf"))
        index: Tensor | None = None
        if k is None:
            if kind != LOGSUMEXP:
                raise ValueError(f"kind={kind!r} over all columns is not supported")
            top, argmax = logits.max(dim=1, keepdim=True)
            weights = torch.softmax(logits, dim=1)
            # softmax at the row maximum is exp(max - lse) >= 1 / C: no underflow.
            out = (top - weights.gather(1, argmax).log()).squeeze(1)
        else:
            index = top_k_indices(logits, k)
            values = logits.gather(1, index)
            if kind == LOGSUMEXP:
                out = torch.logsumexp(values, dim=1)
                weights = torch.softmax(values, dim=1)
            else:
                out = values.sum(dim=1)
                weights = None
        ctx.kind = kind
        ctx.shape = logits.shape
        ctx.save_for_backward(query, candidates, weights, index)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor):  # type: ignore[override]
        query, candidates, weights, index = ctx.saved_tensors
        grad_row = grad_out.unsqueeze(1)
        if index is None:
            grad_logits = weights * grad_row
        else:
            picked = grad_row.expand(index.shape) if weights is None else weights * grad_row
            grad_logits = torch.zeros(
                ctx.shape, dtype=grad_out.dtype, device=grad_out.device
            ).scatter_(1, index, picked)
        grad_query = grad_logits @ candidates if ctx.needs_input_grad[0] else None
        grad_candidates = grad_logits.T @ query if ctx.needs_input_grad[1] else None
        return grad_query, grad_candidates, None, None, None


def reduce_similarities(
    query: Tensor,
    candidates: Tensor,
    excluded: Tensor | None = None,
    k: int | None = None,
    kind: str = LOGSUMEXP,
) -> Tensor:
    """Per-row reduction of ``L = query @ candidates.T`` over the columns that are not excluded.

    Args:
        query: ``(A, d)`` rows (already scaled by 1/tau for a log-sum-exp).
        candidates: ``(C, d)``; may be a transposed view (e.g. a memory bank stored ``(d, C)``).
        excluded: ``(A, e)`` column indices per row that are set to ``-inf`` (not negatives).
        k: ``None`` reduces over every column that is not excluded (log-sum-exp only);
            an int reduces over the ``k`` largest.
        kind: ``"logsumexp"`` or ``"sum"``.

    Returns:
        ``(A,)`` reductions.

    Example:
        >>> q, c = torch.randn(4, 8), torch.randn(6, 8)
        >>> lse = reduce_similarities(q, c)
        >>> torch.allclose(lse, torch.logsumexp(q @ c.T, dim=1))
        True
    """
    return _ReduceSimilarities.apply(query, candidates, excluded, k, kind)
