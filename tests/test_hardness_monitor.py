"""HardnessMonitor watches without changing: bit-identical training, Lightly's NTXentLoss too."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from lightly.loss import NTXentLoss
from torch.nn import functional as F

from lightly_temperature import HardContrastiveLoss, HardnessMonitor, HardSimpleLoss, SimpleLoss
from tests._simclr_digits import TinySimCLR, train_loader
from tests.conftest import make_trainer

LOSSES = {
    "ntxent": lambda bank: NTXentLoss(temperature=0.3, memory_bank_size=bank),
    "hard_contrastive": lambda bank: HardContrastiveLoss(0.3, bank, hard_negatives=5),
    "all_negatives": lambda bank: HardContrastiveLoss(0.3, bank, hard_negatives=None),
    "simple": lambda bank: SimpleLoss(memory_bank_size=bank),
    "hard_simple": lambda bank: HardSimpleLoss(memory_bank_size=bank, hard_negatives=5),
}


class Recorder(pl.Callback):
    """Per step: the loss, the embeddings the loss got and the bank before the step."""

    def __init__(self):
        self.losses, self.embeddings, self.banks = [], [], []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        bank = pl_module.criterion.memory_bank.bank
        self.banks.append(bank.clone() if bank.dim() == 2 else None)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.losses.append(outputs["loss"].detach().clone())
        self.embeddings.append(outputs["embeddings"])


class Watched(TinySimCLR):
    """TinySimCLR with any criterion; returns the embeddings the loss compared."""

    def __init__(self, criterion):
        super().__init__()
        self.criterion = criterion

    def training_step(self, batch, batch_idx):
        x0, x1 = batch[0]
        z0, z1 = self(x0), self(x1)
        return {"loss": self.criterion(z0, z1), "embeddings": (z0.detach(), z1.detach())}


def _train(tmp_path, criterion, monitor=None, steps=6, model_class=None):
    torch.manual_seed(0)
    model = (model_class or Watched)(criterion)
    recorder = Recorder()
    callbacks = [recorder] + ([monitor] if monitor is not None else [])
    trainer = make_trainer(tmp_path, 1, callbacks, limit_train_batches=steps, log_every_n_steps=1)
    trainer.fit(model, train_loader(512, 32))
    return model, recorder


@pytest.mark.parametrize("name", list(LOSSES))
@pytest.mark.parametrize("bank", [0, (40, 16)])
def test_training_is_bit_identical_with_and_without_the_monitor(tmp_path, name, bank):
    plain_model, plain = _train(tmp_path, LOSSES[name](bank))
    monitor = HardnessMonitor(log_every_n_steps=1)
    watched_model, watched = _train(tmp_path, LOSSES[name](bank), monitor)
    assert len(monitor.history) == 6  # it did watch every step
    assert all(torch.equal(a, b) for a, b in zip(plain.losses, watched.losses))
    for a, b in zip(plain_model.state_dict().values(), watched_model.state_dict().values()):
        assert torch.equal(a, b)
    if bank:
        assert torch.equal(
            plain_model.criterion.memory_bank.bank, watched_model.criterion.memory_bank.bank
        )
    assert not watched_model.criterion._forward_pre_hooks  # removed after each logged step


def _reference_statistics(z0, z1, bank, temperature, hard_negatives, k=10):
    """The monitor's statistics from their definitions, in float64, by explicit layout."""
    z0 = F.normalize(z0.double(), dim=1)
    z1 = F.normalize(z1.double(), dim=1)
    if bank is None:  # SimCLR: 2N anchors, 2N - 2 negatives each
        z, n = torch.cat([z0, z1]), z0.shape[0]
        sims = z @ z.T
        i = torch.arange(2 * n)
        positive = sims[i, (i + n) % (2 * n)]
        keep = torch.ones_like(sims, dtype=torch.bool)
        keep[i, i] = False
        keep[i, (i + n) % (2 * n)] = False
        negatives = sims[keep].reshape(2 * n, 2 * n - 2)
    else:  # MoCo: N anchors against the bank as it was before the step
        positive = (z0 * z1).sum(1)
        negatives = z0 @ bank.double().T
    used = negatives if hard_negatives is None else negatives.topk(hard_negatives, dim=1).values
    logits = torch.cat([positive[:, None], used], dim=1) / temperature
    penalties = torch.softmax(used / temperature, dim=1)
    probabilities = torch.softmax(logits, dim=1)[:, 0]
    return -probabilities.log().mean().item(), {
        "positive_similarity": positive.mean().item(),
        f"top{k}_negative_similarity": negatives.topk(k, dim=1).values.mean().item(),
        "positive_probability": probabilities.mean().item(),
        "penalty_entropy": torch.special.entr(penalties).sum(1).mean().item(),
        "temperature": temperature,
    }


@pytest.mark.parametrize("bank", [0, (40, 16)])
@pytest.mark.parametrize("name, hard_negatives", [("ntxent", None), ("hard_contrastive", 5)])
def test_statistics_are_those_of_what_the_loss_compared(tmp_path, bank, name, hard_negatives):
    """Lightly's own NTXentLoss can be watched too: the baseline of every comparison."""
    monitor = HardnessMonitor(log_every_n_steps=2)
    _, recorder = _train(tmp_path, LOSSES[name](bank), monitor)
    assert [row["step"] for row in monitor.history] == [1, 3, 5]
    for row in monitor.history:
        step = row["step"]
        z0, z1 = recorder.embeddings[step]
        loss, expected = _reference_statistics(z0, z1, recorder.banks[step], 0.3, hard_negatives)
        # The loss the step trained on is the mean of -log P_ii over the same negatives: the
        # monitor read the layout (and the bank before its update) that the loss used.
        assert recorder.losses[step].item() == pytest.approx(loss, rel=1e-5)
        for key, value in expected.items():
            assert row[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
        # How far the loss's first inputs spread: std of the unit vectors times sqrt(dim).
        unit = F.normalize(z0.double(), dim=1)
        spread = unit.std(dim=0).mean().item() * unit.shape[1] ** 0.5
        assert row["embedding_spread"] == pytest.approx(spread, rel=1e-5)


def test_first_loss_call_of_a_step_is_read(tmp_path):
    class TwoCalls(Watched):
        def training_step(self, batch, batch_idx):
            out = super().training_step(batch, batch_idx)
            z0, z1 = out["embeddings"]
            self.criterion(z1.flip(0), z0)  # a second call with other inputs: not read
            return out

    monitor = HardnessMonitor(log_every_n_steps=1)
    _, recorder = _train(tmp_path, LOSSES["ntxent"](0), monitor, 2, model_class=TwoCalls)
    z0, z1 = recorder.embeddings[0]
    _, expected = _reference_statistics(z0, z1, None, 0.3, None)
    assert monitor.history[0]["positive_similarity"] == pytest.approx(
        expected["positive_similarity"], rel=1e-5
    )


def test_one_row_per_optimizer_step_under_gradient_accumulation(tmp_path):
    monitor = HardnessMonitor(log_every_n_steps=1)
    torch.manual_seed(0)
    trainer = make_trainer(tmp_path, 1, [monitor], limit_train_batches=6, accumulate_grad_batches=2)
    trainer.fit(Watched(HardContrastiveLoss(0.3, hard_negatives=5)), train_loader(512, 32))
    assert trainer.global_step == 3
    assert [row["step"] for row in monitor.history] == [0, 1, 2]


def test_a_collapse_of_the_loss_inputs_is_flagged_once(tmp_path):
    class Collapsed(Watched):
        def forward(self, x):  # every image near one direction
            return torch.ones(x.shape[0], 16) + 0.01 * super().forward(x)

    monitor = HardnessMonitor(log_every_n_steps=1)
    with pytest.warns(UserWarning, match="loss's embeddings are collapsed at step 0") as record:
        _train(tmp_path, LOSSES["ntxent"](0), monitor, 3, model_class=Collapsed)
    assert sum("collapsed" in str(w.message) for w in record) == 1  # once per run
    assert all(row["embedding_spread"] < 0.05 for row in monitor.history)
