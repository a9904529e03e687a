"""The memory bank indexed by sample (NPID): every loss over it against float64 references
written from the formulas, its update rule, its checks, read-only observation, the NPID module
and the paper's direction of effects on digits."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader

from lightly_temperature import (
    NPID,
    ContrastiveLoss,
    DebiasedContrastiveLoss,
    HardContrastiveLoss,
    HardSimpleLoss,
    HCLLoss,
    IndexedDataset,
    SampleMemoryBank,
    SimpleLoss,
    build_loss,
    loss_capabilities,
)
from lightly_temperature.data import digits_dataset
from lightly_temperature.losses import observe_similarities
from lightly_temperature.models.backbones import SmallCNN
from tests.conftest import make_trainer

NUM_SAMPLES, DIM, BATCH = 40, 16, 8


def _bank_pairs(z: torch.Tensor, bank: torch.Tensor, indices: torch.Tensor):
    """float64: each anchor's positive (its own entry) and its N - 1 negatives, by loops."""
    z = F.normalize(z.double(), dim=1)
    bank = bank.double()
    positives, negatives = [], []
    for i, index in enumerate(indices.tolist()):
        positives.append(z[i] @ bank[index])
        others = [j for j in range(bank.shape[0]) if j != index]
        negatives.append(bank[others] @ z[i])
    return torch.stack(positives), negatives


def _reference(name: str, z, bank, indices, temperature: float, k: int | None):
    positives, negatives = _bank_pairs(z, bank, indices)
    losses = []
    for pos, neg in zip(positives, negatives):
        used = neg if k is None else neg.sort(descending=True).values[:k]
        if name in ("contrastive", "hard_contrastive"):
            logits = torch.cat([pos.view(1), used]) / temperature
            losses.append(torch.logsumexp(logits, 0) - pos / temperature)
        else:  # simple, hard_simple
            losses.append((-pos + used.mean()) / temperature)
    return torch.stack(losses).mean()


def _loss(name: str, bank: SampleMemoryBank, temperature: float, k: int | None):
    kwargs = {"sample_memory_bank": bank, "temperature": temperature}
    if name in ("hard_contrastive", "hard_simple"):
        kwargs["hard_negatives"] = k
    return build_loss(name, **kwargs)


def _inputs(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    z = torch.randn(BATCH, DIM, generator=generator, dtype=torch.float64)
    indices = torch.randperm(NUM_SAMPLES, generator=generator)[:BATCH]
    return z, indices


@pytest.mark.parametrize(
    ("name", "k"),
    [
        ("contrastive", None),
        ("hard_contrastive", 5),
        ("hard_contrastive", None),
        ("simple", None),
        ("hard_simple", 5),
    ],
)
@pytest.mark.parametrize("temperature", [0.07, 0.5])
def test_losses_over_the_bank_match_float64_references(name, k, temperature):
    torch.manual_seed(1)
    bank = SampleMemoryBank(NUM_SAMPLES, DIM)
    before = bank.bank.clone()
    z, indices = _inputs()
    z32 = z.float().requires_grad_()
    value = _loss(name, bank, temperature, k)(z32, z32, indices=indices)
    value.backward()
    # The step's forward and backward compared with the bank as it was before the update.
    z64 = z.clone().requires_grad_()
    expected = _reference(name, z64, before, indices, temperature, k)
    expected.backward()
    torch.testing.assert_close(value.double(), expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(z32.grad.double(), z64.grad, rtol=1e-4, atol=1e-6)


def _authors_hcl(positives, negatives, temperature: float, beta: float, tau_plus: float):
    """Robinson et al.'s formula as in their code (exponentials, importance weights divided by
    their mean, debiasing by τ⁺, clamp at N e^{-1/τ}), float64, one anchor at a time."""
    losses = []
    for s_pos, s_neg in zip(positives, negatives):
        n = s_neg.numel()
        pos, neg = torch.exp(s_pos / temperature), torch.exp(s_neg / temperature)
        imp = neg**beta
        ng = (-tau_plus * n * pos + (imp * neg).sum() / imp.mean()) / (1 - tau_plus)
        ng = torch.clamp(ng, min=n * torch.exp(torch.tensor(-1 / temperature, dtype=torch.float64)))
        losses.append(-torch.log(pos / (pos + ng)))
    return torch.stack(losses).mean()


@pytest.mark.parametrize("beta", [0.0, 1.0])
def test_hcl_and_debiased_over_the_bank_match_the_authors_formula(beta):
    torch.manual_seed(2)
    z, indices = _inputs(3)
    bank = SampleMemoryBank(NUM_SAMPLES, DIM)
    if beta == 0:
        loss = DebiasedContrastiveLoss(temperature=0.5, tau_plus=0.1, sample_memory_bank=bank)
    else:
        loss = HCLLoss(temperature=0.5, beta=beta, tau_plus=0.1, sample_memory_bank=bank)
    before = bank.bank.clone()
    value = loss(z.float(), z.float(), indices=indices)
    positives, negatives = _bank_pairs(z, before, indices)
    expected = _authors_hcl(positives, negatives, 0.5, beta, 0.1)
    torch.testing.assert_close(value.double(), expected, rtol=1e-5, atol=0)


def test_the_bank_update_is_npid_s_momentum_rule_and_only_in_training():
    torch.manual_seed(0)
    bank = SampleMemoryBank(NUM_SAMPLES, DIM, momentum=0.5)
    loss = ContrastiveLoss(sample_memory_bank=bank)
    z, indices = _inputs()
    anchors = torch.randn(BATCH, DIM)
    before = bank.bank.clone()
    with torch.no_grad():  # evaluation: no update
        loss(anchors, z.float(), indices=indices)
    assert torch.equal(bank.bank, before)
    loss(anchors.requires_grad_(), z.float(), indices=indices)
    expected = before.double().clone()
    moved = 0.5 * expected[indices] + 0.5 * F.normalize(z, dim=1)
    expected[indices] = F.normalize(moved, dim=1)
    torch.testing.assert_close(bank.bank.double(), expected, rtol=0, atol=1e-6)
    untouched = torch.ones(NUM_SAMPLES, dtype=torch.bool)
    untouched[indices] = False
    assert torch.equal(bank.bank[untouched], before[untouched])
    # momentum 0 stores the normalised embeddings as they are
    bank0 = SampleMemoryBank(NUM_SAMPLES, DIM, momentum=0.0)
    ContrastiveLoss(sample_memory_bank=bank0)(anchors, z.float(), indices=indices)
    torch.testing.assert_close(
        bank0.bank[indices].double(), F.normalize(z, dim=1), atol=1e-6, rtol=0
    )


def test_indices_of_any_integer_dtype_write_the_same_bank():
    banks = []
    for dtype in (torch.int64, torch.int32, torch.uint8):
        torch.manual_seed(0)
        loss = ContrastiveLoss(sample_memory_bank=SampleMemoryBank(NUM_SAMPLES, DIM))
        z = torch.randn(3, DIM, requires_grad=True)
        loss(z, z, indices=torch.tensor([1, 5, 9], dtype=dtype))
        banks.append(loss.sample_memory_bank.bank)
    assert torch.equal(banks[0], banks[1]) and torch.equal(banks[0], banks[2])


def test_the_bank_starts_normalized_and_moves_with_the_loss():
    bank = SampleMemoryBank(NUM_SAMPLES, DIM)
    torch.testing.assert_close(bank.bank.norm(dim=1), torch.ones(NUM_SAMPLES))
    loss = HardContrastiveLoss(sample_memory_bank=bank).double()
    assert loss.sample_memory_bank.bank.dtype == torch.float64
    assert "sample_memory_bank.bank" in loss.state_dict()


def test_observation_is_read_only_and_equals_the_reference():
    torch.manual_seed(0)
    bank = SampleMemoryBank(NUM_SAMPLES, DIM)
    loss = HardContrastiveLoss(temperature=0.2, hard_negatives=5, sample_memory_bank=bank)
    z, indices = _inputs()
    before = bank.bank.clone()
    batch = observe_similarities(loss, z.float().requires_grad_(), z.float(), indices)
    assert torch.equal(bank.bank, before)
    positives, negatives = _bank_pairs(z, before, indices)
    torch.testing.assert_close(batch.positive.double(), positives, rtol=0, atol=1e-6)
    assert batch.num_negatives == NUM_SAMPLES - 1
    for row, expected in zip(batch.negatives, negatives):
        kept = row[torch.isfinite(row)]
        torch.testing.assert_close(
            kept.double().sort().values, expected.sort().values, atol=1e-6, rtol=0
        )
    with pytest.raises(ValueError, match="indices=None"):
        observe_similarities(loss, z.float(), z.float())


@pytest.mark.parametrize(
    ("indices", "match"),
    [
        (None, "indices=None"),
        (torch.tensor([0, 1, 2, 3, 4, 5, 6, NUM_SAMPLES]), rf"\[0, {NUM_SAMPLES}\)"),
        (torch.tensor([-1, 1, 2, 3, 4, 5, 6, 7]), rf"\[0, {NUM_SAMPLES}\)"),
        (torch.arange(7), r"shape \(8,\)"),
    ],
)
def test_bad_indices_over_the_bank_are_refused(indices, match):
    loss = SimpleLoss(sample_memory_bank=SampleMemoryBank(NUM_SAMPLES, DIM))
    z = torch.randn(BATCH, DIM)
    with pytest.raises(ValueError, match=match):
        loss(z, z, indices=indices)


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: SampleMemoryBank(1, 8), "num_samples must be an int >= 2, got 1"),
        (lambda: SampleMemoryBank(10, 0), "dim must be an int >= 1, got 0"),
        (lambda: SampleMemoryBank(10, 8, momentum=1.0), r"momentum must be in \[0, 1\).*1.0"),
        (lambda: SampleMemoryBank(10, 8, momentum=-0.1), "momentum must be .*-0.1"),
        (lambda: ContrastiveLoss(sample_memory_bank=object()), "sample_memory_bank must be"),
        (
            lambda: ContrastiveLoss(
                memory_bank_size=(64, 8), sample_memory_bank=SampleMemoryBank(10, 8)
            ),
            r"memory_bank_size=\(64, 8\) and a sample_memory_bank",
        ),
        (
            lambda: ContrastiveLoss(sample_memory_bank=SampleMemoryBank(10, 8))(
                torch.randn(2, 4), torch.randn(2, 4), indices=torch.arange(2)
            ),
            r"8-d entries \(dim=8\) but the embeddings are 4-d",
        ),
        (lambda: NPID(100, backbone=SmallCNN(), loss="ntxent"), "loss='ntxent' takes no"),
        (lambda: NPID(100, backbone=SmallCNN(), loss=ContrastiveLoss()), "no sample_memory_bank"),
        (lambda: NPID(1, backbone=SmallCNN()), "num_samples must be an int >= 2, got 1"),
        (lambda: NPID(10, backbone=SmallCNN(), bank_momentum=2.0), "bank_momentum .* 2.0"),
        (lambda: NPID(10, backbone=SmallCNN(), bank_momentum=1.0), r"bank_momentum .*\[0, 1\)"),
        (lambda: NPID(10, backbone=SmallCNN(), hidden_dim=0), "hidden_dim must be None or an int"),
    ],
)
def test_bad_arguments_are_refused(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_every_loss_of_the_package_declares_the_bank():
    for name in ("contrastive", "hard_contrastive", "simple", "hard_simple", "hcl", "debiased"):
        assert loss_capabilities(name).sample_memory_bank, name
    for name in ("ntxent", "dcl", "macl"):
        assert not loss_capabilities(name).sample_memory_bank, name


def test_npid_refuses_batches_without_indices():
    model = NPID(100, backbone=SmallCNN())
    batch = next(iter(DataLoader(digits_dataset(views=1), batch_size=4)))
    with pytest.raises(ValueError, match="IndexedDataset"):
        model.training_step(batch, 0)


def _npid_digits(loss: str, temperature: float, epochs: int, **loss_kwargs):
    """NPID (the paper's linear head) trained on the 1,797 digits, one view per step, with the
    study's AdamW; its embeddings of the plain images and their labels."""
    torch.manual_seed(0)
    dataset = IndexedDataset(digits_dataset(views=1))
    model = NPID(
        len(dataset),
        backbone=SmallCNN(),
        loss=loss,
        optimizer="adamw",
        lr=2e-3,
        weight_decay=1e-5,
        temperature=temperature,
        **loss_kwargs,
    )
    loader = DataLoader(
        dataset,
        batch_size=256,
        shuffle=True,
        drop_last=True,
        generator=torch.Generator().manual_seed(0),
    )
    make_trainer(max_epochs=epochs).fit(model, loader)
    plain = digits_dataset(views=0)
    model.eval()
    with torch.no_grad():
        images, labels = next(iter(DataLoader(plain, batch_size=len(plain))))
        return model(images), labels


def test_npid_on_digits_shows_the_paper_s_direction_of_effects():
    """The paper's findings over NPID: with the plain loss uniformity falls and tolerance
    rises from τ = 0.07 to τ = 1; the hard loss holds uniformity at τ = 1."""
    from lightly_temperature.metrics import tolerance, uniformity

    measured = {}
    for loss, tau in (("contrastive", 0.07), ("contrastive", 1.0), ("hard_contrastive", 1.0)):
        kwargs = {"hard_negatives": 0.0819} if loss == "hard_contrastive" else {}
        z, labels = _npid_digits(loss, tau, epochs=25, **kwargs)
        measured[loss, tau] = (float(uniformity(z)), float(tolerance(z, labels)))
    (u_cold, t_cold), (u_hot, t_hot) = measured["contrastive", 0.07], measured["contrastive", 1.0]
    u_hard, _ = measured["hard_contrastive", 1.0]
    # Measured: uniformity 2.57 / 2.33, tolerance 0.65 / 0.76 (plain, τ = 0.07 / 1) and
    # uniformity 2.88 (hard, τ = 1) after 25 epochs.
    assert u_cold > u_hot + 0.1, measured
    assert t_hot > t_cold + 0.05, measured
    assert u_hard > u_hot + 0.3, measured


def _npid_steps(monitor=None, steps=4):
    torch.manual_seed(0)
    dataset = IndexedDataset(digits_dataset(views=1))
    model = NPID(len(dataset), backbone=SmallCNN(), temperature=0.2, hard_negatives=16)
    losses = []

    class Record(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            losses.append(outputs["loss"].detach().clone())

    callbacks = [Record()] + ([monitor] if monitor is not None else [])
    loader = DataLoader(
        dataset, batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(0)
    )
    trainer = make_trainer(max_steps=steps, callbacks=callbacks, log_every_n_steps=1)
    trainer.fit(model, loader)
    return model, losses


def test_npid_training_is_bit_identical_under_the_hardness_monitor():
    from lightly_temperature import HardnessMonitor

    plain_model, plain = _npid_steps()
    monitor = HardnessMonitor(log_every_n_steps=1)
    watched_model, watched = _npid_steps(monitor)
    assert len(monitor.history) == 4  # it watched every step, with the step's indices
    assert all(torch.equal(a, b) for a, b in zip(plain, watched))
    for a, b in zip(plain_model.state_dict().values(), watched_model.state_dict().values()):
        assert torch.equal(a, b)  # the bank included
    assert "criterion.sample_memory_bank.bank" in watched_model.state_dict()


def test_use_loss_carries_the_bank_over_or_refuses():
    from lightly_temperature import use_loss

    model = NPID(100, backbone=SmallCNN(), loss="contrastive")
    bank = model.criterion.sample_memory_bank
    use_loss(model, "hard_simple", hard_negatives=8)
    assert isinstance(model.criterion, HardSimpleLoss)
    assert model.criterion.sample_memory_bank is bank
    with pytest.raises(ValueError, match="indexed by sample but loss 'ntxent' takes no"):
        use_loss(model, "ntxent")
