"""Effective rank of an embedding matrix (RankMe, Garrido et al., ICML 2023).

Example:
    >>> import torch
    >>> from lightly_temperature.metrics import effective_rank
    >>> round(effective_rank(torch.eye(8)).item(), 3)  # 8 equal singular values
    8.0
"""

from __future__ import annotations

import torch
from torch import Tensor

from lightly_temperature.metrics._common import check_matrix


def effective_rank(z: Tensor, eps: float = 1e-7) -> Tensor:
    """RankMe: ``exp(-sum_k p_k log p_k)`` with ``p = sigma / ||sigma||_1 + eps``.

    ``sigma`` are the singular values of the (unnormalised) ``(N, D)`` embedding matrix; the
    value lies in [1, min(N, D)] (up to eps), 1 for fully collapsed embeddings. A zero matrix
    has rank 0; non-finite embeddings give NaN. Memory O(N x D).

    Args:
        z: ``(N, D)`` embeddings.
        eps: the smoothing of RankMe (1e-7 in the paper).
    """
    z = check_matrix(z, "z")
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0 <= eps < 1:
        raise ValueError(f"eps must be a float in [0, 1), got {eps!r}")
    if not torch.isfinite(z).all():
        return z.new_tensor(float("nan"))  # as the other metrics: NaN in, NaN out
    sigma = torch.linalg.svdvals(z)
    total = sigma.sum()
    if total.item() == 0:
        return total  # zero matrix: rank 0
    p = sigma / total + eps
    return torch.exp(-(p * p.log()).sum())
