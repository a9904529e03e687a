"""A tiny SimCLR on scikit-learn's digits, for the callback tests (not a public API).

Images are 1 x 8 x 8 (pixel values / 16); the two views are random 1-pixel shifts with
Gaussian noise. Batches are shaped like Lightly's data sets: ``([view0, view1], label, name)``.
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from lightly.models.modules import SimCLRProjectionHead
from sklearn.datasets import load_digits
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from lightly_temperature import HardContrastiveLoss


def digits_tensors(num_samples: int | None = None) -> tuple[Tensor, Tensor]:
    data = load_digits()
    images = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0
    labels = torch.tensor(data.target, dtype=torch.long)
    if num_samples is not None:
        images, labels = images[:num_samples], labels[:num_samples]
    return images, labels


def augment(image: Tensor) -> Tensor:
    """A random shift of up to one pixel and Gaussian noise (uses torch's RNG)."""
    dx, dy = torch.randint(-1, 2, (2,)).tolist()
    shifted = torch.roll(image, shifts=(dy, dx), dims=(1, 2))
    return shifted + 0.1 * torch.randn_like(shifted)


class TwoViewDigits(Dataset):
    """``([view0, view1], label, filename)`` like ``LightlyDataset`` with a two-view transform.

    ``augmented=False`` gives fixed views (view0 = image, view1 = image flipped left-right).
    ``num_views=1`` gives one tensor instead of a list; ``with_labels=False`` gives views only.
    """

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        augmented: bool = True,
        num_views: int = 2,
        with_labels: bool = True,
    ) -> None:
        self.images, self.labels = images, labels
        self.augmented, self.num_views, self.with_labels = augmented, num_views, with_labels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        image = self.images[index]
        if self.augmented:
            views = [augment(image), augment(image)]
        else:
            views = [image, image.flip(-1)]
        views = views[0] if self.num_views == 1 else views
        if not self.with_labels:
            return views
        return views, self.labels[index], f"{index}.png"


class SmallCNN(nn.Module):
    def __init__(self, width: int = 16) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(2 * width * 16, 2 * width),  # 8x8 -> 4x4 maps
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class TinySimCLR(pl.LightningModule):
    """Lightly's SimCLR example, scaled down: backbone, projection head, drop-in loss."""

    def __init__(
        self,
        temperature: float = 0.5,
        hard_negatives=0.5,
        lr: float = 0.05,
        batch_norm: bool = True,
        gather_distributed: bool = False,
    ) -> None:
        super().__init__()
        self.backbone = SmallCNN(16)
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
        (x0, x1), _, _ = batch
        loss = self.criterion(self(x0), self(x1))
        self.log("train_loss", loss, prog_bar=False)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr, momentum=0.9)


def train_loader(num_samples: int = 256, batch_size: int = 64, seed: int = 0) -> DataLoader:
    images, labels = digits_tensors(num_samples)
    return DataLoader(
        TwoViewDigits(images, labels),
        batch_size=batch_size,
        shuffle=True,
        drop_last=True,
        generator=torch.Generator().manual_seed(seed),
    )


def probe_loader(num_samples: int = 120, batch_size: int = 50, **kwargs) -> DataLoader:
    images, labels = digits_tensors(1797)
    images, labels = images[-num_samples:], labels[-num_samples:]  # not in the training set
    return DataLoader(TwoViewDigits(images, labels, **kwargs), batch_size=batch_size)
