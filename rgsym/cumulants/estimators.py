"""Unbiased k-statistics and their standard errors: the Monte Carlo side of every check.

``k_statistics(x, axis)`` returns kappa_1..kappa_order (order <= 4) estimated from the
samples along ``axis``; every other axis is a batch axis.  Standard errors come from the
sample itself through the influence function of each cumulant (asymptotically exact), so a
check reads ``|analytic - k| < z * se``.  Work in float64 for precision checks
(``jax.config.update('jax_enable_x64', True)``).
"""
from __future__ import annotations

import numbers
from typing import NamedTuple

import jax.numpy as jnp

__all__ = ["KStats", "k_statistics", "k_statistics_with_se", "MAX_KSTAT_ORDER"]

MAX_KSTAT_ORDER = 4


class KStats(NamedTuple):
    """value, se: [..., order] estimates of kappa_1..kappa_order and their standard errors."""
    value: jnp.ndarray
    se: jnp.ndarray
    n: int


def _prepare(x, axis, order):
    if isinstance(order, bool) or not isinstance(order, numbers.Integral) or not (
            1 <= order <= MAX_KSTAT_ORDER):
        raise ValueError(f"order={order!r} is not valid: k-statistics exist here for orders "
                         f"1..{MAX_KSTAT_ORDER}")
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.result_type(float))
    if x.ndim == 0:
        raise ValueError("x is a scalar: k-statistics need samples along an axis")
    x = jnp.moveaxis(x, axis, -1)
    n = x.shape[-1]
    if n <= order:
        raise ValueError(f"x has {n} samples along axis={axis}: order={order} needs more than "
                         f"{order}")
    return x, n


def k_statistics(x, axis: int = 0, order: int = 4) -> jnp.ndarray:
    """Unbiased estimates [..., order] of kappa_1..kappa_order from samples along ``axis``."""
    return k_statistics_with_se(x, axis, order).value


def k_statistics_with_se(x, axis: int = 0, order: int = 4) -> KStats:
    """k-statistics and influence-function standard errors; jit-able (axis/order static)."""
    x, n = _prepare(x, axis, order)
    mean = x.mean(-1, keepdims=True)
    d = x - mean  # k-statistics of order >= 2 are shift invariant: centre for precision
    s2, s3, s4 = ((d ** p).sum(-1) for p in (2, 3, 4))
    nf = jnp.asarray(n, x.dtype)
    k1 = mean[..., 0]
    k2 = s2 / (nf - 1)
    k3 = nf * s3 / ((nf - 1) * (nf - 2))
    k4 = nf * ((nf + 1) * s4 - 3 * (nf - 1) * s2 ** 2 / nf) / ((nf - 1) * (nf - 2) * (nf - 3))
    # Influence functions of the central-moment cumulants.
    m2, m3 = s2 / nf, s3 / nf
    m2_, m3_ = m2[..., None], m3[..., None]
    m4_ = (s4 / nf)[..., None]
    infl = [d,
            d ** 2 - m2_,
            d ** 3 - m3_ - 3 * m2_ * d,
            (d ** 4 - m4_ - 4 * m3_ * d) - 6 * m2_ * (d ** 2 - m2_)]
    values = jnp.stack([k1, k2, k3, k4][:order], -1)
    se = jnp.stack([jnp.sqrt((f ** 2).sum(-1) / (nf - 1) / nf) for f in infl[:order]], -1)
    return KStats(values, se, n)
