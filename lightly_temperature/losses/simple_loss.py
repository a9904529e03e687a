"""Simple loss (Wang & Liu, CVPR 2021): a linear contrast without hardness-awareness."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from lightly_temperature._validation import check_bool
from lightly_temperature.losses.capabilities import LossCapabilities
from lightly_temperature.losses.pairwise_loss import PairwiseLoss
from lightly_temperature.losses.reduction import LinearReduction
from lightly_temperature.losses.sample_memory_bank import SampleMemoryBank


class SimpleLoss(PairwiseLoss):
    """Simple loss ``L_i = (-s_ii + lambda * sum_{k != i} s_ik) / tau``, lambda = 1/negatives.

    Every negative is pushed equally hard, whatever its similarity: the paper's example of a
    loss that is *not* hardness-aware, and that performs badly (Table 1). ``temperature``
    only rescales the loss (the gradient); at tau = 1 (default) it is the paper's formula. It is
    the large-tau limit of the contrastive loss. Same arguments and layouts as
    ``lightly.loss.NTXentLoss``. Parts:
    :class:`~lightly_temperature.losses.reduction.LinearReduction` over all negatives.

    - Understanding the Behaviour of Contrastive Loss, Wang & Liu, CVPR 2021,
      https://arxiv.org/abs/2012.09740

    The paper's code differs: its Simple loss averages over the whole bank row, positive
    included, ``-s_ii + 1/(N+1) (s_ii + sum_{k != i} s_ik)`` (lambda = 1/(N+1) over the
    negatives *and* the positive). ``paper_exact=True`` computes that (see docs/adapters.md).

    Attributes:
        negative_weight: lambda; ``None`` means 1 / number of negatives.
        paper_exact: the paper code's version (above); needs in-batch negatives or a
            ``sample_memory_bank`` (the positive among the candidates), not MoCo's bank.
        sample_memory_bank: a memory bank indexed by sample (NPID, the paper's protocol):
            pass the batch's ``indices`` at every call.

    Examples:
        >>> loss_fn = SimpleLoss()
        >>> loss = loss_fn(model(x0), model(x1))
    """

    capabilities: ClassVar[LossCapabilities] = LossCapabilities(
        softmax_temperature=False,
        hard_negatives=False,
        sample_indices=True,
        sample_memory_bank=True,
    )

    def __init__(
        self,
        temperature: float = 1.0,
        memory_bank_size: int | Sequence[int] = 0,
        gather_distributed: bool = False,
        negative_weight: float | None = None,
        sample_memory_bank: SampleMemoryBank | None = None,
        paper_exact: bool = False,
    ) -> None:
        super().__init__(
            LinearReduction(
                negative_weight, positive_as_candidate=check_bool(paper_exact, "paper_exact")
            ),
            None,
            temperature,
            memory_bank_size,
            gather_distributed,
            sample_memory_bank,
        )

    @property
    def negative_weight(self) -> float | None:
        """lambda; ``None`` means 1 / number of (selected) negatives."""
        return self.reduction.negative_weight
