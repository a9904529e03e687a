"""The layout part of a loss: who is compared with whom, exactly as Lightly's ``NTXentLoss``.

- SimCLR (in-batch negatives): the 2N rows of ``cat(out0, out1)`` are anchors; the candidates
  are both views of all M = N * world_size samples (gathered from every rank with
  ``gather_distributed``); each anchor has 2M - 2 negatives (itself and its positive excluded).
- MoCo (memory bank): only the rows of ``out0`` are anchors, their positive is the same row of
  ``out1`` and their negatives are the entries of the memory bank.
- A memory bank indexed by sample (NPID,
  :class:`~lightly_temperature.losses.sample_memory_bank.SampleMemoryBank`): the rows of
  ``out0`` are anchors, the candidates are all entries of the bank; an anchor's positive is
  its own sample's entry (column ``indices[i]``), every other entry is a negative.

:func:`observe_similarities` gives the similarities a loss compares for given inputs without
touching the loss (no memory bank update): what a monitor reads.

Example:
    >>> out0, out1 = torch.randn(4, 8), torch.randn(4, 8)
    >>> layout = in_batch_layout(normalized(out0, out1), gather_distributed=False)
    >>> layout.num_negatives, layout.anchors.shape, layout.candidates.shape
    (6, torch.Size([8, 8]), torch.Size([8, 8]))
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from lightly.models.modules.memory_bank import MemoryBankModule
from lightly.models.utils import concat_all_gather
from lightly.utils import dist
from torch import Tensor, nn

from lightly_temperature._validation import check_indices
from lightly_temperature.similarity_batch import SimilarityBatch
from lightly_temperature.temperature import TemperaturePolicy


@dataclass(frozen=True)
class PairLayout:
    """Anchors and candidates of one loss call (normalised embeddings, not yet multiplied).

    Attributes:
        anchors: ``(A, d)`` anchor rows.
        candidates: ``(C, d)`` rows compared with every anchor (both views of the batch, or the
            memory bank).
        self_col / pos_col: ``(A,)`` candidate column of the anchor itself and of its positive;
            ``None`` where there is none: both in MoCo mode (every candidate is a negative), the
            anchor itself over a bank indexed by sample (its positive is its sample's entry).
        num_negatives: real negatives per anchor.
        positive_exact: ``(A,)`` cosine similarity of each anchor to its positive, accumulated
            in float64 (see :meth:`positive_logits`).
    """

    anchors: Tensor
    candidates: Tensor
    self_col: Tensor | None
    pos_col: Tensor | None
    num_negatives: int
    positive_exact: Tensor

    @functools.cached_property
    def positive(self) -> Tensor:
        """``(A,)`` ``positive_exact`` rounded once to the anchors' dtype. Computed on first
        use: the losses that only need :meth:`positive_logits` never issue it."""
        return self.positive_exact.to(self.anchors.dtype)

    def positive_logits(self, temperature: float | Tensor) -> Tensor:
        """``positive / temperature``, rounded once from float64 to the anchors' dtype.

        The positive's logit and the negatives' come from different products; each rounded
        once, a positive equal to a negative (a bank entry that is the anchor's own key) gives
        the same logit up to the negatives' product's own rounding.
        """
        return (self.positive_exact / temperature).to(self.anchors.dtype)

    def excluded(self, positive_too: bool) -> Tensor | None:
        """``(A, e)`` candidate columns that are not negatives: the anchor itself, and its
        positive when ``positive_too``; ``None`` when there are none (MoCo mode)."""
        columns = [self.self_col] if self.self_col is not None else []
        if positive_too and self.pos_col is not None:
            columns.append(self.pos_col)
        return torch.stack(columns, dim=1) if columns else None

    def similarities(self, temperature: float | Tensor) -> SimilarityBatch:
        """The ``(A, C)`` similarities, ``-inf`` where a candidate is not a negative."""
        negatives = self.anchors @ self.candidates.T
        excluded = self.excluded(positive_too=True)
        if excluded is not None:
            negatives.scatter_(1, excluded, float("-inf"))
        return SimilarityBatch(self.positive, negatives, self.num_negatives, temperature)


class NormalizedViews(NamedTuple):
    """Both views L2-normalised (as ``NTXentLoss`` does before comparing them), in one tensor.

    Attributes:
        stacked: ``(2, N, d)``: ``stacked[0]`` is ``out0`` normalised, ``stacked[1]`` ``out1``;
            ``stacked.flatten(0, 1)`` is SimCLR's anchors, ``cat(out0, out1)``, without a copy.
        view0 / view1: ``stacked[0]`` and ``stacked[1]``, taken once, so that every use of a
            view shares one autograd node (a view taken per use adds a node and a backward
            copy each time).
    """

    stacked: Tensor
    view0: Tensor
    view1: Tensor

    def positive_exact(self) -> Tensor:
        """``(N,)`` dot products ``view0_i . view1_i`` accumulated in float64: one float64 copy
        of the stacked views (not one per view: fewer operations, the same bits)."""
        exact0, exact1 = self.stacked.double().unbind(0)  # its backward is one stack
        return (exact0 * exact1).sum(dim=1)


def normalized(out0: Tensor, out1: Tensor) -> NormalizedViews:
    """Both ``(N, d)`` views L2-normalised, as ``F.normalize(out, dim=1)`` on each.

    One normalisation of the stacked views: the same values and gradients, bit for bit, with
    half of autograd's operations (on a GPU each operation costs the host a launch, and at
    the batch sizes of most training runs the host bounds a loss step).
    """
    stacked = nn.functional.normalize(torch.stack([out0, out1]), dim=2)
    return NormalizedViews(stacked, stacked[0], stacked[1])


def in_batch_layout(views: NormalizedViews, gather_distributed: bool) -> PairLayout:
    """SimCLR's layout of the normalised views (see the module docstring)."""
    n = views.view0.shape[0]
    anchors = views.stacked.flatten(0, 1)  # cat(out0, out1)
    if gather_distributed and dist.world_size() > 1:
        rank = dist.rank()
        candidates = torch.cat(
            [torch.cat(dist.gather(views.view0), 0), torch.cat(dist.gather(views.view1), 0)], 0
        )
    else:
        rank = 0
        candidates = anchors
    m = candidates.shape[0] // 2  # samples over all ranks
    self_col, pos_col = _in_batch_columns(n, m, rank, anchors.device)
    # s(out0_i, out1_i) is the positive of both anchors (elementwise products commute).
    exact = views.positive_exact()
    exact = torch.cat([exact, exact])  # the same as repeat(2); cheaper for the host
    return PairLayout(anchors, candidates, self_col, pos_col, 2 * m - 2, exact)


@functools.lru_cache(maxsize=16)
def _in_batch_columns(n: int, m: int, rank: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """The candidate column of each of the 2n anchors itself and of its positive, for rank
    ``rank`` of ``m`` samples in all. The same for every batch of a shape, so built once per
    shape and device (building them took a tenth of a loss step's operations). Never written
    to; built outside inference mode, so that a first call from a validation loop gives
    tensors that training can use."""
    with torch.inference_mode(False):
        rows = torch.arange(2 * n, device=device)
        local = rows % n + rank * n
        self_col = torch.where(rows < n, local, local + m)
        pos_col = torch.where(rows < n, local + m, local)
    return self_col, pos_col


def _exact_dot(a: Tensor, b: Tensor) -> Tensor:
    """Row-wise dot products accumulated in float64 (``(A, d)``: negligible next to a product)."""
    return (a.double() * b.double()).sum(dim=1)


def memory_bank_layout(views: NormalizedViews, bank: Tensor) -> PairLayout:
    """MoCo's layout of the normalised views against ``bank`` ``(entries, dim)``."""
    out0 = views.view0
    if bank.shape[1] != out0.shape[1]:
        raise ValueError(
            f"memory_bank_size={tuple(bank.shape)} stores {bank.shape[1]}-d entries but the "
            f"embeddings are {out0.shape[1]}-d: use memory_bank_size="
            f"({bank.shape[0]}, {out0.shape[1]})"
        )
    exact = views.positive_exact()
    return PairLayout(out0, bank, None, None, bank.shape[0], exact)


def sample_bank_layout(out0: Tensor, sample_bank: Any, indices: Tensor | None) -> PairLayout:
    """The layout of normalised anchors ``out0`` over ``sample_bank`` (a ``SampleMemoryBank``)
    as it is now: anchor i's positive is entry ``indices[i]``, the N - 1 other entries are its
    negatives. The indices are checked (required, in range) and kept, int64, as ``pos_col``."""
    indices = check_sample_indices(indices, out0, sample_bank.num_samples)
    bank = sample_bank.bank.to(device=out0.device, dtype=out0.dtype)
    exact = _exact_dot(out0, bank.index_select(0, indices))
    return PairLayout(out0, bank, None, indices, bank.shape[0] - 1, exact)


def anchor_sample_indices(indices: Tensor | None, num_anchors: int) -> Tensor | None:
    """The training-sample index of each anchor, from the batch's ``(N,)`` sample indices:
    the anchors are both views of the batch in SimCLR mode (``2N``), ``out0`` in MoCo mode."""
    if indices is None:
        return None
    return indices.repeat(num_anchors // indices.shape[0])


def uses_memory_bank(loss: nn.Module) -> bool:
    """Whether ``loss`` (NTXentLoss or a loss of this package) draws negatives from a bank."""
    bank = getattr(loss, "memory_bank", None)
    return bank is not None and bank.size[0] > 0


@torch.no_grad()
def observe_similarities(
    loss: nn.Module, out0: Tensor, out1: Tensor, indices: Tensor | None = None
) -> SimilarityBatch:
    """The similarities ``loss`` compares for ``(out0, out1)``, read without changing it.

    ``indices``: the sample indices the call passed to the loss (``None`` if none); required
    by a loss over a memory bank indexed by sample (``sample_memory_bank``).

    Works for Lightly's ``NTXentLoss`` and this package's losses (both have ``temperature``,
    ``memory_bank`` and ``gather_distributed``). The memory bank is read as it is before the
    loss's update, and never written. With ``gather_distributed`` under DDP this gathers
    from every rank (a collective: every rank must call it). float32, detached.
    """
    views = normalized(out0.detach().float(), out1.detach().float())
    sample_bank = getattr(loss, "sample_memory_bank", None)
    if sample_bank is not None:
        layout = sample_bank_layout(views.view0, sample_bank, indices)
    elif uses_memory_bank(loss):
        bank = loss.memory_bank.bank.detach().to(device=views.stacked.device, dtype=torch.float32)
        layout = memory_bank_layout(views, bank)
    else:
        layout = in_batch_layout(views, bool(getattr(loss, "gather_distributed", False)))
    temperature = loss.temperature
    if isinstance(temperature, TemperaturePolicy):
        # The τ of each anchor for this call, read without changing the policy.
        temperature = temperature.anchor_temperature(
            layout.positive,
            anchor_sample_indices(indices, layout.anchors.shape[0]),
            bool(getattr(loss, "gather_distributed", False)),
        )
    if isinstance(temperature, Tensor):
        temperature = temperature.detach()
    return layout.similarities(temperature)


def check_sample_indices(indices: Tensor | None, out0: Tensor, num_samples: int) -> Tensor:
    """The batch's sample indices, required over a memory bank indexed by sample: a
    ``(batch_size,)`` integer tensor in ``[0, num_samples)`` on the embeddings' device."""
    if indices is None:
        raise ValueError(
            "indices=None, but a loss over a memory bank indexed by sample (sample_memory_bank)"
            " needs the data set index of every sample: call loss(out0, out1, indices=...) "
            "with the indices of lightly_temperature.data.IndexedDataset"
        )
    indices = check_indices(indices, out0.shape[0], num_samples)
    return indices.to(device=out0.device, dtype=torch.long)  # index_copy takes int64 only


class HostPointerMemoryBank(MemoryBankModule):
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
