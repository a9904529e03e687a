"""False negatives among the hardest negatives: how often the samples an embedding puts
closest to an anchor share its label (and so are pushed away although they should not be).

Example:
    >>> import torch
    >>> z = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    >>> top_k_false_negative_rate(z, torch.tensor([0, 0, 1, 1]), k=1)
    tensor([1., 1., 1., 1.])
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F

from lightly_temperature.kernels import top_k_indices
from lightly_temperature.metrics._common import (
    DEFAULT_CHUNK_SIZE,
    check_chunk_size,
    check_matrix,
    chunks,
)
from lightly_temperature.metrics.penalties import check_labels


def same_label_fraction(index: Tensor, anchor_labels: Tensor, candidate_labels: Tensor) -> Tensor:
    """Per row of ``index`` ``(A, k)`` (candidate columns, e.g. each anchor's k hardest
    negatives): the fraction whose label equals the row's anchor label, ``(A,)``."""
    neighbours = candidate_labels.to(index.device)[index]
    return (neighbours == anchor_labels.to(index.device).unsqueeze(1)).float().mean(dim=1)


def top_k_false_negative_rate(
    embeddings: Tensor, labels: Tensor, k: int = 10, chunk_size: int = DEFAULT_CHUNK_SIZE
) -> Tensor:
    """The fraction of each sample's ``k`` most similar other samples that share its label.

    Cosine similarity; the sample itself is not its own neighbour. For a contrastive loss these
    neighbours are the hardest negatives, so this is the false-negative rate among them.
    Extra memory O(chunk_size x N).

    Args:
        embeddings: ``(N, D)``.
        labels: ``(N,)`` class labels.
        k: neighbours per sample, ``1 <= k <= N - 1``.
        chunk_size: rows per chunk.

    Returns:
        ``(N,)`` fractions in [0, 1] (float32).
    """
    z = check_matrix(embeddings, "embeddings", min_rows=2)
    n = z.shape[0]
    check_labels(labels, n)
    chunk_size = check_chunk_size(chunk_size)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= n - 1:
        raise ValueError(f"k must be an int in [1, {n - 1}] (N - 1 for N = {n}), got {k!r}")
    z = F.normalize(z, dim=1)
    labels = labels.to(z.device)
    rates = []
    for start, stop in chunks(n, chunk_size):
        sims = z[start:stop] @ z.T
        rows = torch.arange(stop - start, device=z.device)
        sims[rows, rows + start] = float("-inf")  # not its own neighbour
        nearest = top_k_indices(sims, k).to(sims.device)
        rates.append(same_label_fraction(nearest, labels[start:stop], labels))
    return torch.cat(rates).float()
