"""TEMPORARY STAND-IN, to be deleted once issue 3 is merged into main.

Minimal versions of ``lightly_temperature.build_loss``, ``SimCLR`` and ``MoCo`` (issue 3), just
enough for the study to run until the real ones land. Nothing outside
``lightly_temperature.study`` may import this module.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import pytorch_lightning as pl
import torch
from lightly.loss import NTXentLoss
from lightly.models.modules import MoCoProjectionHead, SimCLRProjectionHead
from lightly.models.utils import deactivate_requires_grad, update_momentum
from lightly.utils.scheduler import cosine_schedule
from torch import Tensor, nn

from lightly_temperature.losses import HardContrastiveLoss, HardSimpleLoss, SimpleLoss

LOSSES = {
    "ntxent": NTXentLoss,
    "hard_contrastive": HardContrastiveLoss,
    "simple": SimpleLoss,
    "hard_simple": HardSimpleLoss,
}


def registered_losses() -> tuple[str, ...]:
    return tuple(LOSSES)


def build_loss(name: str, **kwargs: Any) -> nn.Module:
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}, known: {', '.join(LOSSES)}")
    return LOSSES[name](**kwargs)


class SimCLR(pl.LightningModule):
    def __init__(
        self,
        backbone: nn.Module,
        feature_dim: int,
        loss: str = "ntxent",
        hidden_dim: int = 128,
        output_dim: int = 128,
        lr: float = 0.06,
        **loss_kwargs: Any,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.projection_head = SimCLRProjectionHead(feature_dim, hidden_dim, output_dim)
        self.criterion = build_loss(loss, **loss_kwargs)
        self.lr = lr

    def forward(self, x: Tensor) -> Tensor:
        return self.projection_head(self.backbone(x).flatten(start_dim=1))

    def training_step(self, batch: Sequence[Any], batch_idx: int) -> dict[str, Tensor]:
        x0, x1 = batch[0]
        z0, z1 = self(x0), self(x1)
        loss = self.criterion(z0, z1)
        self.log("train_loss", loss, prog_bar=True)
        return {"loss": loss, "embeddings": (z0.detach(), z1.detach())}

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr, momentum=0.9, weight_decay=5e-4)


class MoCo(pl.LightningModule):
    def __init__(
        self,
        backbone: nn.Module,
        feature_dim: int,
        loss: str = "ntxent",
        hidden_dim: int = 128,
        output_dim: int = 128,
        lr: float = 0.06,
        memory_bank_size: tuple[int, int] = (4096, 128),
        **loss_kwargs: Any,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.projection_head = MoCoProjectionHead(feature_dim, hidden_dim, output_dim)
        self.backbone_momentum = copy.deepcopy(self.backbone)
        self.projection_head_momentum = copy.deepcopy(self.projection_head)
        deactivate_requires_grad(self.backbone_momentum)
        deactivate_requires_grad(self.projection_head_momentum)
        self.criterion = build_loss(loss, memory_bank_size=memory_bank_size, **loss_kwargs)
        self.lr = lr

    def forward(self, x: Tensor) -> Tensor:
        return self.projection_head(self.backbone(x).flatten(start_dim=1))

    def forward_momentum(self, x: Tensor) -> Tensor:
        z = self.projection_head_momentum(self.backbone_momentum(x).flatten(start_dim=1))
        return z.detach()

    def training_step(self, batch: Sequence[Any], batch_idx: int) -> dict[str, Tensor]:
        momentum = cosine_schedule(self.current_epoch, max(1, self.trainer.max_epochs), 0.996, 1)
        update_momentum(self.backbone, self.backbone_momentum, m=momentum)
        update_momentum(self.projection_head, self.projection_head_momentum, m=momentum)
        x_query, x_key = batch[0]
        query, key = self(x_query), self.forward_momentum(x_key)
        loss = self.criterion(query, key)
        self.log("train_loss", loss, prog_bar=True)
        return {"loss": loss, "embeddings": (query.detach(), key)}

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr, momentum=0.9, weight_decay=5e-4)
