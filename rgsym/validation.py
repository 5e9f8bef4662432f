"""Argument checks shared by every module: each error names the argument, its value and
what would be valid, and is raised before any expensive work."""
from __future__ import annotations

import math
import numbers

__all__ = ["integer", "real", "choice"]


def integer(name: str, value, low: int, high: int | None = None) -> int:
    """``value`` as an int in [low, high] (high=None: unbounded); bools are refused."""
    if (isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low
            or high is not None and value > high):
        valid = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{name}={value!r} is not valid: it must be an integer {valid}")
    return int(value)


def real(name: str, value, *, positive: bool = False, low: float | None = None,
         high: float | None = None) -> float:
    """``value`` as a finite float, optionally > 0 and/or in [low, high]."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{name}={value!r} is not valid: it must be a finite real number")
    value = float(value)
    if positive and value <= 0:
        raise ValueError(f"{name}={value!r} is not valid: it must be > 0")
    if low is not None and value < low or high is not None and value > high:
        valid = (f"be >= {low}" if high is None else f"be <= {high}" if low is None
                 else f"lie in [{low}, {high}]")
        raise ValueError(f"{name}={value!r} is not valid: it must {valid}")
    return value


def choice(name: str, value, valid):
    """``value`` if it is one of ``valid`` (a sequence of choices), else a ValueError naming
    the argument, its value and every valid choice."""
    if value not in valid:
        raise ValueError(f"{name}={value!r} is unknown: choose one of "
                         f"{', '.join(map(str, valid))}")
    return value
