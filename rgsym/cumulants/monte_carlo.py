"""Monte Carlo twin of :func:`~rgsym.cumulants.propagate.propagate`.

Samples the base family, runs the same layer chain, and streams per-unit power sums of
every layer (float64, chunks of ``batch`` samples inside one ``lax.scan``), so memory stays
``O(batch x width)`` whatever ``n_samples`` is.  The result holds per-layer k-statistics
with influence-function standard errors, and the measured MSE against the RG target with
the standard error of the mean of per-sample squared errors.
"""
from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from rgsym import clt, validation
from rgsym.reprs import short_repr
from rgsym.cumulants.estimators import (MAX_KSTAT_ORDER, PowerSums,
                                        k_statistics_from_power_sums, power_sums)
from rgsym.cumulants.propagate import geometry, model_chain
from rgsym.distributions import Distribution
from rgsym.models.layer_ops import compose_all
from rgsym.models.model import Model, Params

__all__ = ["MonteCarlo", "monte_carlo"]


class MonteCarlo(NamedTuple):
    """layers: KStats per state (input, then after each layer), value/se [H_layer, order];
    mse, mse_se: measured mean (over samples and output sites) squared error vs RG^steps."""
    layers: tuple
    mse: jnp.ndarray
    mse_se: jnp.ndarray
    n: int

    __repr__ = short_repr  # arrays as dtype[shape]: the default printed ~80 lines


def _run(chain, rg, key, sample, n_chunks, batch, order):
    """The scanned sampler: per-layer power sums and squared-error sums over the chunks."""
    pilot_key, key = jax.random.split(key)
    shifts = [o.mean(0) for o in compose_all(chain, sample(pilot_key, batch))]

    def step(carry, k):
        sums, err = carry
        x = sample(k, batch)
        states = compose_all(chain, x)
        layer_sums = tuple(s + power_sums(o, c, order).sums
                           for s, o, c in zip(sums, states, shifts))
        e2 = ((states[-1] - rg(x)) ** 2).mean(-1)
        return (layer_sums, err + jnp.stack([e2.sum(), (e2 ** 2).sum()])), None

    init = (tuple(jnp.zeros(c.shape + (2 * order,), c.dtype) for c in shifts),
            jnp.zeros(2, shifts[0].dtype))
    (sums, err), _ = jax.lax.scan(step, init, jax.random.split(key, n_chunks))
    n = jnp.asarray(n_chunks * batch, err.dtype)
    stats = tuple(k_statistics_from_power_sums(PowerSums(s, c, n), order)
                  for s, c in zip(sums, shifts))
    mse = err[0] / n
    return stats, mse, jnp.sqrt(jnp.clip(err[1] / n - mse ** 2, 0.0) / (n - 1))


@functools.lru_cache(maxsize=64)
def _runner(model, family, shape, alpha, steps, n_chunks, batch, order):
    """One jitted sampler per (model, family, sizes), reused across params and keys."""
    _, b, dim = geometry(model, shape)

    def sample(k, m):
        return family.sample(k, (m,) + shape, jnp.float64).reshape(m, -1)

    def rg(x):  # RG^steps of flattened lattices [m, N] -> [m, N / B^steps]
        return clt.flow(x.reshape((x.shape[0],) + shape), b, steps, dim)[-1].reshape(x.shape[0], -1)

    def run(params, key):
        chain = model_chain(model, params, shape, alpha, steps)
        return _run(chain, rg, key, sample, n_chunks, batch, order)

    return jax.jit(run)


def monte_carlo(model: Model, params: Params, family: Distribution, key: jax.Array,
                n_samples: int = 1_000_000, batch: int = 65_536, order: int = 4, *,
                lattice_shape: tuple[int, ...] | None = None, alpha: float | None = None,
                steps: int = 1) -> MonteCarlo:
    """Per-layer k-statistics (float64) of ``model`` on i.i.d. lattices of ``family``.

    The states line up with ``propagate(..., steps=steps).states``; the MSE compares the
    last state (``model.apply`` iterated ``steps`` times) with RG^steps of the same sample.

    Args:
      model, params: a built model and one seed's parameters (no [S] axis).
      family: the site law; key: consumed.
      n_samples: lattices M, rounded up to a whole number of chunks of ``batch``.
      batch: lattices [batch, N] sampled per scanned chunk (bounds memory).
      order: k-statistic orders 1..order (<= 4).
      lattice_shape: (N,) or (L, L), default the model's; alpha: a Python float (or None:
        the model's); steps: model applications.

    Returns:
      A :class:`MonteCarlo`: per-state KStats [H_layer, order], mse and its SE.

    Raises:
      ValueError: n_samples, batch or steps < 1, order outside 1..4, or a lattice the
        model does not take.
    """
    if not jax.config.jax_enable_x64:
        raise ValueError("monte_carlo needs float64: jax.config.update('jax_enable_x64', True)")
    n_samples = validation.integer("n_samples", n_samples, 1)
    batch = validation.integer("batch", batch, 1)
    order = validation.integer("order", order, 1, MAX_KSTAT_ORDER)
    steps = validation.integer("steps", steps, 1)
    shape, _, _ = geometry(model, lattice_shape)
    n_chunks = -(-n_samples // batch)
    run = _runner(model, family, shape, alpha, steps, n_chunks, batch, order)
    stats, mse, se = run(params, key)
    return MonteCarlo(stats, mse, se, n_chunks * batch)
