"""The decoupled contrastive loss (Yeh et al., ECCV 2022), DCL and its weighted DCLW."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from torch import Tensor

from lightly_temperature.losses.capabilities import LossCapabilities
from lightly_temperature.losses.layout import PairLayout
from lightly_temperature.losses.pairwise_loss import PairwiseLoss
from lightly_temperature.losses.reduction import DecoupledReduction
from lightly_temperature.temperature import TemperaturePolicy


class DecoupledContrastiveLoss(PairwiseLoss):
    """DCL: InfoNCE with the positive removed from the denominator.

    ``L_i = -w_i s_ii/τ + log Σ_{k ≠ i} e^{s_ik/τ}`` over the 2N - 2 in-batch negatives of each
    anchor (both views of the other samples), averaged over the 2N anchors of both views.
    ``w_i = 1`` is DCL; ``weight_sigma=σ`` gives DCLW's negative von Mises-Fisher weights
    ``w_i = 2 - N softmax(s_ii/σ)`` over the N samples of the batch (detached). With a number
    as ``temperature`` this is Lightly's ``DCLLoss`` (``weight_sigma=None``) or ``DCLWLoss``
    (``weight_sigma=sigma``), tested equal, also with ``gather_distributed`` (the negatives
    from every rank, the weights over each rank's own samples); this class also takes a
    temperature policy of :mod:`lightly_temperature.temperature` (schedule, learnable,
    adaptive). Parts: :class:`~lightly_temperature.losses.reduction.DecoupledReduction` over
    all negatives.

    Not supported, each refused with a ``ValueError``: MoCo mode (``memory_bank_size`` other
    than 0; Lightly's DCL has no memory bank either), a per-sample temperature
    (``IndividualTemperature``: its update assumes the InfoNCE form of the loss), and a call
    without negatives (a batch of one sample on one process: the loss would be -inf, as
    Lightly's is).

    - Decoupled Contrastive Learning, Yeh, Hong, Hsu, Liu, Chen & LeCun, ECCV 2022,
      https://arxiv.org/abs/2110.06848

    Args:
        temperature: τ > 0, a softmax temperature, or a temperature policy.
        weight_sigma: σ > 0 of DCLW's weights (Lightly's default 0.5), ``None`` for DCL.
        gather_distributed: gather the negatives from all ranks (gradients flow back).
        memory_bank_size: 0 only (in-batch negatives), taken for NTXentLoss's signature.

    Example:
        >>> from lightly_temperature.temperature import CosineTemperature
        >>> loss_fn = DecoupledContrastiveLoss(temperature=CosineTemperature(0.1, 0.5, 400))
        >>> loss = loss_fn(model(x0), model(x1))
    """

    capabilities: ClassVar[LossCapabilities] = LossCapabilities(
        softmax_temperature=True,
        hard_negatives=False,
        memory_bank=False,
        gather_distributed=True,
    )

    def __init__(
        self,
        temperature: float | Tensor | TemperaturePolicy = 0.1,
        weight_sigma: float | None = None,
        gather_distributed: bool = False,
        memory_bank_size: int | Sequence[int] = 0,
    ) -> None:
        if memory_bank_size not in (0, None):
            raise ValueError(
                f"memory_bank_size={memory_bank_size!r}: DecoupledContrastiveLoss compares "
                "in-batch negatives only (no MoCo mode); use memory_bank_size=0"
            )
        super().__init__(
            DecoupledReduction(weight_sigma),
            None,
            temperature,
            0,
            gather_distributed,
        )

    def _check_policy(self, policy: TemperaturePolicy) -> None:
        if policy.per_sample:
            raise ValueError(
                f"temperature={type(policy).__name__}: DecoupledContrastiveLoss takes no "
                "per-sample temperature (its update assumes the InfoNCE form of the loss); "
                "use a number, ConstantTemperature, CosineTemperature, LearnableTemperature "
                "or AdaptiveTemperature"
            )
        super()._check_policy(policy)

    def _layout(self, out0: Tensor, out1: Tensor, indices: Tensor | None = None) -> PairLayout:
        layout = super()._layout(out0, out1, indices)
        if layout.num_negatives == 0:
            # InfoNCE is 0 without negatives; DCL's denominator would be an empty sum.
            raise ValueError(
                f"out0 has {out0.shape[0]} sample(s) and no negatives: the decoupled loss "
                "needs at least 2 samples in the (gathered) batch"
            )
        return layout

    @property
    def weight_sigma(self) -> float | None:
        return self.reduction.weight_sigma
