"""The reduction part of a loss: from an anchor's positive and selected negatives to its loss.

Both reductions run on :func:`~lightly_temperature.kernels.reduce_similarities`,
the one autograd node that multiplies anchors and candidates and reduces each row, so that no
``(A, C)`` logit matrix is kept for backward beyond the softmax weights (or the top-K ones).

- :class:`LogSumExpReduction`: InfoNCE, ``-log(e^{p/τ} / (e^{p/τ} + Σ_k e^{n_k/τ}))``;
  τ is a softmax temperature.
- :class:`LinearReduction`: Simple, ``(-p + λ Σ_k n_k) / τ``; τ only rescales the loss.
- :class:`ImportanceWeightedReduction`: HCL (Robinson et al.) and the debiased loss (Chuang
  et al., β = 0): the negatives' term reweighted by ``softmax(β n/τ)`` and debiased by the
  class prior τ⁺, clamped at ``N e^{-1/τ}``; τ is a softmax temperature.

Example:
    >>> layout = in_batch_layout(normalized(out0, out1), gather_distributed=False)
    >>> per_anchor = LogSumExpReduction()(layout, k=None, temperature=0.5)  # (2N,)
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.nn import functional as F

from lightly_temperature._validation import (
    check_bool,
    check_non_negative,
    check_positive,
    check_temperature,
)
from lightly_temperature.kernels import (
    LOGSUMEXP,
    SUM,
    WEIGHTED_LOGMEANEXP,
    reduce_similarities,
)
from lightly_temperature.losses.layout import PairLayout


def reduce_rows(
    layout: PairLayout,
    excluded: Tensor | None,
    k: int | None,
    kind: str,
    temperature: float | Tensor,
    beta: float = 0.0,
) -> Tensor:
    """Each anchor's row of ``(anchors / τ) @ candidates.T`` reduced by the fused node.

    A number or 0-d τ enters the node, which folds 1/τ into the ``(A, d)`` anchors and keeps
    its one-product SimCLR backward. An ``(A,)`` τ (one per anchor) scales each anchor's row
    before the node (1/τ_i on row i; autograd carries τ's gradient through that division).
    """
    if isinstance(temperature, Tensor) and temperature.dim() == 1:
        query = layout.anchors / temperature.unsqueeze(1)
        return reduce_similarities(query, layout.candidates, excluded, k, kind, beta)
    return reduce_similarities(
        layout.anchors, layout.candidates, excluded, k, kind, beta, temperature=temperature
    )


class Reduction:
    """Base class: ``reduction(layout, k, temperature)`` gives the ``(A,)`` per-anchor losses.

    ``k`` is the number of negatives selected per anchor, ``None`` for all of them.
    ``temperature`` is a number, a 0-d tensor, or an ``(A,)`` tensor (one τ per anchor: 1/τ
    scales each anchor's row, so the fused kernel and its exact backward are unchanged).
    """

    def __call__(self, layout: PairLayout, k: int | None, temperature: float | Tensor) -> Tensor:
        raise NotImplementedError


def _positive_column_layout(layout: PairLayout, reduction: Reduction) -> None:
    """The paper's code reduces over a bank row that holds the positive: check there is one."""
    if layout.pos_col is None:
        raise ValueError(
            f"{reduction!r} needs each anchor's positive among the candidates (in-batch "
            "negatives or a sample_memory_bank); MoCo's memory bank does not hold it"
        )


def _with_positive(k: int | None) -> int | None:
    """Columns selected when the positive competes with the negatives: K + 1 (None: all)."""
    return None if k is None else k + 1


class LogSumExpReduction(Reduction):
    """InfoNCE over the selected negatives, the positive always in the denominator.

    ``-log(e^p / (e^p + e^lse)) = softplus(lse - p)`` with ``lse`` the log-sum-exp of the
    selected negatives' logits: no difference of two nearly equal numbers, so the value and
    the gradient keep their relative precision when the loss is tiny (well-aligned views, a
    small τ), where ``logsumexp(all) - p`` loses it.

    Args:
        positive_as_candidate: the paper's code (Wang & Liu's ``HardNegativePointLoss``): the
            denominator is the sum over the K + 1 largest of *all* the anchor's similarities,
            its positive included, ``-log(e^p / Σ_{top K+1 of {p} ∪ n} e^s)``. When the
            positive is among them this is the default (the positive plus the top K
            negatives); when it is not, the positive drops out of the denominator, which then
            holds the K + 1 hardest negatives. Computed as ``lse - p`` (the default's
            precision at very low loss is not kept). Without a selection (all negatives) both
            are InfoNCE. Needs the positive among the candidates (in-batch negatives or a
            memory bank indexed by sample), not MoCo's bank.
    """

    def __init__(self, positive_as_candidate: bool = False) -> None:
        self.positive_as_candidate = check_bool(positive_as_candidate, "positive_as_candidate")

    def __call__(self, layout: PairLayout, k: int | None, temperature: float | Tensor) -> Tensor:
        # 1/tau is folded into the (A, d) anchors inside the node, not applied to the (A, C)
        # logits; the node sees the unscaled anchors (one backward product in SimCLR mode).
        positive = layout.positive_logits(temperature)
        if self.positive_as_candidate and k is not None:
            _positive_column_layout(layout, self)
            excluded = layout.excluded(positive_too=False)  # the positive competes
            lse = reduce_rows(layout, excluded, _with_positive(k), LOGSUMEXP, temperature)
            return lse - positive
        excluded = layout.excluded(positive_too=True)  # only negatives in the log-sum-exp
        lse = reduce_rows(layout, excluded, k, LOGSUMEXP, temperature)
        return F.softplus(lse - positive)

    def __repr__(self) -> str:
        return f"LogSumExpReduction(positive_as_candidate={self.positive_as_candidate!r})"


class LinearReduction(Reduction):
    """``(-p + λ Σ_k n_k) / τ`` over the selected negatives, no exponentials.

    Args:
        negative_weight: λ; ``None`` means 1 / the number of selected negatives.
        positive_as_candidate: the paper's code (Wang & Liu's ``FlatLoss`` and
            ``HardFlatLoss``): the sum runs over the anchor's positive and its negatives
            together, ``(-p + λ Σ_{s ∈ S} s) / τ``. Without a selection S is the positive and
            all N negatives and λ = 1/(N + 1); with K, S is the K + 1 largest of them (the
            positive and the top K negatives when the positive is among them, else the top
            K + 1 negatives) and λ = 1/(K + 1). The positive's net weight is then
            ``-(1 - λ)`` rather than -1. Needs the positive among the candidates (in-batch
            negatives or a memory bank indexed by sample), not MoCo's bank.
    """

    def __init__(
        self, negative_weight: float | None = None, positive_as_candidate: bool = False
    ) -> None:
        if negative_weight is not None:
            negative_weight = check_temperature(negative_weight, name="negative_weight")
        self.negative_weight = negative_weight
        self.positive_as_candidate = check_bool(positive_as_candidate, "positive_as_candidate")

    def __call__(self, layout: PairLayout, k: int | None, temperature: float | Tensor) -> Tensor:
        with_positive = self.positive_as_candidate
        if with_positive:
            _positive_column_layout(layout, self)
            k = _with_positive(k)
        # Columns summed: the selected ones, else all negatives (and the positive).
        count = (layout.num_negatives + int(with_positive)) if k is None else k
        weight = 1.0 / count if self.negative_weight is None else self.negative_weight
        if k is not None:
            excluded = layout.excluded(positive_too=not with_positive)
            total = reduce_similarities(layout.anchors, layout.candidates, excluded, k, SUM)
        else:
            # The sum over all candidates needs no (A, C) matrix: a_i . sum_j c_j, minus the
            # columns that are not summed (the anchor itself, its positive unless it competes).
            total = layout.anchors @ layout.candidates.sum(dim=0)
            if layout.self_col is not None:
                total = total - (layout.anchors * layout.anchors).sum(dim=1)
            if layout.pos_col is not None and not with_positive:
                total = total - layout.positive
        return (-layout.positive + weight * total) / temperature

    def __repr__(self) -> str:
        return (
            f"LinearReduction(negative_weight={self.negative_weight!r}, "
            f"positive_as_candidate={self.positive_as_candidate!r})"
        )


def check_class_prior(tau_plus: float) -> float:
    """τ⁺, the probability that a negative shares the anchor's class, in [0, 1)."""
    value = check_non_negative(tau_plus, "tau_plus")
    if value >= 1:
        raise ValueError(f"tau_plus must be in [0, 1), got {tau_plus!r}")
    return value


class ImportanceWeightedReduction(Reduction):
    """Hard negative sampling (Robinson et al., ICLR 2021) over the selected negatives.

    With ``e^{p/τ}`` the positive's term and N the number of selected negatives::

        Ng  = max( N (Σ_j w_j e^{n_j/τ} - τ⁺ e^{p/τ}) / (1 - τ⁺),  N e^{-1/τ} )
        w   = softmax(β n / τ)                     (importance weights over the negatives)
        L_i = -log( e^{p/τ} / (e^{p/τ} + Ng) )

    as in the authors' code (``imp = e^{β n/τ}``, ``reweight_neg = Σ imp e^{n/τ} / mean(imp)``).
    β = 0 is the debiased contrastive loss (Chuang et al., NeurIPS 2020); β = 0 and τ⁺ = 0 is
    InfoNCE (the clamp never binds: every ``e^{n/τ} >= e^{-1/τ}``). The weighted sum runs on
    :func:`~lightly_temperature.kernels.reduce_similarities` (kind ``weighted_logmeanexp``), in
    log space: no exponential of a logit is formed, any τ is safe in float32.

    Args:
        beta: β >= 0, the concentration of the importance weights on the hardest negatives.
        tau_plus: τ⁺ in [0, 1), the class prior of the debiasing.
    """

    def __init__(self, beta: float = 1.0, tau_plus: float = 0.1) -> None:
        self.beta = check_non_negative(beta, "beta")
        self.tau_plus = check_class_prior(tau_plus)

    def __call__(self, layout: PairLayout, k: int | None, temperature: float | Tensor) -> Tensor:
        positive = layout.positive_logits(temperature)
        excluded = layout.excluded(positive_too=True)
        num_selected = layout.num_negatives if k is None else k
        log_mean = reduce_rows(layout, excluded, k, WEIGHTED_LOGMEANEXP, temperature, self.beta)
        log_count = math.log(num_selected)
        if self.tau_plus == 0:
            log_negatives = log_count + log_mean
        else:
            # log(mean - τ⁺ e^p) shifted by the larger of the two (the shift cancels exactly).
            shift = torch.maximum(log_mean, positive).detach()
            debiased = torch.exp(log_mean - shift) - self.tau_plus * torch.exp(positive - shift)
            log_debiased = shift + torch.log(debiased.clamp_min(torch.finfo(debiased.dtype).tiny))
            log_negatives = torch.where(
                debiased > 0,
                log_count + log_debiased - math.log1p(-self.tau_plus),
                torch.full_like(debiased, float("-inf")),
            )
        # The clamp at N e^{-1/τ}: no gradient where it binds, as in the authors' torch.clamp.
        floor = log_count - 1.0 / temperature
        if isinstance(floor, Tensor):
            log_negatives = torch.clamp(log_negatives, min=floor)
        else:
            log_negatives = log_negatives.clamp(min=floor)
        return F.softplus(log_negatives - positive)  # precise at low loss, as InfoNCE

    def __repr__(self) -> str:
        return f"ImportanceWeightedReduction(beta={self.beta!r}, tau_plus={self.tau_plus!r})"


class DecoupledReduction(Reduction):
    """The decoupled contrastive loss (Yeh et al., ECCV 2022): the positive is not in the
    denominator.

    ``L_i = -w_i p_i/τ + log Σ_k e^{n_k/τ}`` over the selected negatives. Without
    ``weight_sigma``, ``w_i = 1`` (DCL); with it, ``w_i = 2 - N softmax(p/σ)_i`` over the N
    samples of the call (DCLW, Lightly's ``negative_mises_fisher_weights``): detached, the same
    for both views of a sample, computed from this rank's samples only under
    ``gather_distributed`` (as Lightly's ``DCLWLoss``). Needs the in-batch layout (both views
    as anchors): the weights are over the batch's samples.

    Args:
        weight_sigma: σ > 0 of the weights, ``None`` for no weighting (DCL).
    """

    def __init__(self, weight_sigma: float | None = None) -> None:
        if weight_sigma is not None:
            weight_sigma = check_positive(weight_sigma, "weight_sigma")
        self.weight_sigma = weight_sigma

    def __call__(self, layout: PairLayout, k: int | None, temperature: float | Tensor) -> Tensor:
        if layout.self_col is None or layout.pos_col is None:
            raise ValueError(
                f"{self!r} needs in-batch negatives (both views as anchors); a memory bank "
                "layout has no such batch"
            )
        positive = layout.positive_logits(temperature)
        excluded = layout.excluded(positive_too=True)  # the positive is decoupled
        lse = reduce_rows(layout, excluded, k, LOGSUMEXP, temperature)
        if self.weight_sigma is not None:
            positive = positive * self.positive_weights(layout)
        return lse - positive

    def positive_weights(self, layout: PairLayout) -> Tensor:
        """``(A,)`` weights ``2 - N softmax(p/σ)`` of the anchors' positive terms (detached)."""
        # The anchors are both views of this rank's N samples: each positive appears twice.
        num_samples = layout.anchors.shape[0] // 2
        similarity = layout.positive[:num_samples].detach() / self.weight_sigma
        weights = 2 - num_samples * torch.softmax(similarity, dim=0)
        return weights.repeat(2)

    def __repr__(self) -> str:
        return f"DecoupledReduction(weight_sigma={self.weight_sigma!r})"
