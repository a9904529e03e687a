"""Ready MoCo LightningModule (Lightly's ``examples/pytorch_lightning/moco.py``) whose loss is
one argument."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from lightly.models.modules import MoCoProjectionHead
from lightly.models.utils import deactivate_requires_grad, update_momentum
from lightly.utils.scheduler import cosine_schedule
from pytorch_lightning.utilities import rank_zero_warn
from torch import Tensor, nn

from lightly_temperature._validation import check_unit_interval
from lightly_temperature.models._base import (
    LOSS_DEFAULT,
    ContrastiveModule,
    HardNegativesArgument,
    call_loss,
    loss_settings,
    make_loss,
    two_views,
)


class MoCo(ContrastiveModule):
    """MoCo (v2 head) as in Lightly's example, with the hard contrastive loss by default.

    A query encoder (``backbone``, ``projection_head``) trained by SGD, a key encoder
    (``backbone_momentum``, ``projection_head_momentum``) following it by
    ``update_momentum`` with a momentum rising from ``momentum_start`` to 1 by
    ``cosine_schedule`` over the epochs, and a memory bank of past keys as negatives.

    Args:
        backbone, feature_dim: as in :class:`SimCLR` (default Lightly's ResNet-18, 512).
        hidden_dim, output_dim: ``MoCoProjectionHead`` sizes (Lightly's example: 512, 128).
        memory_bank_size: entries of the bank (an int) or Lightly's ``(entries, dim)`` tuple,
            whose dim must be ``output_dim``. Default ``(4096, 128)`` as in Lightly's example.
        momentum_start: key-encoder momentum at epoch 0 (Lightly: 0.996).
        loss, temperature, hard_negatives, lr, momentum, weight_decay, max_epochs,
        gather_distributed, **loss_kwargs: as in :class:`SimCLR`; with ``gather_distributed``
            the keys of all processes enter the bank.

    ``training_step`` returns ``{"loss": loss, "embeddings": (query, key)}`` (detached).

    Example:
        >>> model = MoCo(loss="hard_contrastive", temperature=0.2, hard_negatives=0.0819)
        >>> pl.Trainer(max_epochs=10).fit(model, dataloader)
    """

    def __init__(
        self,
        backbone: nn.Module | None = None,
        feature_dim: int | None = None,
        hidden_dim: int = 512,
        output_dim: int = 128,
        memory_bank_size: int | Sequence[int] = 4096,
        momentum_start: float = 0.996,
        loss: str | nn.Module = "hard_contrastive",
        temperature: float | None = None,
        hard_negatives: HardNegativesArgument = LOSS_DEFAULT,
        lr: float = 0.06,
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        max_epochs: int | None = None,
        optimizer: str = "sgd",
        lr_milestones: Sequence[int] | None = None,
        gather_distributed: bool = True,
        **loss_kwargs: Any,
    ) -> None:
        super().__init__(
            backbone,
            feature_dim,
            loss,
            lr,
            momentum,
            weight_decay,
            max_epochs,
            optimizer,
            lr_milestones,
        )
        self.momentum_start = check_unit_interval(momentum_start, "momentum_start")
        self.projection_head = MoCoProjectionHead(self.feature_dim, hidden_dim, output_dim)
        self.backbone_momentum = copy.deepcopy(self.backbone)
        self.projection_head_momentum = copy.deepcopy(self.projection_head)
        deactivate_requires_grad(self.backbone_momentum)
        deactivate_requires_grad(self.projection_head_momentum)
        if isinstance(loss, str):
            loss_kwargs.setdefault("memory_bank_size", _bank_size(memory_bank_size, output_dim))
        self.criterion = make_loss(
            loss,
            {"gather_distributed": gather_distributed},
            loss_kwargs,
            loss_settings(temperature, hard_negatives),
        )

    def forward(self, x: Tensor) -> Tensor:
        """Query projections of a batch of images."""
        query = self.backbone(x).flatten(start_dim=1)
        return self.projection_head(query)

    @torch.no_grad()
    def forward_momentum(self, x: Tensor) -> Tensor:
        """Key projections (momentum encoder, no gradient)."""
        key = self.backbone_momentum(x).flatten(start_dim=1)
        return self.projection_head_momentum(key).detach()

    def on_train_start(self) -> None:
        warn_if_bank_exceeds_data(self.criterion, self.trainer)

    def training_step(self, batch: Any, batch_idx: int) -> dict[str, Any]:
        momentum = cosine_schedule(self.current_epoch, self.max_epochs, self.momentum_start, 1.0)
        update_momentum(self.backbone, self.backbone_momentum, m=momentum)
        update_momentum(self.projection_head, self.projection_head_momentum, m=momentum)
        x_query, x_key = two_views(batch)
        query = self.forward(x_query)
        key = self.forward_momentum(x_key)
        loss = call_loss(self.criterion, query, key, batch)
        self.log("train_loss", loss, prog_bar=True, batch_size=x_query.shape[0])
        return {"loss": loss, "embeddings": (query.detach(), key)}


def warn_if_bank_exceeds_data(criterion: nn.Module, trainer: Any) -> str | None:
    """Warns (once, on rank zero) when the memory bank holds more keys than the training set
    has samples: every image then has several keys in the bank, and those of the anchor's own
    image (its earlier augmentations) are among its negatives. Returns the warning, if any."""
    bank = getattr(criterion, "memory_bank", None)
    entries = int(bank.size[0]) if bank is not None and len(bank.size) > 0 else 0
    loader = getattr(trainer, "train_dataloader", None) if trainer is not None else None
    dataset = getattr(loader, "dataset", None)
    try:
        samples = len(dataset) * trainer.world_size if dataset is not None else None
    except TypeError:  # an iterable data set without a length
        samples = None
    if entries == 0 or samples is None or entries <= samples:
        return None
    message = (
        f"the MoCo memory bank holds {entries} keys but the training set has {samples} "
        f"samples: each image has about {entries / samples:.1f} keys in the bank, and those of "
        "the anchor's own image are among its negatives. Use memory_bank_size <= "
        f"{samples}."
    )
    rank_zero_warn(message)
    return message


def _bank_size(memory_bank_size: int | Sequence[int], output_dim: int) -> tuple:
    if isinstance(memory_bank_size, bool):
        raise ValueError(
            f"memory_bank_size must be an int or (entries, dim), got {memory_bank_size!r}"
        )
    if isinstance(memory_bank_size, int):
        size = (memory_bank_size, output_dim)
    else:
        size = tuple(memory_bank_size)
    if len(size) != 2 or not all(isinstance(s, int) for s in size) or size[0] < 1:
        raise ValueError(
            f"memory_bank_size must be an int >= 1 or an (entries, dim) tuple, got "
            f"{memory_bank_size!r}"
        )
    if size[1] != output_dim:
        raise ValueError(
            f"memory_bank_size={memory_bank_size!r} stores {size[1]}-d keys but the projection "
            f"head outputs output_dim={output_dim}: use memory_bank_size=({size[0]}, {output_dim})"
        )
    return size
