"""A tiny SimCLR on scikit-learn's digits, for the callback tests (not a public API).

The data are the package's digits pipeline (:func:`lightly_temperature.data.digits_dataset`:
batched ``DigitsAugment`` views, Lightly-shaped ``([view0, view1], labels)`` batches), the
backbone the package's :class:`~lightly_temperature.models.backbones.SmallCNN`.
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from lightly.models.modules import SimCLRProjectionHead
from torch import Tensor, nn
from torch.utils.data import DataLoader, default_collate

from lightly_temperature import HardContrastiveLoss
from lightly_temperature.data import digits_dataset, load_digits_tensors
from lightly_temperature.models.backbones import SmallCNN

NUM_DIGITS = 1797


def digits_tensors(num_samples: int | None = None) -> tuple[Tensor, Tensor]:
    """The first ``num_samples`` digits (all by default): images in [0, 1] and labels."""
    images, labels = load_digits_tensors()
    return images[:num_samples], labels[:num_samples]


def _flip(images: Tensor) -> Tensor:
    return images.flip(-1)


def _identity(images: Tensor) -> Tensor:
    return images


#: Fixed views instead of random ones: view0 = the image, view1 = the image flipped left-right.
FIXED_VIEWS = (_identity, _flip)


def _views_only(batch: list) -> list[Tensor]:
    return default_collate(batch)[0]


class TinySimCLR(pl.LightningModule):
    """Lightly's SimCLR example, scaled down: backbone, projection head, drop-in loss.

    ``batch_norm=False`` removes the batch norms of backbone and head: with ``lr=0`` the
    module then stays exactly as it was, whatever batches it trains on.
    """

    def __init__(
        self,
        temperature: float = 0.5,
        hard_negatives=0.5,
        lr: float = 0.05,
        batch_norm: bool = True,
        gather_distributed: bool = False,
    ) -> None:
        super().__init__()
        self.backbone = SmallCNN(in_channels=1, width=8)  # 32 features
        if not batch_norm:
            for index, layer in enumerate(self.backbone):
                if isinstance(layer, nn.BatchNorm2d):
                    self.backbone[index] = nn.Identity()
        self.projection_head = SimCLRProjectionHead(32, 32, 16, batch_norm=batch_norm)
        self.criterion = HardContrastiveLoss(
            temperature=temperature,
            hard_negatives=hard_negatives,
            gather_distributed=gather_distributed,
        )
        self.lr = lr

    def forward(self, x: Tensor) -> Tensor:
        return self.projection_head(self.backbone(x).flatten(start_dim=1))

    def training_step(self, batch, batch_idx):
        x0, x1 = batch[0]
        loss = self.criterion(self(x0), self(x1))
        self.log("train_loss", loss, prog_bar=False)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr, momentum=0.9)


def train_loader(num_samples: int = 256, batch_size: int = 64, seed: int = 0) -> DataLoader:
    return DataLoader(
        digits_dataset(indices=range(num_samples)),
        batch_size=batch_size,
        shuffle=True,
        drop_last=True,
        generator=torch.Generator().manual_seed(seed),
    )


def probe_loader(
    num_samples: int = 120,
    batch_size: int = 50,
    augmented: bool = True,
    num_views: int = 2,
    with_labels: bool = True,
) -> DataLoader:
    """The last ``num_samples`` digits (not in the training set) as a probe.

    ``augmented=False`` gives :data:`FIXED_VIEWS`; ``num_views=1`` one view per sample;
    ``with_labels=False`` batches of views only.
    """
    dataset = digits_dataset(
        views=num_views,
        indices=range(NUM_DIGITS - num_samples, NUM_DIGITS),
        augment=None if augmented else FIXED_VIEWS[:num_views],
    )
    collate = None if with_labels else _views_only
    return DataLoader(dataset, batch_size=batch_size, collate_fn=collate)
