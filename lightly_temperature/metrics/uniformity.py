"""Uniformity and alignment of embeddings on the hypersphere (Wang & Isola, ICML 2020).

The contrastive-loss paper (Wang & Liu, CVPR 2021, eq. 10 and Table 1) reports
``-L_uniformity`` with t = 2: higher means more uniformly spread embeddings.

Example:
    >>> import torch
    >>> from lightly_temperature.metrics import alignment, uniformity, uniformity_loss
    >>> z = torch.eye(4)  # a regular 4-point configuration: all pairs at distance sqrt(2)
    >>> round(uniformity_loss(z).item(), 4)  # log exp(-2 * 2)
    -4.0
    >>> round(uniformity(z).item(), 4)
    4.0
    >>> round(alignment(z, z).item(), 4)
    0.0
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import Tensor
from torch.nn import functional as F

from lightly_temperature._device import on_host
from lightly_temperature._validation import check_positive
from lightly_temperature.metrics._common import (
    DEFAULT_CHUNK_SIZE,
    check_chunk_size,
    check_matrix,
    check_pair,
    chunks,
)


def uniformity_loss(z: Tensor, t: float = 2.0, chunk_size: int = DEFAULT_CHUNK_SIZE) -> Tensor:
    """Wang & Isola's ``L_uniformity = log E_{i != j} exp(-t ||z_i - z_j||^2)`` of normalised z.

    Equal to ``torch.pdist(F.normalize(z)).pow(2).mul(-t).exp().mean().log()``, but computed
    with a log-sum-exp over row chunks: stable (no underflow of ``exp`` for large t) and with
    extra memory O(chunk_size x N) instead of the N(N-1)/2 pairs. Lower is more uniform.

    Rows that are zero or not finite have no direction: if there are any, the value is NaN,
    with a ``RuntimeWarning`` that counts them (a zero row would otherwise count as a point at
    distance sqrt(2) from all others, and 10 zero rows would score a perfect 4): a collapse is
    never reported as uniformity.

    Args:
        z: ``(N, D)`` embeddings, N >= 2; L2-normalised here.
        t: the kernel's scale t > 0 (2 in the papers).
        chunk_size: rows per chunk.

    Returns:
        A scalar tensor (float32, or float64 for float64 input) on z's device.
    """
    z = check_matrix(z, "z", min_rows=2)
    t = check_positive(t, "t")
    chunk_size = check_chunk_size(chunk_size)
    if _rows_without_direction(z):
        return torch.full((), float("nan"), dtype=z.dtype, device=z.device)
    z = F.normalize(z, dim=1)
    n = z.shape[0]
    # -t ||z_i - z_j||^2 = 2t s_ij - 2t for unit vectors: 2t is folded into one (N, D) operand,
    # so each block costs one product, one max, one subtraction, one exp and one sum. The
    # matrix is symmetric: only the blocks on and above the diagonal are computed, those above
    # it count twice. One reused buffer: no fresh allocation per block. On the CPU the blocks
    # are square (they stay in cache); on a GPU, where the number of operations bounds the
    # time, each row block meets all the columns from its diagonal on in one product.
    scaled = z * (2.0 * t)
    blocks = list(chunks(n, chunk_size))
    width = blocks[0][1] - blocks[0][0]
    wide = not on_host(z)
    if wide:  # contiguous blocks of any width
        flat = torch.empty(width * n, dtype=z.dtype, device=z.device)
    else:  # views of one square buffer (their sums are the reference values of the studies)
        square = torch.empty(width, width, dtype=z.dtype, device=z.device)
    partial = []
    for b, (start, stop) in enumerate(blocks):
        rows = stop - start
        for col_start, col_stop in [(start, n)] if wide else blocks[b:]:
            if col_start == start and col_stop - col_start == 1:
                continue  # a 1 x 1 diagonal block holds no pair
            cols = col_stop - col_start
            logits = flat[: rows * cols].view(rows, cols) if wide else square[:rows, :cols]
            torch.mm(scaled[start:stop], z[col_start:col_stop].T, out=logits)  # 2t s_ij
            weight = 0.0
            if col_start == start:
                logits[:, :rows].diagonal().fill_(float("-inf"))  # the pair (i, i) is not a pair
            else:
                weight = math.log(2.0)  # the block below the diagonal is its transpose
            top = logits.amax()  # the block's log-sum-exp, shifted by its maximum: no overflow
            exps = logits.sub_(top).exp_()
            if col_start == start and col_stop > stop:  # the columns right of the diagonal block
                total = exps[:, :rows].sum() + 2.0 * exps[:, rows:].sum()  # count twice
            else:
                total = exps.sum()
            partial.append(top + total.log() + weight)
    # Mean over the N(N-1) ordered pairs == mean over the N(N-1)/2 unordered pairs.
    total = torch.logsumexp(torch.stack(partial), dim=0) - 2.0 * t - math.log(n * (n - 1))
    return total.clamp_max(0.0)  # exp(-t d^2) <= 1: rounding must not make it positive


def _rows_without_direction(z: Tensor) -> int:
    """How many rows of ``z`` are zero or not finite; warns when there are any (one host
    synchronisation: an evaluation-time metric)."""
    has_direction = torch.isfinite(z).all(dim=1) & (z.abs().amax(dim=1) > 0)
    count = int((~has_direction).sum())
    if count:
        warnings.warn(
            f"uniformity: {count} of {z.shape[0]} embeddings are zero or not finite: "
            "uniformity is NaN (a collapse or a numerical failure, not a uniform embedding)",
            RuntimeWarning,
            stacklevel=3,
        )
    return count


def uniformity(z: Tensor, t: float = 2.0, chunk_size: int = DEFAULT_CHUNK_SIZE) -> Tensor:
    """``-L_uniformity``, as reported in the paper's Table 1 (higher = more uniform).

    At most ``2t * N / (N - 1)`` (4 for t = 2 and a large N); 0 for collapsed embeddings.
    """
    return -uniformity_loss(z, t=t, chunk_size=chunk_size)


def alignment(z0: Tensor, z1: Tensor, alpha: float = 2.0) -> Tensor:
    """Wang & Isola's ``L_alignment = E_i ||z0_i - z1_i||^alpha`` of normalised embeddings.

    Lower = positives closer. In [0, 2^alpha]; with alpha = 2 it is ``2 - 2 * mean cos``.

    Args:
        z0: ``(N, D)`` embeddings of the first views.
        z1: ``(N, D)`` embeddings of the second views (row i is the positive of row i of z0).
        alpha: exponent > 0 (2 in the papers).
    """
    z0, z1 = check_pair(z0, z1)
    alpha = check_positive(alpha, "alpha")
    z0 = F.normalize(z0, dim=1)
    z1 = F.normalize(z1, dim=1)
    return (z0 - z1).norm(dim=1).pow(alpha).mean()
