"""The public evaluation pass (lightly_temperature.probe) and Fig. 8 renderer, used alone."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from lightly_temperature import metrics
from lightly_temperature.data import digits_dataset
from lightly_temperature.figures import SIMILARITY_BINS, similarity_densities
from lightly_temperature.probe import ProbeEmbeddings, embed_probe, probe_metrics


class Flatten(nn.Module):
    """A module with a BatchNorm, to see eval mode: embeddings are flattened images."""

    def __init__(self) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(1)

    def forward(self, x):
        return self.norm(x).flatten(start_dim=1)


def test_probe_metrics_are_the_metric_functions_of_the_views():
    generator = torch.Generator().manual_seed(0)
    z0, z1 = torch.randn(40, 8, generator=generator), torch.randn(40, 8, generator=generator)
    labels = torch.arange(40) % 4
    result = probe_metrics(
        ProbeEmbeddings(z0, z1, labels), top_k=10, temperature=0.2, hard_negatives=30
    )
    positive, negatives = metrics.positive_and_top_negative_similarities(z0, z1, k=10)
    false_negatives = metrics.top_k_false_negative_rate(z0, labels, k=10)
    effective = metrics.effective_negatives_of_views(z0, z1, 0.2, hard_negatives=30)
    mass = metrics.same_label_penalty_mass_of_views(z0, z1, labels, 0.2, hard_negatives=30)
    expected = {
        "uniformity": metrics.uniformity(z0),
        "alignment": metrics.alignment(z0, z1),
        "tolerance": metrics.tolerance(z0, labels),
        "positive_similarity": positive.mean(),
        "top10_negative_similarity": negatives.mean(),
        "effective_rank": metrics.effective_rank(z0),
        "std_of_l2_normalized": metrics.std_of_l2_normalized(z0),
        "embedding_spread": metrics.embedding_spread(z0),
        "top10_false_negative_rate": false_negatives.mean(),
        "effective_negatives": effective.mean(),
        "false_negative_penalty_mass": mass.mean(),
    }
    assert result.values == {name: value.item() for name, value in expected.items()}
    assert torch.equal(result.positive, positive) and torch.equal(result.negatives, negatives)
    assert torch.equal(result.per_sample["false_negative_rate"], false_negatives)
    assert torch.equal(result.per_sample["effective_negatives"], effective)
    assert torch.equal(result.per_sample["false_negative_penalty_mass"], mass)
    # Without the loss's temperature there is no effective number of negatives.
    assert math.isnan(probe_metrics(ProbeEmbeddings(z0, z1, labels)).values["effective_negatives"])


def test_missing_views_or_labels_give_nan_and_bad_input_an_error():
    z0 = torch.randn(6, 4, generator=torch.Generator().manual_seed(1))
    result = probe_metrics(
        ProbeEmbeddings(z0, None, None), ("uniformity", "tolerance", "alignment")
    )
    assert list(result.values) == ["uniformity", "alignment", "tolerance"]
    assert math.isfinite(result.values["uniformity"])
    assert math.isnan(result.values["alignment"]) and math.isnan(result.values["tolerance"])
    assert result.positive is None and result.negatives is None
    with pytest.raises(ValueError, match=r"the probe has 1 sample\(s\), the metrics need 2"):
        probe_metrics(ProbeEmbeddings(z0[:1], None, None))
    with pytest.raises(ValueError, match="metrics must be a non-empty selection"):
        probe_metrics(ProbeEmbeddings(z0, None, None), ("accuracy",))


def test_embed_probe_uses_eval_mode_seeds_each_sample_and_keeps_the_rng():
    module = Flatten().train()
    module.norm.running_mean.fill_(0.5)  # eval mode: (x - 0.5) / sqrt(1 + eps)
    dataset = digits_dataset(indices=range(30))
    state = torch.random.get_rng_state()
    probe = embed_probe(module, DataLoader(dataset, batch_size=8), seed=4)
    assert module.training and torch.equal(torch.random.get_rng_state(), state)
    # Each sample's views are drawn with the RNG seeded by seed + index, whatever the batches.
    again = embed_probe(module, DataLoader(dataset, batch_size=30), seed=4)
    assert torch.equal(probe.z0, again.z0) and torch.equal(probe.z1, again.z1)
    torch.manual_seed(4 + 7)
    (view0, _), _ = dataset[7]
    expected = ((view0 - 0.5) / math.sqrt(1 + module.norm.eps)).flatten()
    torch.testing.assert_close(probe.z0[7], expected)
    assert torch.equal(probe.labels, dataset.labels)
    with pytest.raises(ValueError, match="all_gather is needed to join the probe shares of 2"):
        embed_probe(module, DataLoader(dataset, batch_size=8), rank=0, world_size=2)


def test_similarity_densities_on_the_shared_bins():
    values = torch.tensor([-0.99, 0.005, 0.015, 0.999, 2.0])  # 2.0 lies outside [-1, 1]
    density = similarity_densities(values)
    assert len(SIMILARITY_BINS) == 101 and SIMILARITY_BINS[50] == 0.0
    assert density.sum() * 0.02 == pytest.approx(1.0)
    assert [i for i, d in enumerate(density) if d > 0] == [0, 50, 99]
    assert density[50] == pytest.approx(2 * density[0])
