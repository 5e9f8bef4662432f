"""Parameter initialisers ``(key, shape, dtype) -> array`` that keep the requested dtype.

The scales may be numpy float64 or traced scalars; the cast keeps float32 params float32.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

__all__ = ["normal", "softplus_of_abs_normal", "ParamOptions", "bias_param"]


def normal(std):
    """N(0, std^2)."""
    def init(key, shape, dtype):
        return (std * jax.random.normal(key, shape, dtype)).astype(dtype)
    return init


def softplus_of_abs_normal(std):
    """Raw values whose softplus is |N(0, std^2)| (clipped away from 0 to stay finite)."""
    def init(key, shape, dtype):
        y = jnp.maximum(jnp.abs(normal(std)(key, shape, dtype)), 1e-6)
        return (y + jnp.log(-jnp.expm1(-y))).astype(dtype)
    return init


class ParamOptions(NamedTuple):
    """How a module creates its parameters: weight scale, dtype, and whether biases exist."""
    scale: Any = 1.0
    dtype: Any = jnp.float32
    use_bias: bool = True


def bias_param(module, name: str, shape: tuple, opts: ParamOptions):
    """A zero-initialised bias of ``shape``, or constant zeros when ``opts.use_bias`` is off."""
    if not opts.use_bias:
        return jnp.zeros(shape, opts.dtype)
    return module.param(name, nn.initializers.zeros, shape, opts.dtype)
