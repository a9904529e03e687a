"""A memory bank indexed by sample: instance discrimination (NPID, Wu et al., CVPR 2018), the
protocol Wang & Liu trained their losses with.

The bank holds one L2-normalised entry per training sample. Each anchor is compared with every
entry: its *own* entry (the sample's embedding from earlier steps) is its positive, every other
entry a negative. After the step the batch's entries are moved towards the new embeddings,
``v_i <- normalize(m v_i + (1 - m) f(x_i))`` with NPID's momentum m = 0.5.

Any loss of this package runs over it: pass ``sample_memory_bank=SampleMemoryBank(...)`` to the
loss and the batch's data set indices at every call (``loss(out0, out1, indices=...)``, from
:class:`~lightly_temperature.data.IndexedDataset`). The selection (``hard_negatives``) and the
reduction are the loss's own, so ``HardContrastiveLoss(hard_negatives=4095, ...)`` over a bank
of 50,000 entries is the paper's hard contrastive loss.

Example (a module of your own)::

    class NPIDModule(pl.LightningModule):
        def __init__(self, num_samples):
            super().__init__()
            self.backbone = ...                     # images -> 128-d projections
            self.criterion = HardContrastiveLoss(
                temperature=0.07,
                hard_negatives=4095,
                sample_memory_bank=SampleMemoryBank(num_samples, dim=128),
            )

        def training_step(self, batch, batch_idx):
            (x, *_), _, indices = batch             # IndexedDataset: (views, label, index)
            z = self.backbone(x)
            # out0: the anchors; out1: what the bank stores for these samples (NPID: the
            # anchors' own embeddings)
            return self.criterion(z, z, indices=indices)

    loader = DataLoader(IndexedDataset(my_dataset), batch_size=128, shuffle=True)
"""

from __future__ import annotations

import math

import torch
from lightly.models.utils import concat_all_gather
from lightly.utils import dist
from torch import Tensor, nn

from lightly_temperature._validation import check_int, check_unit_interval

#: NPID's momentum of the bank update (Wu et al. 2018; Wang & Liu's code, ``--m 0.5``).
NPID_MOMENTUM = 0.5


class SampleMemoryBank(nn.Module):
    """One entry per training sample, written by sample index with momentum.

    Args:
        num_samples: entries, one per sample of the training set (indices in
            ``[0, num_samples)``).
        dim: the embeddings' dimension.
        momentum: m in ``[0, 1)``: an entry becomes ``normalize(m * old + (1 - m) * new)``;
            0 stores the new embedding as it is. Default NPID's 0.5.

    The entries start as NPID's do, uniform in ``[-s, s]`` with ``s = 1/sqrt(dim/3)`` (rows of
    norm about 1), and are then L2-normalised (NPID compares with them un-normalised until a
    sample's first update; the difference is the first epoch's noise scale, nothing else). The
    start is drawn from torch's default generator: seed it for a reproducible bank.

    ``bank`` is a buffer: it moves with the module (``.to(device)``) and is saved in its state
    dict. An update replaces it by a new tensor (one copy of the bank per training step), so
    that a step's backward still reads the entries its forward compared with, and a monitor
    reading ``bank`` never sees a half-written one. Under DDP with ``gather_distributed`` the
    indices and embeddings of every rank are gathered before the update, so every rank holds
    the same bank (every rank must pass batches of the same size).

    If one sample appears twice in a batch (a sampler with replacement), which of its two
    updates is kept is unspecified.
    """

    bank: Tensor

    def __init__(self, num_samples: int, dim: int, momentum: float = NPID_MOMENTUM) -> None:
        super().__init__()
        self.num_samples = check_int(num_samples, "num_samples", minimum=2)
        self.dim = check_int(dim, "dim", minimum=1)
        momentum = check_unit_interval(momentum, "momentum")
        if momentum >= 1:
            raise ValueError(
                f"momentum must be in [0, 1) (1 would never write the bank), got {momentum!r}"
            )
        self.momentum = momentum
        scale = 1.0 / math.sqrt(self.dim / 3.0)
        start = torch.rand(self.num_samples, self.dim).mul_(2 * scale).sub_(scale)
        self.register_buffer("bank", nn.functional.normalize(start, dim=1))

    def check_embeddings(self, embeddings: Tensor) -> None:
        if embeddings.shape[1] != self.dim:
            raise ValueError(
                f"the sample memory bank stores {self.dim}-d entries (dim={self.dim}) but the "
                f"embeddings are {embeddings.shape[1]}-d"
            )

    @torch.no_grad()
    def update(self, embeddings: Tensor, indices: Tensor, gather_distributed: bool) -> None:
        """Move the entries of ``indices`` towards the L2-normalised ``embeddings``."""
        new = nn.functional.normalize(embeddings.detach().float(), dim=1)
        indices = indices.to(self.bank.device)
        if gather_distributed and dist.world_size() > 1:
            new = concat_all_gather(new.contiguous())
            indices = concat_all_gather(indices.contiguous())
        new = new.to(device=self.bank.device, dtype=self.bank.dtype)
        if self.momentum > 0:
            new = self.momentum * self.bank.index_select(0, indices) + (1 - self.momentum) * new
            new = nn.functional.normalize(new, dim=1)
        # Out of place: the previous tensor stays intact for the backward of this step.
        self.bank = self.bank.index_copy(0, indices, new)

    def extra_repr(self) -> str:
        return f"num_samples={self.num_samples}, dim={self.dim}, momentum={self.momentum}"
