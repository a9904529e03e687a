"""Temperature policies: values against their formulas, gradients against float64 references,
bounds, checkpoints, distributed updates, and their argument checks."""

from __future__ import annotations

import math
import os
import types

import pytest
import pytorch_lightning as pl
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from lightly.loss import DCLLoss, DCLWLoss, MACLLoss, NTXentLoss
from pytorch_lightning.loggers import Logger
from torch import nn
from torch.utils.data import DataLoader

from lightly_temperature import (
    HardContrastiveLoss,
    HCLLoss,
    SimCLR,
    SimpleLoss,
    TemperatureSchedule,
    build_loss,
)
from lightly_temperature.data import IndexedDataset, digits_dataset
from lightly_temperature.models import SmallCNN
from lightly_temperature.registry import available_losses
from lightly_temperature.temperature import (
    AdaptiveTemperature,
    ConstantTemperature,
    CosineTemperature,
    IndividualTemperature,
    LearnableTemperature,
)
from tests._reference import naive_hard_contrastive, naive_simclr_pairs
from tests._simclr_digits import FIXED_VIEWS, TinySimCLR, train_loader
from tests.conftest import make_trainer


def embeddings(n: int = 6, dim: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    out0 = torch.randn(n, dim, generator=generator)
    return out0, out0 + 0.7 * torch.randn(n, dim, generator=generator)


# --- values ---------------------------------------------------------------------------------


def test_constant_policy_is_the_number():
    out0, out1 = embeddings()
    number = HardContrastiveLoss(temperature=0.3, hard_negatives=3)(out0, out1)
    policy = HardContrastiveLoss(temperature=ConstantTemperature(0.3), hard_negatives=3)
    assert policy(out0, out1).item() == number.item()
    assert policy.temperature.value == 0.3


@pytest.mark.parametrize("position", [0, 1, 25, 50, 75, 100, 137])
def test_cosine_schedule_values_at_chosen_steps(position):
    policy = CosineTemperature(tau_min=0.1, tau_max=0.5, period=100)
    for _ in range(position):
        policy.step()  # one call advances it, as in a plain loop
    expected = 0.1 + 0.5 * (0.5 - 0.1) * (1 + math.cos(2 * math.pi * position / 100))
    assert policy.value == pytest.approx(expected, abs=1e-15)
    # The authors' form: cos(pi * t / t_max) with t_max = period / 2.
    assert policy.value == pytest.approx(0.1 + 0.2 * (1 + math.cos(math.pi * position / 50)))
    out0, out1 = embeddings()
    scheduled = HardContrastiveLoss(temperature=policy, hard_negatives=None)(out0, out1)
    fixed = HardContrastiveLoss(temperature=expected, hard_negatives=None)(out0, out1)
    torch.testing.assert_close(scheduled, fixed)


def test_cosine_schedule_landmarks():
    policy = CosineTemperature(tau_min=0.2, tau_max=0.6, period=8)
    assert policy.at(0) == pytest.approx(0.6)
    assert policy.at(4) == pytest.approx(0.2)
    assert policy.at(2) == pytest.approx(0.4)
    assert policy.at(8) == pytest.approx(0.6)


def test_adaptive_temperature_against_the_formula_on_a_hand_made_batch():
    # Unit vectors: the positive similarities are cos(angle) exactly.
    angles = torch.tensor([0.0, 0.5, 1.0])
    out0 = torch.stack(
        [torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0]), torch.tensor([1.0, 0.0])]
    )
    rot = torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)
    out1 = torch.stack([rot[0], torch.stack([-rot[1, 1], rot[1, 0]]), rot[2]])
    out0 = torch.cat([out0, torch.zeros(3, 1)], 1)
    out1 = torch.cat([out1, torch.zeros(3, 1)], 1)
    policy = AdaptiveTemperature(base=0.2, alpha=0.5, a0=0.1)
    loss_fn = HardContrastiveLoss(temperature=policy, hard_negatives=None)
    loss_fn(out0, out1)
    alignment = torch.cos(angles).double().mean().item()
    assert policy.value.item() == pytest.approx(0.2 * (1 + 0.5 * (alignment - 0.1)), rel=1e-6)
    # The loss is InfoNCE at that τ.
    reference = naive_hard_contrastive(out0, out1, policy.value.item(), None)
    torch.testing.assert_close(loss_fn(out0, out1).double(), reference, rtol=1e-5, atol=1e-6)


def test_adaptive_temperature_equals_lightly_macl_where_they_coincide(monkeypatch):
    """MACLLoss's logits are its positives and negatives over its τ: the InfoNCE of those
    logits is this package's loss with AdaptiveTemperature (MACL also reweights by 1/(1-P))."""
    import lightly.loss.macl_loss as macl_module

    seen = {}
    log_softmax = macl_module.F.log_softmax

    def spy(logits, dim):
        seen["logits"] = logits.detach()
        return log_softmax(logits, dim=dim)

    monkeypatch.setattr(macl_module.F, "log_softmax", spy)
    out0, out1 = embeddings(n=8, dim=16, seed=3)
    MACLLoss(temperature=0.1, alpha=0.5, A_0=0.0)(out0, out1)
    logits = seen["logits"]
    positive = naive_simclr_pairs(out0, out1)[0].float()
    macl_tau = positive / logits[:, 0]
    policy = AdaptiveTemperature(base=0.1, alpha=0.5, a0=0.0)
    loss = HardContrastiveLoss(temperature=policy, hard_negatives=None)(out0, out1)
    torch.testing.assert_close(macl_tau, policy.value.expand_as(macl_tau))
    macl_info_nce = -torch.log_softmax(logits, dim=1)[:, 0].mean()
    torch.testing.assert_close(loss, macl_info_nce)


# --- learnable τ ----------------------------------------------------------------------------


@pytest.mark.parametrize("k", [None, 3])
def test_learnable_temperature_gradient_against_float64_derivative(k):
    out0, out1 = embeddings(n=6, dim=8, seed=1)
    policy = LearnableTemperature(init=0.3, tau_min=0.05, tau_max=1.0)
    loss_fn = HardContrastiveLoss(temperature=policy, hard_negatives=k)
    assert [p is policy.log_temperature for p in loss_fn.parameters()] == [True]
    loss_fn(out0, out1).backward()
    tau = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    naive_hard_contrastive(out0, out1, tau, k).backward()
    # d/d(log τ) = τ d/dτ
    expected = 0.3 * tau.grad
    torch.testing.assert_close(policy.log_temperature.grad.double(), expected, rtol=1e-5, atol=1e-7)


def test_learnable_temperature_stays_in_its_bounds_and_comes_back():
    out0, out1 = embeddings()
    policy = LearnableTemperature(init=0.1, tau_min=0.05, tau_max=0.2)
    loss_fn = HardContrastiveLoss(temperature=policy, hard_negatives=None)
    optimizer = torch.optim.SGD(loss_fn.parameters(), lr=10.0)
    for direction in (1.0, -1.0):  # push τ down past tau_min, then up past tau_max
        for _ in range(5):
            optimizer.zero_grad()
            tau = policy(out0.sum(1))
            assert 0.05 - 1e-7 <= tau.item() <= 0.2 + 1e-7
            (direction * tau).backward()
            optimizer.step()
        bound = 0.05 if direction > 0 else 0.2
        assert policy.value.item() == pytest.approx(bound)
        loss_fn(out0, out1)  # the forward projects the parameter back
        assert policy.log_temperature.item() == pytest.approx(math.log(bound))


# --- per-sample τ ---------------------------------------------------------------------------


def isogclr_reference(out0, out1, indices, tau_table, lr, rho, momentum, tau_min, tau_max):
    """One iSogCLR step on the τ of the batch's samples, in float64 from the formula."""
    positives, negatives = naive_simclr_pairs(out0, out1)
    n = out0.shape[0]
    gradients = []
    for a, (pos, neg) in enumerate(zip(positives, negatives)):
        tau = tau_table[indices[a % n]].double().clone().requires_grad_(True)
        log_g = torch.logsumexp((neg - pos) / tau, 0) - math.log(neg.numel())
        (slope,) = torch.autograd.grad(log_g, tau)
        gradients.append(log_g.detach() + rho + tau.detach() * slope)
    gradients = torch.stack(gradients).view(2, n).mean(0)  # the two views of a sample
    average = momentum * gradients
    return (tau_table[indices].double() - lr * average).clamp(tau_min, tau_max)


def test_individual_temperature_update_against_isogclr_formula():
    out0, out1 = embeddings(n=5, dim=8, seed=2)
    indices = torch.tensor([7, 2, 9, 0, 4])
    policy = IndividualTemperature(num_samples=10, init=0.3, tau_min=0.05, tau_max=1.0, lr=0.5)
    loss_fn = HardContrastiveLoss(temperature=policy, hard_negatives=None)
    loss = loss_fn(out0, out1, indices=indices)
    # Before the update the loss is the constant-τ loss.
    torch.testing.assert_close(
        loss, HardContrastiveLoss(temperature=0.3, hard_negatives=None)(out0, out1)
    )
    (3.0 * loss).backward()  # any scale of the loss gives the same update
    expected = isogclr_reference(
        out0, out1, indices, torch.full((10,), 0.3), 0.5, 0.1, 0.9, 0.05, 1.0
    )
    torch.testing.assert_close(policy.value[indices].double(), expected, rtol=1e-5, atol=1e-6)
    untouched = torch.ones(10, dtype=torch.bool)
    untouched[indices] = False
    assert (policy.value[untouched] == 0.3).all()
    assert not torch.equal(policy.value[indices], torch.full((5,), 0.3))


def test_individual_temperature_per_anchor_loss_against_float64():
    out0, out1 = embeddings(n=4, dim=8, seed=4)
    policy = IndividualTemperature(num_samples=4, init=0.3, lr=0.0)
    policy.temperatures.copy_(torch.tensor([0.1, 0.2, 0.4, 0.8]))
    indices = torch.tensor([3, 1, 0, 2])
    out0_ = out0.clone().requires_grad_(True)
    loss = HardContrastiveLoss(temperature=policy, hard_negatives=None)(
        out0_, out1, indices=indices
    )
    loss.backward()
    positives, negatives = naive_simclr_pairs(out0, out1)
    x0 = out0.double().clone().requires_grad_(True)
    positives, negatives = naive_simclr_pairs(x0, out1)
    tau = policy.temperatures.double()[indices].repeat(2)
    terms = [
        torch.logsumexp(torch.cat([p.view(1), n]) / t, 0) - p / t
        for p, n, t in zip(positives, negatives, tau)
    ]
    reference = torch.stack(terms).mean()
    reference.backward()
    torch.testing.assert_close(loss.double(), reference, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(out0_.grad.double(), x0.grad, rtol=1e-5, atol=1e-6)


def test_individual_temperature_stays_in_its_bounds():
    out0, out1 = embeddings(n=6)
    policy = IndividualTemperature(num_samples=6, init=0.2, tau_min=0.1, tau_max=0.3, lr=100.0)
    loss_fn = HardContrastiveLoss(temperature=policy, hard_negatives=None)
    for _ in range(3):
        loss_fn(out0.requires_grad_(True), out1, indices=torch.arange(6)).backward()
        assert (policy.value >= 0.1).all() and (policy.value <= 0.3).all()
    assert ((policy.value == 0.1) | (policy.value == 0.3)).any()


def test_individual_temperature_in_moco_mode_and_the_monitor_view():
    out0, out1 = embeddings(n=4)
    policy = IndividualTemperature(num_samples=8, init=0.2)
    loss_fn = HardContrastiveLoss(temperature=policy, memory_bank_size=(16, 8), hard_negatives=None)
    indices = torch.tensor([1, 3, 5, 7])
    loss_fn(out0.requires_grad_(True), out1, indices=indices).backward()
    batch = loss_fn.similarities(out0, out1, indices)
    torch.testing.assert_close(batch.temperature, policy.value[indices])


# --- checkpoints ----------------------------------------------------------------------------


def test_policy_state_survives_a_state_dict_round_trip():
    losses = []
    for _ in range(2):
        losses.append(
            nn.ModuleList(
                [
                    HardContrastiveLoss(temperature=CosineTemperature(0.1, 0.5, 10)),
                    HardContrastiveLoss(temperature=LearnableTemperature(0.3)),
                    HardContrastiveLoss(temperature=IndividualTemperature(5, init=0.2)),
                ]
            )
        )
    trained, fresh = losses
    trained[0].temperature.step()
    trained[0].temperature.step()
    with torch.no_grad():
        trained[1].temperature.log_temperature.fill_(math.log(0.25))
    trained[2].temperature.temperatures.copy_(torch.linspace(0.1, 0.5, 5))
    fresh.load_state_dict(trained.state_dict())
    for a, b in zip(trained, fresh):
        torch.testing.assert_close(
            torch.as_tensor(a.temperature.value), torch.as_tensor(b.temperature.value)
        )
    assert fresh[0].temperature.position == 2


def _digits_model(policy) -> SimCLR:
    torch.manual_seed(0)
    return SimCLR(
        backbone=SmallCNN(),
        hidden_dim=32,
        output_dim=16,
        loss=HardContrastiveLoss(temperature=policy, hard_negatives=None),
        lr=0.05,
        max_epochs=3,
    )


def _digits_loader() -> DataLoader:
    # Fixed views (the image, flipped): a resumed run sees exactly the batches it would have.
    dataset = IndexedDataset(digits_dataset(indices=range(64), augment=FIXED_VIEWS))
    return DataLoader(dataset, batch_size=32, shuffle=False)


def test_lightning_advances_the_schedule_and_resumes_it_exactly(tmp_path):
    from pytorch_lightning.callbacks import ModelCheckpoint

    def policies():
        return CosineTemperature(0.1, 0.5, period=4, unit="step"), IndividualTemperature(64)

    class Record(pl.Callback):  # the τ each batch was trained with
        def __init__(self):
            self.taus = []

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.taus.append(pl_module.criterion.temperature.value)

    # Uninterrupted: 3 epochs of 2 steps.
    cosine, _ = policies()
    model = _digits_model(cosine)
    record = Record()
    make_trainer(tmp_path / "a", 3, [record]).fit(model, _digits_loader())
    assert record.taus == [cosine.at(step) for step in range(6)]
    assert cosine.position == 5

    # Stopped after 1 epoch, resumed from the checkpoint to 3 epochs.
    cosine_b, _ = policies()
    model_b = _digits_model(cosine_b)
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    make_trainer(tmp_path / "b", 1, [checkpoint]).fit(model_b, _digits_loader())
    cosine_c, _ = policies()
    model_c = _digits_model(cosine_c)
    record_c = Record()
    make_trainer(tmp_path / "c", 3, [record_c]).fit(
        model_c, _digits_loader(), ckpt_path=str(tmp_path / "ckpt" / "last.ckpt")
    )
    assert record_c.taus == record.taus[2:]
    for a, b in zip(model.parameters(), model_c.parameters()):
        torch.testing.assert_close(a, b)


def test_schedule_callback_advances_a_module_of_ones_own(tmp_path):
    """Lightly's SimCLR example (no code of this package in training_step) with the callback:
    the epoch schedule follows the epochs; the learnable τ is trained by the optimizer."""
    model = TinySimCLR(temperature=CosineTemperature(0.1, 0.5, period=4), hard_negatives=None)
    seen = []

    class Record(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            seen.append((trainer.current_epoch, pl_module.criterion.temperature.value))

    make_trainer(tmp_path, 3, [TemperatureSchedule(), Record()], limit_train_batches=2).fit(
        model, train_loader(64, 16)
    )
    assert seen == [(e, CosineTemperature(0.1, 0.5, 4).at(e)) for e in range(3) for _ in range(2)]

    learnable = LearnableTemperature(0.3)
    model = TinySimCLR(temperature=learnable, hard_negatives=None)
    make_trainer(tmp_path, 1, limit_train_batches=2).fit(model, train_loader(64, 16))
    assert learnable.value.item() != pytest.approx(0.3, abs=1e-9)


def test_per_sample_temperature_trains_and_resumes_in_lightning(tmp_path):
    from pytorch_lightning.callbacks import ModelCheckpoint

    model = _digits_model(IndividualTemperature(64, init=0.2, lr=0.05))
    make_trainer(tmp_path / "a", 2).fit(model, _digits_loader())
    table = model.criterion.temperature.value.clone()
    assert not torch.equal(table, torch.full((64,), 0.2))  # the ready module passed indices

    model_b = _digits_model(IndividualTemperature(64, init=0.2, lr=0.05))
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    make_trainer(tmp_path / "b", 1, [checkpoint]).fit(model_b, _digits_loader())
    model_c = _digits_model(IndividualTemperature(64, init=0.2, lr=0.05))
    make_trainer(tmp_path / "c", 2).fit(
        model_c, _digits_loader(), ckpt_path=str(tmp_path / "ckpt" / "last.ckpt")
    )
    torch.testing.assert_close(model_c.criterion.temperature.value, table)


# --- distributed ----------------------------------------------------------------------------

DDP_N = 4


def _ddp_worker(rank: int, world_size: int, port: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size
    )
    try:
        out0, out1 = embeddings(n=2 * DDP_N, seed=5)
        indices = torch.tensor([3, 11, 0, 6, 9, 1, 14, 5])
        rows = slice(rank * DDP_N, (rank + 1) * DDP_N)
        policy = IndividualTemperature(num_samples=16, init=0.3, lr=0.5)
        loss_fn = HardContrastiveLoss(
            temperature=policy, hard_negatives=None, gather_distributed=True
        )
        loss_fn(out0[rows].requires_grad_(True), out1[rows], indices=indices[rows]).backward()
        torch.save(policy.state_dict(), os.path.join(out_dir, f"rank{rank}.pt"))
        # Behind a DDP model: the table's update runs among DDP's own gradient hooks.
        torch.manual_seed(0)
        ddp = nn.parallel.DistributedDataParallel(nn.Linear(8, 8))
        policy = IndividualTemperature(num_samples=16, init=0.3, lr=0.5)
        loss_fn = HardContrastiveLoss(
            temperature=policy, hard_negatives=None, gather_distributed=True
        )
        for _ in range(2):
            loss_fn(ddp(out0[rows]), ddp(out1[rows]), indices=indices[rows]).backward()
        torch.save(policy.state_dict(), os.path.join(out_dir, f"ddp_rank{rank}.pt"))
        # MACL's τ from the alignment of the whole gathered batch: one τ on every rank.
        adaptive = AdaptiveTemperature(base=0.2, alpha=0.5)
        HardContrastiveLoss(temperature=adaptive, hard_negatives=None, gather_distributed=True)(
            out0[rows], out1[rows]
        )
        torch.save(adaptive.value, os.path.join(out_dir, f"adaptive_rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_per_sample_and_adaptive_tau_on_two_processes_equal_one_process(tmp_path, free_port):
    mp.spawn(_ddp_worker, args=(2, free_port, str(tmp_path)), nprocs=2)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    torch.testing.assert_close(ranks[0], ranks[1])  # every rank holds the same table
    # Gathered negatives: each anchor's loss is the one-process loss on the whole batch.
    out0, out1 = embeddings(n=2 * DDP_N, seed=5)
    indices = torch.tensor([3, 11, 0, 6, 9, 1, 14, 5])
    policy = IndividualTemperature(num_samples=16, init=0.3, lr=0.5)
    HardContrastiveLoss(temperature=policy, hard_negatives=None)(
        out0.requires_grad_(True), out1, indices=indices
    ).backward()
    torch.testing.assert_close(ranks[0]["temperatures"], policy.temperatures)
    assert (ranks[0]["temperatures"][indices] != 0.3).all()
    adaptive = AdaptiveTemperature(base=0.2, alpha=0.5)
    HardContrastiveLoss(temperature=adaptive, hard_negatives=None)(out0, out1)
    for r in range(2):
        torch.testing.assert_close(torch.load(tmp_path / f"adaptive_rank{r}.pt"), adaptive.value)
    ddp_ranks = [torch.load(tmp_path / f"ddp_rank{r}.pt") for r in range(2)]
    torch.testing.assert_close(ddp_ranks[0], ddp_ranks[1])
    assert (ddp_ranks[0]["temperatures"][indices] != 0.3).all()


# --- every loss, every name -----------------------------------------------------------------


#: Lightly's classes that the package's losses equal, built instead for a policy.
LIGHTLY_EQUALS = {
    "ntxent": lambda: NTXentLoss(temperature=0.5),
    "dcl": lambda: DCLLoss(temperature=0.5),
    "dclw": lambda: DCLWLoss(temperature=0.5),
}


@pytest.mark.filterwarnings("ignore:To copy construct from a tensor")  # Lightly's DCLW weights
@pytest.mark.parametrize("name", available_losses())
def test_every_registry_name_takes_a_policy(name):
    out0, out1 = embeddings()
    policy = CosineTemperature(0.1, 0.5, 10)
    if name == "macl":  # its τ is already adaptive
        with pytest.raises(ValueError, match="temperature=CosineTemperature"):
            build_loss(name, temperature=policy)
        return
    loss_fn = build_loss(name, temperature=policy)
    assert loss_fn.temperature is policy
    if name in LIGHTLY_EQUALS:  # the package's equal of Lightly's class
        expected = LIGHTLY_EQUALS[name]()(out0, out1)
        torch.testing.assert_close(loss_fn(out0, out1), expected)
    assert torch.isfinite(loss_fn(out0, out1))


def test_policies_in_every_loss_family():
    out0, out1 = embeddings()
    for policy in (LearnableTemperature(0.3), AdaptiveTemperature()):
        for loss_fn in (HCLLoss(temperature=policy), SimpleLoss(temperature=policy)):
            assert torch.isfinite(loss_fn(out0, out1))
    with pytest.raises(ValueError, match="temperature=IndividualTemperature"):
        SimpleLoss(temperature=IndividualTemperature(4))


# --- bad arguments --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make, name",
    [
        (lambda: CosineTemperature(tau_min=0.5, tau_max=0.5), "tau_min"),
        (lambda: CosineTemperature(tau_min=0.6, tau_max=0.5), "tau_min"),
        (lambda: CosineTemperature(tau_min=0.0), "tau_min"),
        (lambda: CosineTemperature(tau_max=-1.0), "tau_max"),
        (lambda: CosineTemperature(period=0), "period"),
        (lambda: CosineTemperature(unit="batch"), "unit"),
        (lambda: LearnableTemperature(init=2.0, tau_max=1.0), "init"),
        (lambda: LearnableTemperature(tau_min=-0.1), "tau_min"),
        (lambda: LearnableTemperature(tau_min=0.5, tau_max=0.1, init=0.3), "tau_min"),
        (lambda: IndividualTemperature(num_samples=0), "num_samples"),
        (lambda: IndividualTemperature(num_samples=4, tau_min=0.0), "tau_min"),
        (lambda: IndividualTemperature(num_samples=4, lr=-1.0), "lr"),
        (lambda: IndividualTemperature(num_samples=4, momentum=0.0), "momentum"),
        (lambda: AdaptiveTemperature(base=0.0), "base"),
        (lambda: AdaptiveTemperature(alpha=1.5), "alpha"),
        (lambda: AdaptiveTemperature(alpha=0.9, a0=0.5), "alpha"),
        (lambda: ConstantTemperature(-0.2), "value"),
    ],
)
def test_bad_arguments_name_the_argument(make, name):
    with pytest.raises(ValueError, match=name):
        make()


def test_per_sample_temperature_needs_indices_in_range():
    out0, out1 = embeddings(n=4)
    loss_fn = HardContrastiveLoss(temperature=IndividualTemperature(8), hard_negatives=None)
    with pytest.raises(ValueError, match="indices"):
        loss_fn(out0, out1)
    with pytest.raises(ValueError, match="indices must be in"):
        loss_fn(out0, out1, indices=torch.tensor([0, 1, 2, 8]))
    with pytest.raises(ValueError, match="indices must be in"):
        loss_fn(out0, out1, indices=torch.tensor([-1, 1, 2, 3]))


# --- the callbacks watch the τ in force -----------------------------------------------------


class HistogramLogger(Logger):
    """A logger whose experiment takes histograms, as TensorBoard's ``SummaryWriter``."""

    def __init__(self):
        super().__init__()
        self.histograms = []

    @property
    def name(self):
        return "histograms"

    @property
    def version(self):
        return 0

    @property
    def experiment(self):
        return types.SimpleNamespace(
            add_histogram=lambda tag, values, global_step: self.histograms.append(
                (tag, values.clone(), global_step)
            )
        )

    def log_hyperparams(self, params, *args, **kwargs):
        pass

    def log_metrics(self, metrics, step=None):
        pass


def test_callbacks_record_the_temperature_in_force(tmp_path):
    from lightly_temperature import HardnessMonitor, TemperatureAnalysis

    policy = IndividualTemperature(64, init=0.2, lr=0.05)
    model = _digits_model(policy)
    monitor = HardnessMonitor(log_every_n_steps=1)
    probe = DataLoader(digits_dataset(indices=range(64, 96)), batch_size=16)
    analysis = TemperatureAnalysis(probe, metrics=["uniformity"])
    seen = []

    class Record(pl.Callback):  # the table and the batch's indices before the step
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            seen.append(policy.value[batch[2]].clone())

    logger = HistogramLogger()
    make_trainer(tmp_path, 2, [Record(), monitor, analysis], logger).fit(model, _digits_loader())
    assert len(monitor.history) == 4
    # The whole per-sample table as a histogram on every logging step.
    assert [tag for tag, _, _ in logger.histograms] == ["hardness/temperature"] * 4
    assert [step for _, _, step in logger.histograms] == [row["step"] for row in monitor.history]
    torch.testing.assert_close(logger.histograms[-1][1], policy.value)
    for row, table in zip(monitor.history, seen):
        # The batch's anchors: both views of each sample, at the τ the loss used.
        assert row["temperature"] == pytest.approx(table.mean().item(), rel=1e-6)
        assert row["temperature_min"] == pytest.approx(table.min().item())
        assert row["temperature_max"] == pytest.approx(table.max().item())
    last = analysis.history[-1]
    assert last["temperature"] == pytest.approx(policy.value.mean().item(), rel=1e-6)
    assert last["temperature_min"] == pytest.approx(policy.value.min().item())
    assert last["temperature_max"] == pytest.approx(policy.value.max().item())
    assert last["temperature_min"] < last["temperature_max"]
