"""Ready NPID LightningModule: instance discrimination over a memory bank indexed by sample
(Wu et al., CVPR 2018), the protocol Wang & Liu trained their losses with."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lightly.models.modules import MoCoProjectionHead
from torch import Tensor, nn

from lightly_temperature._validation import check_int, check_unit_interval
from lightly_temperature.losses.sample_memory_bank import NPID_MOMENTUM, SampleMemoryBank
from lightly_temperature.models._base import ContrastiveModule, make_loss, sample_indices
from lightly_temperature.registry import loss_capabilities


class NPID(ContrastiveModule):
    """NPID with any loss of the package: one augmented view per sample and step, compared
    with a bank holding one entry per training sample.

    Each step embeds the first view of the batch, ``z = head(backbone(x))``; the loss compares
    each ``z_i`` with every bank entry, its own sample's entry being its positive, and the bank
    then moves the batch's entries towards ``z`` (momentum ``bank_momentum``, NPID's 0.5). The
    training loader must yield the samples' data set indices:
    :class:`~lightly_temperature.data.IndexedDataset` around the data set.

    Args:
        num_samples: size of the training set (entries of the bank).
        backbone, feature_dim: as in :class:`~lightly_temperature.models.SimCLR`.
        hidden_dim, output_dim: the head; ``hidden_dim=None`` is the paper's linear layer to
            ``output_dim`` (128), an int a ``MoCoProjectionHead`` (two layers).
        bank_momentum: m of the bank update, in [0, 1).
        loss: a registry name whose class takes ``sample_memory_bank`` (``"contrastive"``,
            ``"hard_contrastive"``, ``"simple"``, ``"hard_simple"``, ``"hcl"``,
            ``"debiased"``), or a loss module built with one.
        lr, momentum, weight_decay, max_epochs, optimizer, lr_milestones: as in
            :class:`~lightly_temperature.models.SimCLR`; the paper's SGD lr 0.03, momentum 0.9,
            weight decay 5e-4, ``lr_milestones=(160, 190)`` of 200 epochs are the defaults
            here but the milestones.
        gather_distributed: under DDP, every rank writes every rank's batch into its bank.
        **loss_kwargs: arguments of the loss (``temperature``, ``hard_negatives``, ...).

    ``training_step`` returns ``{"loss": loss, "embeddings": (z, z)}`` (detached).

    Example:
        >>> dataset = IndexedDataset(digits_dataset(views=1))
        >>> model = NPID(len(dataset), backbone=SmallCNN(), loss="hard_contrastive",
        ...              temperature=0.07, hard_negatives=0.0819)
        >>> pl.Trainer(max_epochs=50).fit(model, DataLoader(dataset, 128, shuffle=True))
    """

    def __init__(
        self,
        num_samples: int,
        backbone: nn.Module | None = None,
        feature_dim: int | None = None,
        hidden_dim: int | None = None,
        output_dim: int = 128,
        bank_momentum: float = NPID_MOMENTUM,
        loss: str | nn.Module = "hard_contrastive",
        lr: float = 0.03,
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
        check_int(num_samples, "num_samples", minimum=2)
        check_int(hidden_dim, "hidden_dim", minimum=1, optional=True)
        check_int(output_dim, "output_dim", minimum=1)
        if check_unit_interval(bank_momentum, "bank_momentum") >= 1:
            raise ValueError(
                f"bank_momentum must be in [0, 1) (1 would never write the bank), got "
                f"{bank_momentum!r}"
            )
        if hidden_dim is None:
            self.projection_head: nn.Module = nn.Linear(self.feature_dim, output_dim)
        else:
            self.projection_head = MoCoProjectionHead(self.feature_dim, hidden_dim, output_dim)
        defaults: dict[str, Any] = {"gather_distributed": gather_distributed}
        if isinstance(loss, str):
            if not loss_capabilities(loss).sample_memory_bank:
                raise ValueError(
                    f"loss={loss!r} takes no sample_memory_bank, so it cannot train NPID; "
                    "use 'contrastive' for the plain contrastive loss"
                )
            # A default, not in loss_kwargs: the hyperparameters Lightning saves stay plain.
            defaults["sample_memory_bank"] = SampleMemoryBank(
                num_samples, output_dim, bank_momentum
            )
        self.criterion = make_loss(loss, defaults, loss_kwargs)
        if getattr(self.criterion, "sample_memory_bank", None) is None:
            raise ValueError(
                f"loss={type(self.criterion).__name__} has no sample_memory_bank: build it with "
                "sample_memory_bank=SampleMemoryBank(num_samples, dim) to train NPID"
            )

    def forward(self, x: Tensor) -> Tensor:
        """Projections of a batch of images."""
        features = self.backbone(x).flatten(start_dim=1)
        return self.projection_head(features)

    def training_step(self, batch: Any, batch_idx: int) -> dict[str, Any]:
        views = batch[0] if isinstance(batch, (list, tuple)) and batch else None
        x = views[0] if isinstance(views, (list, tuple)) and views else views
        indices = sample_indices(batch)
        if not isinstance(x, Tensor) or indices is None:
            raise ValueError(
                "NPID expects batches (views, labels, indices) from "
                "lightly_temperature.data.IndexedDataset (the data set index of every sample "
                "selects its bank entry)"
            )
        z = self.forward(x)
        # The anchors are z; the bank stores z too (NPID: the sample's own embedding).
        loss = self.criterion(z, z, indices=indices)
        self.log("train_loss", loss, prog_bar=True, batch_size=x.shape[0])
        return {"loss": loss, "embeddings": (z.detach(), z.detach())}
