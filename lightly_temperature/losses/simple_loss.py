"""Simple loss (Wang & Liu, CVPR 2021): a linear contrast without hardness-awareness."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from lightly_temperature._validation import (
    HardNegatives,
    check_hard_negatives,
    check_temperature,
    resolve_hard_negatives,
)
from lightly_temperature.functional import simple_from_similarities
from lightly_temperature.losses._base import PairLayout, PairwiseLoss, SimilarityBatch
from lightly_temperature.losses._fused import SUM, reduce_similarities
from lightly_temperature.losses.hard_contrastive_loss import PAPER_ALPHA


class SimpleLoss(PairwiseLoss):
    """Simple loss ``L_i = (-s_ii + lambda * sum_{k != i} s_ik) / tau``, lambda = 1/negatives.

    Every negative is pushed equally hard, whatever its similarity: the paper's example of a
    loss that is *not* hardness-aware, and that performs badly (Table 1). ``temperature``
    only rescales the loss (the gradient); at tau = 1 (default) it is the paper's formula. It is
    the large-tau limit of the contrastive loss. Same arguments and layouts as
    ``lightly.loss.NTXentLoss``.

    - Understanding the Behaviour of Contrastive Loss, Wang & Liu, CVPR 2021,
      https://arxiv.org/abs/2012.09740

    Attributes:
        negative_weight: lambda; ``None`` means 1 / number of negatives.

    Examples:
        >>> loss_fn = SimpleLoss()
        >>> loss = loss_fn(model(x0), model(x1))
    """

    def __init__(
        self,
        temperature: float = 1.0,
        memory_bank_size: int | Sequence[int] = 0,
        gather_distributed: bool = False,
        negative_weight: float | None = None,
    ) -> None:
        super().__init__(temperature, memory_bank_size, gather_distributed, hard_negatives=None)
        if negative_weight is not None:
            negative_weight = check_temperature(negative_weight, name="negative_weight")
        self.negative_weight = negative_weight

    def _fused_loss(self, layout: PairLayout) -> Tensor | None:
        k = resolve_hard_negatives(self.hard_negatives, layout.num_negatives)
        weight = 1.0 / k if self.negative_weight is None else self.negative_weight
        if k < layout.num_negatives:
            excluded = None
            if layout.self_col is not None:
                excluded = torch.stack([layout.self_col, layout.pos_col], dim=1)
            total, sims = reduce_similarities(layout.anchors, layout.candidates, excluded, k, SUM)
            if self.store_similarities:
                self._store(layout, sims, scaled=False)
        elif self.store_similarities:
            return None  # the similarity matrix is wanted: the general path builds it
        else:
            # The sum over all negatives needs no (A, C) matrix: a_i . sum_j c_j, minus the
            # anchor itself and its positive in SimCLR mode.
            total = layout.anchors @ layout.candidates.sum(dim=0)
            if layout.self_col is not None:
                total = total - (layout.anchors * layout.anchors).sum(dim=1) - layout.positive
        return (-layout.positive + weight * total) / layout.temperature

    def loss_from_similarities(self, batch: SimilarityBatch) -> Tensor:
        loss = simple_from_similarities(
            batch.positive,
            batch.negatives,
            self.hard_negatives,
            self.negative_weight,
            batch.num_negatives,
        )
        return loss / batch.temperature


class HardSimpleLoss(SimpleLoss):
    """HardSimple loss ``L_i = (-s_ii + (1/K) * sum_{k in top-K(i)} s_ik) / tau``.

    The Simple loss over the K most similar negatives only: explicit hardness-awareness without
    exponentials, on par with the contrastive losses in the paper (Table 1).
    ``hard_negatives`` as in :class:`HardContrastiveLoss` (default: the paper's alpha = 0.0819).

    - Understanding the Behaviour of Contrastive Loss, Wang & Liu, CVPR 2021,
      https://arxiv.org/abs/2012.09740

    Examples:
        >>> loss_fn = HardSimpleLoss(memory_bank_size=(65536, 128), hard_negatives=4095)
        >>> loss = loss_fn(query, key)
    """

    def __init__(
        self,
        temperature: float = 1.0,
        memory_bank_size: int | Sequence[int] = 0,
        gather_distributed: bool = False,
        hard_negatives: HardNegatives = PAPER_ALPHA,
        negative_weight: float | None = None,
    ) -> None:
        super().__init__(temperature, memory_bank_size, gather_distributed, negative_weight)
        self.hard_negatives = check_hard_negatives(hard_negatives)
