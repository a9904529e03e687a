"""Argument checks shared by the losses, metrics, callbacks, models, study and CLI: every error
is a ``ValueError`` that names the argument and its value."""

from __future__ import annotations

import math
import numbers
import tempfile
from collections.abc import Collection, Iterable
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch
from torch import Tensor

from lightly_temperature._device import on_host

HardNegatives = Optional[Union[int, float]]


def _is_integer(value: Any) -> bool:
    # Python and NumPy integers (numbers.Integral); bool is an int subclass, but True is no K.
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_finite_number(value: Any) -> bool:
    # Python and NumPy numbers (numbers.Real: np.float32(0.5) is accepted where 0.5 is).
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return False
    return math.isfinite(value)


def check_positive(value: float, name: str) -> float:
    """Returns ``value`` as a float if it is a finite number > 0, else raises ``ValueError``."""
    if not _is_finite_number(value) or value <= 0:
        raise ValueError(f"{name} must be a finite float > 0, got {value!r}")
    return float(value)


def check_non_negative(value: float, name: str) -> float:
    """Returns ``value`` as a float if it is a finite number >= 0, else raises ``ValueError``."""
    if not _is_finite_number(value) or value < 0:
        raise ValueError(f"{name} must be a finite float >= 0, got {value!r}")
    return float(value)


def check_bool(value: bool, name: str) -> bool:
    """Returns ``value`` if it is a bool (NumPy's included), else raises ``ValueError``."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def check_unit_interval(value: float, name: str) -> float:
    """Returns ``value`` as a float if it is a number in [0, 1], else raises ``ValueError``."""
    if not _is_finite_number(value) or not 0 <= value <= 1:
        raise ValueError(f"{name} must be a float in [0, 1], got {value!r}")
    return float(value)


def check_int(value: int | None, name: str, minimum: int, optional: bool = False) -> int | None:
    """Returns ``value`` if it is an int >= ``minimum`` (or ``None`` when ``optional``)."""
    if optional and value is None:
        return None
    if not _is_integer(value) or value < minimum:
        kind = "None or an int" if optional else "an int"
        raise ValueError(f"{name} must be {kind} >= {minimum}, got {value!r}")
    return int(value)


def check_ints(values: Iterable[int], name: str, minimum: int) -> tuple[int, ...]:
    """Returns ``values`` as a tuple if every one is an int >= ``minimum``."""
    checked = tuple(values)
    if any(not _is_integer(v) or v < minimum for v in checked):
        raise ValueError(f"{name} must be ints >= {minimum}, got {values!r}")
    return tuple(int(v) for v in checked)


def check_choice(value: Any, name: str, choices: Collection[Any]) -> Any:
    """Returns ``value`` if it is one of ``choices``, else raises ``ValueError`` listing them."""
    if value not in choices:
        shown = ", ".join(str(choice) for choice in choices)
        raise ValueError(f"{name} must be one of {shown}, got {value!r}")
    return value


def check_temperature(temperature: float | Tensor, name: str = "temperature") -> float | Tensor:
    """Returns ``temperature`` if it is a finite number > 0, else raises ``ValueError``.

    A number (Python or NumPy) is returned as a float. A one-element floating tensor (e.g. a
    learnable ``nn.Parameter``) is returned as it is: on the CPU its value is checked here (no
    device to wait for); on an accelerator it is checked with ``torch._assert_async``, which
    fails the next synchronising operation instead of synchronising now, so that a loss can
    check its temperature on every step without a host-device synchronisation.
    """
    if not isinstance(temperature, Tensor):
        return check_positive(temperature, name)
    if temperature.numel() != 1:
        raise ValueError(
            f"{name} must be a scalar, got a tensor of shape {tuple(temperature.shape)}"
        )
    if not temperature.is_floating_point():
        raise ValueError(f"{name} must be a floating tensor, got dtype {temperature.dtype}")
    valid = torch.isfinite(temperature.detach()) & (temperature.detach() > 0)
    if on_host(temperature):
        if not bool(valid.all()):
            raise ValueError(f"{name} must be a finite float > 0, got {temperature.item()!r}")
    else:
        torch._assert_async(valid.all())
    return temperature


def check_hard_negatives(hard_negatives: HardNegatives) -> HardNegatives:
    """Checks ``hard_negatives``: ``None``, an int K >= 1 or a float fraction in (0, 1].

    NumPy numbers are accepted as the Python number they stand for (an ``np.int64`` is K, an
    ``np.float32`` a fraction).
    """
    if hard_negatives is None:
        return None
    if _is_integer(hard_negatives):
        if hard_negatives < 1:
            raise ValueError(f"hard_negatives must be an int >= 1 (K), got {hard_negatives!r}")
        return int(hard_negatives)
    if _is_finite_number(hard_negatives) or isinstance(hard_negatives, float):
        if not math.isfinite(hard_negatives) or not 0.0 < hard_negatives <= 1.0:
            raise ValueError(
                f"hard_negatives as a float is a fraction alpha in (0, 1], got {hard_negatives!r}"
            )
        return float(hard_negatives)
    raise ValueError(
        f"hard_negatives must be None, an int >= 1 or a float in (0, 1], got {hard_negatives!r}"
    )


def check_embeddings(out0: Tensor, out1: Tensor) -> None:
    """``out0`` and ``out1`` must be real floating-point 2-D tensors of the same shape, with at
    least one sample and one dimension."""
    if not isinstance(out0, Tensor) or not isinstance(out1, Tensor):
        raise ValueError(
            f"out0 and out1 must be tensors, got {type(out0).__name__} and {type(out1).__name__}"
        )
    if out0.dim() != 2:
        raise ValueError(f"out0 must be 2-D (batch_size, dim), got shape {tuple(out0.shape)}")
    if out1.dim() != 2:
        raise ValueError(f"out1 must be 2-D (batch_size, dim), got shape {tuple(out1.shape)}")
    if out0.shape != out1.shape:
        raise ValueError(
            f"out0 and out1 must have the same shape, got out0 {tuple(out0.shape)} "
            f"and out1 {tuple(out1.shape)}"
        )
    if out0.shape[0] < 1:
        raise ValueError(f"out0 must hold at least one sample, got shape {tuple(out0.shape)}")
    if out0.shape[1] < 1:
        raise ValueError(f"out0 must have at least one dimension, got shape {tuple(out0.shape)}")
    for tensor, name in ((out0, "out0"), (out1, "out1")):
        if not tensor.is_floating_point():
            raise ValueError(
                f"{name} must be a real floating-point tensor, got dtype {tensor.dtype}"
            )


def check_indices(indices: Tensor, batch_size: int, num_samples: int | None = None) -> Tensor:
    """Sample indices of a batch: a 1-D integer tensor of ``batch_size`` entries, on the
    embeddings' device, each in ``[0, num_samples)`` when ``num_samples`` is given.

    On the CPU the range is checked here; on an accelerator it is checked by
    ``torch._assert_async``, which fails the step without a host synchronisation.
    """
    if not isinstance(indices, Tensor):
        raise ValueError(
            f"indices must be a tensor of sample indices, got {type(indices).__name__}"
        )
    if indices.dtype.is_floating_point or indices.dtype.is_complex or indices.dtype == torch.bool:
        raise ValueError(f"indices must be an integer tensor, got dtype {indices.dtype}")
    if indices.dim() != 1 or indices.shape[0] != batch_size:
        raise ValueError(
            f"indices must have shape ({batch_size},), one per sample of the batch, "
            f"got shape {tuple(indices.shape)}"
        )
    if num_samples is not None and indices.numel() > 0:
        if on_host(indices):
            low, high = int(indices.min()), int(indices.max())
            if low < 0 or high >= num_samples:
                bad = low if low < 0 else high
                raise ValueError(
                    f"indices must be in [0, {num_samples}) (num_samples={num_samples}), got {bad}"
                )
        else:
            torch._assert_async(((indices >= 0) & (indices < num_samples)).all())
    return indices


def check_writable_folder(folder: str | Path, name: str, shown: str | Path | None = None) -> None:
    """Creates ``folder`` if needed and writes a temporary file there; ValueError naming the
    argument ``name`` and its value ``shown`` (default: the folder) if that fails (a file in
    the way, no permission, a read-only file system)."""
    path = Path(folder)
    shown = folder if shown is None else shown
    if path.exists() and not path.is_dir():
        raise ValueError(f"{name} {shown}: {path} is a file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as error:
        raise ValueError(
            f"{name} {shown}: cannot write to {path} ({error.strerror or error})"
        ) from None
