"""Layer rules: pure, jit-able maps from one layer's cumulant state to the next.

* :func:`affine` -- ``z = W y + b``: exact and multilinear, ``G_n(z) = W^{(x)n} . G_n(y)``,
  ``b`` only enters ``G_1``; factor states stay in factor form (``W <- W W_in``).
* :func:`polynomial` -- ``y_a = sum_q C[a, q] delta_a^q`` with ``delta = z - E z``: the
  joint cumulants of ``y`` by Leonov-Shiryaev (``partitions.py``): one batched einsum per
  signature of partition classes (enumerated and grouped at trace time), then one
  symmetrisation per order.  Exact when every block of the partitions has a cumulant
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
import math
import string

import jax
import jax.numpy as jnp
import numpy as np
import opt_einsum

from rgsym import validation
from rgsym.cumulants.partitions import check_legs, class_groups
from rgsym.cumulants.state import (DEFAULT_FLOP_LIMIT, DEFAULT_MEMORY_LIMIT, CumulantCostError,
                                   CumulantMemoryError, DenseCumulants,
                                   FactorCumulants, MarginalCumulants, State, check_memory,
                                   marginals, to_dense)

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


def _symmetrise(t):
    """The mean of ``t`` over all permutations of its axes, as n(n-1)/2 transposes: every
    permutation is a transposition (i j) with i <= j after one fixing j, so the sum over
    S_{j+1} is (sum_i (i j)) applied to the sum over S_j."""
    n = t.ndim
    for j in range(1, n):
        acc = t
        for i in range(j):
            perm = list(range(n))
            perm[i], perm[j] = j, i
            acc = acc + jnp.transpose(t, perm)
        t = acc / (j + 1)
    return t


def _head(coeffs, q: int, i: int, readout):
    """Factor i's leading operands (its coefficient column, and the readout), with the unit
    letter and the output letter."""
    u = _UNIT[i]
    if readout is None:
        return [u], [coeffs[:, q]], u, u
    return [u, _OUT[i] + u], [coeffs[:, q], readout], u, _OUT[i]


class _Contractions:
    """The einsums of one :func:`polynomial` trace: each checked against ``memory_limit``
    (:func:`_einsum`), their estimated costs collected in ``flops``, and the unit tensors
    (:func:`_unit_tensor`) memoised, shared by every class and order.  ``what`` names the
    cumulant being built, for the errors."""

    def __init__(self, memory_limit):
        self.memory_limit, self.what = memory_limit, ""
        self.flops, self.unit_tensors = [], {}

    def __call__(self, subs: str, arrays):
        """einsum along opt_einsum's greedy path; refused (CumulantMemoryError) where the
        path's largest intermediate exceeds ``memory_limit`` bytes, at trace time."""
        path, info = opt_einsum.contract_path(subs, *[a.shape for a in arrays], shapes=True,
                                              optimize="greedy")
        self.flops.append(float(info.opt_cost))
        need = int(info.largest_intermediate) * arrays[0].dtype.itemsize
        if need > self.memory_limit:
            raise CumulantMemoryError(
                f"{self.what} needs an intermediate of about {need / 2 ** 30:.3g} GiB "
                f"(einsum {subs}), above memory_limit={self.memory_limit / 2 ** 30:.3g} GiB; "
                "lower the order or width, or raise memory_limit")
        return jnp.einsum(subs, *arrays, optimize=path)


def _unit_tensor(state: FactorCumulants, coeffs, q: int, powers: tuple, readout,
                 ctx: _Contractions):
    """``T[out, s_1..s_r] = sum_a R[out, a] C[a, q] prod_j W[a, s_j]^powers[j]``: one factor
    with q legs spread over r blocks (sites), its unit summed out (cost H x S^r, never
    H^n).  Memoised in ``ctx`` for the trace."""
    key = (q, powers)
    if key not in ctx.unit_tensors:
        subs, arrays, unit, out = _head(coeffs, q, 0, readout)
        sites = _SITE[:len(powers)]
        subs += [unit + site for site in sites]
        arrays += [state.weight ** e for e in powers]
        ctx.unit_tensors[key] = ctx(",".join(subs) + "->" + out + sites, arrays)
    return ctx.unit_tensors[key]


def _factor_group(state: FactorCumulants, coeffs, group, readout, ctx: _Contractions):
    """One group of classes (:func:`partitions.class_groups`) on a factor state, batched
    over its K classes on a leading axis k: factor i is a unit tensor of the blocks it
    touches (:func:`_unit_tensor`, stacked over k where the classes differ), each block
    a site summed with ``kappa_|B|[site]``, in one einsum."""
    n, m = group.q.shape[1], len(group.incidence)
    ops, out_sub = [], ""
    for i in range(n):
        blocks = [j for j in range(m) if group.incidence[j][i]]
        tensors = [_unit_tensor(state, coeffs, int(q), tuple(int(e) for e in legs[blocks, i]),
                                readout, ctx)
                   for q, legs in zip(group.q[:, i], group.legs)]
        out = _OUT[i] if readout is not None else _UNIT[i]
        sites = "".join(_SITE[j] for j in blocks)
        if all(t is tensors[0] for t in tensors):
            ops.append((out + sites, tensors[0]))
        else:
            ops.append(("k" + out + sites, jnp.stack(tensors)))
        out_sub += out
    for j in range(m):
        order = group.legs[:, j].sum(-1) - 1
        if (order == order[0]).all():
            ops.append((_SITE[j], state.kappa[:, int(order[0])]))
        else:
            ops.append(("k" + _SITE[j], state.kappa[:, order].T))
    ops.append(("k", jnp.asarray(group.weight, coeffs.dtype)))
    subs, arrays = zip(*ops)
    return ctx(",".join(subs) + "->" + out_sub, arrays)


def _dense_class(state: DenseCumulants, coeffs, blocks, q, readout, ctx: _Contractions):
    """One class on a dense state: each block's G_|B| with its legs' unit letters."""
    heads = [_head(coeffs, int(qi), i, readout) for i, qi in enumerate(q)]
    ops = [(sub, arr) for subs, arrays, _, _ in heads for sub, arr in zip(subs, arrays)]
    ops += [("".join(heads[i][2] * int(c) for i, c in enumerate(v)),
             state.tensors[int(sum(v)) - 1]) for v in blocks]
    subs, arrays = zip(*ops)
    return ctx(",".join(subs) + "->" + "".join(h[3] for h in heads), arrays)


def _order_n(state: State, coeffs, n: int, readout, ctx: _Contractions):
    """G_n of ``y`` (or of ``readout @ y``) without the constant: the symmetrisation of
    the weighted class terms of :func:`partitions.class_groups`; None if no class."""
    deg = coeffs.shape[-1] - 1
    ctx.what = (f"cumulant order={n} at width={state.width} (degree {deg} activation, "
                f"input order {state.order})")
    total = None
    for group in class_groups(deg, n, state.order):
        if isinstance(state, FactorCumulants):
            terms = [_factor_group(state, coeffs, group, readout, ctx)]
        else:
            terms = [w * _dense_class(state, coeffs, blocks, q, readout, ctx)
                     for blocks, q, w in zip(group.legs, group.q, group.weight)]
        for term in terms:
            total = term if total is None else total + term
    return None if total is None else _symmetrise(total)


def _unit_polynomial(state: MarginalCumulants, coeffs, order: int) -> MarginalCumulants:
    """Each unit's own cumulants of ``y_a = sum_q coeffs[a, q] delta_a^q``: every class
    term is a product of the unit's coefficients and cumulants (one unit, so no
    symmetrisation), batched over each group's classes.  [H, order]."""
    cols = []
    for n in range(1, order + 1):
        total = coeffs[:, 0] if n == 1 else jnp.zeros(coeffs.shape[:1], coeffs.dtype)
        for group in class_groups(coeffs.shape[-1] - 1, n, state.order):
            c = jnp.prod(coeffs[:, group.q], axis=-1)                           # [H, K]
            k = jnp.prod(state.kappa[:, group.legs.sum(-1) - 1], axis=-1)       # [H, K]
            total = total + (c * k) @ jnp.asarray(group.weight, coeffs.dtype)
        cols.append(total)
    return MarginalCumulants(jnp.stack(cols, -1))


@functools.partial(jax.jit, static_argnames=("order", "memory_limit", "flop_limit"))
def polynomial(state: State, coeffs, order: int, readout=None,
               memory_limit=DEFAULT_MEMORY_LIMIT,
               flop_limit=DEFAULT_FLOP_LIMIT) -> DenseCumulants:
    """Cumulants of ``y_a = sum_q coeffs[a, q] (z_a - E z_a)^q`` (centred coefficients).

    state: cumulants of z (factor or dense, width H); coeffs: [H, Q+1] (see
    :func:`centre_coefficients`); order: output orders 1..order; readout: [O, H] or None,
    if given the result is the state of ``readout @ y`` (width O).  Input orders above
    ``state.order`` are taken as zero (closure).  Returns a DenseCumulants of width H or O;
    for a MarginalCumulants state (no readout), each unit's own cumulants [H, order].
    Raises, at trace time (nothing has run): CumulantMemoryError (tensors or einsum
    intermediates above ``memory_limit`` bytes), CumulantCostError (contractions estimated
    above ``flop_limit`` floating-point operations) and ValueError beyond
    ``partitions.MAX_LEGS`` legs (Q x order).
    Jitted (one trace per structure): eager einsums would each dispatch separately.
    """
    coeffs = jnp.asarray(coeffs)
    check_legs(coeffs.shape[-1] - 1, order)
    if isinstance(state, MarginalCumulants):
        if readout is not None:
            raise ValueError("readout needs the joint cumulants of the units: a "
                             "MarginalCumulants state has only each unit's own")
        return _unit_polynomial(state, coeffs, order)
    width = coeffs.shape[0] if readout is None else readout.shape[0]
    check_memory(width, order, memory_limit)
    tensors, ctx = [], _Contractions(memory_limit)
    for n in range(1, order + 1):
        total = _order_n(state, coeffs, n, readout, ctx)
        if total is None:
            total = jnp.zeros((width,) * n, coeffs.dtype)
        if n == 1:
            mean0 = coeffs[:, 0] if readout is None else readout @ coeffs[:, 0]
            total = total + mean0  # the constant coefficient enters the mean only
        tensors.append(total)
    cost = sum(ctx.flops)
    if cost > flop_limit:
        raise CumulantCostError(
            f"cumulant orders 1..{order} through a degree-{coeffs.shape[-1] - 1} activation at "
            f"width={state.width} (input order {state.order}) would cost about {cost:.3g} "
            f"floating-point operations in {len(ctx.flops)} contractions, above "
            f"flop_limit={flop_limit:.3g}; lower the order, internal_order or width, or raise "
            "flop_limit")
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
                        kinks=(), flop_limit=DEFAULT_FLOP_LIMIT) -> DenseCumulants:
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
    return polynomial(state, coeffs, order, readout, memory_limit, flop_limit)


def _safe_sqrt(x):
    """sqrt(max(x, 0)) with gradient 0 (not inf) where x <= 0."""
    positive = x > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, x, 1.0)), 0.0)


def _hermite(nodes: int, dtype):
    """Probabilists' Gauss-Hermite nodes and weights normalised to sum 1 (E over N(0, 1))."""
    x, w = np.polynomial.hermite_e.hermegauss(nodes)
    return jnp.asarray(x, dtype), jnp.asarray(w / w.sum(), dtype)


def _unit_gaussian_closure(state: MarginalCumulants, fn, order, memory_limit, linear_units,
                           nodes, kinks, flop_limit) -> MarginalCumulants:
    """:func:`gaussian_closure` on each unit alone: mean and variance by 1-D quadrature,
    orders >= 3 from the quadratic expansion."""
    mean, sd = state.kappa[:, 0], _safe_sqrt(state.kappa[:, 1])
    x, w = _hermite(nodes, mean.dtype)
    za = mean[:, None] + sd[:, None] * x
    fa = jnp.where(linear_mask(mean.shape[0], linear_units)[:, None], za, fn(za))
    e1 = fa @ w
    cols = [e1, (fa - e1[:, None]) ** 2 @ w]
    if order > 2:
        cols += list(quadratic_expansion(state, fn, order, None, memory_limit, linear_units,
                                         kinks, flop_limit).kappa.T[2:order])
    return MarginalCumulants(jnp.stack(cols[:order], -1))


def gaussian_closure(state: State, fn, order: int, readout=None,
                     memory_limit=DEFAULT_MEMORY_LIMIT, linear_units: int = 0,
                     nodes: int = GAUSS_HERMITE_NODES, kinks=(),
                     flop_limit=DEFAULT_FLOP_LIMIT) -> DenseCumulants:
    """Mean and covariance of ``phi(z)`` for Gaussian ``z`` with the state's G_1, G_2.

    Gauss-Hermite quadrature: 1-D for the mean, 2-D over each unit pair for the covariance.
    Orders >= 3 (which a Gaussian closure cannot supply) come from the quadratic expansion
    (``kinks`` as there).  The trailing ``linear_units`` units are identities.
    Differentiable everywhere its value is finite: the square roots of variances and of
    1 - rho^2 (zero on the diagonal and for fully correlated units) have their gradient
    taken as 0 at 0 instead of inf * 0 = NaN.
    """
    if isinstance(state, MarginalCumulants):
        return _unit_gaussian_closure(state, fn, order, memory_limit, linear_units, nodes,
                                      kinks, flop_limit)
    g = to_dense(state, 2, memory_limit)
    mean, cov = g.tensors
    lin = linear_mask(mean.shape[0], linear_units)
    x, w = _hermite(nodes, mean.dtype)
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
    low = DenseCumulants((e1, cov_out)[:order])
    if readout is not None:
        low = affine(low, readout, None, memory_limit)
    if order <= 2:
        return low
    # orders >= 3 with the readout inside the expansion's einsums (no [H]^n tensors)
    high = quadratic_expansion(state, fn, order, readout, memory_limit, linear_units, kinks,
                               flop_limit).tensors
    return DenseCumulants(low.tensors + high[2:])
