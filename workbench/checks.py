"""Validation helpers shared across the library, so every module reports bad values the same way:
naming the parameter, the value it got, and what to pass instead."""

from __future__ import annotations

import math
from typing import Any, Iterable

import numpy as np
import torch

def require_finite(name: str, value: float) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}; pass a finite number")
    return value


def require_finite_weights(named: Iterable[tuple[str, torch.Tensor]], where: str,
                           error: type[Exception] = ValueError) -> None:
    """Raise ``error`` naming the first floating tensor with NaN/inf values: such a network would run and
    silently give no spikes or garbage."""
    for key, value in named:
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            bad = int((~torch.isfinite(value)).sum())
            raise error(f"{where}: weight {key!r} has {bad} NaN/inf values (training diverged?); "
                        "use an earlier checkpoint, e.g. best.pt, or retrain with a lower rate")


def require_positive(name: str, value: float) -> float:
    value = require_finite(name, value)
    if value <= 0:
        raise ValueError(f"{name} must be > 0, got {value}; pass a positive number")
    return value


def require_int_at_least(name: str, value: Any, minimum: int) -> int:
    """``value`` as an int when it is an integer >= ``minimum`` (numpy integers too; bools and floats are refused)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def require_positive_int(name: str, value: Any) -> int:
    return require_int_at_least(name, value, 1)


def require_nonnegative_int(name: str, value: Any) -> int:
    return require_int_at_least(name, value, 0)


def require_nonnegative(name: str, value: float) -> float:
    value = require_finite(name, value)
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}; pass zero or a positive number")
    return value


def require_choice(name: str, value: Any, choices: tuple[Any, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


def check_sequence(x: torch.Tensor, name: str = "input", layout: str = "[T, B, N]") -> None:
    """Module inputs are time-first floating tensors with at least [T, B, N] dimensions."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of shape {layout}, got {type(x).__name__}")
    if x.dim() < 3:
        raise ValueError(
            f"{name} must be time-first {layout} (at least 3 dims), got shape {tuple(x.shape)}; "
            "add a batch axis with x[:, None] or a time axis with x[None]"
        )
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating tensor, got dtype {x.dtype}; call .float() first")


def check_noise(noise: torch.Tensor, shape: torch.Size, name: str = "noise") -> None:
    if tuple(noise.shape) != tuple(shape):
        raise ValueError(f"{name} must have the input's shape {tuple(shape)}, got {tuple(noise.shape)}")
