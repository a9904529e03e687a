"""MoCo with the hard contrastive loss: Lightly's ``examples/pytorch_lightning/moco.py``, its
``NTXentLoss(memory_bank_size=(4096, 128))`` switched with one line,
``model = use_loss(MoCo(...), "hard_contrastive")`` (temperature, memory bank and
``gather_distributed`` are carried over). Writing ``criterion = HardContrastiveLoss(
memory_bank_size=(4096, 128))`` in ``__init__`` instead does the same.

Runs on a CPU in about 15 s on scikit-learn's digits (embedded, nothing downloaded), or on
an image folder, and unchanged on GPUs:

    python examples/moco.py                          # digits, small CNN, CPU
    python examples/moco.py path/to/images           # folder, ResNet-18, MoCoV2Transform
    python examples/moco.py path/to/images --accelerator gpu --devices 2 --precision bf16-mixed
    python examples/moco.py --quick                  # a few steps (used by the tests)
"""

import argparse
import copy

import pytorch_lightning as pl
import torch
import torchvision
from lightly.data import LightlyDataset
from lightly.loss import NTXentLoss
from lightly.models.modules import MoCoProjectionHead
from lightly.models.utils import deactivate_requires_grad, update_momentum
from lightly.transforms.moco_transform import MoCoV2Transform
from lightly.utils.benchmarking import knn_predict
from lightly.utils.scheduler import cosine_schedule
from torch import nn

from lightly_temperature import use_loss
from lightly_temperature.data import digits_dataset
from lightly_temperature.models import SmallCNN


class MoCo(pl.LightningModule):
    def __init__(
        self,
        backbone,
        feature_dim,
        hidden_dim=512,
        output_dim=128,
        lr=0.06,
        max_epochs=10,
        bank_entries=4096,
    ):
        super().__init__()
        self.backbone = backbone
        self.projection_head = MoCoProjectionHead(feature_dim, hidden_dim, output_dim)

        self.backbone_momentum = copy.deepcopy(self.backbone)
        self.projection_head_momentum = copy.deepcopy(self.projection_head)

        deactivate_requires_grad(self.backbone_momentum)
        deactivate_requires_grad(self.projection_head_momentum)

        self.criterion = NTXentLoss(
            temperature=0.2, memory_bank_size=(bank_entries, output_dim), gather_distributed=True
        )
        self.lr = lr
        self.max_epochs = max_epochs

    def forward(self, x):
        query = self.backbone(x).flatten(start_dim=1)
        query = self.projection_head(query)
        return query

    def forward_momentum(self, x):
        key = self.backbone_momentum(x).flatten(start_dim=1)
        key = self.projection_head_momentum(key).detach()
        return key

    def training_step(self, batch, batch_idx):
        momentum = cosine_schedule(self.current_epoch, self.max_epochs, 0.996, 1)
        update_momentum(self.backbone, self.backbone_momentum, m=momentum)
        update_momentum(self.projection_head, self.projection_head_momentum, m=momentum)
        x_query, x_key = batch[0]
        query = self.forward(x_query)
        key = self.forward_momentum(x_key)
        loss = self.criterion(query, key)
        self.log("train_loss", loss, prog_bar=True, batch_size=x_query.shape[0])
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
    parser.add_argument(
        "--loss",
        default="hard_contrastive",
        help="registry name: hard_contrastive, ntxent, simple, hard_simple",
    )
    parser.add_argument(
        "--hard-negatives",
        type=float,
        default=0.0819,
        help="fraction of the bank kept (>= 1: a count)",
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
        feature_dim, hidden_dim = backbone.feature_dim, 256
        # Fewer bank entries than images: older keys of the same image must not pose as
        # (hard) negatives. Lightly's 4096 suits CIFAR's 50,000 images.
        bank_entries = 1024
        epochs, batch_size = args.epochs or 20, args.batch_size or 256
    else:  # Lightly's example: ResNet-18 and MoCoV2Transform on a folder of images
        resnet = torchvision.models.resnet18()
        backbone = nn.Sequential(*list(resnet.children())[:-1])
        feature_dim, hidden_dim, bank_entries = 512, 512, 4096
        dataset = LightlyDataset(args.path, transform=MoCoV2Transform(input_size=args.input_size))
        epochs, batch_size = args.epochs or 10, args.batch_size or 64
    epochs = 1 if args.quick else epochs

    model = MoCo(backbone, feature_dim, hidden_dim, max_epochs=epochs, bank_entries=bank_entries)
    # The one-line change: NTXentLoss -> the hard contrastive loss, settings carried over.
    hard_negatives = {"hard_negatives": _k(args.hard_negatives)} if "hard" in args.loss else {}
    model = use_loss(model, args.loss, **hard_negatives)
    print(f"criterion: {model.criterion!r}, temperature {model.criterion.temperature}")

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
        max_epochs=epochs,
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
