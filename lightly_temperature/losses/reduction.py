"""The reduction part of a loss: from an anchor's positive and selected negatives to its loss.

Both reductions run on :func:`~lightly_temperature.kernels.reduce_similarities`,
the one autograd node that multiplies anchors and candidates and reduces each row, so that no
``(A, C)`` logit matrix is kept for backward beyond the softmax weights (or the top-K ones).

- :class:`LogSumExpReduction`: InfoNCE, ``-log(e^{p/τ} / (e^{p/τ} + Σ_k e^{n_k/τ}))``;
  τ is a softmax temperature.
- :class:`LinearReduction`: Simple, ``(-p + λ Σ_k n_k) / τ``; τ only rescales the loss.

Example:
    >>> layout = in_batch_layout(*normalized(out0, out1), gather_distributed=False)
    >>> per_anchor = LogSumExpReduction()(layout, k=None, temperature=0.5)  # (2N,)
"""

from __future__ import annotations

from torch import Tensor
from torch.nn import functional as F

from lightly_temperature._validation import check_temperature
from lightly_temperature.kernels import LOGSUMEXP, SUM, reduce_similarities
from lightly_temperature.losses.layout import PairLayout


class Reduction:
    """Base class: ``reduction(layout, k, temperature)`` gives the ``(A,)`` per-anchor losses.

    ``k`` is the number of negatives selected per anchor, ``None`` for all of them.
    """

    def __call__(self, layout: PairLayout, k: int | None, temperature: float | Tensor) -> Tensor:
        raise NotImplementedError


class LogSumExpReduction(Reduction):
    """InfoNCE over the selected negatives, the positive always in the denominator.

    ``-log(e^p / (e^p + e^lse)) = softplus(lse - p)`` with ``lse`` the log-sum-exp of the
    selected negatives' logits: no difference of two nearly equal numbers, so the value and
    the gradient keep their relative precision when the loss is tiny (well-aligned views, a
    small τ), where ``logsumexp(all) - p`` loses it.
    """

    def __call__(self, layout: PairLayout, k: int | None, temperature: float | Tensor) -> Tensor:
        # 1/tau is folded into the (A, d) anchors, not applied to the (A, C) logits.
        query = layout.anchors / temperature
        positive = layout.positive / temperature
        excluded = layout.excluded(positive_too=True)  # only negatives in the log-sum-exp
        lse = reduce_similarities(query, layout.candidates, excluded, k, LOGSUMEXP)
        return F.softplus(lse - positive)


class LinearReduction(Reduction):
    """``(-p + λ Σ_k n_k) / τ`` over the selected negatives, no exponentials.

    Args:
        negative_weight: λ; ``None`` means 1 / the number of selected negatives.
    """

    def __init__(self, negative_weight: float | None = None) -> None:
        if negative_weight is not None:
            negative_weight = check_temperature(negative_weight, name="negative_weight")
        self.negative_weight = negative_weight

    def __call__(self, layout: PairLayout, k: int | None, temperature: float | Tensor) -> Tensor:
        selected = layout.num_negatives if k is None else k
        weight = 1.0 / selected if self.negative_weight is None else self.negative_weight
        if k is not None:
            excluded = layout.excluded(positive_too=True)
            total = reduce_similarities(layout.anchors, layout.candidates, excluded, k, SUM)
        else:
            # The sum over all negatives needs no (A, C) matrix: a_i . sum_j c_j, minus the
            # anchor itself and its positive in SimCLR mode.
            total = layout.anchors @ layout.candidates.sum(dim=0)
            if layout.self_col is not None:
                total = total - (layout.anchors * layout.anchors).sum(dim=1) - layout.positive
        return (-layout.positive + weight * total) / temperature

    def __repr__(self) -> str:
        return f"LinearReduction(negative_weight={self.negative_weight!r})"
