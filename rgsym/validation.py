"""Argument checks shared by every module: each error names the argument, its value and
what would be valid, and is raised before any expensive work."""
from __future__ import annotations

import math
import numbers
from typing import Sequence, TypeVar

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["integer", "real", "choice", "float_dtype", "float_array"]

T = TypeVar("T")


def integer(name: str, value: object, low: int, high: int | None = None) -> int:
    """``value`` as an int in [low, high] (high=None: unbounded); bools are refused.

    Args:
      name: the argument's name, for the message; value: what was passed; low, high: bounds.

    Returns:
      ``int(value)``.

    Raises:
      ValueError: a bool, a non-integer, or a value out of range.
    """
    if (isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low
            or high is not None and value > high):
        valid = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{name}={value!r} is not valid: it must be an integer {valid}")
    return int(value)


def real(name: str, value: object, *, positive: bool = False, low: float | None = None,
         high: float | None = None) -> float:
    """``value`` as a finite float, optionally > 0 and/or in [low, high].

    Args:
      name: the argument's name; value: what was passed; positive, low, high: the range.

    Returns:
      ``float(value)``.

    Raises:
      ValueError: a bool, a non-real or non-finite value, or one out of range.
    """
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


def choice(name: str, value: T, valid: Sequence) -> T:
    """``value`` if it is one of ``valid``.

    Args:
      name: the argument's name; value: what was passed; valid: the choices.

    Returns:
      ``value`` unchanged.

    Raises:
      ValueError: naming the argument, its value and every valid choice.
    """
    if value not in valid:
        raise ValueError(f"{name}={value!r} is unknown: choose one of "
                         f"{', '.join(map(str, valid))}")
    return value


def float_dtype(name: str, dtype: jax.typing.DTypeLike) -> np.dtype:
    """``dtype`` as a numpy floating dtype that JAX will honour.

    Args:
      name: the argument's name; dtype: anything ``np.dtype`` accepts.

    Returns:
      The ``np.dtype`` (bfloat16 included).

    Raises:
      ValueError: naming ``name`` when it is not a floating type, or is float64 while
        ``jax_enable_x64`` is off (JAX would silently hand back float32).
    """
    try:
        out = np.dtype(dtype)
    except TypeError:
        out = None
    if out is None or not np.issubdtype(out, np.floating) and out.name != "bfloat16":
        raise ValueError(f"{name}={dtype!r} is not valid: it must be a floating dtype")
    if jax.dtypes.canonicalize_dtype(out) != out:
        raise ValueError(
            f"{name}={out} is not available while jax_enable_x64 is off (JAX would return "
            f"{jax.dtypes.canonicalize_dtype(out)} silently): call "
            "jax.config.update('jax_enable_x64', True) first, or use float32")
    return out


def float_array(name: str, x: jax.typing.ArrayLike) -> jax.Array:
    """``x`` as a JAX array of a floating dtype.

    Args:
      name: the argument's name; x: any real array-like, any shape.

    Returns:
      ``x``'s shape; booleans and integers become the default float (block sums and
      rescalings of an integer lattice must not truncate).

    Raises:
      ValueError: complex or non-numeric input, naming ``name``.
    """
    try:
        x = jnp.asarray(x)
    except TypeError as e:
        raise ValueError(f"{name} is not valid: it must be a real numeric array ({e})") from None
    if jnp.issubdtype(x.dtype, jnp.complexfloating):
        raise ValueError(f"{name} has dtype {x.dtype}: it must be real")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.result_type(float))
    return x
