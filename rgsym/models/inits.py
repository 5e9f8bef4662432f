"""Parameter initialisers ``(key, shape, dtype) -> array`` that keep the requested dtype.

The scales may be numpy float64 or traced scalars; the cast keeps float32 params float32.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["normal", "softplus_of_abs_normal"]


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
