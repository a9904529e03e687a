"""Hard contrastive loss (Wang & Liu, CVPR 2021): InfoNCE over the top-K negatives only."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from lightly_temperature._validation import HardNegatives, resolve_hard_negatives
from lightly_temperature.functional import info_nce_from_logits
from lightly_temperature.losses._base import PairLayout, PairwiseLoss, SimilarityBatch
from lightly_temperature.losses._fused import LOGSUMEXP, reduce_similarities

#: The paper's alpha for CIFAR10/100 (4095 of 50,000 negatives).
PAPER_ALPHA = 0.0819


class HardContrastiveLoss(PairwiseLoss):
    """Hard contrastive loss: only the K negatives most similar to each anchor are contrasted.

    ``L_i = -log( exp(s_ii/tau) / (exp(s_ii/tau) + sum_{s_ik >= s_alpha^(i)} exp(s_ik/tau)) )``
    where ``s_alpha^(i)`` is the K-th largest negative similarity of anchor i. A drop-in for
    ``lightly.loss.NTXentLoss``: same arguments, same SimCLR / MoCo / distributed layouts; with
    ``hard_negatives=None`` it *is* NTXentLoss (the plain contrastive loss), computed faster.

    - Understanding the Behaviour of Contrastive Loss, Wang & Liu, CVPR 2021,
      https://arxiv.org/abs/2012.09740

    Attributes:
        temperature: tau > 0; a plain attribute that may change between steps.
        memory_bank_size: 0 for SimCLR (in-batch negatives), ``(entries, dim)`` for MoCo.
        gather_distributed: gather the negatives from all ranks (gradients flow back).
        hard_negatives: K. An int >= 1 keeps the K hardest negatives (clamped to those
            available); a float alpha in (0, 1] keeps ``round(alpha * negatives)``, at least 1;
            ``None`` keeps all (plain InfoNCE). Default: the paper's alpha = 0.0819.

    Examples:
        >>> # SimCLR: the one change from Lightly's example is the class name
        >>> loss_fn = HardContrastiveLoss(temperature=0.5, hard_negatives=0.0819)
        >>> out0, out1 = model(x0), model(x1)
        >>> loss = loss_fn(out0, out1)
        >>>
        >>> # MoCo with a memory bank and the paper's K = 4095
        >>> loss_fn = HardContrastiveLoss(memory_bank_size=(65536, 128), hard_negatives=4095)
    """

    def __init__(
        self,
        temperature: float = 0.5,
        memory_bank_size: int | Sequence[int] = 0,
        gather_distributed: bool = False,
        hard_negatives: HardNegatives = PAPER_ALPHA,
    ) -> None:
        super().__init__(temperature, memory_bank_size, gather_distributed, hard_negatives)

    def _fused_loss(self, layout: PairLayout) -> Tensor | None:
        # 1/tau is folded into the (A, d) anchors, not applied to the (A, C) logits.
        k = resolve_hard_negatives(self.hard_negatives, layout.num_negatives)
        hard = k < layout.num_negatives
        query = layout.anchors / layout.temperature
        positive = layout.positive / layout.temperature
        excluded = None
        if layout.self_col is not None:
            # All negatives: the positive column may stay, it is the numerator's term of the
            # denominator. Top-K: it must not be selected as a negative.
            cols = [layout.self_col, layout.pos_col] if hard else [layout.self_col]
            excluded = torch.stack(cols, dim=1)
        lse, logits = reduce_similarities(
            query, layout.candidates, excluded, k if hard else None, LOGSUMEXP
        )
        if self.store_similarities:
            self._store(layout, logits, scaled=True)
        if hard or layout.self_col is None:
            # The positive is always in the denominator: log(exp(p) + sum_k exp(n_k)) - p.
            return torch.logaddexp(positive, lse) - positive
        return lse - positive

    def loss_from_similarities(self, batch: SimilarityBatch) -> Tensor:
        # Scaling by 1/tau after the matmul costs one pass over the (A, C) block; the
        # top-K selection is the same on similarities and logits (tau > 0).
        return info_nce_from_logits(
            batch.positive / batch.temperature,
            batch.negatives / batch.temperature,
            self.hard_negatives,
            batch.num_negatives,
        )
