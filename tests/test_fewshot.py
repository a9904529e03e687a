"""Few-shot accuracy: exact values on hand-made embeddings, a float64 reference, seeded label
draws, the errors, and the same measure in probe_metrics and TemperatureAnalysis."""

from __future__ import annotations

import math

import pytest
import pytorch_lightning as pl
import torch
from torch.nn import functional as F

from lightly_temperature import TemperatureAnalysis
from lightly_temperature.metrics import draw_labelled, few_shot_accuracy
from lightly_temperature.probe import ProbeEmbeddings, embed_probe, probe_metrics
from tests._simclr_digits import TinySimCLR, probe_loader, train_loader
from tests.conftest import make_trainer


def _angles(degrees):
    radians = torch.tensor(degrees, dtype=torch.float64) * math.pi / 180
    return torch.stack([radians.cos(), radians.sin()], dim=1)


# Two classes on the unit circle: class 0 at 0° and 20°, class 1 at 90° and 110°.
POOL = _angles([0.0, 20.0, 90.0, 110.0])
POOL_LABELS = torch.tensor([0, 0, 1, 1])


def test_exact_accuracy_on_a_hand_made_embedding():
    # 10° and 100° are nearest to their own class whatever the draw; 40° (label 1) is nearest
    # to class 0 whatever the draw (20° or 0° against 90° or 110°). Scaled rows: cosine.
    queries = torch.cat([_angles([10.0, 100.0]), 3.0 * _angles([40.0])])
    result = few_shot_accuracy(POOL, POOL_LABELS, queries, torch.tensor([0, 1, 1]), shots=1)
    assert result.accuracies.tolist() == [2 / 3] * 10
    assert result.mean == pytest.approx(2 / 3, abs=1e-12) and result.std == 0.0


def test_accuracy_depends_on_the_draw_as_a_reference_computes_it():
    # A query at 60°, label 1: 30° from 90°, 50° from 110°, 40° from 20°, 60° from 0°. It is
    # misclassified only when 20° and 110° are the labelled samples (indices 1 and 3).
    queries, query_labels = _angles([60.0]), torch.tensor([1])
    result = few_shot_accuracy(POOL, POOL_LABELS, queries, query_labels, shots=1, draws=40)
    picked = draw_labelled(POOL_LABELS, shots=1, draws=40, seed=0)
    expected = [0.0 if row.tolist() == [1, 3] else 1.0 for row in picked]
    assert result.accuracies.tolist() == expected
    assert 0 < sum(expected) < 40  # both cases occur in these draws
    mean = torch.tensor(expected, dtype=torch.float64).mean().item()
    assert result.mean == pytest.approx(mean, abs=1e-12)


def test_matches_a_float64_brute_force_reference_on_random_embeddings():
    generator = torch.Generator().manual_seed(1)
    pool = torch.randn(60, 8, generator=generator)
    labels = torch.arange(60) % 4 + 7  # labels 7..10: not 0..C-1
    queries = torch.randn(25, 8, generator=generator)
    query_labels = torch.randint(7, 11, (25,), generator=generator)
    result = few_shot_accuracy(pool, labels, queries, query_labels, shots=3, draws=6, seed=5)
    picked = draw_labelled(labels, shots=3, draws=6, seed=5)
    cosine = F.normalize(queries.double(), dim=1) @ F.normalize(pool.double(), dim=1).T
    for draw, support in enumerate(picked):
        nearest = support[cosine[:, support].argmax(dim=1)]
        expected = (labels[nearest] == query_labels).double().mean().item()
        assert result.accuracies[draw].item() == pytest.approx(expected, abs=1e-12)


def test_label_draws_are_reproducible_with_a_seed_and_balanced():
    labels = torch.tensor([3, 1, 3, 1, 3, 1, 3, 2, 2, 2, 1, 3])
    first = draw_labelled(labels, shots=2, draws=5, seed=4)
    assert torch.equal(first, draw_labelled(labels, shots=2, draws=5, seed=4))
    assert not torch.equal(first, draw_labelled(labels, shots=2, draws=5, seed=5))
    assert first.shape == (5, 6)
    for row in first:
        assert len(set(row.tolist())) == 6  # without replacement
        # two of each class, in sorted label order
        assert labels[row].tolist() == [1, 1, 2, 2, 3, 3]


def test_without_queries_the_undrawn_samples_are_the_queries():
    # Every sample but the drawn one of its class is a query: with shots=1 the query of each
    # class is the other sample, always nearer its own class here.
    result = few_shot_accuracy(POOL, POOL_LABELS, shots=1)
    assert result.accuracies.tolist() == [1.0] * 10
    with pytest.raises(ValueError, match="no query left"):
        few_shot_accuracy(POOL, POOL_LABELS, shots=2)


def test_a_class_smaller_than_the_label_count_is_an_error():
    labels = torch.tensor([0, 0, 0, 1, 1, 2])
    with pytest.raises(ValueError, match=r"shots=2: class 2 has 1$"):
        few_shot_accuracy(torch.randn(6, 3), labels, torch.randn(2, 3), torch.tensor([0, 1]), 2)
    with pytest.raises(ValueError, match="shots must be an int >= 1, got 0"):
        draw_labelled(labels, shots=0)
    with pytest.raises(ValueError, match="given together"):
        few_shot_accuracy(torch.randn(6, 3), labels, torch.randn(2, 3))
    with pytest.raises(ValueError, match="features"):
        few_shot_accuracy(torch.randn(6, 3), labels, torch.randn(2, 4), torch.tensor([0, 1]))


def test_probe_metrics_few_shot_is_the_metric_function():
    generator = torch.Generator().manual_seed(2)
    pool = ProbeEmbeddings(torch.randn(40, 5, generator=generator), None, torch.arange(40) % 4)
    probe = ProbeEmbeddings(torch.randn(30, 5, generator=generator), None, torch.arange(30) % 4)
    values = probe_metrics(probe, ("uniformity",), few_shot=(1, 5), few_shot_pool=pool).values
    for shots in (1, 5):
        expected = few_shot_accuracy(pool.z0, pool.labels, probe.z0, probe.labels, shots=shots)
        assert values[f"fewshot_accuracy_{shots}"] == expected.mean
        assert values[f"fewshot_accuracy_{shots}_draw_std"] == expected.std
    # From the probe alone, and NaN without labels.
    alone = probe_metrics(probe, ("uniformity",), few_shot=(2,)).values
    assert alone["fewshot_accuracy_2"] == few_shot_accuracy(probe.z0, probe.labels, shots=2).mean
    unlabelled = ProbeEmbeddings(probe.z0, None, None)
    assert math.isnan(
        probe_metrics(unlabelled, ("uniformity",), few_shot=(1,)).values["fewshot_accuracy_1"]
    )


@pytest.mark.parametrize("with_pool", [False, True])
def test_temperature_analysis_logs_the_few_shot_accuracy(tmp_path, with_pool):
    pl.seed_everything(1)
    probe = probe_loader(90, batch_size=32, augmented=False)
    pool = train_loader(128, 64) if with_pool else None
    analysis = TemperatureAnalysis(
        probe,
        metrics=("uniformity",),
        few_shot=(1, 3),
        few_shot_dataloader=pool,
        save_figures=False,
        save_csv=False,
    )
    model = TinySimCLR()
    trainer = make_trainer(tmp_path, 1, [analysis], limit_train_batches=2)
    trainer.fit(model, train_loader(128, 64))
    assert analysis.metric_names == [
        "uniformity",
        "fewshot_accuracy_1",
        "fewshot_accuracy_1_draw_std",
        "fewshot_accuracy_3",
        "fewshot_accuracy_3_draw_std",
    ]
    embedded = embed_probe(model, probe)
    labelled = embed_probe(model, pool) if with_pool else embedded
    queries = (embedded.z0, embedded.labels) if with_pool else (None, None)
    for shots in (1, 3):
        expected = few_shot_accuracy(labelled.z0, labelled.labels, *queries, shots=shots)
        assert analysis.history[-1][f"fewshot_accuracy_{shots}"] == expected.mean
        assert analysis.history[-1][f"fewshot_accuracy_{shots}_draw_std"] == expected.std
    assert 0.2 < analysis.history[-1]["fewshot_accuracy_3"] <= 1.0  # chance is 0.1


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"few_shot": (0,)}, "few_shot must be ints >= 1"),
        ({"few_shot": (1, 1)}, "few_shot must not repeat"),
        ({"few_shot": (1,), "few_shot_draws": 0}, "few_shot_draws must be an int >= 1"),
        ({"few_shot_dataloader": probe_loader(10)}, "few_shot_dataloader is only used with"),
    ],
)
def test_bad_few_shot_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TemperatureAnalysis(probe_loader(10), **kwargs)


# --- the study's report ------------------------------------------------------------------------


def _rows(values):
    """results.csv rows: (loss, tau, seed) -> (1-shot mean, its draw std, 10-shot mean)."""
    rows = []
    for (loss, tau, seed), (one, one_std, ten) in values.items():
        row = {"method": "simclr", "loss": loss, "temperature": str(tau), "seed": str(seed)}
        row.update(hard_negatives="", epochs="50", knn_accuracy="0.97")
        row.update(fewshot_accuracy_1=str(one), fewshot_accuracy_1_draw_std=str(one_std))
        row.update(fewshot_accuracy_10=str(ten), fewshot_accuracy_10_draw_std="0.01")
        rows.append(row)
    return rows


def test_report_spread_combines_seeds_and_label_draws():
    from lightly_temperature.study.report import aggregate

    agg = aggregate(
        _rows({("ntxent", 0.3, 0): (0.80, 0.03, 0.9), ("ntxent", 0.3, 1): (0.84, 0.04, 0.9)})
    )
    mean, seed_std, n = agg[("ntxent", 0.3)]["fewshot_accuracy_1"]
    assert (mean, n) == (pytest.approx(0.82), 2)
    assert seed_std == pytest.approx(math.sqrt(0.0008))  # sample std of 0.80 and 0.84
    # Law of total variance: the seeds' variance plus the mean of the draws' variances.
    total = agg[("ntxent", 0.3)]["fewshot_accuracy_1_total_std"][0]
    assert total == pytest.approx(math.sqrt(0.0008 + (0.03**2 + 0.04**2) / 2))


def test_report_states_each_finding_against_the_seed_spread():
    from lightly_temperature.study.report import aggregate, few_shot_findings

    values = {}
    for seed, shift in ((0, -0.005), (1, 0.005)):
        for tau, one, ten in ((0.07, 0.78, 0.94), (0.3, 0.87, 0.96), (1.0, 0.85, 0.945)):
            values[("ntxent", tau, seed)] = (one + shift, 0.02, ten + shift)
        for tau in (0.07, 0.3, 1.0):
            values[("hard_contrastive", tau, seed)] = (0.72 + shift, 0.02, 0.96 + shift)
    lines = few_shot_findings(aggregate(_rows(values)))
    assert lines[0].startswith("- **Contrastive, inverted U in τ (1 label per class):** 78.0 →")
    assert "holds beyond the seed spread: τ = 0.3 (87.0 % ± 0.7) above τ = 0.07" in lines[0]
    # 10 labels: 96.0 at the peak against 94.5 ± 0.7 at τ = 1: apart.
    assert "holds beyond the seed spread" in lines[1]
    assert lines[2].endswith(
        "HardContrastive 96.0 % ± 0.7, Contrastive 94.5 % ± 0.7; hard above plain: beyond the "
        "seed spread."
    )
    assert lines[3].endswith(
        "HardContrastive 72.0 % ± 0.7, Contrastive 85.0 % ± 0.7; hard below plain: beyond the "
        "seed spread."
    )
    # One seed: no verdict from a spread there is not.
    one_seed = {key: value for key, value in values.items() if key[2] == 0}
    lines = few_shot_findings(aggregate(_rows(one_seed)))
    assert lines[3].endswith("hard below plain: one seed: no spread to judge against.")
