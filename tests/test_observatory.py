"""The hardness observatory: effective number of negatives, penalty shares, false negatives,
against float64 references and exact hand-made values; and the monitor that logs them."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from lightly_temperature import HardContrastiveLoss, HardnessMonitor
from lightly_temperature.metrics import effective_negatives_of_views as metrics_effective
from lightly_temperature.metrics import (
    effective_number_of_negatives,
    hardness_statistics,
    same_label_penalty_mass,
    top_k_false_negative_rate,
    top_k_penalty_share,
)
from lightly_temperature.similarity_batch import SimilarityBatch
from tests._simclr_digits import train_loader
from tests.conftest import make_trainer
from tests.test_hardness_monitor import Recorder, Watched


def _penalties64(negatives: torch.Tensor, temperature: float) -> torch.Tensor:
    return torch.softmax(negatives.double() / temperature, dim=1)


def test_effective_number_of_negatives_at_its_two_limits():
    # Equal similarities: every negative counts the same, N of them (-inf columns are none).
    equal = torch.full((3, 6), 0.3)
    equal[:, 4:] = float("-inf")
    for tau in (0.01, 0.5, 10.0):
        torch.testing.assert_close(effective_number_of_negatives(equal, tau), torch.full((3,), 4.0))
    # tau -> 0 with one hardest negative: only it counts.
    distinct = torch.tensor([[0.9, 0.5, 0.1, -0.2], [0.2, 0.8, 0.3, 0.1]])
    torch.testing.assert_close(effective_number_of_negatives(distinct, 1e-3), torch.ones(2))
    # tau -> inf: all of them.
    torch.testing.assert_close(
        effective_number_of_negatives(distinct, 1e4), torch.full((2,), 4.0), rtol=1e-4, atol=1e-4
    )


@pytest.mark.parametrize("temperature", [0.07, 0.3, 1.0])
def test_effective_number_and_share_against_float64(temperature):
    g = torch.Generator().manual_seed(0)
    negatives = torch.rand(5, 12, generator=g) * 2 - 1
    r = _penalties64(negatives, temperature)
    expected = torch.exp(-(r * r.log()).sum(dim=1))
    got = effective_number_of_negatives(negatives, temperature)
    torch.testing.assert_close(got.double(), expected, rtol=1e-5, atol=1e-6)
    share = r.sort(dim=1, descending=True).values[:, :3].sum(dim=1)
    torch.testing.assert_close(top_k_penalty_share(negatives, temperature, k=3).double(), share)
    # With the loss's top-K the penalties spread over those K only.
    top = negatives.double().sort(dim=1, descending=True).values[:, :4]
    r_top = torch.softmax(top / temperature, dim=1)
    torch.testing.assert_close(
        effective_number_of_negatives(negatives, temperature, hard_negatives=4).double(),
        torch.exp(-(r_top * r_top.log()).sum(dim=1)),
        rtol=1e-5,
        atol=1e-6,
    )
    # Equal similarities: the k hardest get k / N of the mass.
    torch.testing.assert_close(
        top_k_penalty_share(torch.zeros(2, 8), temperature, k=2), torch.full((2,), 0.25)
    )


def test_same_label_penalty_mass_exact():
    negatives = torch.tensor([[0.0, 0.0, float("-inf"), 0.0]])  # three equal negatives
    anchor = torch.tensor([1])
    candidates = torch.tensor([1, 2, 1, 1])  # column 2 is not a negative: no mass
    mass = same_label_penalty_mass(negatives, 1.0, anchor, candidates)
    torch.testing.assert_close(mass, torch.tensor([2.0 / 3.0]))


def test_top_k_false_negative_rate_exact_on_a_hand_made_batch():
    # Six points on the circle at angles 0, 10, 20 (label 0) and 100, 110, 205 degrees
    # (labels 0, 1, 1): the nearest others by cosine are known exactly.
    angles = torch.tensor([0.0, 10.0, 20.0, 100.0, 110.0, 205.0]) * math.pi / 180
    z = torch.stack([angles.cos(), angles.sin()], dim=1) * 3.0  # not normalised: cosine anyway
    labels = torch.tensor([0, 0, 0, 0, 1, 1])
    # k = 1: 0->10 (same), 10->0 or 20 (same), 20->10 (same), 100->110 (other),
    # 110->100 (other), 205->110 at 95 degrees (same)
    torch.testing.assert_close(
        top_k_false_negative_rate(z, labels, k=1), torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0, 1.0])
    )
    # k = 2: 0 -> {10, 20}; 10 -> {0, 20}; 20 -> {10, 0}; 100 -> {110, 20}: 1 of 2 label 0;
    # 110 -> {100, 20} (90 degrees; 205 is at 95): none is label 1; 205 -> {110, 100}: 1 of 2
    torch.testing.assert_close(
        top_k_false_negative_rate(z, labels, k=2, chunk_size=4),
        torch.tensor([1.0, 1.0, 1.0, 0.5, 0.0, 0.5]),
    )


def test_top_k_false_negative_rate_against_brute_force():
    g = torch.Generator().manual_seed(1)
    z = torch.randn(40, 6, generator=g)
    labels = torch.randint(0, 3, (40,), generator=g)
    zn = F.normalize(z.double(), dim=1)
    sims = zn @ zn.T
    sims.fill_diagonal_(float("-inf"))
    nearest = sims.topk(5, dim=1).indices
    expected = (labels[nearest] == labels[:, None]).double().mean(dim=1)
    torch.testing.assert_close(
        top_k_false_negative_rate(z, labels, k=5, chunk_size=7).double(), expected
    )


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (
            lambda: top_k_false_negative_rate(
                torch.randn(5, 3), torch.zeros(5, dtype=torch.long), k=0
            ),
            "k",
        ),
        (
            lambda: top_k_false_negative_rate(
                torch.randn(5, 3), torch.zeros(5, dtype=torch.long), k=5
            ),
            "k",
        ),
        (
            lambda: top_k_false_negative_rate(torch.randn(5, 3), torch.zeros(4, dtype=torch.long)),
            "labels",
        ),
        (lambda: top_k_penalty_share(torch.zeros(2, 3), 0.5, k=0), "k"),
        (lambda: effective_number_of_negatives(torch.zeros(2, 3), 0.0), "temperature"),
        (
            lambda: same_label_penalty_mass(torch.zeros(2, 3), 0.5, torch.zeros(3), torch.zeros(3)),
            "anchor_labels",
        ),
        (
            lambda: same_label_penalty_mass(torch.zeros(2, 3), 0.5, torch.zeros(2), torch.zeros(2)),
            "candidate_labels",
        ),
        (
            lambda: hardness_statistics(
                SimilarityBatch(torch.zeros(2), torch.zeros(2, 3), 3, 0.5),
                anchor_labels=torch.zeros(2),
            ),
            "candidate_labels",
        ),
    ],
)
def test_bad_arguments_raise_value_errors_naming_them(call, name):
    with pytest.raises(ValueError, match=name):
        call()


def _reference_observatory(z0, z1, labels, temperature, hard_negatives, k=10):
    """The monitor's observatory values from their definitions, float64, explicit layout."""
    z = F.normalize(torch.cat([z0, z1]).double(), dim=1)
    n = z0.shape[0]
    sims = z @ z.T
    i = torch.arange(2 * n)
    sims[i, i] = float("-inf")
    sims[i, (i + n) % (2 * n)] = float("-inf")
    paired = labels.repeat(2)
    same = paired[:, None] == paired[None, :]
    if hard_negatives is not None:
        index = sims.topk(hard_negatives, dim=1).indices
        used = torch.full_like(sims, float("-inf")).scatter(1, index, sims.gather(1, index))
    else:
        used = sims
    r = torch.softmax(used / temperature, dim=1)
    effective = torch.exp(torch.special.entr(r).sum(dim=1))
    hardest = sims.topk(k, dim=1).indices
    return {
        "effective_negatives": effective.mean().item(),
        f"top{k}_penalty_share": r.topk(k, dim=1).values.sum(dim=1).mean().item(),
        f"top{k}_false_negative_rate": same.gather(1, hardest).double().mean().item(),
        "false_negative_penalty_mass": (r * same).sum(dim=1).mean().item(),
    }


@pytest.mark.parametrize("hard_negatives", [None, 20])
def test_monitor_logs_the_observatory_of_what_the_loss_compared(tmp_path, hard_negatives):
    labels_seen = []

    class LabelRecorder(Recorder):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            super().on_train_batch_start(trainer, pl_module, batch, batch_idx)
            labels_seen.append(batch[1].clone())

    torch.manual_seed(0)
    model = Watched(HardContrastiveLoss(0.3, hard_negatives=hard_negatives))
    recorder, monitor = LabelRecorder(), HardnessMonitor(log_every_n_steps=2)
    trainer = make_trainer(
        tmp_path, 1, [recorder, monitor], limit_train_batches=4, log_every_n_steps=1
    )
    trainer.fit(model, train_loader(512, 32))
    assert [row["step"] for row in monitor.history] == [1, 3]
    for row in monitor.history:
        step = row["step"]
        z0, z1 = recorder.embeddings[step]
        expected = _reference_observatory(z0, z1, labels_seen[step], 0.3, hard_negatives)
        for key, value in expected.items():
            assert row[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
    # Digits: ten classes, so some of the hardest negatives are of the anchor's class.
    assert 0.0 < monitor.history[-1]["top10_false_negative_rate"] < 1.0


def test_monitor_with_a_memory_bank_logs_no_false_negatives(tmp_path):
    loader = train_loader(512, 32)
    torch.manual_seed(0)
    monitor = HardnessMonitor(log_every_n_steps=1)
    model = Watched(HardContrastiveLoss(0.3, memory_bank_size=(64, 16)))
    trainer = make_trainer(tmp_path, 1, [monitor], limit_train_batches=2, log_every_n_steps=1)
    trainer.fit(model, loader)
    # A memory bank's entries have no labels in the batch: no false-negative statistics.
    assert "effective_negatives" in monitor.history[0]
    assert "top10_false_negative_rate" not in monitor.history[0]


@pytest.mark.parametrize(("temperature", "hard_negatives"), [(0.1, None), (0.5, 7), (0.3, 0.25)])
def test_effective_negatives_of_views_against_float64(temperature, hard_negatives):
    g = torch.Generator().manual_seed(2)
    z0, z1 = torch.randn(9, 4, generator=g), torch.randn(9, 4, generator=g)
    z = F.normalize(torch.cat([z0, z1]).double(), dim=1)
    n = 9
    expected = []
    for i in range(n):
        others = [j for j in range(2 * n) if j not in (i, i + n)]
        sims = z[i] @ z[others].T
        if hard_negatives is not None:
            k = hard_negatives if isinstance(hard_negatives, int) else round(0.25 * (2 * n - 2))
            sims = sims.topk(k).values
        r = torch.softmax(sims / temperature, dim=0)
        expected.append(torch.exp(-(r * r.log()).sum()))
    got = metrics_effective(z0, z1, temperature, hard_negatives, chunk_size=4)
    torch.testing.assert_close(got.double(), torch.stack(expected), rtol=1e-5, atol=1e-6)


def test_temperature_analysis_logs_the_observatory_at_the_loss_temperature(tmp_path):
    from lightly_temperature import TemperatureAnalysis
    from lightly_temperature.probe import embed_probe, probe_metrics
    from tests._simclr_digits import TinySimCLR, probe_loader

    torch.manual_seed(0)
    model = TinySimCLR(temperature=0.2, hard_negatives=30)
    analysis = TemperatureAnalysis(probe_loader(60), every_n_epochs=1, save_figures=False)
    trainer = make_trainer(tmp_path, 1, [analysis], limit_train_batches=2)
    trainer.fit(model, train_loader(256, 32))
    row = analysis.history[-1]
    probe = embed_probe(model, probe_loader(60), seed=0)
    expected = probe_metrics(probe, ("false_negatives", "effective_negatives"), 10, 1024, 0.2, 30)
    assert row["effective_negatives"] == expected.values["effective_negatives"]
    assert row["top10_false_negative_rate"] == expected.values["top10_false_negative_rate"]
    assert 1.0 < row["effective_negatives"] <= 30.0  # at most the loss's K


def test_penalty_share_is_one_when_the_loss_keeps_fewer_than_k_negatives():
    g = torch.Generator().manual_seed(4)
    negatives = torch.rand(3, 12, generator=g)
    batch = SimilarityBatch(torch.rand(3, generator=g), negatives, 12, 0.5)
    assert torch.equal(
        hardness_statistics(batch, 5, k=10)["top10_penalty_share"], torch.tensor(1.0)
    )
    share = hardness_statistics(batch, 8, k=3)["top3_penalty_share"]
    r = torch.softmax(negatives.double().topk(8, dim=1).values / 0.5, dim=1)
    torch.testing.assert_close(share.double(), r[:, :3].sum(dim=1).mean())


@pytest.mark.parametrize("hard_negatives", [None, 6])
def test_same_label_penalty_mass_of_views_against_float64(hard_negatives):
    from lightly_temperature.metrics import same_label_penalty_mass_of_views

    g = torch.Generator().manual_seed(5)
    z0, z1 = torch.randn(8, 4, generator=g), torch.randn(8, 4, generator=g)
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    z = F.normalize(torch.cat([z0, z1]).double(), dim=1)
    expected = []
    for i in range(8):
        others = torch.tensor([j for j in range(16) if j not in (i, i + 8)])
        sims = z[i] @ z[others].T
        same = labels.repeat(2)[others] == labels[i]
        if hard_negatives is not None:
            top = sims.topk(hard_negatives).indices
            sims, same = sims[top], same[top]
        expected.append((torch.softmax(sims / 0.2, dim=0) * same).sum())
    got = same_label_penalty_mass_of_views(z0, z1, labels, 0.2, hard_negatives, chunk_size=3)
    torch.testing.assert_close(got.double(), torch.stack(expected), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="labels"):
        same_label_penalty_mass_of_views(z0, z1, labels[:5], 0.2)
