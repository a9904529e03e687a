"""Functional core of the loss family, working directly on similarity values.

Every loss of the package reduces to a per-anchor function of the positive similarity
``s_ii`` and the negative similarities ``s_ik`` (Wang & Liu, CVPR 2021, section 3). The
classes in :mod:`lightly_temperature.losses` compute those similarities from embeddings in
Lightly's SimCLR and MoCo layouts and call these functions; analyses and tests can call them
with similarity values directly.

Negatives may contain ``-inf`` for entries that are not negatives of the anchor (the anchor
itself, its positive): they get zero weight and zero gradient. ``num_negatives`` then says how
many real negatives each row holds, so that K and lambda are resolved against it.

Example:
    >>> import torch
    >>> from lightly_temperature.functional import contrastive_loss
    >>> pos, neg = torch.tensor([0.5]), torch.tensor([[0.25, -0.45, -0.1]])
    >>> round(contrastive_loss(pos, neg, temperature=1.0).item(), 4)
    0.9986
"""

from __future__ import annotations

from typing import Union

import torch
from torch import Tensor

from lightly_temperature._validation import (
    HardNegatives,
    check_hard_negatives,
    check_int,
    check_temperature,
)
from lightly_temperature.kernels import LOGSUMEXP, SUM, reduce_logits, top_k_indices

Temperature = Union[float, Tensor]

#: The paper's alpha for CIFAR10/100: K = 4095 hard negatives of 50,000.
PAPER_ALPHA = 0.0819


def resolve_hard_negatives(hard_negatives: HardNegatives, num_negatives: int) -> int:
    """Number K of negatives kept in the denominator, given ``num_negatives`` available.

    An int is clamped to the negatives available (a small last batch is not an error), a float
    alpha keeps ``round(alpha * num_negatives)`` (at least one), ``None`` keeps all of them.
    """
    if num_negatives < 1:
        raise ValueError(f"num_negatives must be >= 1, got {num_negatives!r}")
    if hard_negatives is None:
        return num_negatives
    if isinstance(hard_negatives, float):
        return min(num_negatives, max(1, int(round(hard_negatives * num_negatives))))
    return min(num_negatives, int(hard_negatives))


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    if reduction == "none":
        return loss
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def _check_shapes(
    positive: Tensor,
    negatives: Tensor,
    num_negatives: int | None = None,
    names: tuple[str, str] = ("positive", "negatives"),
) -> None:
    """``positive`` 1-D (anchors,), ``negatives`` 2-D (anchors, columns) with at least one
    column, real floating point; ``num_negatives`` None or an int in [1, columns]."""
    for tensor, name in zip((positive, negatives), names):
        _check_real(tensor, name)
    if positive.dim() != 1:
        raise ValueError(f"{names[0]} must be 1-D (anchors,), got shape {tuple(positive.shape)}")
    if negatives.dim() != 2 or negatives.shape[0] != positive.shape[0] or negatives.shape[1] < 1:
        raise ValueError(
            f"{names[1]} must be 2-D (anchors, negatives) with {positive.shape[0]} rows and at "
            f"least one column, got shape {tuple(negatives.shape)}"
        )
    _check_num_negatives(num_negatives, negatives.shape[1])


def _check_real(tensor: Tensor, name: str) -> None:
    if not isinstance(tensor, Tensor):
        raise ValueError(f"{name} must be a tensor, got {type(tensor).__name__}")
    if not tensor.is_floating_point():
        raise ValueError(f"{name} must be a real floating-point tensor, got dtype {tensor.dtype}")


def _check_num_negatives(num_negatives: int | None, columns: int) -> None:
    if num_negatives is None:
        return
    if (
        isinstance(num_negatives, bool)
        or not isinstance(num_negatives, int)
        or not 1 <= num_negatives <= columns
    ):
        raise ValueError(
            f"num_negatives must be None or an int in [1, {columns}] (the negatives' columns), "
            f"got {num_negatives!r}"
        )


def top_k_negatives(negatives: Tensor, k: int, num_negatives: int | None = None) -> Tensor:
    """The ``k`` largest negatives of each row (clamped to the negatives available), sorted.

    Raises:
        ValueError: ``negatives`` not 2-D with at least one column, ``k`` not an int >= 1, or
            ``num_negatives`` outside [1, columns].
    """
    _check_real(negatives, "negatives")
    if negatives.dim() != 2 or negatives.shape[1] < 1:
        raise ValueError(
            "negatives must be 2-D (anchors, negatives) with at least one column, got shape "
            f"{tuple(negatives.shape)}"
        )
    check_int(k, "k", 1)
    _check_num_negatives(num_negatives, negatives.shape[1])
    available = negatives.shape[1] if num_negatives is None else num_negatives
    k = resolve_hard_negatives(k, available)
    if k == negatives.shape[1]:
        return negatives
    # gather's backward scatters into the selected entries only: every negative outside the
    # top-K gets an exact zero gradient, as in the paper's hard loss.
    return negatives.gather(1, top_k_indices(negatives, k))


def info_nce_from_logits(
    positive_logits: Tensor,
    negative_logits: Tensor,
    hard_negatives: HardNegatives = None,
    num_negatives: int | None = None,
) -> Tensor:
    """Per-anchor InfoNCE loss from logits (similarities already divided by tau).

    ``-log( exp(p) / (exp(p) + sum_{k in top-K} exp(n_k)) )``, the positive always in the
    denominator: ``softplus(lse(n) - p)`` (precise at low loss), the log-sum-exp by the losses'
    own row reduction (:func:`lightly_temperature.kernels.reduce_logits`).
    """
    _check_shapes(
        positive_logits, negative_logits, num_negatives, ("positive_logits", "negative_logits")
    )
    hard_negatives = check_hard_negatives(hard_negatives)
    available = negative_logits.shape[1] if num_negatives is None else num_negatives
    k = resolve_hard_negatives(hard_negatives, available)
    selected = k if hard_negatives is not None and k < available else None
    lse = reduce_logits(negative_logits, selected, LOGSUMEXP)
    return torch.nn.functional.softplus(lse - positive_logits)


def contrastive_loss(
    positive: Tensor,
    negatives: Tensor,
    temperature: Temperature = 0.5,
    hard_negatives: HardNegatives = None,
    num_negatives: int | None = None,
    reduction: str = "mean",
) -> Tensor:
    """Contrastive (InfoNCE) loss, or the hard contrastive loss when ``hard_negatives`` is set.

    ``L_i = -log( exp(s_ii/tau) / (exp(s_ii/tau) + sum_{k in top-K(i)} exp(s_ik/tau)) )``

    Args:
        positive: ``(A,)`` similarity of each anchor to its positive, ``s_ii``.
        negatives: ``(A, M)`` similarities to the negatives, ``s_ik``; ``-inf`` marks entries
            that are not negatives.
        temperature: tau > 0.
        hard_negatives: ``None`` (all negatives), an int K >= 1 or a float fraction alpha in
            (0, 1] of the negatives: only the K largest negatives of each anchor stay in the
            denominator (the paper's per-anchor threshold ``s_alpha^(i)`` is the K-th largest).
        num_negatives: real negatives per row when ``negatives`` holds ``-inf`` entries.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (per anchor).

    Example:
        >>> pos, neg = torch.tensor([0.25]), torch.tensor([[0.5, -0.45, -0.1]])
        >>> round(contrastive_loss(pos, neg, temperature=0.01).item(), 4)
        25.0
    """
    _check_shapes(positive, negatives, num_negatives)
    temperature = check_temperature(temperature)
    hard_negatives = check_hard_negatives(hard_negatives)
    positive = positive.float()
    negatives = negatives.float()
    loss = info_nce_from_logits(
        positive / temperature, negatives / temperature, hard_negatives, num_negatives
    )
    return _reduce(loss, reduction)


def simple_loss(
    positive: Tensor,
    negatives: Tensor,
    hard_negatives: HardNegatives = None,
    negative_weight: float | None = None,
    temperature: Temperature = 1.0,
    num_negatives: int | None = None,
    reduction: str = "mean",
) -> Tensor:
    """The paper's Simple loss, or HardSimple when ``hard_negatives`` is set.

    ``L_i = (-s_ii + lambda * sum_{k in top-K(i)} s_ik) / tau`` with ``lambda = 1/K`` by default
    (``1/M`` over all M negatives for Simple). No exponentials: no hardness-awareness beyond the
    top-K selection. ``tau`` only rescales the loss; with it, Simple is the large-tau limit of the
    contrastive loss: ``tau * (L_contrastive - log(M + 1)) -> M/(M+1) * L_simple``.

    Example:
        >>> pos, neg = torch.tensor([0.5]), torch.tensor([[0.25, -0.45, -0.1]])
        >>> round(simple_loss(pos, neg).item(), 4)  # -0.5 + (0.25 - 0.45 - 0.1) / 3
        -0.6
    """
    _check_shapes(positive, negatives, num_negatives)
    temperature = check_temperature(temperature)
    hard_negatives = check_hard_negatives(hard_negatives)
    if negative_weight is not None:
        negative_weight = check_temperature(negative_weight, name="negative_weight")
    loss = simple_from_similarities(
        positive.float(), negatives.float(), hard_negatives, negative_weight, num_negatives
    )
    return _reduce(loss / temperature, reduction)


def simple_from_similarities(
    positive: Tensor,
    negatives: Tensor,
    hard_negatives: HardNegatives = None,
    negative_weight: float | None = None,
    num_negatives: int | None = None,
) -> Tensor:
    """Per-anchor ``-s_ii + lambda * sum_k s_ik`` without argument checks (see simple_loss)."""
    available = negatives.shape[1] if num_negatives is None else num_negatives
    k = resolve_hard_negatives(hard_negatives, available)
    if k < available:
        total = reduce_logits(negatives, k, SUM)
    elif available < negatives.shape[1]:
        # -inf marks non-negatives: they add nothing to the sum (and get no gradient).
        total = negatives.masked_fill(negatives == float("-inf"), 0.0).sum(dim=1)
    else:
        total = negatives.sum(dim=1)
    weight = 1.0 / k if negative_weight is None else negative_weight
    return -positive + weight * total


def relative_penalties(
    negatives: Tensor,
    temperature: Temperature,
    hard_negatives: HardNegatives = None,
) -> Tensor:
    """The paper's relative penalty ``r_i(s_ij) = exp(s_ij/tau) / sum_{k != i} exp(s_ik/tau)``.

    ``|dL/ds_ij| / |dL/ds_ii|`` for each negative j; each row sums to 1. With ``hard_negatives``
    the sum runs over the top-K negatives and every other negative gets 0.

    Example:
        >>> r = relative_penalties(torch.tensor([[0.25, -0.45, -0.1]]), temperature=0.05)
        >>> [round(v, 4) for v in r[0].tolist()]
        [0.9991, 0.0, 0.0009]
    """
    temperature = check_temperature(temperature)
    hard_negatives = check_hard_negatives(hard_negatives)
    _check_real(negatives, "negatives")
    if negatives.dim() not in (1, 2) or negatives.shape[-1] < 1:
        raise ValueError(
            "negatives must be 1-D (negatives,) or 2-D (anchors, negatives) with at least one "
            f"negative, got shape {tuple(negatives.shape)}"
        )
    if negatives.dim() == 1:
        negatives = negatives.unsqueeze(0)
    logits = negatives.float() / temperature
    k = resolve_hard_negatives(hard_negatives, logits.shape[1])
    if k < logits.shape[1]:
        # Exactly the K negatives the hard loss keeps (the same selection, ties included).
        index = top_k_indices(logits, k)
        kept = torch.full_like(logits, float("-inf")).scatter(1, index, logits.gather(1, index))
        logits = kept
    return torch.softmax(logits, dim=1)
