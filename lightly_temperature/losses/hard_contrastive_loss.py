"""Hard contrastive loss (Wang & Liu, CVPR 2021): InfoNCE over the top-K negatives only."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from lightly_temperature._validation import HardNegatives, check_bool
from lightly_temperature.functional import PAPER_ALPHA
from lightly_temperature.losses.capabilities import LossCapabilities
from lightly_temperature.losses.pairwise_loss import PairwiseLoss
from lightly_temperature.losses.reduction import LogSumExpReduction
from lightly_temperature.losses.sample_memory_bank import SampleMemoryBank


class HardContrastiveLoss(PairwiseLoss):
    """Hard contrastive loss: only the K negatives most similar to each anchor are contrasted.

    ``L_i = -log( exp(s_ii/tau) / (exp(s_ii/tau) + sum_{s_ik >= s_alpha^(i)} exp(s_ik/tau)) )``
    where ``s_alpha^(i)`` is the K-th largest negative similarity of anchor i. A drop-in for
    ``lightly.loss.NTXentLoss``: same arguments, same SimCLR / MoCo / distributed layouts; with
    ``hard_negatives=None`` it *is* NTXentLoss (the plain contrastive loss), computed faster.
    Parts: :class:`~lightly_temperature.losses.reduction.LogSumExpReduction` over
    :class:`~lightly_temperature.losses.selection.TopKNegatives`.

    The paper's code differs: its denominator is the sum over the K + 1 largest entries of
    the whole bank row, positive included, ``-log(e^{s_ii/tau} / sum_{top K+1 of all}
    e^{s/tau})``: the same as here when the positive is among them, but when it is not, the
    positive drops out of the denominator, which holds the K + 1 hardest negatives.
    ``paper_exact=True`` computes that (see docs/adapters.md).

    - Understanding the Behaviour of Contrastive Loss, Wang & Liu, CVPR 2021,
      https://arxiv.org/abs/2012.09740

    Attributes:
        temperature: tau > 0; a plain attribute that may change between steps.
        memory_bank_size: 0 for SimCLR (in-batch negatives), ``(entries, dim)`` for MoCo.
        gather_distributed: gather the negatives from all ranks (gradients flow back).
        hard_negatives: K. An int >= 1 keeps the K hardest negatives (clamped to those
            available); a float alpha in (0, 1] keeps ``round(alpha * negatives)``, at least 1;
            ``None`` keeps all (plain InfoNCE). Default: the paper's alpha = 0.0819.
        sample_memory_bank: a memory bank indexed by sample
            (:class:`~lightly_temperature.losses.sample_memory_bank.SampleMemoryBank`, NPID,
            the paper's protocol): pass the batch's ``indices`` at every call.
        paper_exact: the paper code's version (above); needs in-batch negatives or a
            ``sample_memory_bank`` (the positive among the candidates), not MoCo's bank.

    Examples:
        >>> # SimCLR: the one change from Lightly's example is the class name
        >>> loss_fn = HardContrastiveLoss(temperature=0.5, hard_negatives=0.0819)
        >>> out0, out1 = model(x0), model(x1)
        >>> loss = loss_fn(out0, out1)
        >>>
        >>> # MoCo with a memory bank and the paper's K = 4095
        >>> loss_fn = HardContrastiveLoss(memory_bank_size=(65536, 128), hard_negatives=4095)
    """

    capabilities: ClassVar[LossCapabilities] = LossCapabilities(
        softmax_temperature=True,
        hard_negatives=True,
        sample_indices=True,
        sample_memory_bank=True,
    )

    def __init__(
        self,
        temperature: float = 0.5,
        memory_bank_size: int | Sequence[int] = 0,
        gather_distributed: bool = False,
        hard_negatives: HardNegatives = PAPER_ALPHA,
        sample_memory_bank: SampleMemoryBank | None = None,
        paper_exact: bool = False,
    ) -> None:
        super().__init__(
            LogSumExpReduction(positive_as_candidate=check_bool(paper_exact, "paper_exact")),
            hard_negatives,
            temperature,
            memory_bank_size,
            gather_distributed,
            sample_memory_bank,
        )


class ContrastiveLoss(HardContrastiveLoss):
    """The contrastive loss (InfoNCE) over every negative: :class:`HardContrastiveLoss` with
    ``hard_negatives=None``.

    The value of Lightly's ``NTXentLoss`` in its SimCLR and MoCo layouts, and also over the
    package's other layouts, which ``NTXentLoss`` does not have: a memory bank indexed by
    sample (``sample_memory_bank``, NPID, the paper's protocol). Takes no ``hard_negatives``.

    Example:
        >>> bank = SampleMemoryBank(num_samples=50_000, dim=128)
        >>> loss_fn = ContrastiveLoss(temperature=0.07, sample_memory_bank=bank)
        >>> loss = loss_fn(z, z, indices=indices)
    """

    capabilities: ClassVar[LossCapabilities] = LossCapabilities(
        softmax_temperature=True,
        hard_negatives=False,
        sample_indices=True,
        sample_memory_bank=True,
    )

    def __init__(
        self,
        temperature: float = 0.5,
        memory_bank_size: int | Sequence[int] = 0,
        gather_distributed: bool = False,
        sample_memory_bank: SampleMemoryBank | None = None,
    ) -> None:
        super().__init__(
            temperature, memory_bank_size, gather_distributed, None, sample_memory_bank
        )
