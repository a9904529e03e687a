"""SimCLR with the hard contrastive loss: Lightly's ``examples/pytorch_lightning/simclr.py``
with one line changed (``criterion = HardContrastiveLoss(...)`` instead of ``NTXentLoss()``).

Runs on a CPU in about 15 s on scikit-learn's digits (embedded, nothing downloaded), or on
an image folder, and unchanged on GPUs:

    python examples/simclr.py                        # digits, small CNN, CPU
    python examples/simclr.py path/to/images         # folder, ResNet-18, SimCLRTransform
    python examples/simclr.py path/to/images --accelerator gpu --devices 2 --precision bf16-mixed
    python examples/simclr.py --quick                # a few steps (used by the tests)
"""

import argparse

import pytorch_lightning as pl
import torch
import torchvision
from lightly.data import LightlyDataset
from lightly.models.modules import SimCLRProjectionHead
from lightly.transforms.simclr_transform import SimCLRTransform
from lightly.utils.benchmarking import knn_predict
from torch import nn

from lightly_temperature import HardContrastiveLoss
from lightly_temperature.data import digits_dataset
from lightly_temperature.models import SmallCNN


class SimCLR(pl.LightningModule):
    def __init__(
        self,
        backbone,
        feature_dim,
        hidden_dim=2048,
        output_dim=2048,
        lr=0.06,
        temperature=0.5,
        hard_negatives=0.0819,
    ):
        super().__init__()
        self.backbone = backbone
        self.projection_head = SimCLRProjectionHead(feature_dim, hidden_dim, output_dim)
        self.lr = lr
        # The one change from Lightly's example (was: self.criterion = NTXentLoss()).
        # gather_distributed=True: under DDP the negatives come from all devices.
        self.criterion = HardContrastiveLoss(
            temperature=temperature, hard_negatives=hard_negatives, gather_distributed=True
        )

    def forward(self, x):
        x = self.backbone(x).flatten(start_dim=1)
        z = self.projection_head(x)
        return z

    def training_step(self, batch, batch_index):
        (x0, x1) = batch[0]
        z0 = self.forward(x0)
        z1 = self.forward(x1)
        loss = self.criterion(z0, z1)
        self.log("train_loss", loss, prog_bar=True, batch_size=x0.shape[0])
        return loss

    def configure_optimizers(self):
        optim = torch.optim.SGD(self.parameters(), lr=self.lr, momentum=0.9)
        return optim


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", nargs="?", help="image folder (default: scikit-learn's digits)")
    parser.add_argument(
        "--epochs", type=int, default=None, help="default 20 on digits, 10 on a folder"
    )
    parser.add_argument(
        "--batch-size", type=int, default=None, help="default 256 on digits, 64 on a folder"
    )
    parser.add_argument("--input-size", type=int, default=32, help="image size on a folder")
    parser.add_argument("--temperature", type=float, default=0.5)
    parser.add_argument(
        "--hard-negatives",
        type=float,
        default=0.0819,
        help="fraction of the negatives kept (>= 1: a count)",
    )
    parser.add_argument("--num-workers", type=int, default=0)
    parser.add_argument("--accelerator", default="auto")
    parser.add_argument("--devices", default="auto")
    parser.add_argument("--precision", default=None, help="e.g. bf16-mixed on a GPU")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (default: 1 on digits, whose small CNN runs about twice as fast "
        "on one thread; torch's default on a folder)",
    )
    parser.add_argument("--quick", action="store_true", help="3 steps, to check that it runs")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.threads or args.path is None:
        torch.set_num_threads(args.threads or 1)
    if args.path is None:  # embedded real data: 1,797 8x8 digits, a small CNN
        dataset = digits_dataset(views=2)
        backbone = SmallCNN(in_channels=1, width=32)
        model = SimCLR(
            backbone,
            backbone.feature_dim,
            hidden_dim=256,
            output_dim=128,
            temperature=args.temperature,
            hard_negatives=_k(args.hard_negatives),
        )
        epochs, batch_size = args.epochs or 20, args.batch_size or 256
    else:  # Lightly's example: ResNet-18 and SimCLRTransform on a folder of images
        resnet = torchvision.models.resnet18()
        backbone = nn.Sequential(*list(resnet.children())[:-1])
        model = SimCLR(
            backbone, 512, temperature=args.temperature, hard_negatives=_k(args.hard_negatives)
        )
        transform = SimCLRTransform(input_size=args.input_size)
        dataset = LightlyDataset(input_dir=args.path, transform=transform)
        epochs, batch_size = args.epochs or 10, args.batch_size or 64

    dataloader = torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=args.num_workers,
    )
    devices = int(args.devices) if args.devices.isdigit() else args.devices
    distributed = isinstance(devices, int) and devices > 1
    # SyncBatchNorm (Lightly's distributed examples) works on GPUs only
    sync_batchnorm = distributed and args.accelerator != "cpu" and torch.cuda.is_available()
    trainer = pl.Trainer(
        max_epochs=1 if args.quick else epochs,
        limit_train_batches=3 if args.quick else None,
        devices=devices,
        accelerator=args.accelerator,
        precision=args.precision,
        strategy="ddp" if distributed else "auto",
        sync_batchnorm=sync_batchnorm,
        logger=not args.quick,
        enable_checkpointing=not args.quick,
    )
    trainer.fit(model=model, train_dataloaders=dataloader)
    print(f"final train_loss {float(trainer.callback_metrics['train_loss']):.4f}")
    if args.path is None and trainer.is_global_zero:
        print(f"digits kNN accuracy (backbone features) {digits_knn_accuracy(backbone):.3f}")


@torch.no_grad()
def digits_knn_accuracy(backbone, k=20):
    """kNN accuracy of the backbone's features: even-indexed digits vote for odd-indexed ones."""
    images, labels = next(iter(torch.utils.data.DataLoader(digits_dataset(views=0), 2000)))
    backbone.eval()
    features = nn.functional.normalize(backbone(images).flatten(start_dim=1), dim=1)
    predicted = knn_predict(features[1::2], features[::2].T, labels[::2], 10, knn_k=k, knn_t=0.1)
    return (predicted[:, 0] == labels[1::2]).float().mean().item()


def _k(value):
    return int(value) if value >= 1 else value


if __name__ == "__main__":
    main()
