"""Hard negative sampling (Robinson et al., ICLR 2021) and the debiased contrastive loss
(Chuang et al., NeurIPS 2020): importance-weighted, debiased negatives."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from lightly_temperature._validation import HardNegatives
from lightly_temperature.losses.capabilities import LossCapabilities
from lightly_temperature.losses.pairwise_loss import PairwiseLoss
from lightly_temperature.losses.reduction import ImportanceWeightedReduction
from lightly_temperature.losses.sample_memory_bank import SampleMemoryBank


class HCLLoss(PairwiseLoss):
    """HCL: InfoNCE whose negatives are reweighted towards the hard ones and debiased.

    ``L_i = -log( e^{s_ii/τ} / (e^{s_ii/τ} + Ng) )`` with
    ``Ng = max( N (Σ_j w_j e^{s_ij/τ} - τ⁺ e^{s_ii/τ}) / (1 - τ⁺), N e^{-1/τ} )`` and
    importance weights ``w = softmax(β s_i· / τ)`` over the N negatives of the anchor, as in the
    authors' code (https://github.com/joshr17/HCL). β = 0 is
    :class:`DebiasedContrastiveLoss`; β = 0 and τ⁺ = 0 is Lightly's ``NTXentLoss``.

    A drop-in for ``lightly.loss.NTXentLoss``: same arguments, same SimCLR / MoCo / distributed
    layouts (in MoCo mode N is the memory bank's size). With ``hard_negatives`` the reweighting
    runs over each anchor's top-K negatives only (N = K): HCL over the top-K. Parts:
    :class:`~lightly_temperature.losses.reduction.ImportanceWeightedReduction` over all or the
    top-K negatives.

    - Contrastive Learning with Hard Negative Samples, Robinson, Chuang, Sra & Jegelka,
      ICLR 2021, https://arxiv.org/abs/2010.04592

    Args:
        temperature: τ > 0, a softmax temperature; a plain attribute that may change.
        beta: β >= 0, how strongly the weights concentrate on the hardest negatives.
        tau_plus: τ⁺ in [0, 1), the probability that a negative shares the anchor's class.
        memory_bank_size: 0 for SimCLR (in-batch negatives), ``(entries, dim)`` for MoCo.
        gather_distributed: gather the negatives from all ranks (gradients flow back).
        hard_negatives: ``None`` (all negatives, the paper's loss), an int K or a fraction
            alpha: reweight only each anchor's K most similar negatives.
        sample_memory_bank: a memory bank indexed by sample (NPID): pass the batch's
            ``indices`` at every call; N is then the bank's size minus one.

    Example:
        >>> loss_fn = HCLLoss(temperature=0.5, beta=1.0, tau_plus=0.1)
        >>> loss = loss_fn(model(x0), model(x1))
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
        beta: float = 1.0,
        tau_plus: float = 0.1,
        memory_bank_size: int | Sequence[int] = 0,
        gather_distributed: bool = False,
        hard_negatives: HardNegatives = None,
        sample_memory_bank: SampleMemoryBank | None = None,
    ) -> None:
        super().__init__(
            ImportanceWeightedReduction(beta, tau_plus),
            hard_negatives,
            temperature,
            memory_bank_size,
            gather_distributed,
            sample_memory_bank,
        )

    @property
    def beta(self) -> float:
        return self.reduction.beta

    @property
    def tau_plus(self) -> float:
        return self.reduction.tau_plus


class DebiasedContrastiveLoss(HCLLoss):
    """The debiased contrastive loss (Chuang et al., NeurIPS 2020): :class:`HCLLoss` at β = 0.

    ``Ng = max( (Σ_j e^{s_ij/τ} - N τ⁺ e^{s_ii/τ}) / (1 - τ⁺), N e^{-1/τ} )``: the sum over the
    negatives corrected for the fraction τ⁺ of them that are in fact of the anchor's class.
    τ⁺ = 0 is Lightly's ``NTXentLoss``. Same arguments and layouts as ``NTXentLoss``; always over
    every negative (the class prior τ⁺ is a fraction of all of them, not of a top-K).

    - Debiased Contrastive Learning, Chuang, Robinson, Lin, Torralba & Jegelka, NeurIPS 2020,
      https://arxiv.org/abs/2007.00224

    Example:
        >>> loss_fn = DebiasedContrastiveLoss(temperature=0.5, tau_plus=0.1)
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
        tau_plus: float = 0.1,
        memory_bank_size: int | Sequence[int] = 0,
        gather_distributed: bool = False,
        sample_memory_bank: SampleMemoryBank | None = None,
    ) -> None:
        super().__init__(
            temperature,
            0.0,
            tau_plus,
            memory_bank_size,
            gather_distributed,
            None,
            sample_memory_bank,
        )
