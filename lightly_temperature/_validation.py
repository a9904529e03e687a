"""Argument checks shared by the losses, metrics, callbacks, models, study and CLI: every error
is a ``ValueError`` that names the argument and its value."""

from __future__ import annotations

import math
import tempfile
from collections.abc import Collection, Iterable
from pathlib import Path
from typing import Any, Optional, Union

from torch import Tensor

HardNegatives = Optional[Union[int, float]]


def _is_finite_number(value: Any) -> bool:
    # bool is an int subclass, but True is no learning rate.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
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


def check_unit_interval(value: float, name: str) -> float:
    """Returns ``value`` as a float if it is a number in [0, 1], else raises ``ValueError``."""
    if not _is_finite_number(value) or not 0 <= value <= 1:
        raise ValueError(f"{name} must be a float in [0, 1], got {value!r}")
    return float(value)


def check_int(value: int | None, name: str, minimum: int, optional: bool = False) -> int | None:
    """Returns ``value`` if it is an int >= ``minimum`` (or ``None`` when ``optional``)."""
    if optional and value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        kind = "None or an int" if optional else "an int"
        raise ValueError(f"{name} must be {kind} >= {minimum}, got {value!r}")
    return value


def check_ints(values: Iterable[int], name: str, minimum: int) -> tuple[int, ...]:
    """Returns ``values`` as a tuple if every one is an int >= ``minimum``."""
    checked = tuple(values)
    if any(isinstance(v, bool) or not isinstance(v, int) or v < minimum for v in checked):
        raise ValueError(f"{name} must be ints >= {minimum}, got {values!r}")
    return checked


def check_choice(value: Any, name: str, choices: Collection[Any]) -> Any:
    """Returns ``value`` if it is one of ``choices``, else raises ``ValueError`` listing them."""
    if value not in choices:
        shown = ", ".join(str(choice) for choice in choices)
        raise ValueError(f"{name} must be one of {shown}, got {value!r}")
    return value


def check_temperature(temperature: float, name: str = "temperature") -> float:
    """Returns ``temperature`` if it is a finite number > 0, else raises ``ValueError``."""
    if isinstance(temperature, Tensor):
        if temperature.numel() != 1:
            raise ValueError(
                f"{name} must be a scalar, got a tensor of shape {tuple(temperature.shape)}"
            )
        # A tensor temperature (e.g. learnable) is not read back to the host here: that would
        # synchronise the device on every step.
        return temperature  # type: ignore[return-value]
    return check_positive(temperature, name)


def check_hard_negatives(hard_negatives: HardNegatives) -> HardNegatives:
    """Checks ``hard_negatives``: ``None``, an int K >= 1 or a float fraction in (0, 1]."""
    if hard_negatives is None:
        return None
    if isinstance(hard_negatives, bool):
        raise ValueError(
            f"hard_negatives must be None, an int >= 1 or a float in (0, 1], got {hard_negatives!r}"
        )
    if isinstance(hard_negatives, int):
        if hard_negatives < 1:
            raise ValueError(f"hard_negatives must be an int >= 1 (K), got {hard_negatives!r}")
        return hard_negatives
    if isinstance(hard_negatives, float):
        if not math.isfinite(hard_negatives) or not 0.0 < hard_negatives <= 1.0:
            raise ValueError(
                f"hard_negatives as a float is a fraction alpha in (0, 1], got {hard_negatives!r}"
            )
        return hard_negatives
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
