"""Tolerance to semantically similar samples (Wang & Liu, CVPR 2021, eq. 11).

Example:
    >>> import torch
    >>> from lightly_temperature.metrics import tolerance
    >>> z = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    >>> labels = torch.tensor([0, 0, 1])  # one same-class pair: cos = 0
    >>> round(tolerance(z, labels).item(), 4)
    0.0
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F

from lightly_temperature.metrics._common import check_matrix


def check_labels(labels: Tensor, num_samples: int) -> Tensor:
    """``labels`` must be a 1-D integer tensor with one entry per sample."""
    if not isinstance(labels, Tensor):
        raise ValueError(f"labels must be a tensor, got {type(labels).__name__}")
    if labels.dim() != 1 or labels.shape[0] != num_samples:
        raise ValueError(
            f"labels must be 1-D with one entry per sample ({num_samples}), "
            f"got shape {tuple(labels.shape)}"
        )
    if labels.is_floating_point() or labels.is_complex():
        raise ValueError(f"labels must be an integer tensor, got dtype {labels.dtype}")
    return labels


def tolerance(z: Tensor, labels: Tensor) -> Tensor:
    """Mean cosine similarity over the pairs of distinct samples with the same label.

    ``T = sum_{i != j, l_i = l_j} s_ij / #{(i, j): i != j, l_i = l_j}``, the tolerance the
    paper reports in Table 1 (larger = same-class samples closer together). Exact and without
    any N x N matrix: the sum over the pairs of class c is ``||sum_{i in c} z_i||^2 - n_c`` for
    normalised z, so memory is O(classes x D).

    Args:
        z: ``(N, D)`` embeddings; L2-normalised here.
        labels: ``(N,)`` integer labels.

    Raises:
        ValueError: if no two samples share a label.
    """
    z = check_matrix(z, "z")
    labels = check_labels(labels, z.shape[0]).to(z.device)
    z = F.normalize(z, dim=1)
    _, classes = torch.unique(labels, return_inverse=True)
    num_classes = int(classes.max().item()) + 1
    sums = torch.zeros(num_classes, z.shape[1], dtype=z.dtype, device=z.device)
    sums.index_add_(0, classes, z)
    counts = torch.bincount(classes, minlength=num_classes).to(z.dtype)
    squared_norms = z.pow(2).sum(dim=1)  # 1 up to rounding, 0 for a zero vector
    norm_sums = torch.zeros(num_classes, dtype=z.dtype, device=z.device)
    norm_sums.index_add_(0, classes, squared_norms)
    num_pairs = (counts * (counts - 1)).sum()
    if num_pairs.item() == 0:
        raise ValueError(
            f"tolerance needs at least two samples with the same label, got {z.shape[0]} "
            f"samples with {num_classes} distinct labels"
        )
    pair_sum = (sums.pow(2).sum(dim=1) - norm_sums).sum()
    return pair_sum / num_pairs
