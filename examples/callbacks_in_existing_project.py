"""Adding the temperature-analysis callbacks to a Lightly SimCLR module you already have.

The module below is written exactly as Lightly's ``examples/pytorch_lightning/simclr.py``
(``self.criterion = NTXentLoss()``, ``batch[0]`` views); the only additions are
``use_loss`` (one line: the hard contrastive loss instead of NTXentLoss) and the two callbacks
with a logger. Runs on scikit-learn's embedded digits on a CPU; the same file runs on a GPU.

Run:
    python examples/callbacks_in_existing_project.py            # 20 epochs, ~15 s
    python examples/callbacks_in_existing_project.py --quick    # 1 epoch on 256 images
Then look at ``<logs>/version_0/temperature_analysis/`` (history.csv, similarities_*.png)
and ``metrics.csv`` (temperature_analysis/* and hardness/* columns).
"""

from __future__ import annotations

import argparse

import pytorch_lightning as pl
import torch
from lightly.loss import NTXentLoss
from lightly.models.modules import SimCLRProjectionHead
from pytorch_lightning.loggers import CSVLogger
from torch.utils.data import DataLoader

from lightly_temperature import HardnessMonitor, TemperatureAnalysis, use_loss
from lightly_temperature.data import digits_dataset
from lightly_temperature.models.backbones import SmallCNN


class SimCLR(pl.LightningModule):
    """Your existing module, as in Lightly's example (small CNN backbone for 8x8 digits)."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = SmallCNN(in_channels=1)
        self.projection_head = SimCLRProjectionHead(128, 128, 64)
        self.criterion = NTXentLoss()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.backbone(x).flatten(start_dim=1)
        return self.projection_head(x)

    def training_step(self, batch, batch_index):
        (x0, x1) = batch[0]
        z0 = self.forward(x0)
        z1 = self.forward(x1)
        loss = self.criterion(z0, z1)
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.06, momentum=0.9)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--logs", default="lightning_logs_callbacks", help="logger folder")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default: 1, where the small CNN runs fastest)",
    )
    parser.add_argument("--quick", action="store_true", help="1 epoch on 256 images (tests)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    train_images = range(256) if args.quick else range(1400)
    probe_images = range(1400, 1528) if args.quick else range(1400, 1797)
    train = DataLoader(digits_dataset(indices=train_images), batch_size=128, shuffle=True)
    probe = DataLoader(digits_dataset(indices=probe_images), batch_size=256)

    model = SimCLR()
    # The one-line switch: NTXentLoss -> hard contrastive loss (temperature carried over).
    use_loss(model, "hard_contrastive", hard_negatives=0.0819)

    trainer = pl.Trainer(
        max_epochs=1 if args.quick else args.epochs,
        logger=CSVLogger(args.logs, name=""),
        callbacks=[
            TemperatureAnalysis(probe, every_n_epochs=1 if args.quick else 5),
            HardnessMonitor(log_every_n_steps=1),
        ],
        enable_checkpointing=False,
        log_every_n_steps=1,
        enable_progress_bar=not args.quick,
    )
    trainer.fit(model, train)
    print(f"logs: {trainer.log_dir}")


if __name__ == "__main__":
    main()
