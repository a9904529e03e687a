"""Ready SimCLR LightningModule (Lightly's ``examples/pytorch_lightning/simclr.py``) whose loss
is one argument."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lightly.models.modules import SimCLRProjectionHead
from torch import Tensor, nn

from lightly_temperature.models._base import (
    LOSS_DEFAULT,
    ContrastiveModule,
    HardNegativesArgument,
    call_loss,
    loss_settings,
    make_loss,
    two_views,
)


class SimCLR(ContrastiveModule):
    """SimCLR as in Lightly's example, with the hard contrastive loss by default.

    ``backbone -> flatten -> SimCLRProjectionHead``; the loss compares the two views of each
    image with in-batch negatives (gathered from all processes under DDP).

    Args:
        backbone: any module mapping images to features; default Lightly's ResNet-18
            (torchvision's without ``fc``, 512 features).
        feature_dim: features per image of ``backbone`` (read from ``backbone.feature_dim`` when
            it has one, as :class:`SmallCNN` and :func:`resnet18_backbone` do).
        hidden_dim, output_dim: projection head sizes (Lightly's example: 2048, 2048).
        loss: a registry name (``"hard_contrastive"``, ``"ntxent"``, ``"simple"``,
            ``"hard_simple"``, or a plugin's) or a loss module.
        temperature: tau of the loss, a float > 0 (``--model.temperature 0.3`` in
            LightningCLI); ``None``: the loss's default.
        hard_negatives: K of the loss: an int K >= 1, a fraction alpha in (0, 1], ``None``
            for all negatives, or ``"default"``: the loss's default (the paper's alpha =
            0.0819 for the hard losses). Given to a loss that takes no ``hard_negatives``
            (``"ntxent"``) it is an error.
        lr, momentum, weight_decay: SGD (lr 0.06 as in Lightly's example), with a cosine
            learning-rate decay over ``max_epochs``.
        max_epochs: epochs of the schedule; default the trainer's ``max_epochs``.
        optimizer: ``"sgd"`` (default) or ``"adamw"`` (``momentum`` unused).
        lr_milestones: epochs where the learning rate is multiplied by 0.1 (the paper's step
            decay, e.g. ``(160, 190)``) instead of the cosine decay.
        gather_distributed: passed to the loss (default True: under DDP the negatives come
            from all processes, as in Lightly's distributed examples; no effect on one device).
        **loss_kwargs: other arguments of the loss (e.g. HCL's ``beta``), passed as they
            are. LightningCLI does not see them: there, pick such a loss with its arguments
            by building the module in Python, or register a loss with those defaults.

    ``training_step`` returns ``{"loss": loss, "embeddings": (z0, z1)}`` (the projections of the
    two views, detached): callbacks read them in ``on_train_batch_end`` without a second
    forward pass.

    Example:
        >>> model = SimCLR(loss="hard_contrastive", temperature=0.5, hard_negatives=0.0819)
        >>> trainer = pl.Trainer(max_epochs=10)
        >>> trainer.fit(model, DataLoader(LightlyDataset(path, SimCLRTransform()), 256))
    """

    def __init__(
        self,
        backbone: nn.Module | None = None,
        feature_dim: int | None = None,
        hidden_dim: int = 2048,
        output_dim: int = 2048,
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
        self.projection_head = SimCLRProjectionHead(self.feature_dim, hidden_dim, output_dim)
        self.criterion = make_loss(
            loss,
            {"gather_distributed": gather_distributed},
            loss_kwargs,
            loss_settings(temperature, hard_negatives),
        )

    def forward(self, x: Tensor) -> Tensor:
        """Projections of a batch of images."""
        features = self.backbone(x).flatten(start_dim=1)
        return self.projection_head(features)

    def training_step(self, batch: Any, batch_idx: int) -> dict[str, Any]:
        x0, x1 = two_views(batch)
        z0 = self.forward(x0)
        z1 = self.forward(x1)
        loss = call_loss(self.criterion, z0, z1, batch)
        self.log("train_loss", loss, prog_bar=True, batch_size=x0.shape[0])
        return {"loss": loss, "embeddings": (z0.detach(), z1.detach())}
