"""The decoupled contrastive loss (DCL, DCLW): equal to Lightly's DCLLoss and DCLWLoss in value
and gradient (also gathered on 2 processes), to a float64 reference written from the paper, and
under each temperature policy; the registry builds it for "dcl" and "dclw" with a policy."""

from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from lightly.loss import DCLLoss, DCLWLoss, MACLLoss

from lightly_temperature import DecoupledContrastiveLoss, build_loss
from lightly_temperature.losses import DecoupledReduction
from lightly_temperature.losses.layout import in_batch_layout, normalized
from lightly_temperature.registry import takes_temperature_policy
from lightly_temperature.study.config import StudyConfig
from lightly_temperature.temperature import (
    AdaptiveTemperature,
    ConstantTemperature,
    CosineTemperature,
    IndividualTemperature,
    LearnableTemperature,
)
from tests._reference import naive_decoupled, naive_simclr_pairs

# Lightly's DCLW weights copy a tensor with torch.tensor(...), which warns.
pytestmark = pytest.mark.filterwarnings("ignore:To copy construct from a tensor")


def embeddings(n: int, dim: int = 8, seed: int = 0, dtype=torch.float32):
    generator = torch.Generator().manual_seed(seed)
    out0 = torch.randn(n, dim, generator=generator, dtype=torch.float64)
    out1 = out0 + 0.7 * torch.randn(n, dim, generator=generator, dtype=torch.float64)
    return out0.to(dtype), out1.to(dtype)


def value_and_gradients(loss_fn, out0, out1):
    out0, out1 = out0.clone().requires_grad_(True), out1.clone().requires_grad_(True)
    loss = loss_fn(out0, out1)
    loss.backward()
    return loss.detach().double(), out0.grad, out1.grad


def lightly_loss(temperature: float, sigma: float | None, gather: bool = False):
    if sigma is None:
        return DCLLoss(temperature=temperature, gather_distributed=gather)
    return DCLWLoss(temperature=temperature, sigma=sigma, gather_distributed=gather)


# --- equal to Lightly and to the paper ------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n", [2, 5, 32])
@pytest.mark.parametrize("temperature", [0.07, 0.5])
@pytest.mark.parametrize("sigma", [None, 0.5, 0.2])
def test_equals_lightly_dcl_and_dclw(dtype, n, temperature, sigma):
    out0, out1 = embeddings(n, dtype=dtype, seed=n)
    ours = value_and_gradients(DecoupledContrastiveLoss(temperature, sigma), out0, out1)
    theirs = value_and_gradients(lightly_loss(temperature, sigma), out0, out1)
    # The package computes in float32 (as for every loss); Lightly in the inputs' dtype.
    torch.testing.assert_close(ours[0], theirs[0].double(), rtol=1e-6, atol=1e-6)
    for mine, lightly in zip(ours[1:], theirs[1:]):
        assert mine.dtype == dtype
        torch.testing.assert_close(mine, lightly, rtol=1e-5, atol=1e-6)
        assert lightly.abs().max() > 1e-3  # the gradients compared are not all zero


@pytest.mark.parametrize("n", [3, 16])
@pytest.mark.parametrize("temperature", [0.1, 0.7])
@pytest.mark.parametrize("sigma", [None, 0.5])
def test_value_and_gradient_against_the_float64_reference(n, temperature, sigma):
    out0, out1 = embeddings(n, seed=100 + n)
    ours = value_and_gradients(DecoupledContrastiveLoss(temperature, sigma), out0, out1)
    reference = value_and_gradients(
        lambda a, b: naive_decoupled(a, b, temperature, sigma), out0.double(), out1.double()
    )
    torch.testing.assert_close(ours[0], reference[0], rtol=1e-6, atol=1e-6)
    for mine, exact in zip(ours[1:], reference[1:]):
        torch.testing.assert_close(mine.double(), exact, rtol=1e-4, atol=1e-6)


def test_the_positive_is_out_of_the_denominator():
    """The decoupled loss is InfoNCE minus log(1 + e^{p/τ}/Σ e^{n/τ}): lower, by that amount."""
    out0, out1 = embeddings(6, seed=7)
    info_nce = build_loss("hard_contrastive", temperature=0.3, hard_negatives=None)(out0, out1)
    positives, negatives = naive_simclr_pairs(out0, out1)
    gap = torch.stack(
        [
            torch.log1p(torch.exp(p / 0.3 - torch.logsumexp(neg / 0.3, 0)))
            for p, neg in zip(positives, negatives)
        ]
    ).mean()
    decoupled = DecoupledContrastiveLoss(0.3)(out0, out1)
    torch.testing.assert_close(decoupled.double(), info_nce.double() - gap, rtol=1e-6, atol=1e-6)


def test_dclw_weights_are_lightlys_negative_mises_fisher_weights():
    from lightly.loss.dcl_loss import negative_mises_fisher_weights

    views = normalized(*embeddings(9, seed=3))
    layout = in_batch_layout(views, gather_distributed=False)
    weights = DecoupledReduction(weight_sigma=0.3).positive_weights(layout)
    expected = negative_mises_fisher_weights(views.view0, views.view1, sigma=0.3)
    torch.testing.assert_close(weights, expected.repeat(2))
    assert not weights.requires_grad


def test_one_temperature_per_anchor_in_the_reduction():
    """An (A,) τ (the reductions' per-anchor form) gives each anchor its own DCL term."""
    layout = in_batch_layout(normalized(*embeddings(5, seed=4)), gather_distributed=False)
    tau = torch.linspace(0.1, 0.9, 10)
    per_anchor = DecoupledReduction(weight_sigma=0.5)(layout, None, tau)
    single = torch.stack(
        [DecoupledReduction(weight_sigma=0.5)(layout, None, float(t))[i] for i, t in enumerate(tau)]
    )
    torch.testing.assert_close(per_anchor, single, rtol=1e-6, atol=1e-6)


# --- temperature policies -------------------------------------------------------------------


@pytest.mark.parametrize("sigma", [None, 0.5])
def test_constant_policy_is_the_number(sigma):
    out0, out1 = embeddings(8, seed=5)
    number = DecoupledContrastiveLoss(0.2, sigma)(out0, out1)
    policy = DecoupledContrastiveLoss(ConstantTemperature(0.2), sigma)(out0, out1)
    assert policy.item() == number.item()


def test_cosine_policy_is_the_number_of_its_position():
    out0, out1 = embeddings(8, seed=6)
    policy = CosineTemperature(tau_min=0.1, tau_max=0.5, period=4)
    loss_fn = DecoupledContrastiveLoss(policy, weight_sigma=0.5)
    for position, tau in [(0, 0.5), (1, 0.3), (2, 0.1)]:
        policy.set_position(position)
        assert policy.value == pytest.approx(tau)
        assert (
            loss_fn(out0, out1).item()
            == DecoupledContrastiveLoss(policy.value, 0.5)(out0, out1).item()
        )
        expected = DCLWLoss(temperature=policy.value, sigma=0.5)(out0, out1)
        torch.testing.assert_close(loss_fn(out0, out1), expected)


@pytest.mark.parametrize("sigma", [None, 0.5])
def test_learnable_temperature_gradient_against_float64_derivative(sigma):
    out0, out1 = embeddings(6, seed=8)
    policy = LearnableTemperature(init=0.3, tau_min=0.05, tau_max=1.0)
    loss_fn = DecoupledContrastiveLoss(policy, sigma)
    assert [p is policy.log_temperature for p in loss_fn.parameters()] == [True]
    loss_fn(out0, out1).backward()
    tau = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    naive_decoupled(out0, out1, tau, sigma).backward()
    expected = 0.3 * tau.grad  # d/d(log τ) = τ d/dτ
    assert expected.abs() > 1e-2
    torch.testing.assert_close(policy.log_temperature.grad.double(), expected, rtol=1e-5, atol=1e-7)


def test_adaptive_policy_against_the_formula():
    out0, out1 = embeddings(8, seed=9)
    policy = AdaptiveTemperature(base=0.2, alpha=0.5, a0=0.1)
    loss = DecoupledContrastiveLoss(policy)(out0, out1)
    positives, _ = naive_simclr_pairs(out0, out1)
    tau = 0.2 * (1 + 0.5 * (positives.mean() - 0.1))
    torch.testing.assert_close(policy.value.double(), tau, rtol=1e-6, atol=0)
    torch.testing.assert_close(loss.double(), naive_decoupled(out0, out1, tau), rtol=1e-6, atol=0)


# --- refusals -------------------------------------------------------------------------------


def test_refuses_what_it_does_not_compute():
    with pytest.raises(ValueError, match=r"memory_bank_size=\(64, 8\).*no MoCo mode"):
        DecoupledContrastiveLoss(memory_bank_size=(64, 8))
    with pytest.raises(ValueError, match="IndividualTemperature: DecoupledContrastiveLoss"):
        DecoupledContrastiveLoss(IndividualTemperature(num_samples=10))
    loss_fn = DecoupledContrastiveLoss(0.1)
    with pytest.raises(ValueError, match="IndividualTemperature"):
        loss_fn.temperature = IndividualTemperature(num_samples=10)
    with pytest.raises(ValueError, match="weight_sigma must be a finite float > 0, got 0"):
        DecoupledContrastiveLoss(weight_sigma=0)
    with pytest.raises(ValueError, match="temperature must be"):
        DecoupledContrastiveLoss(temperature=-1.0)
    # One sample, no negatives: Lightly's loss is -inf there; this one refuses.
    assert DCLLoss()(*embeddings(1)).item() == float("-inf")
    with pytest.raises(ValueError, match="1 sample.*at least 2 samples"):
        loss_fn(*embeddings(1))


# --- the registry ---------------------------------------------------------------------------


def test_registry_builds_the_package_loss_for_a_policy_and_lightlys_for_a_number():
    policy = CosineTemperature(tau_min=0.1, tau_max=0.5, period=10)
    dcl = build_loss("dcl", temperature=policy, gather_distributed=True)
    assert type(dcl) is DecoupledContrastiveLoss
    assert dcl.temperature is policy and dcl.weight_sigma is None and dcl.gather_distributed
    dclw = build_loss("DCLW", temperature=ConstantTemperature(0.2), sigma=0.25)
    assert type(dclw) is DecoupledContrastiveLoss and dclw.weight_sigma == 0.25
    assert build_loss("dclw", temperature=ConstantTemperature(0.2)).weight_sigma == 0.5
    out0, out1 = embeddings(8, seed=11)
    expected = DCLWLoss(temperature=0.2, sigma=0.25)(out0, out1)
    torch.testing.assert_close(dclw(out0, out1), expected)
    # A number: Lightly's own classes, reused.
    assert type(build_loss("dcl", temperature=0.2)) is DCLLoss
    assert type(build_loss("dclw", temperature=0.2)) is DCLWLoss
    assert takes_temperature_policy("dcl") and takes_temperature_policy("dclw")
    assert not takes_temperature_policy("dcl", per_sample=True)
    assert takes_temperature_policy("ntxent", per_sample=True)
    assert not takes_temperature_policy("macl")


def test_macl_with_a_policy_says_why_and_what_to_use():
    with pytest.raises(ValueError, match="MACLLoss \\('macl'\\) takes a number, the base τ0"):
        build_loss("macl", temperature=CosineTemperature())
    with pytest.raises(ValueError, match="AdaptiveTemperature\\(...\\) with 'ntxent' or"):
        build_loss("macl", temperature=AdaptiveTemperature())
    assert type(build_loss("macl", temperature=0.1)) is MACLLoss


def test_study_takes_dcl_with_a_policy_but_not_a_per_sample_one():
    runs = StudyConfig(
        losses=("dcl", "dclw"), temperatures=(0.3,), temperature_policies=("cosine",), seeds=(0,)
    )
    assert [(r.loss, r.temperature_policy) for r in runs.runs()] == [
        ("dcl", "cosine"),
        ("dclw", "cosine"),
    ]
    with pytest.raises(ValueError, match="loss 'dcl' takes no per-sample temperature"):
        StudyConfig(losses=("dcl",), temperatures=(0.3,), temperature_policies=("individual",))


# --- two processes, negatives gathered ------------------------------------------------------

N, DIM = 5, 8
SIGMAS = (None, 0.5)


def _worker(rank: int, world_size: int, port: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size
    )
    try:
        emb0, emb1 = embeddings(world_size * N, DIM, seed=12)
        rows = slice(rank * N, (rank + 1) * N)
        results = {}
        for sigma in SIGMAS:
            ours = DecoupledContrastiveLoss(0.2, sigma, gather_distributed=True)
            theirs = lightly_loss(0.2, sigma, gather=True)
            results[sigma] = (
                value_and_gradients(ours, emb0[rows], emb1[rows]),
                value_and_gradients(theirs, emb0[rows], emb1[rows]),
            )
        torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_gathered_on_two_processes_equals_lightly(tmp_path, free_port):
    world_size = 2
    mp.spawn(_worker, args=(world_size, free_port, str(tmp_path)), nprocs=world_size)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(world_size)]
    for sigma in SIGMAS:
        for rank in ranks:
            ours, theirs = rank[sigma]
            torch.testing.assert_close(ours[0], theirs[0].double(), rtol=1e-6, atol=1e-6)
            for mine, lightly in zip(ours[1:], theirs[1:]):
                torch.testing.assert_close(mine, lightly, rtol=1e-5, atol=1e-6)
    # DCL without weights: the ranks' mean is the loss of the whole batch on one process, and
    # the gathered gradients are world_size times its gradient (summed over the ranks).
    emb0, emb1 = embeddings(world_size * N, DIM, seed=12)
    single = value_and_gradients(DecoupledContrastiveLoss(0.2), emb0, emb1)
    torch.testing.assert_close(torch.stack([r[None][0][0] for r in ranks]).mean(), single[0])
    grad0 = torch.cat([r[None][0][1] for r in ranks]) / world_size
    torch.testing.assert_close(grad0, single[1])


# --- training -------------------------------------------------------------------------------


def _train_on_digits(loss_fn, steps: int = 8, batch_size: int = 64):
    """Losses of a small SimCLR (SmallCNN and Lightly's projection head) trained with SGD on
    the digits, views: the image and its mirror image; and the trained parameters."""
    from lightly.models.modules import SimCLRProjectionHead

    from lightly_temperature.data import load_digits_tensors
    from lightly_temperature.models.backbones import SmallCNN

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        SmallCNN(in_channels=1, width=8), torch.nn.Flatten(), SimCLRProjectionHead(32, 32, 16)
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    images, _ = load_digits_tensors()
    losses = []
    for step in range(steps):
        x = images[step * batch_size : (step + 1) * batch_size]
        loss = loss_fn(model(x), model(x.flip(-1)))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses, torch.cat([p.detach().flatten() for p in model.parameters()])


@pytest.mark.parametrize("sigma", [None, 0.5])
def test_trains_as_lightlys_loss_with_a_constant_policy(sigma):
    """Eight SGD steps on the digits: the same losses and weights as Lightly's loss."""
    ours, our_weights = _train_on_digits(DecoupledContrastiveLoss(ConstantTemperature(0.2), sigma))
    theirs, their_weights = _train_on_digits(lightly_loss(0.2, sigma))
    assert ours == pytest.approx(theirs, rel=1e-4, abs=1e-5)
    assert ours[-1] < ours[0]  # it trained
    torch.testing.assert_close(our_weights, their_weights, rtol=1e-4, atol=1e-5)
