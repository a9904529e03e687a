"""Metrics of what the temperature does to the embedding (Wang & Liu, CVPR 2021, section 4).

Pure functions on tensors, on any device, float32 (or float64) internally. Those over pairs
of samples work in row chunks: extra memory O(chunk_size x N), never an N x N matrix.

- :func:`uniformity_loss` / :func:`uniformity`: Wang & Isola's L_uniformity and its negation
  (what the paper reports; higher = more uniform).
- :func:`alignment`: mean distance^alpha of positives.
- :func:`tolerance`: mean cosine similarity of same-label pairs.
- :func:`positive_and_top_negative_similarities`: the paper's Fig. 8 distributions.
- :func:`relative_penalties`: the paper's r_i (from :mod:`lightly_temperature.functional`).
- :func:`effective_rank`: RankMe.
- :func:`hardness_statistics`: per-step statistics of a loss's own similarities.
- :func:`effective_number_of_negatives`, :func:`top_k_penalty_share`,
  :func:`same_label_penalty_mass`: how the loss spreads its penalty over the negatives.
- :func:`top_k_false_negative_rate`: how many of each sample's nearest others share its label.
- :func:`std_of_l2_normalized`: Lightly's collapse monitor (0 collapsed, ~1/sqrt(D) healthy).
- :func:`few_shot_accuracy`: 1-NN accuracy with a few labelled samples per class, over
  seeded label draws (:func:`draw_labelled`).
- :func:`embedding_spread`: the same scaled to [0, ~1]; below :data:`COLLAPSE_THRESHOLD` the
  embeddings count as collapsed.

Example:
    >>> import torch
    >>> from lightly_temperature import metrics
    >>> z0, z1 = torch.randn(256, 32), torch.randn(256, 32)
    >>> u = metrics.uniformity(z0)  # in [0, ~4]
    >>> pos, neg = metrics.positive_and_top_negative_similarities(z0, z1, k=10)
    >>> pos.shape, neg.shape
    (torch.Size([256]), torch.Size([256, 10]))
"""

from lightly.utils.debug import std_of_l2_normalized

from lightly_temperature.functional import relative_penalties
from lightly_temperature.metrics._common import DEFAULT_CHUNK_SIZE
from lightly_temperature.metrics.collapse import COLLAPSE_THRESHOLD, embedding_spread
from lightly_temperature.metrics.false_negatives import top_k_false_negative_rate
from lightly_temperature.metrics.fewshot import (
    DEFAULT_DRAWS,
    FewShotAccuracy,
    draw_labelled,
    few_shot_accuracy,
)
from lightly_temperature.metrics.hardness import hardness_statistics
from lightly_temperature.metrics.penalties import (
    effective_negatives_of_views,
    effective_number_of_negatives,
    same_label_penalty_mass,
    same_label_penalty_mass_of_views,
    top_k_penalty_share,
)
from lightly_temperature.metrics.rank import effective_rank
from lightly_temperature.metrics.similarities import positive_and_top_negative_similarities
from lightly_temperature.metrics.tolerance import tolerance
from lightly_temperature.metrics.uniformity import alignment, uniformity, uniformity_loss

__all__ = [
    "COLLAPSE_THRESHOLD",
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_DRAWS",
    "FewShotAccuracy",
    "alignment",
    "draw_labelled",
    "effective_negatives_of_views",
    "effective_number_of_negatives",
    "effective_rank",
    "embedding_spread",
    "few_shot_accuracy",
    "hardness_statistics",
    "positive_and_top_negative_similarities",
    "relative_penalties",
    "same_label_penalty_mass",
    "same_label_penalty_mass_of_views",
    "std_of_l2_normalized",
    "tolerance",
    "top_k_false_negative_rate",
    "top_k_penalty_share",
    "uniformity",
    "uniformity_loss",
]
