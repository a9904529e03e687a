"""use_loss on modules written the way Lightly's examples write them."""

import copy

import pytest
import pytorch_lightning as pl
import torch
from lightly.loss import NTXentLoss
from lightly.models.modules import MoCoProjectionHead, SimCLRProjectionHead
from lightly.models.utils import deactivate_requires_grad, update_momentum
from lightly.utils.scheduler import cosine_schedule
from torch import nn
from torch.utils.data import DataLoader

from lightly_temperature import (
    HardContrastiveLoss,
    HardSimpleLoss,
    SimpleLoss,
    registry,
    use_loss,
)
from lightly_temperature.data import digits_dataset
from lightly_temperature.models import SmallCNN
from tests.conftest import RecordLosses, make_trainer


# Lightly's examples/pytorch_lightning/simclr.py and moco.py, with a small CNN for 8x8 digits.
class LightlySimCLR(pl.LightningModule):
    def __init__(self, temperature=0.5):
        super().__init__()
        self.backbone = SmallCNN(in_channels=1, width=16)
        self.projection_head = SimCLRProjectionHead(64, 64, 32)
        self.criterion = NTXentLoss(temperature=temperature)

    def forward(self, x):
        x = self.backbone(x).flatten(start_dim=1)
        return self.projection_head(x)

    def training_step(self, batch, batch_index):
        (x0, x1) = batch[0]
        z0 = self.forward(x0)
        z1 = self.forward(x1)
        return self.criterion(z0, z1)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.06, momentum=0.9)


class LightlyMoCo(pl.LightningModule):
    def __init__(self, memory_bank_size=(256, 32), gather_distributed=False):
        super().__init__()
        self.backbone = SmallCNN(in_channels=1, width=16)
        self.projection_head = MoCoProjectionHead(64, 64, 32)
        self.backbone_momentum = copy.deepcopy(self.backbone)
        self.projection_head_momentum = copy.deepcopy(self.projection_head)
        deactivate_requires_grad(self.backbone_momentum)
        deactivate_requires_grad(self.projection_head_momentum)
        self.criterion = NTXentLoss(
            temperature=0.2,
            memory_bank_size=memory_bank_size,
            gather_distributed=gather_distributed,
        )

    def forward(self, x):
        query = self.backbone(x).flatten(start_dim=1)
        return self.projection_head(query)

    def forward_momentum(self, x):
        key = self.backbone_momentum(x).flatten(start_dim=1)
        return self.projection_head_momentum(key).detach()

    def training_step(self, batch, batch_idx):
        momentum = cosine_schedule(self.current_epoch, 10, 0.996, 1)
        update_momentum(self.backbone, self.backbone_momentum, m=momentum)
        update_momentum(self.projection_head, self.projection_head_momentum, m=momentum)
        x_query, x_key = batch[0]
        query = self.forward(x_query)
        key = self.forward_momentum(x_key)
        return self.criterion(query, key)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.06, momentum=0.9)


def train(model, steps, batch_size=128):
    pl.seed_everything(0, verbose=False)
    loader = DataLoader(
        digits_dataset(views=2), batch_size=batch_size, shuffle=True, drop_last=True
    )
    record = RecordLosses()
    make_trainer(callbacks=[record], max_steps=steps).fit(model, loader)
    return record.losses


# --- training on real images -------------------------------------------------------------


def test_lightly_simclr_switched_with_use_loss_learns_on_digits():
    pl.seed_everything(0, verbose=False)
    model = use_loss(LightlySimCLR(), "hard_contrastive")
    assert isinstance(model.criterion, HardContrastiveLoss)
    losses = train(model, steps=30)
    assert len(losses) == 30 and all(torch.isfinite(torch.tensor(losses)))
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < first - 0.2, losses  # measured: 3.6 -> 3.2 over 30 steps


def test_lightly_moco_switched_with_use_loss_learns_on_digits():
    pl.seed_everything(0, verbose=False)
    model = use_loss(LightlyMoCo(), "hard_contrastive")
    assert tuple(model.criterion.memory_bank.size) == (256, 32)
    losses = train(model, steps=30)
    assert len(losses) == 30 and all(torch.isfinite(torch.tensor(losses)))
    # The first steps contrast against the bank's random initial vectors: start once the
    # 256-entry bank holds real keys (after two batches of 128).
    first, last = sum(losses[3:8]) / 5, sum(losses[-5:]) / 5
    assert last < first - 0.08, losses  # measured: 3.30 -> 3.12 over 30 steps


# --- what is carried over ------------------------------------------------------------------


def test_use_loss_returns_the_module_and_carries_settings_over():
    model = LightlyMoCo(memory_bank_size=(128, 32), gather_distributed=True)
    assert use_loss(model, "hard_contrastive", hard_negatives=9) is model
    loss = model.criterion
    assert isinstance(loss, HardContrastiveLoss)
    assert loss.temperature == 0.2 and loss.gather_distributed and loss.hard_negatives == 9
    assert tuple(loss.memory_bank.size) == (128, 32)


def test_overrides_win():
    model = use_loss(LightlyMoCo(), "hard_contrastive", temperature=0.7, memory_bank_size=(64, 32))
    assert model.criterion.temperature == 0.7
    assert tuple(model.criterion.memory_bank.size) == (64, 32)


@pytest.mark.parametrize("name, cls", [("simple", SimpleLoss), ("hard_simple", HardSimpleLoss)])
def test_temperature_is_not_carried_to_losses_it_only_rescales(name, cls):
    model = use_loss(LightlySimCLR(temperature=0.1), name)
    assert type(model.criterion) is cls and model.criterion.temperature == 1.0
    model = use_loss(LightlySimCLR(temperature=0.1), name, temperature=0.5)
    assert model.criterion.temperature == 0.5


def test_switched_loss_computes_what_ntxent_computed_with_all_negatives():
    torch.manual_seed(0)
    out0, out1 = torch.randn(24, 32), torch.randn(24, 32)
    model = LightlySimCLR(temperature=0.3)
    expected = model.criterion(out0, out1)
    use_loss(model, "hard_contrastive", hard_negatives=None)
    torch.testing.assert_close(model.criterion(out0, out1), expected)

    # MoCo mode: same bank contents -> the same loss (bank layout and size carried over)
    moco = LightlyMoCo()
    bank = moco.criterion.memory_bank.bank.clone()
    expected = moco.criterion(out0.requires_grad_(False), out1)  # no grad: bank not updated
    use_loss(moco, "hard_contrastive", hard_negatives=None)
    moco.criterion.memory_bank.bank.copy_(bank)
    torch.testing.assert_close(moco.criterion(out0, out1), expected)


def test_switching_again_and_back_to_ntxent():
    model = use_loss(LightlyMoCo(), "hard_simple")
    use_loss(model, "hard_contrastive")
    assert isinstance(model.criterion, HardContrastiveLoss)
    # HardSimple's temperature only rescaled its loss: it is not carried over as a softmax
    # temperature; the new loss keeps its own default.
    assert model.criterion.temperature == HardContrastiveLoss().temperature == 0.5
    use_loss(model, "ntxent", temperature=0.2)
    assert type(model.criterion) is NTXentLoss
    assert tuple(model.criterion.memory_bank.size) == (256, 32)


def test_nested_and_aliased_losses():
    class Wrapper(nn.Module):
        def __init__(self):
            super().__init__()
            self.model = LightlySimCLR()
            self.loss_fn = self.model.criterion  # the same object under a second name

    wrapper = use_loss(Wrapper(), "hard_contrastive")
    assert isinstance(wrapper.model.criterion, HardContrastiveLoss)
    assert wrapper.loss_fn is wrapper.model.criterion


# --- errors ---------------------------------------------------------------------------------


def test_no_loss_names_the_attributes_looked_at():
    model = LightlySimCLR()
    del model.criterion
    with pytest.raises(
        ValueError,
        match="use_loss found no NTXentLoss or lightly_temperature loss in LightlySimCLR: "
        "looked at the "
        "attributes backbone, projection_head and their",
    ):
        use_loss(model, "hard_contrastive")
    with pytest.raises(ValueError, match="it has no submodule attributes"):
        use_loss(nn.Module(), "hard_contrastive")


def test_several_losses_are_named():
    model = LightlySimCLR()
    model.extra = NTXentLoss()
    with pytest.raises(
        ValueError,
        match=r"found 2 losses in LightlySimCLR: criterion "
        r"\(NTXentLoss\); extra \(NTXentLoss\)",
    ):
        use_loss(model, "hard_contrastive")


def test_not_a_module():
    with pytest.raises(ValueError, match="needs a torch.nn.Module.*got dict"):
        use_loss({"criterion": NTXentLoss()}, "hard_contrastive")


def test_unknown_name_and_bad_override():
    with pytest.raises(ValueError, match="unknown loss 'hard'; known losses: .*hard_contrastive"):
        use_loss(LightlySimCLR(), "hard")
    with pytest.raises(ValueError, match="does not take the argument.*hard_negatives"):
        use_loss(LightlySimCLR(), "ntxent", hard_negatives=3)
    with pytest.raises(ValueError, match="hard_negatives"):
        use_loss(LightlySimCLR(), "hard_contrastive", hard_negatives=-3)
    model = LightlySimCLR()
    with pytest.raises(ValueError):
        use_loss(model, "hard_contrastive", hard_negatives=0)
    assert type(model.criterion) is NTXentLoss  # a failed switch leaves the module as it was


def test_target_without_memory_bank_or_gathering(monkeypatch):
    class PlainLoss(nn.Module):
        def __init__(self, temperature: float = 0.5):
            super().__init__()
            self.temperature = temperature

        def forward(self, out0, out1):
            return (out0 - out1).pow(2).mean() / self.temperature

    monkeypatch.setattr(registry, "_registered", {"plain": PlainLoss})
    with pytest.raises(
        ValueError,
        match=r"memory bank of size \(256, 32\) but loss 'plain' "
        "takes no memory_bank_size",
    ):
        use_loss(LightlyMoCo(), "plain")
    gathering = LightlySimCLR()
    gathering.criterion = NTXentLoss(gather_distributed=True)
    with pytest.raises(ValueError, match="gather_distributed=True.*takes no gather_distributed"):
        use_loss(gathering, "plain")
    model = use_loss(LightlySimCLR(temperature=0.3), "plain")  # nothing lost: allowed
    assert isinstance(model.criterion, PlainLoss) and model.criterion.temperature == 0.3


def test_lightlys_decoupled_and_model_aware_losses_by_name():
    from lightly.loss import DCLLoss, DCLWLoss, MACLLoss

    from lightly_temperature import HCLLoss

    switched = use_loss(LightlySimCLR(temperature=0.3), "dcl").criterion
    assert type(switched) is DCLLoss and switched.temperature == 0.3
    assert type(use_loss(LightlySimCLR(), "dclw").criterion) is DCLWLoss
    assert type(use_loss(LightlySimCLR(temperature=0.2), "macl").criterion) is MACLLoss
    # Neither takes a memory bank: switching a MoCo loss to them is refused, not dropped.
    for name in ("dcl", "dclw", "macl"):
        with pytest.raises(ValueError, match=f"memory bank of size .* but loss '{name}'"):
            use_loss(LightlyMoCo(), name)
    gathering = LightlySimCLR()
    gathering.criterion = NTXentLoss(gather_distributed=True)
    assert use_loss(gathering, "dcl").criterion.gather_distributed is True
    gathering.criterion = NTXentLoss(gather_distributed=True)
    with pytest.raises(ValueError, match="takes no gather_distributed"):
        use_loss(gathering, "macl")
    # HCL takes everything NTXentLoss takes: temperature and memory bank carried over.
    hcl = use_loss(LightlyMoCo(), "hcl", beta=0.5).criterion
    assert type(hcl) is HCLLoss and hcl.beta == 0.5
    assert tuple(hcl.memory_bank.size) == (256, 32) and hcl.temperature == 0.2
