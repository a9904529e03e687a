"""Shared machinery of the drop-in losses: Lightly's SimCLR and MoCo similarity layouts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from lightly.models.modules.memory_bank import MemoryBankModule
from lightly.models.utils import concat_all_gather
from lightly.utils import dist
from torch import Tensor, nn
from torch import distributed as torch_dist

from lightly_temperature._validation import (
    HardNegatives,
    check_embeddings,
    check_hard_negatives,
    check_temperature,
)


@dataclass
class SimilarityBatch:
    """Similarities of one loss call, as the loss saw them (float32, detached when stored).

    Attributes:
        positive: ``(A,)`` similarity (or logit, see ``scale``) of each anchor to its positive.
        negatives: ``(A, C)`` similarities to the candidate negatives; ``-inf`` marks the
            entries that are not negatives (the anchor itself and its positive in SimCLR mode).
        num_negatives: real negatives per anchor (``2M - 2`` in SimCLR mode, the bank size in
            MoCo mode).
        temperature: the temperature of the call.
    """

    positive: Tensor
    negatives: Tensor
    num_negatives: int
    temperature: float | Tensor

    def detach(self) -> SimilarityBatch:
        return SimilarityBatch(
            self.positive.detach(), self.negatives.detach(), self.num_negatives, self.temperature
        )


@dataclass
class PairLayout:
    """Who is compared with whom in one loss call (normalised embeddings, not yet multiplied).

    Attributes:
        anchors: ``(A, d)`` anchor rows.
        candidates: ``(C, d)`` rows compared with every anchor (both views of the batch, or the
            memory bank as a transposed view).
        positive: ``(A,)`` similarity of each anchor to its positive.
        self_col / pos_col: ``(A,)`` candidate column of the anchor itself and of its positive
            (SimCLR mode), ``None`` in MoCo mode where every candidate is a negative.
        num_negatives: real negatives per anchor.
        temperature: the temperature of the call.
    """

    anchors: Tensor
    candidates: Tensor
    positive: Tensor
    self_col: Tensor | None
    pos_col: Tensor | None
    num_negatives: int
    temperature: float | Tensor


class PairwiseLoss(nn.Module):
    """Base class: builds positives and negatives exactly as ``lightly.loss.NTXentLoss`` does.

    - SimCLR mode (``memory_bank_size=0``): the 2N rows of ``cat(out0, out1)`` are anchors; the
      candidates are both views of all M = N * world_size samples; each anchor has 2M - 2
      negatives (itself and its positive excluded).
    - MoCo mode: only the rows of ``out0`` are anchors, their positive is the same row of
      ``out1`` and their negatives are the entries of Lightly's ``MemoryBankModule``, which is
      then updated with ``out1`` when ``out0`` requires a gradient (as NTXentLoss does).

    Similarities are computed in float32 even under ``torch.autocast``. Subclasses implement
    :meth:`loss_from_similarities` (the general path, on a :class:`SimilarityBatch`) and may
    implement ``_fused_loss`` (the fast path used by ``forward``: one autograd node for the
    similarity product and the reduction over negatives, see ``losses/_fused.py``).
    """

    def __init__(
        self,
        temperature: float = 0.5,
        memory_bank_size: int | Sequence[int] = 0,
        gather_distributed: bool = False,
        hard_negatives: HardNegatives = None,
    ) -> None:
        super().__init__()
        self.temperature = temperature
        self.hard_negatives = check_hard_negatives(hard_negatives)
        if gather_distributed and not torch_dist.is_available():
            raise ValueError(
                "gather_distributed=True but torch.distributed is not available in this torch build"
            )
        self.gather_distributed = bool(gather_distributed)
        self.memory_bank = _MemoryBank(size=memory_bank_size, gather_distributed=gather_distributed)
        #: When True, the similarities of the last call are kept (detached) in
        #: ``last_similarities`` for callbacks such as ``HardnessMonitor``; no extra compute.
        self.store_similarities = False
        self.last_similarities: SimilarityBatch | None = None

    @property
    def temperature(self) -> float | Tensor:
        return self._temperature

    def __setattr__(self, name: str, value: Any) -> None:
        if name != "temperature":
            super().__setattr__(name, value)
            return
        # A plain attribute that schedules may change between steps, checked on every change.
        # nn.Module would register an nn.Parameter (a learnable temperature) under the name
        # "temperature" and bypass the check; it goes to "_temperature" instead, replacing
        # whatever was there (a float after a parameter, or the reverse).
        value = check_temperature(value)
        self._parameters.pop("_temperature", None)
        self.__dict__.pop("_temperature", None)
        super().__setattr__("_temperature", value)

    @property
    def uses_memory_bank(self) -> bool:
        return self.memory_bank.size[0] > 0

    def loss_from_similarities(self, batch: SimilarityBatch) -> Tensor:
        """Per-anchor losses ``(A,)`` from the similarities of one call."""
        raise NotImplementedError

    def forward(self, out0: Tensor, out1: Tensor) -> Tensor:
        """Loss of the two views' embeddings, shapes ``(batch_size, dim)``; mean over anchors."""
        check_embeddings(out0, out1)
        device_type = out0.device.type
        with torch.autocast(device_type=device_type, enabled=False):
            layout = self._layout(out0.float(), out1.float())
            if layout.num_negatives == 0:
                # A batch of one sample has no negatives: the positive is alone in the
                # denominator, so the loss is 0 (NTXentLoss gives 0 too). Keep the graph.
                if self.store_similarities:
                    self.last_similarities = self._batch_from_layout(layout).detach()
                return layout.positive.sum() * 0.0
            loss = self._fused_loss(layout)
            if loss is None:
                batch = self._batch_from_layout(layout)
                if self.store_similarities:
                    self.last_similarities = batch.detach()
                loss = self.loss_from_similarities(batch)
            return loss.mean()

    def _fused_loss(self, layout: PairLayout) -> Tensor | None:
        """Per-anchor losses computed without materialising a :class:`SimilarityBatch`.

        Subclasses return ``None`` to fall back to :meth:`loss_from_similarities`; when
        ``store_similarities`` is set they must fill ``last_similarities`` themselves (see
        :meth:`_store`).
        """
        return None

    def _store(self, layout: PairLayout, negatives: Tensor, scaled: bool) -> None:
        """Keeps ``last_similarities`` from the matrix a fused loss computed anyway.

        ``negatives`` (detached, not needed by autograd) is modified in place: the positive
        column gets ``-inf`` and, if ``scaled``, logits ``s / tau`` are turned back into
        similarities (equal to the direct product up to float32 rounding).
        """
        if layout.pos_col is not None:
            negatives.scatter_(1, layout.pos_col.unsqueeze(1), float("-inf"))
        if scaled:
            temperature = layout.temperature
            if isinstance(temperature, Tensor):
                temperature = temperature.detach()
            negatives.mul_(temperature)
        self.last_similarities = SimilarityBatch(
            layout.positive.detach(), negatives, layout.num_negatives, layout.temperature
        )

    def similarities(self, out0: Tensor, out1: Tensor) -> SimilarityBatch:
        """Cosine similarities of anchors to positives and negatives, in Lightly's layout."""
        return self._batch_from_layout(self._layout(out0, out1))

    def _layout(self, out0: Tensor, out1: Tensor) -> PairLayout:
        out0 = nn.functional.normalize(out0, dim=1)
        out1 = nn.functional.normalize(out1, dim=1)
        if self.uses_memory_bank:
            return self._memory_bank_layout(out0, out1)
        return self._in_batch_layout(out0, out1)

    @staticmethod
    def _batch_from_layout(layout: PairLayout) -> SimilarityBatch:
        sims = layout.anchors @ layout.candidates.T
        if layout.self_col is not None:
            excluded = torch.stack([layout.self_col, layout.pos_col], dim=1)
            sims = sims.scatter(1, excluded, float("-inf"))
        return SimilarityBatch(layout.positive, sims, layout.num_negatives, layout.temperature)

    def _memory_bank_layout(self, out0: Tensor, out1: Tensor) -> PairLayout:
        bank_dim = self.memory_bank.size[1]
        if bank_dim != out0.shape[1]:
            raise ValueError(
                f"memory_bank_size={tuple(self.memory_bank.size)} stores {bank_dim}-d entries but "
                f"the embeddings are {out0.shape[1]}-d: use memory_bank_size="
                f"({self.memory_bank.size[0]}, {out0.shape[1]})"
            )
        out1, bank = self.memory_bank(out1, update=out0.requires_grad)
        bank = bank.to(device=out0.device, dtype=out0.dtype)  # (dim, entries)
        positive = (out0 * out1).sum(dim=1)
        return PairLayout(out0, bank.T, positive, None, None, bank.shape[1], self.temperature)

    def _in_batch_layout(self, out0: Tensor, out1: Tensor) -> PairLayout:
        n = out0.shape[0]
        anchors = torch.cat([out0, out1], 0)
        if self.gather_distributed and dist.world_size() > 1:
            rank = dist.rank()
            candidates = torch.cat(
                [torch.cat(dist.gather(out0), 0), torch.cat(dist.gather(out1), 0)], 0
            )
        else:
            rank = 0
            candidates = anchors
        m = candidates.shape[0] // 2  # samples over all ranks
        # Column of each anchor itself and of its positive, built on the anchors' device.
        rows = torch.arange(2 * n, device=out0.device)
        local = rows % n + rank * n
        self_col = torch.where(rows < n, local, local + m)
        pos_col = torch.where(rows < n, local + m, local)
        # s(out0_i, out1_i) is the positive of both anchors (elementwise products commute).
        positive = (out0 * out1).sum(dim=1).repeat(2)
        return PairLayout(
            anchors, candidates, positive, self_col, pos_col, 2 * m - 2, self.temperature
        )


class _MemoryBank(MemoryBankModule):
    """Lightly's ``MemoryBankModule`` with its write pointer kept on the host.

    Lightly reads the pointer back from its device buffer (``int(self.bank_ptr)``) on every
    update: a host-device synchronisation per training step on a GPU. Here the pointer is a
    Python int; the buffer is still written (asynchronously) so that it reads the same as
    Lightly's. Same update rule, same ``(output, bank)`` contract.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._host_ptr = 0

    @torch.no_grad()
    def _dequeue_and_enqueue(self, batch: Tensor) -> None:
        if self.gather_distributed and dist.world_size() > 1:
            batch = concat_all_gather(batch.contiguous())
        entries = self.size[0]
        ptr = self._host_ptr
        if ptr + batch.shape[0] >= entries:
            self.bank[ptr:] = batch[: entries - ptr].detach()
            ptr = 0
        else:
            self.bank[ptr : ptr + batch.shape[0]] = batch.detach()
            ptr += batch.shape[0]
        self._host_ptr = ptr
        self.bank_ptr.fill_(ptr)
