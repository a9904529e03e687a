"""How far the embeddings spread over the sphere, and when that counts as a collapse.

Example:
    >>> import torch
    >>> from lightly_temperature.metrics import COLLAPSE_THRESHOLD, embedding_spread
    >>> round(embedding_spread(torch.eye(4)).item(), 3)  # four orthogonal directions
    0.866
    >>> embedding_spread(torch.ones(5, 4)).item() < COLLAPSE_THRESHOLD  # one direction
    True
"""

from __future__ import annotations

import math

from lightly.utils.debug import std_of_l2_normalized
from torch import Tensor

from lightly_temperature.metrics._common import check_matrix

#: Embeddings whose spread is below this count as collapsed: a typical pair of them then has a
#: cosine similarity above about 1 - 0.25² ≈ 0.94. Measured on the embedded digits: the study's
#: SimCLR runs 0.98-1.0 and plain MoCo 0.83-0.97; the hard losses' collapse in MoCo (K = 0.0819
#: of the bank) 0.11-0.19.
COLLAPSE_THRESHOLD = 0.25


def embedding_spread(z: Tensor) -> Tensor:
    """Lightly's collapse monitor ``std_of_l2_normalized`` scaled by ``sqrt(D)``.

    1 for embeddings spread uniformly over the sphere (each of the D coordinates of a unit
    vector then has standard deviation ``1 / sqrt(D)``), 0 when they all point the same way,
    whatever the dimension: one threshold, :data:`COLLAPSE_THRESHOLD`, serves every head.

    Args:
        z: ``(N, D)`` embeddings, N >= 2; L2-normalised here.
    """
    z = check_matrix(z, "z", min_rows=2)
    return std_of_l2_normalized(z) * math.sqrt(z.shape[1])
