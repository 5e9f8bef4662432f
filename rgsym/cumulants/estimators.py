"""Unbiased k-statistics and their standard errors: the Monte Carlo side of every check.

``k_statistics(x, axis)`` returns kappa_1..kappa_order (order <= 4) estimated from the
samples along ``axis``; every other axis is a batch axis.  Standard errors come from the
sample itself through the influence function of each cumulant (asymptotically exact), so a
check reads ``|analytic - k| < z * se``.  Work in float64 for precision checks
(``jax.config.update('jax_enable_x64', True)``).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from rgsym import validation

__all__ = ["KStats", "k_statistics", "k_statistics_with_se", "MAX_KSTAT_ORDER", "PowerSums",
           "power_sums", "combine", "k_statistics_from_power_sums"]

MAX_KSTAT_ORDER = 4

#: Largest relative error (in units of spread**p) accepted for the order-p k-statistic, and
#: for its standard error, before they are returned as NaN (see :func:`_digits_lost`).
VALUE_TOLERANCE, SE_TOLERANCE = 1e-6, 1e-3


class KStats(NamedTuple):
    """value, se: [..., order] estimates of kappa_1..kappa_order and their standard errors;
    n: the number of samples they came from."""
    value: jnp.ndarray
    se: jnp.ndarray
    n: int


def _prepare(x, axis, order):
    validation.integer("order", order, 1, MAX_KSTAT_ORDER)
    x = validation.float_array("x", x)
    if x.ndim == 0:
        raise ValueError("x is a scalar: k-statistics need samples along an axis")
    x = jnp.moveaxis(x, axis, -1)
    n = x.shape[-1]
    if n <= order:
        raise ValueError(f"x has {n} samples along axis={axis}: order={order} needs more than "
                         f"{order}")
    return x, n


def _kstats_from_central(nf, m, order: int) -> list:
    """kappa_2..kappa_order estimated from the central moments m[p] = mean (x - mean)^p of
    nf samples (the unbiased k-statistics)."""
    k = [lambda: nf * m[2] / (nf - 1),
         lambda: nf ** 2 * m[3] / ((nf - 1) * (nf - 2)),
         lambda: (nf ** 2 * ((nf + 1) * m[4] - 3 * (nf - 1) * m[2] ** 2)
                  / ((nf - 1) * (nf - 2) * (nf - 3)))]
    return [f() for f in k[:order - 1]]


def _influence(m, order: int) -> list:
    """Influence functions of kappa_1..kappa_order as ascending polynomial coefficients in
    d = x - mean; the squared standard error is their mean square / (n - 1)."""
    infl = [lambda: [0.0, 1.0],
            lambda: [-m[2], 0.0, 1.0],
            lambda: [-m[3], -3 * m[2], 0.0, 1.0],
            lambda: [6 * m[2] ** 2 - m[4], -4 * m[3], -6 * m[2], 0.0, 1.0]]
    return [f() for f in infl[:order]]


def k_statistics(x: jax.typing.ArrayLike, axis: int = 0, order: int = 4) -> jax.Array:
    """Unbiased estimates of kappa_1..kappa_order from samples along ``axis``.

    Args:
      x: floating samples, e.g. [M, N] (M samples of N sites) with ``axis=0``.
      axis: the sample axis; every other axis is a batch axis.
      order: 1..MAX_KSTAT_ORDER (4).

    Returns:
      [..., order]: x's shape without ``axis``, then the orders.

    Raises:
      ValueError: as :func:`k_statistics_with_se`.
    """
    return k_statistics_with_se(x, axis, order).value


def k_statistics_with_se(x: jax.typing.ArrayLike, axis: int = 0, order: int = 4) -> KStats:
    """k-statistics and influence-function standard errors; jit-able (axis/order static).

    The k-statistics are Fisher's (1929) unbiased estimators (Kendall & Stuart, vol. 1);
    the SE of each is ``sqrt(sum_i IF(x_i)**2 / (n (n - 1)))`` with IF the cumulant's
    influence function, a polynomial in ``x_i - mean`` (asymptotically exact).

    Kept apart from :func:`k_statistics_from_power_sums` on purpose: summing the squared
    influence values sample by sample keeps the SE accurate when it is tiny next to the
    moments (e.g. k_2 of +-1 spins), where going through power sums cancels to zero.

    Args:
      x: floating samples, e.g. [M, N] with ``axis=0``; other axes are batch axes.
      axis: the sample axis (static); order: 1..4 (static).

    Returns:
      :class:`KStats`: value and se [..., order] (x's shape without ``axis``), n = M.

    Raises:
      ValueError: non-floating or scalar x, order outside 1..4, or M <= order samples.

    Example:
      >>> import numpy as np
      >>> from rgsym import cumulants
      >>> ks = cumulants.k_statistics_with_se(np.array([1.0, -1.0, 1.0, -1.0]), order=2)
      >>> print(np.asarray(ks.value).round(4), np.asarray(ks.se).round(4), ks.n)
      [0.     1.3333] [0.5774 0.    ] 4
    """
    x, n = _prepare(x, axis, order)
    mean = x.mean(-1, keepdims=True)
    d = x - mean  # k-statistics of order >= 2 are shift invariant: centre for precision
    nf = jnp.asarray(n, x.dtype)
    m = {p: (d ** p).mean(-1) for p in range(2, order + 1)}
    values = jnp.stack([mean[..., 0]] + _kstats_from_central(nf, m, order), -1)
    m_ = {p: v[..., None] for p, v in m.items()}  # broadcast against the sample axis
    se = jnp.stack([jnp.sqrt((sum(c * d ** k for k, c in enumerate(f)) ** 2).sum(-1)
                             / (nf - 1) / nf) for f in _influence(m_, order)], -1)
    return KStats(values, se, n)


# ----------------------------------------------------------------------------------------
# Streaming form: power sums about a fixed shift, combined over chunks, give the same
# k-statistics and standard errors as above without holding the sample.

class PowerSums(NamedTuple):
    """sums[..., p-1] = sum (x - shift)^p for p = 1..2*order; shift: [...]; n: sample count."""
    sums: jnp.ndarray
    shift: jnp.ndarray
    n: jnp.ndarray


def power_sums(x: jax.typing.ArrayLike, shift: jax.typing.ArrayLike, order: int = 4,
               axis: int = 0) -> PowerSums:
    """Power sums of one chunk, to :func:`combine` over chunks.

    Args:
      x: floating samples, e.g. [M, N] with ``axis=0``.
      shift: [...] broadcasting against x without ``axis``; should be close to the mean (a
        pilot estimate) so that float64 keeps the central moments.
      order: the k-statistic order the sums will serve (1..4); axis: the sample axis.

    Returns:
      :class:`PowerSums` with sums [..., 2 * order].

    Raises:
      ValueError: non-floating x or order outside 1..4.
    """
    validation.integer("order", order, 1, MAX_KSTAT_ORDER)
    x = jnp.moveaxis(validation.float_array("x", x), axis, -1)
    d = x - jnp.asarray(shift, x.dtype)[..., None]
    powers, p = [], d
    for _ in range(2 * order):
        powers.append(p.sum(-1))
        p = p * d
    return PowerSums(jnp.stack(powers, -1), jnp.asarray(shift, x.dtype),
                     jnp.asarray(x.shape[-1], x.dtype))


def combine(a: PowerSums, b: PowerSums) -> PowerSums:
    """Power sums of the union of two samples taken about the same shift.

    Args:
      a, b: power sums of the same batch shape [..., 2 * order].

    Returns:
      The summed :class:`PowerSums` (n = a.n + b.n).

    Raises:
      ValueError: the shifts differ (concrete values); under tracing the sums of units
        whose shifts differ become NaN instead of silently mixing two origins.
    """
    same = a.shift == b.shift
    if not isinstance(same, jax.core.Tracer) and not bool(jnp.all(same)):
        raise ValueError("combine: the power sums were taken about different shifts "
                         f"(a.shift={a.shift}, b.shift={b.shift}); take every chunk about one "
                         "shift (e.g. a pilot mean)")
    sums = jnp.where(jnp.asarray(same)[..., None], a.sums + b.sums, jnp.nan)
    return PowerSums(sums, a.shift, a.n + b.n)


def _poly_mul(a, b):
    out = [0.0] * (len(a) + len(b) - 1)
    for i, x in enumerate(a):
        for j, y in enumerate(b):
            out[i + j] = out[i + j] + x * y
    return out


def k_statistics_from_power_sums(ps: PowerSums, order: int = 4) -> KStats:
    """Same estimates and influence-function SEs as :func:`k_statistics_with_se`.

    Args:
      ps: power sums [..., 2 * order'] with order' >= order; order: 1..4.

    Returns:
      :class:`KStats` [..., order]; entries that lose too many digits to the shift are NaN
      (``VALUE_TOLERANCE``, ``SE_TOLERANCE``).

    Raises:
      ValueError: order outside 1..4 or above what ``ps`` holds.
    """
    validation.integer("order", order, 1, MAX_KSTAT_ORDER)
    if 2 * order > ps.sums.shape[-1]:
        raise ValueError(f"order={order!r} is not valid: 1..{MAX_KSTAT_ORDER} with power sums "
                         f"up to 2*order (have {ps.sums.shape[-1]})")
    nf = ps.n
    raw = [jnp.ones_like(ps.sums[..., 0])] + [ps.sums[..., p] / nf
                                               for p in range(ps.sums.shape[-1])]
    mu = raw[1]
    # central moments m_k = sum_j C(k, j) raw_j (-mu)^(k-j)
    m = [sum(math.comb(k, j) * raw[j] * (-mu) ** (k - j) for j in range(k + 1))
         for k in range(2 * order + 1)]
    values = [ps.shift + mu] + _kstats_from_central(nf, m, order)
    se = []
    for f in _influence(m, order):
        sq = _poly_mul(f, f)
        mean_sq = sum(c * m[k] for k, c in enumerate(sq))
        se.append(jnp.sqrt(jnp.clip(mean_sq, 0.0) / (nf - 1)))
    values, se = jnp.stack(values, -1), jnp.stack(se, -1)
    lost = _digits_lost(ps.shift, mu, m[2], 2 * order)
    p = jnp.arange(1, order + 1)
    # a centred sample loses eps 2^k by itself: the tolerances never go below 2^10 times that
    eps, k = jnp.finfo(mu.dtype).eps, jnp.arange(1, 2 * order + 1)
    own = 2.0 ** 10 * eps * 2.0 ** k
    far = lost[..., p - 1] > jnp.maximum(VALUE_TOLERANCE, own[p - 1])
    values = jnp.where(far, jnp.nan, values)
    se = jnp.where(lost[..., 2 * p - 1] > jnp.maximum(SE_TOLERANCE, own[2 * p - 1]), jnp.nan, se)
    if not isinstance(far, jax.core.Tracer) and bool(far.any()):  # NaN data stay NaN
        worst = float(jnp.max(jnp.abs(mu) / jnp.sqrt(jnp.clip(m[2], 0.0))))
        raise ValueError(
            f"shift is about {worst:.3g} standard deviations from the sample mean: power sums "
            "about it cancel and lose every digit of the higher k-statistics; pass a shift "
            "close to the mean (e.g. a pilot estimate) to power_sums")
    return KStats(values, se, ps.n)


def _digits_lost(shift, mu, m2, top: int):
    """[..., top]: bound on the relative error of the central moment m_k, k = 1..top, built
    from power sums about ``shift`` when the mean sits ``mu`` away from it:
    eps (2 (1 + |mu| / spread))^k.  The spread is floored at the dtype's resolution at the
    data, so a constant sample is not flagged."""
    eps = jnp.finfo(mu.dtype).eps
    spread = jnp.maximum(jnp.sqrt(jnp.clip(m2, 0.0)), eps * (jnp.abs(shift) + jnp.abs(mu)))
    ratio = jnp.where(mu == 0, 0.0, jnp.abs(mu) / jnp.where(spread > 0, spread, 1.0))
    k = jnp.arange(1, top + 1, dtype=mu.dtype)
    return eps * (2 * (1 + ratio[..., None])) ** k
