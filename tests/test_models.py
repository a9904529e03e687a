"""The ready SimCLR and MoCo LightningModules."""

import pytest
import pytorch_lightning as pl
import torch
from lightly.loss import DCLLoss, DCLWLoss, MACLLoss, NTXentLoss
from torch import nn
from torch.utils.data import DataLoader

from lightly_temperature import (
    ContrastiveLoss,
    DebiasedContrastiveLoss,
    HardContrastiveLoss,
    HardSimpleLoss,
    HCLLoss,
    MoCo,
    SimCLR,
    SimpleLoss,
    available_losses,
    loss_capabilities,
)
from lightly_temperature.data import digits_dataset
from lightly_temperature.models import SmallCNN, resnet18_backbone
from tests.conftest import RecordLosses, make_trainer

LOSSES = {
    "ntxent": NTXentLoss,
    "contrastive": ContrastiveLoss,
    "hard_contrastive": HardContrastiveLoss,
    "simple": SimpleLoss,
    "hard_simple": HardSimpleLoss,
    "hcl": HCLLoss,
    "debiased": DebiasedContrastiveLoss,
    "dcl": DCLLoss,
    "dclw": DCLWLoss,
    "macl": MACLLoss,
}


class CheckOutputs(RecordLosses):
    """Reads the step's embeddings from the training_step output, as a monitor would."""

    def __init__(self):
        super().__init__()
        self.recomputed = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        z0, z1 = outputs["embeddings"]
        assert not z0.requires_grad and not z1.requires_grad
        assert z0.shape == z1.shape == (batch[0][0].shape[0], pl_module.hparams.output_dim)
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        if isinstance(pl_module, SimCLR):  # no memory bank: the loss follows from them alone
            self.recomputed.append(float(pl_module.criterion(z0, z1)))


def tiny(cls, loss, **kwargs):
    extra = {"memory_bank_size": 64} if cls is MoCo else {}
    return cls(
        backbone=SmallCNN(in_channels=1, width=8),
        hidden_dim=32,
        output_dim=16,
        loss=loss,
        **extra,
        **kwargs,
    )


def fit(model, steps=3, batch_size=32, callbacks=(), **trainer_kwargs):
    pl.seed_everything(0, verbose=False)
    loader = DataLoader(
        digits_dataset(views=2), batch_size=batch_size, shuffle=True, drop_last=True
    )
    trainer = make_trainer(callbacks=callbacks, max_steps=steps, **trainer_kwargs)
    trainer.fit(model, loader)
    return trainer


def test_every_registered_loss_is_tested():
    assert sorted(LOSSES) == available_losses()


@pytest.mark.parametrize("cls", [SimCLR, MoCo])
@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_ready_modules_train_with_every_loss(cls, loss):
    if cls is MoCo and not loss_capabilities(loss).memory_bank:
        with pytest.raises(ValueError, match="does not take the argument.*memory_bank_size"):
            tiny(cls, loss)
        return
    model = tiny(cls, loss)
    assert type(model.criterion) is LOSSES[loss]
    before = [p.detach().clone() for p in model.backbone.parameters()]
    check = CheckOutputs()
    fit(model, callbacks=[check])
    assert len(check.losses) == 3 and all(torch.isfinite(torch.tensor(check.losses)))
    if check.recomputed:
        torch.testing.assert_close(check.recomputed, check.losses)
    changed = [not torch.equal(b, p) for b, p in zip(before, model.backbone.parameters())]
    assert all(changed)


def test_loss_keyword_arguments_reach_the_loss():
    model = tiny(SimCLR, "hard_contrastive", temperature=0.2, hard_negatives=5)
    assert (model.criterion.temperature, model.criterion.hard_negatives) == (0.2, 5)
    assert model.criterion.gather_distributed  # ready modules gather under DDP by default
    assert model.hparams.temperature == 0.2 and model.hparams.loss == "hard_contrastive"
    moco = tiny(MoCo, "hard_simple", hard_negatives=0.25, gather_distributed=False)
    assert tuple(moco.criterion.memory_bank.size) == (64, 16)
    assert not moco.criterion.gather_distributed and moco.criterion.hard_negatives == 0.25
    custom = HardContrastiveLoss(temperature=0.1)
    assert tiny(SimCLR, custom).criterion is custom


def test_moco_momentum_encoder_follows_the_query_encoder():
    model = tiny(MoCo, "hard_contrastive", momentum_start=0.5, max_epochs=2)
    assert all(not p.requires_grad for p in model.backbone_momentum.parameters())
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(1.0)  # the query encoder moves away from the key encoder
    query = [p.clone() for p in [*model.backbone.parameters(), *model.projection_head.parameters()]]
    key = [
        p.clone()
        for p in [
            *model.backbone_momentum.parameters(),
            *model.projection_head_momentum.parameters(),
        ]
    ]
    (x0, x1), labels = next(iter(DataLoader(digits_dataset(), batch_size=8)))
    model.training_step(([x0, x1], labels), 0)
    # epoch 0 of 2: cosine_schedule gives momentum_start, key <- 0.5 key + 0.5 query
    updated = [*model.backbone_momentum.parameters(), *model.projection_head_momentum.parameters()]
    for q, k, u in zip(query, key, updated):
        torch.testing.assert_close(u, 0.5 * k + 0.5 * q)

    # Inside a Trainer (one step per epoch): the momentum is momentum_start in epoch 0 and
    # rises to 1 by the last epoch (max_epochs - 1), where the key encoder stops moving.
    class KeyEncoderSteps(pl.Callback):
        def __init__(self):
            self.moves = []

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            self.key = [p.clone() for p in pl_module.backbone_momentum.parameters()]
            self.query = [p.clone() for p in pl_module.backbone.parameters()]

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            key = [p.clone() for p in pl_module.backbone_momentum.parameters()]
            self.moves.append((trainer.current_epoch, self.key, self.query, key))

    steps = KeyEncoderSteps()
    fit(model, steps=2, callbacks=[steps], max_epochs=2, limit_train_batches=1)
    assert [epoch for epoch, *_ in steps.moves] == [0, 1]
    (_, key0, query0, after0), (_, key1, _, after1) = steps.moves
    for k, q, u in zip(key0, query0, after0):
        torch.testing.assert_close(u, 0.5 * k + 0.5 * q)
    assert all(torch.equal(k, u) for k, u in zip(key1, after1))


def test_defaults_follow_lightly_examples():
    simclr = SimCLR()
    assert simclr.projection_head.layers[0].in_features == 512
    assert simclr(torch.randn(2, 3, 32, 32)).shape == (2, 2048)
    moco = MoCo(backbone=resnet18_backbone())
    assert tuple(moco.criterion.memory_bank.size) == (4096, 128)
    assert isinstance(moco.criterion, HardContrastiveLoss)
    assert moco.max_epochs == 10  # no trainer: Lightly's examples' 10 epochs
    assert moco.lr == 0.06


def test_any_backbone_with_its_feature_dim():
    backbone = nn.Sequential(nn.Conv2d(1, 5, 3), nn.AdaptiveAvgPool2d(1))  # (N, 5, 1, 1)
    model = SimCLR(backbone=backbone, feature_dim=5, hidden_dim=8, output_dim=4)
    assert model(torch.randn(3, 1, 8, 8)).shape == (3, 4)


def test_batches_with_filenames_and_optimizer_settings():
    model = tiny(SimCLR, "hard_contrastive", lr=0.01, max_epochs=3)
    (x0, x1), labels = next(iter(DataLoader(digits_dataset(), batch_size=8)))
    out = model.training_step(([x0, x1], labels, [f"{i}.png" for i in range(8)]), 0)
    assert out["loss"].requires_grad and out["embeddings"][0].shape == (8, 16)
    trainer = fit(model, steps=1)
    optimizer = trainer.optimizers[0]
    assert optimizer.param_groups[0]["initial_lr"] == 0.01
    assert trainer.lr_scheduler_configs[0].scheduler.T_max == 3


def test_errors():
    with pytest.raises(ValueError, match="feature_dim is needed with a Sequential backbone"):
        SimCLR(backbone=nn.Sequential(nn.Flatten()))
    with pytest.raises(ValueError, match="feature_dim must be an int >= 1, got 0"):
        SimCLR(backbone=nn.Flatten(), feature_dim=0)
    with pytest.raises(ValueError, match="backbone must be a torch.nn.Module, got str"):
        SimCLR(backbone="resnet18", feature_dim=512)
    with pytest.raises(ValueError, match="unknown loss 'infonce'; known losses"):
        tiny(SimCLR, "infonce")
    with pytest.raises(ValueError, match="does not take the argument.*hard_negatives"):
        tiny(MoCo, "ntxent", hard_negatives=3)
    with pytest.raises(ValueError, match="loss arguments \\['temperature'\\] apply to a loss name"):
        tiny(SimCLR, NTXentLoss(), temperature=0.1)
    with pytest.raises(ValueError, match="loss must be a loss name or a torch.nn.Module"):
        tiny(SimCLR, 3)
    with pytest.raises(
        ValueError,
        match=r"memory_bank_size=\(64, 32\) stores 32-d keys but "
        r"the projection head outputs output_dim=16",
    ):
        MoCo(backbone=SmallCNN(width=8), hidden_dim=32, output_dim=16, memory_bank_size=(64, 32))
    with pytest.raises(ValueError, match="memory_bank_size must be an int >= 1"):
        MoCo(backbone=SmallCNN(width=8), memory_bank_size=0)
    with pytest.raises(ValueError, match="momentum_start must be a float in \\[0, 1\\]"):
        MoCo(backbone=SmallCNN(width=8), momentum_start=1.5)
    for name, value in (("lr", 0.0), ("momentum", -0.1), ("weight_decay", float("nan"))):
        with pytest.raises(ValueError, match=f"{name} must be a finite float"):
            SimCLR(backbone=SmallCNN(width=8), **{name: value})
    with pytest.raises(ValueError, match="max_epochs must be None or an int >= 1, got 0"):
        SimCLR(backbone=SmallCNN(width=8), max_epochs=0)


@pytest.mark.parametrize(
    "batch, got",
    [
        (torch.zeros(2, 1, 8, 8), "a batch of type Tensor"),
        ([], "an empty batch"),
        (([torch.zeros(2, 1, 8, 8)], None), r"batch\[0\] = list of 1 items"),
        ((torch.zeros(2, 1, 8, 8), None), r"batch\[0\] = Tensor"),
        (([torch.zeros(1), "x"], None), r"batch\[0\] = list of 2 items \(Tensor, str\)"),
    ],
)
def test_batches_not_shaped_like_lightly_datasets(batch, got):
    model = tiny(SimCLR, "hard_contrastive")
    with pytest.raises(ValueError, match=f"Lightly-shaped batch.*; got {got}"):
        model.training_step(batch, 0)


@pytest.mark.parametrize("cls", [SimCLR, MoCo])
def test_bf16_mixed_precision(cls):
    """What a GPU run with --precision bf16-mixed does, on the CPU: bf16 embeddings, the loss
    computed in float32 by the package's losses."""
    check = CheckOutputs()
    fit(tiny(cls, "hard_contrastive"), steps=2, callbacks=[check], precision="bf16-mixed")
    assert len(check.losses) == 2 and all(torch.isfinite(torch.tensor(check.losses)))


def test_optimizer_and_paper_step_decay_are_arguments():
    from lightly_temperature.models.backbones import SmallCNN

    adamw = SimCLR(backbone=SmallCNN(1), optimizer="adamw", lr=2e-3, max_epochs=5)
    config = adamw.configure_optimizers()
    assert isinstance(config["optimizer"], torch.optim.AdamW)
    assert isinstance(config["lr_scheduler"], torch.optim.lr_scheduler.CosineAnnealingLR)
    paper = SimCLR(backbone=SmallCNN(1), lr_milestones=(160, 190))
    config = paper.configure_optimizers()
    assert isinstance(config["optimizer"], torch.optim.SGD)
    assert config["lr_scheduler"].milestones == {160: 1, 190: 1}
    with pytest.raises(ValueError, match=r"optimizer must be one of sgd, adamw, got 'adam'"):
        SimCLR(backbone=SmallCNN(1), optimizer="adam")
    with pytest.raises(ValueError, match=r"lr_milestones.*\[0\]"):
        SimCLR(backbone=SmallCNN(1), lr_milestones=[0])


def test_resnet18_backbone_with_the_papers_cifar_stem():
    lightly_style = resnet18_backbone()
    cifar = resnet18_backbone(cifar_stem=True)
    gray = resnet18_backbone(in_channels=1, cifar_stem=True)
    assert lightly_style[0].kernel_size == (7, 7) and isinstance(lightly_style[3], nn.MaxPool2d)
    assert cifar[0].kernel_size == (3, 3) and cifar[0].stride == (1, 1)
    assert isinstance(cifar[3], nn.Identity)  # no max pooling on 32x32 images
    assert gray[0].in_channels == 1
    with torch.no_grad():
        out = cifar(torch.randn(2, 3, 32, 32)).flatten(start_dim=1)
    assert out.shape == (2, 512) and cifar.feature_dim == 512
