"""``PairwiseLoss``: a contrastive loss composed of a layout, a selection, a reduction and a
temperature, with the arguments and ``forward(out0, out1)`` of Lightly's ``NTXentLoss``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torch import distributed as torch_dist

from lightly_temperature._validation import (
    HardNegatives,
    check_embeddings,
    check_indices,
    check_temperature,
)
from lightly_temperature.losses.capabilities import LossCapabilities
from lightly_temperature.losses.layout import (
    HostPointerMemoryBank,
    PairLayout,
    anchor_sample_indices,
    in_batch_layout,
    memory_bank_layout,
    normalized,
    observe_similarities,
    sample_bank_layout,
)
from lightly_temperature.losses.reduction import Reduction
from lightly_temperature.losses.sample_memory_bank import SampleMemoryBank
from lightly_temperature.losses.selection import NegativeSelection, selection_for
from lightly_temperature.similarity_batch import SimilarityBatch
from lightly_temperature.temperature import TemperaturePolicy


class PairwiseLoss(nn.Module):
    """A drop-in for ``lightly.loss.NTXentLoss`` made of four parts.

    - the *layout* (:mod:`~lightly_temperature.losses.layout`): SimCLR in-batch negatives
      (``memory_bank_size=0``, gathered from all ranks with ``gather_distributed``), MoCo
      memory-bank negatives (``memory_bank_size=(entries, dim)``, Lightly's
      ``MemoryBankModule``, updated with ``out1`` when ``out0`` requires a gradient), or a
      memory bank indexed by sample (``sample_memory_bank``, NPID: the anchor's own entry is
      its positive, the other entries its negatives; written with ``out1`` at the batch's
      ``indices`` when ``out0`` requires a gradient);
    - the *selection* of negatives (:mod:`~lightly_temperature.losses.selection`): all of
      them, or the top-K per anchor (``hard_negatives``);
    - the *reduction* (:mod:`~lightly_temperature.losses.reduction`): log-sum-exp (InfoNCE) or
      linear (Simple);
    - the *temperature*: a number (or a 0-d tensor / ``nn.Parameter``) that may change
      between steps, checked on every change, or a policy of
      :mod:`lightly_temperature.temperature` (scheduled, learnable, adaptive, per sample),
      held as a submodule (its state is in the loss's ``state_dict``).

    One forward, one computation path: normalise, lay out, reduce each anchor's row with the
    fused product-and-reduction node, average. Similarities are computed in float32 even
    under ``torch.autocast``. Nothing is stored for observers: a monitor reads what the loss
    compares with :meth:`similarities` (or
    :func:`~lightly_temperature.losses.layout.observe_similarities` from a forward pre-hook)
    without changing the loss's computation.

    Subclasses set ``capabilities`` (what the registry, ``use_loss`` and the study read).

    Example:
        >>> loss_fn = PairwiseLoss(LogSumExpReduction(), hard_negatives=64, temperature=0.2)
        >>> loss = loss_fn(model(x0), model(x1))
    """

    capabilities: ClassVar[LossCapabilities] = LossCapabilities(
        hard_negatives=True, sample_indices=True, sample_memory_bank=True
    )

    def __init__(
        self,
        reduction: Reduction,
        hard_negatives: HardNegatives | NegativeSelection = None,
        temperature: float | Tensor | TemperaturePolicy = 0.5,
        memory_bank_size: int | Sequence[int] = 0,
        gather_distributed: bool = False,
        sample_memory_bank: SampleMemoryBank | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(reduction, Reduction):
            raise ValueError(f"reduction must be a Reduction, got {reduction!r}")
        if sample_memory_bank is not None and not isinstance(sample_memory_bank, SampleMemoryBank):
            raise ValueError(
                "sample_memory_bank must be a SampleMemoryBank or None, got "
                f"{type(sample_memory_bank).__name__}"
            )
        self.reduction = reduction
        self.hard_negatives = hard_negatives
        self.temperature = temperature
        if gather_distributed and not torch_dist.is_available():
            raise ValueError(
                "gather_distributed=True but torch.distributed is not available in this torch build"
            )
        self.gather_distributed = bool(gather_distributed)
        self.memory_bank = HostPointerMemoryBank(
            size=memory_bank_size, gather_distributed=gather_distributed, feature_dim_first=False
        )
        if sample_memory_bank is not None and self.uses_memory_bank:
            raise ValueError(
                f"memory_bank_size={memory_bank_size!r} and a sample_memory_bank: a loss draws "
                "its negatives from one bank; use memory_bank_size=0 with sample_memory_bank"
            )
        # A registered submodule: it moves with the loss and is saved in its state dict.
        self.sample_memory_bank = sample_memory_bank
        if getattr(self.reduction, "positive_as_candidate", False) and self.uses_memory_bank:
            raise ValueError(
                f"{self.reduction!r} with memory_bank_size={memory_bank_size!r}: the paper's "
                "code compares an anchor with a bank that holds its positive (in-batch or "
                "sample_memory_bank); MoCo's bank does not"
            )

    # --- parts ----------------------------------------------------------------------------

    @property
    def hard_negatives(self) -> HardNegatives:
        """K (int), the fraction alpha (float) or ``None`` (all negatives): the selection."""
        return self.selection.hard_negatives

    @hard_negatives.setter
    def hard_negatives(self, value: HardNegatives | NegativeSelection) -> None:
        self.selection = value if isinstance(value, NegativeSelection) else selection_for(value)

    @property
    def temperature(self) -> float | Tensor | TemperaturePolicy:
        """As set: a number, a one-element tensor, or a policy (``.value``: the τ in force)."""
        return self._temperature

    def __setattr__(self, name: str, value: Any) -> None:
        if name != "temperature":
            super().__setattr__(name, value)
            return
        # A plain attribute that schedules may change between steps, checked on every change.
        # nn.Module would register an nn.Parameter (a learnable temperature) under the name
        # "temperature" and bypass the check; it goes to "_temperature" instead, replacing
        # whatever was there (a float after a parameter, or the reverse). A policy is a
        # submodule, registered under the same name.
        if isinstance(value, TemperaturePolicy):
            self._check_policy(value)
        else:
            value = check_temperature(value)
        self._parameters.pop("_temperature", None)
        self._modules.pop("_temperature", None)
        self.__dict__.pop("_temperature", None)
        super().__setattr__("_temperature", value)

    def _check_policy(self, policy: TemperaturePolicy) -> None:
        if policy.per_sample and not self.capabilities.softmax_temperature:
            raise ValueError(
                f"temperature={type(policy).__name__}: a per-sample temperature needs a "
                f"softmax temperature; {type(self).__name__}'s τ only rescales the loss"
            )

    @property
    def uses_memory_bank(self) -> bool:
        return self.memory_bank.size[0] > 0

    # --- the computation ------------------------------------------------------------------

    def forward(self, out0: Tensor, out1: Tensor, indices: Tensor | None = None) -> Tensor:
        """Loss of the two views' embeddings, shapes ``(batch_size, dim)``; mean over anchors.

        ``indices``: optional data set indices of the batch's samples, shape ``(batch_size,)``
        (from :class:`~lightly_temperature.data.IndexedDataset`), for the parts that are
        indexed by sample; required with ``sample_memory_bank`` (ValueError otherwise, and
        for an index outside the bank). Parts that are not indexed by sample ignore them.
        """
        check_embeddings(out0, out1)
        if indices is not None:
            indices = check_indices(indices, out0.shape[0])
        with torch.autocast(device_type=out0.device.type, enabled=False):
            layout = self._layout(out0.float(), out1.float(), indices)
            if layout.num_negatives == 0:
                # A batch of one sample has no negatives: the positive is alone in the
                # denominator, so the loss is 0 (NTXentLoss gives 0 too). Keep the graph.
                return layout.positive.sum() * 0.0
            k = self.selection.num_selected(layout.num_negatives)
            policy = self._temperature if isinstance(self._temperature, TemperaturePolicy) else None
            if policy is None:
                # Checked on every call: a learnable temperature changes between steps.
                temperature = check_temperature(self.temperature)
            else:
                # A policy keeps τ in its bounds by construction.
                temperature = policy(
                    layout.positive,
                    anchor_sample_indices(indices, layout.anchors.shape[0]),
                    layout.num_negatives if k is None else k,
                    self.gather_distributed,
                )
            per_anchor = self.reduction(layout, k, temperature)
            if policy is not None:
                policy.observe_losses(per_anchor)
            return per_anchor.mean()

    def _layout(self, out0: Tensor, out1: Tensor, indices: Tensor | None = None) -> PairLayout:
        views = normalized(out0, out1)
        out0, out1 = views.view0, views.view1
        sample_bank = self.sample_memory_bank
        if sample_bank is not None:
            sample_bank.check_embeddings(out0)
            layout = sample_bank_layout(out0, sample_bank, indices)
            if out0.requires_grad:
                # Replaces the bank tensor (out of place): `layout` keeps the entries compared.
                sample_bank.update(out1, layout.pos_col, self.gather_distributed)
            return layout
        if not self.uses_memory_bank:
            return in_batch_layout(views, self.gather_distributed)
        # The bank as it was before this call (a copy: the update below writes in place).
        _, bank = self.memory_bank(out1, update=out0.requires_grad)
        return memory_bank_layout(views, bank.to(device=out0.device, dtype=out0.dtype))

    def similarities(
        self, out0: Tensor, out1: Tensor, indices: Tensor | None = None
    ) -> SimilarityBatch:
        """The cosine similarities this loss compares for ``(out0, out1)``, in Lightly's layout.

        Read-only: the memory bank is not updated. Detached, float32.
        """
        return observe_similarities(self, out0, out1, indices)

    def extra_repr(self) -> str:
        return (
            f"temperature={self.temperature!r}, selection={self.selection!r}, "
            f"memory_bank_size={tuple(self.memory_bank.size)}, "
            f"gather_distributed={self.gather_distributed}"
        )
