"""Layer rules: pure, jit-able maps from one layer's cumulant state to the next.

* :func:`affine` -- ``z = W y + b``: exact and multilinear, ``G_n(z) = W^{(x)n} . G_n(y)``,
  ``b`` only enters ``G_1``; factor states stay in factor form (``W <- W W_in``).
* :func:`polynomial` -- ``y_a = sum_q C[a, q] delta_a^q`` with ``delta = z - E z``: the
  joint cumulants of ``y`` by Leonov-Shiryaev (``partitions.py``): a fixed sum of einsums,
  one group per partition class, enumerated at trace time.  Exact when every block of the partitions has a cumulant
  in the input state (``order * degree`` input orders); blocks above the input's order are
  dropped: that is the truncation closure (input cumulants of higher order set to zero).
  A ``readout`` matrix is contracted inside the einsums so the ``[H]^n`` tensors of the
  hidden layer are never built when only the next layer's cumulants are wanted.
* :func:`quadratic_expansion` -- general activations expanded to second order about the
  mean, ``phi(m) + phi'(m) delta + phi''(m)/2 delta^2``, then the polynomial rule.
* :func:`gaussian_closure` -- mean and covariance of ``phi(z)`` for Gaussian ``z`` by
  Gauss-Hermite quadrature; orders >= 3 from the quadratic expansion.
"""
from __future__ import annotations

import functools
import itertools
import math
import string

import jax
import jax.numpy as jnp
import numpy as np
import opt_einsum

from rgsym import validation
from rgsym.cumulants.partitions import connected_partitions
from rgsym.cumulants.state import (DEFAULT_MEMORY_LIMIT, CumulantMemoryError, DenseCumulants,
                                   FactorCumulants, State, check_memory, marginals, to_dense)

__all__ = ["affine", "add_bias", "polynomial", "centre_coefficients", "quadratic_expansion",
           "gaussian_closure", "linear_mask", "near_kink", "GAUSS_HERMITE_NODES",
           "KINK_SPREADS"]

GAUSS_HERMITE_NODES = 48
#: A unit whose mean lies within this many spreads of a kink is not expanded: for a
#: Gaussian pre-activation the mass beyond the kink is then above Phi(-6) ~ 1e-9.
KINK_SPREADS = 6.0
_UNIT, _OUT, _SITE = string.ascii_lowercase[:8], string.ascii_uppercase[:8], "nopqrstuvwxyz"


def affine(state: State, weight, bias=None, memory_limit=DEFAULT_MEMORY_LIMIT) -> State:
    """``z = weight @ y + bias``.  weight: [O, H]; bias: [O] or None."""
    weight = jnp.asarray(weight)
    bias = jnp.zeros(weight.shape[0], weight.dtype) if bias is None else jnp.asarray(bias)
    if isinstance(state, FactorCumulants):
        return FactorCumulants(weight @ state.weight, state.kappa, weight @ state.shift + bias)
    check_memory(weight.shape[0], state.order, memory_limit)
    out = []
    for n, g in enumerate(state.tensors, 1):
        for _ in range(n):  # contract one axis at a time; the result cycles back into order
            g = jnp.tensordot(g, weight, axes=([0], [1]))
        out.append(g + bias if n == 1 else g)
    return DenseCumulants(tuple(out))


def add_bias(state: State, bias) -> State:
    """``z = y + bias``: only the first cumulant moves (no contraction with an identity)."""
    if isinstance(state, FactorCumulants):
        return state._replace(shift=state.shift + bias)
    return DenseCumulants((state.tensors[0] + bias,) + tuple(state.tensors[1:]))


def centre_coefficients(coeffs, mean):
    """Raw ascending coefficients ``c [H, P+1]`` (or [P+1]) -> coefficients in ``z - mean``.

    C[a, q] = sum_{p >= q} binom(p, q) c[a, p] mean_a^(p - q).  Returns [H, P+1].
    """
    mean = validation.float_array("mean", mean)  # an integer mean must not truncate coeffs
    coeffs = jnp.broadcast_to(jnp.asarray(coeffs, mean.dtype), mean.shape + (np.shape(coeffs)[-1],))
    deg = coeffs.shape[-1] - 1
    cols = [sum(math.comb(p, q) * coeffs[:, p] * mean ** (p - q) for p in range(q, deg + 1))
            for q in range(deg + 1)]
    return jnp.stack(cols, -1)


def _einsum(subs: str, arrays, memory_limit, what: str):
    """einsum along opt_einsum's greedy path, refusing paths whose largest intermediate
    exceeds ``memory_limit`` bytes (checked at trace time, before anything is built)."""
    path, info = opt_einsum.contract_path(subs, *[a.shape for a in arrays], shapes=True,
                                          optimize="greedy")
    need = int(info.largest_intermediate) * arrays[0].dtype.itemsize
    if need > memory_limit:
        raise CumulantMemoryError(
            f"{what} needs an intermediate of about {need / 2 ** 30:.3g} GiB "
            f"(einsum {subs}), above memory_limit={memory_limit / 2 ** 30:.3g} GiB; lower "
            "the order or width, or raise memory_limit")
    return jnp.einsum(subs, *arrays, optimize=path)


def _factor_operands(state: FactorCumulants, blocks, heads, memory_limit, what):
    """Operands for a factor state: unit i is summed out first, on its own, into
    ``T_i[out_i, sites of the blocks it touches]`` (cost H x S^blocks, never H^n); the
    caller then contracts the T_i with one ``kappa_|B|[site_B]`` per block."""
    ops = []
    for i, (subs, arrays, unit, out) in enumerate(heads):
        sites = "".join(_SITE[j] for j, v in enumerate(blocks) if v[i])
        legs = [(unit + _SITE[j], state.weight ** v[i]) for j, v in enumerate(blocks) if v[i]]
        s_i, a_i = zip(*(list(zip(subs, arrays)) + legs))
        ops.append((out + sites, _einsum(",".join(s_i) + "->" + out + sites, a_i,
                                         memory_limit, what)))
    return ops + [(_SITE[j], state.kappa[:, sum(v) - 1]) for j, v in enumerate(blocks)]


def _dense_operands(state: DenseCumulants, blocks, heads):
    """Operands for a dense state: each block's G_|B| with its legs' unit letters."""
    ops = [(sub, arr) for subs, arrays, _, _ in heads for sub, arr in zip(subs, arrays)]
    return ops + [("".join(heads[i][2] * c for i, c in enumerate(v)), state.tensors[sum(v) - 1])
                  for v in blocks]


def _order_n_term(state: State, coeffs, q, readout, memory_limit):
    """sum_{classes} mult * kappa(delta_{a_1}^{q_1}, ..., delta_{a_n}^{q_n}) * prod_i C[a_i, q_i]
    (each leg of factor i mapped through ``readout`` when given)."""
    n = len(q)
    heads = []  # per factor: (subscripts, arrays, unit letter, output letter)
    for i, qi in enumerate(q):
        u = _UNIT[i]
        if readout is None:
            heads.append(((u,), (coeffs[:, qi],), u, u))
        else:
            heads.append(((u, _OUT[i] + u), (coeffs[:, qi], readout), u, _OUT[i]))
    out_sub = "".join(h[3] for h in heads)
    what = (f"cumulant order={n} at width={state.width} (degree {max(q)} activation, "
            f"input order {state.order})")
    total = None
    for cls in connected_partitions(tuple(q), state.order):
        if isinstance(state, FactorCumulants):
            ops = _factor_operands(state, cls.blocks, heads, memory_limit, what)
        else:
            ops = _dense_operands(state, cls.blocks, heads)
        subs, arrays = zip(*ops)
        term = cls.multiplicity * _einsum(",".join(subs) + "->" + out_sub, arrays,
                                          memory_limit, what)
        total = term if total is None else total + term
    return total


@functools.partial(jax.jit, static_argnames=("order", "memory_limit"))
def polynomial(state: State, coeffs, order: int, readout=None,
               memory_limit=DEFAULT_MEMORY_LIMIT) -> DenseCumulants:
    """Cumulants of ``y_a = sum_q coeffs[a, q] (z_a - E z_a)^q`` (centred coefficients).

    state: cumulants of z (factor or dense, width H); coeffs: [H, Q+1] (see
    :func:`centre_coefficients`); order: output orders 1..order; readout: [O, H] or None,
    if given the result is the state of ``readout @ y`` (width O).  Input orders above
    ``state.order`` are taken as zero (closure).  Returns a DenseCumulants of width H or O.
    Jitted (one trace per structure): eager einsums would each dispatch separately.
    """
    coeffs = jnp.asarray(coeffs)
    deg = coeffs.shape[-1] - 1
    width = coeffs.shape[0] if readout is None else readout.shape[0]
    check_memory(width, order, memory_limit)
    tensors = []
    for n in range(1, order + 1):
        total = jnp.zeros((width,) * n, coeffs.dtype)
        for q in itertools.combinations_with_replacement(range(1, deg + 1), n):
            term = _order_n_term(state, coeffs, q, readout, memory_limit)
            if term is None:
                continue
            # the term for a rearrangement of q is the matching transpose of this one
            seen = set()
            for perm in itertools.permutations(range(n)):
                arrangement = tuple(q[p] for p in perm)
                if arrangement not in seen:
                    seen.add(arrangement)
                    total = total + jnp.transpose(term, perm)
        if n == 1:
            mean0 = coeffs[:, 0] if readout is None else readout @ coeffs[:, 0]
            total = total + mean0  # the constant coefficient enters the mean only
        tensors.append(total)
    return DenseCumulants(tuple(tensors))


def linear_mask(width: int, linear_units: int):
    """[H] bool: the trailing ``linear_units`` units pass through unchanged (identity)."""
    return jnp.arange(width) >= width - linear_units


def near_kink(state: State, kinks, linear_units: int = 0):
    """[H] bool: units (other than the trailing ``linear_units``) whose mean lies within
    ``KINK_SPREADS`` standard deviations of one of ``kinks`` (or exactly on it)."""
    g = marginals(state, 2)
    mean, spread = g[:, 0], jnp.sqrt(jnp.clip(g[:, 1], 0.0))
    near = jnp.zeros(mean.shape, bool)
    for k in kinks:
        near = near | (jnp.abs(mean - k) <= KINK_SPREADS * spread)
    return near & ~linear_mask(mean.shape[0], linear_units)


def quadratic_expansion(state: State, fn, order: int, readout=None,
                        memory_limit=DEFAULT_MEMORY_LIMIT, linear_units: int = 0,
                        kinks=()) -> DenseCumulants:
    """``phi`` expanded to second order about each unit's mean, then :func:`polynomial`.

    Approximate: exact for polynomials of degree <= 2, accurate when the pre-activation
    spread is small against the scale on which phi'' changes.  The trailing
    ``linear_units`` units are identities (used to carry the RG target alongside).
    kinks: points where phi is not twice differentiable (``activations.KINKS``): a unit
    whose pre-activation reaches one (:func:`near_kink`) has no valid expansion, and every
    output cumulant it enters is NaN rather than the collapsed expansion's wrong number.
    """
    mean = state.mean()
    d1 = jax.vmap(jax.grad(fn))
    d2 = jax.vmap(jax.grad(jax.grad(fn)))
    coeffs = jnp.stack([fn(mean), d1(mean), 0.5 * d2(mean)], -1)
    ident = jnp.stack([mean, jnp.ones_like(mean), jnp.zeros_like(mean)], -1)
    coeffs = jnp.where(linear_mask(mean.shape[0], linear_units)[:, None], ident, coeffs)
    if kinks:
        coeffs = jnp.where(near_kink(state, kinks, linear_units)[:, None], jnp.nan, coeffs)
    return polynomial(state, coeffs, order, readout, memory_limit)


def _safe_sqrt(x):
    """sqrt(max(x, 0)) with gradient 0 (not inf) where x <= 0."""
    positive = x > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, x, 1.0)), 0.0)


def gaussian_closure(state: State, fn, order: int, readout=None,
                     memory_limit=DEFAULT_MEMORY_LIMIT, linear_units: int = 0,
                     nodes: int = GAUSS_HERMITE_NODES, kinks=()) -> DenseCumulants:
    """Mean and covariance of ``phi(z)`` for Gaussian ``z`` with the state's G_1, G_2.

    Gauss-Hermite quadrature: 1-D for the mean, 2-D over each unit pair for the covariance.
    Orders >= 3 (which a Gaussian closure cannot supply) come from the quadratic expansion
    (``kinks`` as there).  The trailing ``linear_units`` units are identities.
    Differentiable everywhere its value is finite: the square roots of variances and of
    1 - rho^2 (zero on the diagonal and for fully correlated units) have their gradient
    taken as 0 at 0 instead of inf * 0 = NaN.
    """
    g = to_dense(state, 2, memory_limit)
    mean, cov = g.tensors
    lin = linear_mask(mean.shape[0], linear_units)
    x, w = np.polynomial.hermite_e.hermegauss(nodes)
    x, w = jnp.asarray(x, mean.dtype), jnp.asarray(w / w.sum(), mean.dtype)
    sd = _safe_sqrt(jnp.diagonal(cov))
    sd2 = sd[:, None] * sd[None, :]
    # units without spread have no correlation: rho = 0 there, with a zero gradient
    rho = jnp.where(sd2 > 0, cov / jnp.where(sd2 > 0, sd2, 1.0), 0.0)
    rho = jnp.clip(rho, -1.0, 1.0)
    za = mean[:, None] + sd[:, None] * x                           # [H, Q]
    fa = jnp.where(lin[:, None], za, fn(za))
    e1 = fa @ w                                                    # E phi(z_a)
    # z_b = m_b + s_b (rho xi_1 + sqrt(1 - rho^2) xi_2), xi_1 shared with z_a
    zb = (mean[None, :, None, None] + sd[None, :, None, None]
          * (rho[:, :, None, None] * x[:, None] + _safe_sqrt(1 - rho ** 2)[:, :, None, None] * x))
    fb = jnp.where(lin[None, :, None, None], zb, fn(zb))
    e2 = jnp.einsum("aq,abqr,q,r->ab", fa, fb, w, w)
    cov_out = e2 - e1[:, None] * e1[None, :]
    if order > 2:
        tensors = quadratic_expansion(state, fn, order, None, memory_limit,
                                      linear_units, kinks).tensors
    else:
        tensors = ()
    tensors = (e1, cov_out) + tuple(tensors[2:order])
    out = DenseCumulants(tensors[:order])
    return out if readout is None else affine(out, readout, None, memory_limit)
