"""HardSimple loss (Wang & Liu, CVPR 2021): the Simple loss over the top-K negatives."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from lightly_temperature._validation import HardNegatives
from lightly_temperature.functional import PAPER_ALPHA
from lightly_temperature.losses.capabilities import LossCapabilities
from lightly_temperature.losses.sample_memory_bank import SampleMemoryBank
from lightly_temperature.losses.simple_loss import SimpleLoss


class HardSimpleLoss(SimpleLoss):
    """HardSimple loss ``L_i = (-s_ii + (1/K) * sum_{k in top-K(i)} s_ik) / tau``.

    The Simple loss over the K most similar negatives only: explicit hardness-awareness without
    exponentials, on par with the contrastive losses in the paper (Table 1).
    ``hard_negatives`` as in :class:`HardContrastiveLoss` (default: the paper's alpha = 0.0819);
    ``temperature`` only rescales the loss. Parts:
    :class:`~lightly_temperature.losses.reduction.LinearReduction` over
    :class:`~lightly_temperature.losses.selection.TopKNegatives`.

    The paper's code differs: it averages the K + 1 largest similarities of the whole bank
    row, positive included, ``-s_ii + 1/(K+1) sum_{top K+1 of all} s`` (the positive plus the
    top K negatives over K + 1 when the positive is among them, else the top K + 1
    negatives). ``paper_exact=True`` computes that (see docs/adapters.md).

    - Understanding the Behaviour of Contrastive Loss, Wang & Liu, CVPR 2021,
      https://arxiv.org/abs/2012.09740

    Examples:
        >>> loss_fn = HardSimpleLoss(memory_bank_size=(65536, 128), hard_negatives=4095)
        >>> loss = loss_fn(query, key)
    """

    capabilities: ClassVar[LossCapabilities] = LossCapabilities(
        softmax_temperature=False,
        hard_negatives=True,
        sample_indices=True,
        sample_memory_bank=True,
    )

    def __init__(
        self,
        temperature: float = 1.0,
        memory_bank_size: int | Sequence[int] = 0,
        gather_distributed: bool = False,
        hard_negatives: HardNegatives = PAPER_ALPHA,
        negative_weight: float | None = None,
        sample_memory_bank: SampleMemoryBank | None = None,
        paper_exact: bool = False,
    ) -> None:
        super().__init__(
            temperature,
            memory_bank_size,
            gather_distributed,
            negative_weight,
            sample_memory_bank,
            paper_exact,
        )
        self.hard_negatives = hard_negatives
