"""Input checks and helpers shared by the metric functions."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

from lightly_temperature._validation import check_int

#: Rows per chunk: extra memory is O(DEFAULT_CHUNK_SIZE x N) floats.
DEFAULT_CHUNK_SIZE = 1024


def compute_dtype(z: Tensor) -> torch.dtype:
    """float32 for half/bfloat16/float32 inputs, float64 kept as is (never below float32)."""
    return torch.promote_types(z.dtype, torch.float32)


def check_matrix(z: Tensor, name: str = "z", min_rows: int = 1) -> Tensor:
    """``z`` must be a 2-D floating tensor with at least ``min_rows`` rows; returns it as float."""
    if not isinstance(z, Tensor):
        raise ValueError(f"{name} must be a tensor, got {type(z).__name__}")
    if z.dim() != 2:
        raise ValueError(f"{name} must be 2-D (num_samples, dim), got shape {tuple(z.shape)}")
    if z.shape[0] < min_rows:
        raise ValueError(
            f"{name} must hold at least {min_rows} samples, got shape {tuple(z.shape)}"
        )
    if z.shape[1] < 1:
        raise ValueError(f"{name} must have at least one feature, got shape {tuple(z.shape)}")
    if not (z.is_floating_point() or z.dtype in (torch.int32, torch.int64)):
        raise ValueError(f"{name} must be a real tensor, got dtype {z.dtype}")
    return z.to(compute_dtype(z) if z.is_floating_point() else torch.float32)


def check_pair(z0: Tensor, z1: Tensor, min_rows: int = 1) -> tuple[Tensor, Tensor]:
    """Two views of the same samples: 2-D tensors of the same shape."""
    z0 = check_matrix(z0, "z0", min_rows)
    z1 = check_matrix(z1, "z1", min_rows)
    if z0.shape != z1.shape:
        raise ValueError(
            f"z0 and z1 must have the same shape, got z0 {tuple(z0.shape)} and z1 {tuple(z1.shape)}"
        )
    dtype = torch.promote_types(z0.dtype, z1.dtype)
    return z0.to(dtype), z1.to(dtype)


def check_chunk_size(chunk_size: int) -> int:
    return check_int(chunk_size, "chunk_size", minimum=1)


def chunks(n: int, chunk_size: int) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` row ranges of at most ``chunk_size`` rows covering ``range(n)``."""
    for start in range(0, n, chunk_size):
        yield start, min(start + chunk_size, n)
