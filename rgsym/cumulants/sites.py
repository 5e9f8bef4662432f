"""Exact propagation of polynomial networks as polynomials of the independent input sites.

A net of affine maps and polynomial activations fed by independent sites ``x_s`` is, unit
by unit, a polynomial of the centred sites ``xt_s = x_s - kappa_1[s]``:

    z_a = A_0[a] + sum_s A_1[a, s] xt_s + sum_{s,t} A_2[a, s, t] xt_s xt_t + ...

with symmetric coefficient tensors ``A_k [H, S^k]``.  :class:`PolynomialCumulants` carries
them: affine maps contract the unit axis, activations multiply polynomials, and nothing is
truncated, so every cumulant of every later layer is exact.  This replaces the hidden
layers' dense cumulant tensors of orders up to ``order x degree`` (``[H]^8`` for a depth-2
quadratic net at order 4, and connected partitions of 16 legs in 8 factors) by tensors of
the sites, ``[H, S^D]`` for total degree D.

Cumulants are read off once, where asked, in Wick form: each ``xt^{(x)k}`` is rewritten as
Wick products of the sites (:func:`wick`, the Appell expansion ``x_1..x_k = sum over
partial partitions of prod kappa_|B| x :rest:``), whose mean is zero, so the mean is
``B_0``; the order-n joint cumulant is then the diagram formula's sum over connected
partitions of the legs with no block inside one factor (``partitions.wick_groups``: 19238
classes in 292 einsum signatures for a degree-4 polynomial at order 4), each block a site
summed with its cumulant ``kappa_|B|[s]``.
"""
from __future__ import annotations

import itertools
import math
from collections import Counter
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from rgsym.cumulants.partitions import check_wick_legs, wick_groups
from rgsym.cumulants.rules import _Contractions, _symmetrise
from rgsym.cumulants.state import (DEFAULT_FLOP_LIMIT, DEFAULT_MEMORY_LIMIT, CumulantCostError,
                                   CumulantMemoryError, DenseCumulants, FactorCumulants,
                                   MarginalCumulants, check_memory)

__all__ = ["PolynomialCumulants", "from_factor", "affine", "activation", "wick",
           "cumulants", "polynomial_bytes"]

_UNITS, _SITES = "ABCDE", "nopqrstuvwxyz"


class PolynomialCumulants(NamedTuple):
    """Units ``z_a = sum_k A_k[a] . xt^{(x)k}``, polynomials of the centred independent sites.

    coeffs: ``(A_0 [H], A_1 [H, S], ..., A_D [H, S^D])``, each symmetric in its site axes;
    kappa: [S, K] kappa_1..kappa_K of each site (``xt_s = x_s - kappa[s, 0]``).  Cumulant
    orders up to ``K // D`` are exact (:attr:`order`).
    """
    coeffs: tuple
    kappa: jnp.ndarray

    @property
    def degree(self) -> int:
        return len(self.coeffs) - 1

    @property
    def order(self) -> int:
        """Highest cumulant order the site cumulants make exact."""
        return self.kappa.shape[-1] // max(self.degree, 1)

    @property
    def width(self) -> int:
        return self.coeffs[0].shape[-1]

    def mean(self):
        """E[z] = the constant of the Wick form, [H].  Raises ValueError where the sites
        hold fewer cumulants than the degree (the mean needs kappa_1..kappa_D)."""
        if self.kappa.shape[-1] < self.degree:
            raise ValueError(
                f"the mean of a degree-{self.degree} polynomial of the sites needs their "
                f"cumulants kappa_1..kappa_{self.degree}; the state holds "
                f"{self.kappa.shape[-1]}")
        return wick(self)[0]


def polynomial_bytes(width: int, sites: int, degree: int, itemsize: int = 8) -> int:
    """Bytes of the coefficient tensors A_0..A_degree of ``width`` units over ``sites``.

    Returns:
      ``itemsize x width x sum_k sites^k``, k = 0..degree.
    """
    return itemsize * int(width) * sum(int(sites) ** k for k in range(degree + 1))


def _check_bytes(width: int, sites: int, degree: int, limit: float) -> None:
    need = polynomial_bytes(width, sites, degree)
    if need > limit:
        raise CumulantMemoryError(
            f"a degree-{degree} polynomial of {sites} input sites for {width} units needs "
            f"coefficient tensors of about {need / 2 ** 30:.3g} GiB ([width, sites^k], "
            f"k <= {degree}), above memory_limit={limit / 2 ** 30:.3g} GiB; lower the width, "
            "lattice or depth, or leave internal_order at its default (the truncation closure)")


def from_factor(state: FactorCumulants) -> PolynomialCumulants:
    """``z = W x + shift`` as the degree-1 polynomial ``(W kappa_1 + shift) + W xt``.

    Args:
      state: a FactorCumulants (weight [H, S], kappa [S, K], shift [H]).

    Returns:
      The same units as a PolynomialCumulants of degree 1 (A_0 [H], A_1 [H, S]).
    """
    return PolynomialCumulants((state.weight @ state.kappa[:, 0] + state.shift, state.weight),
                               state.kappa)


def affine(state: PolynomialCumulants, weight, bias=None,
           memory_limit: float = DEFAULT_MEMORY_LIMIT) -> PolynomialCumulants:
    """``weight @ z + bias``: each A_k's unit axis contracted with ``weight``.

    Args:
      state: H units; weight: [O, H]; bias: [O] or None; memory_limit: bytes.

    Returns:
      O units, the same degree and sites.

    Raises:
      CumulantMemoryError: the O units' coefficient tensors would exceed ``memory_limit``.
    """
    _check_bytes(weight.shape[0], state.kappa.shape[0], state.degree, memory_limit)
    coeffs = tuple(jnp.tensordot(weight, a, axes=([1], [0])) for a in state.coeffs)
    if bias is not None:
        coeffs = (coeffs[0] + bias,) + coeffs[1:]
    return PolynomialCumulants(coeffs, state.kappa)


def _times(p: tuple, r: tuple) -> tuple:
    """The unit-wise product of two polynomials (coefficient tuples), symmetrised."""
    out = [None] * (len(p) + len(r) - 1)
    for i, j in itertools.product(range(len(p)), range(len(r))):
        a, b = p[i], r[j]
        term = (a.reshape(a.shape + (1,) * j) * b.reshape(b.shape[:1] + (1,) * i + b.shape[1:]))
        out[i + j] = term if out[i + j] is None else out[i + j] + term
    return tuple(t if t.ndim <= 2 else jax.vmap(_symmetrise)(t) for t in out)


def activation(state: PolynomialCumulants, coeffs,
               memory_limit: float = DEFAULT_MEMORY_LIMIT) -> PolynomialCumulants:
    """``y_a = sum_q coeffs[a, q] z_a^q``, unit by unit (powers by symmetrised products).

    Args:
      state: H units of degree D; coeffs: [H, Q+1] raw ascending coefficients of each
        unit's polynomial (not centred); memory_limit: bytes.

    Returns:
      H units of degree Q x D.

    Raises:
      CumulantMemoryError: the coefficient tensors [H, S^k], k <= Q x D, would exceed
        ``memory_limit`` (checked before they are built).
    """
    q_max = coeffs.shape[-1] - 1
    sites = state.kappa.shape[0]
    _check_bytes(state.width, sites, q_max * state.degree, memory_limit)
    power, total = None, None
    for q in range(q_max + 1):
        power = ((jnp.ones_like(state.coeffs[0]),) if q == 0 else
                 state.coeffs if q == 1 else _times(power, state.coeffs))
        term = tuple(coeffs[:, q].reshape((-1,) + (1,) * k) * a for k, a in enumerate(power))
        total = term if total is None else tuple(
            (total[k] if k < len(total) else 0) + (term[k] if k < len(term) else 0)
            for k in range(max(len(total), len(term))))
    return PolynomialCumulants(total, state.kappa)


def _part_sizes(r: int, smallest: int = 2):
    """Partitions of r into parts >= 2, as non-increasing tuples."""
    if r == 0:
        yield ()
        return
    for first in range(r, smallest - 1, -1):
        for rest in _part_sizes(r - first, smallest):
            if not rest or rest[0] <= first:
                yield (first,) + rest


def wick(state: PolynomialCumulants) -> tuple:
    """The Wick form: ``z = sum_j B_j . :xt^{(x)j}:``, so that ``E z = B_0``.

    ``B_j = sum_{k >= j} sum over ways to gather k - j of A_k's legs into blocks of sizes
    b >= 2 (each block one site, weighted by kappa_b[s])``; the number of ways to pick the
    legs is ``k! / (j! prod b! prod (repeats of b)!)`` (A_k is symmetric).  This is the
    expansion of a product of random variables in Wick products (multivariate Appell
    polynomials), ``x_1 .. x_k = sum over sets of disjoint blocks of prod kappa(x_B)
    :x_rest:``, valid for any law with moments (Giraitis & Surgailis 1986, Z. Wahrsch.
    verw. Gebiete 71), with blocks of one leg absent because the sites are centred.
    Blocks beyond the site cumulants held are dropped.

    Args:
      state: H units of degree D over S sites.

    Returns:
      ``(B_0 [H], B_1 [H, S], ..., B_D [H, S^D])``, symmetric in the site axes.
    """
    out = list(state.coeffs)
    k_max = state.kappa.shape[-1]
    for k, a in enumerate(state.coeffs):
        for j in range(k - 1):
            for sizes in _part_sizes(k - j):
                if sizes[0] > k_max:
                    continue
                ways = math.factorial(k) // (math.factorial(j) * math.prod(
                    math.factorial(b) for b in sizes) * math.prod(
                    math.factorial(c) for c in Counter(sizes).values()))
                blocks = _SITES[:len(sizes)]
                rest = _SITES[len(sizes):len(sizes) + j]
                subs = "h" + "".join(c * b for c, b in zip(blocks, sizes)) + rest
                ops = [a] + [state.kappa[:, b - 1] for b in sizes]
                term = jnp.einsum(",".join([subs] + list(blocks)) + "->h" + rest, *ops)
                out[j] = out[j] + ways * term
    return tuple(out)


def _partial_diagonal(b, powers: tuple, cache: dict):
    """``T[h, s_1..s_r] = B[h, s_1 (powers[0] times), ..., s_r (powers[r-1] times)]``."""
    key = (b.ndim - 1, powers)
    if key not in cache:
        sites = _SITES[:len(powers)]
        subs = "h" + "".join(c * p for c, p in zip(sites, powers))
        cache[key] = jnp.einsum(subs + "->h" + sites, b)
    return cache[key]


def _group_term(b: tuple, kappa, group, joint: bool, ctx: _Contractions, cache: dict):
    """One signature's classes, batched over a leading axis k, in one einsum."""
    n, m = group.q.shape[1], len(group.incidence)
    ops, out = [], ""
    for i in range(n):
        blocks = [j for j in range(m) if group.incidence[j][i]]
        keys = [(int(q), tuple(int(e) for e in legs[blocks, i]))
                for q, legs in zip(group.q[:, i], group.legs)]
        distinct = sorted(set(keys))
        unit = _UNITS[i] if joint else _UNITS[0]
        sites = "".join(_SITES[j] for j in blocks)
        if len(distinct) == 1:
            ops.append((unit + sites, _partial_diagonal(b[keys[0][0]], keys[0][1], cache)))
        else:  # the few distinct tensors, gathered per class (not K copies in the program)
            stacked = jnp.stack([_partial_diagonal(b[q], e, cache) for q, e in distinct])
            need = len(keys) * stacked[0].size * stacked.dtype.itemsize
            if need > ctx.memory_limit:
                raise CumulantMemoryError(
                    f"{ctx.what} gathers {len(keys)} classes' tensors of about "
                    f"{need / 2 ** 30:.3g} GiB, above memory_limit="
                    f"{ctx.memory_limit / 2 ** 30:.3g} GiB; lower the width or lattice, or "
                    "raise memory_limit")
            ops.append(("k" + unit + sites,
                        stacked[np.array([distinct.index(k) for k in keys])]))
        out += unit if joint or not out else ""
    for j in range(m):
        order = group.legs[:, j].sum(-1) - 1
        if (order == order[0]).all():
            ops.append((_SITES[j], kappa[:, int(order[0])]))
        else:
            ops.append(("k" + _SITES[j], kappa[:, order].T))
    ops.append(("k", jnp.asarray(group.weight, kappa.dtype)))
    subs, arrays = zip(*ops)
    return ctx(",".join(subs) + "->" + out, arrays)


def cumulants(state: PolynomialCumulants, order: int, joint: bool = True,
              memory_limit: float = DEFAULT_MEMORY_LIMIT,
              flop_limit: float = DEFAULT_FLOP_LIMIT):
    """Cumulants of orders 1..order of the units, exact.

    Args:
      state: the units as polynomials of the sites (width H, degree D).
      order: highest order n; needs the sites' cumulants up to ``n x D``.
      joint: the joint tensors G_n [H]^n (DenseCumulants), else each unit's own cumulants
        (MarginalCumulants [H, order], no [H]^n tensor built).
      memory_limit, flop_limit: bytes of the dense tensors and any einsum intermediate;
        floating-point operations of all contractions (opt_einsum's estimate).

    Returns:
      DenseCumulants (G_1 [H] .. G_order [H]^order) or MarginalCumulants ([H, order]).

    Raises (at trace time, before anything runs):
      ValueError: the sites hold fewer than ``order x D`` cumulants, or the order needs
        more than ``partitions.WICK_MAX_LEGS`` legs or ``WICK_MAX_ORDER`` factors.
      CumulantMemoryError: dense tensors or an einsum intermediate above ``memory_limit``.
      CumulantCostError: contractions estimated above ``flop_limit``.
    """
    need = order * state.degree
    if state.kappa.shape[-1] < need:
        raise ValueError(
            f"order={order} of a degree-{state.degree} polynomial of the sites needs their "
            f"cumulants kappa_1..kappa_{need}; the state holds {state.kappa.shape[-1]}")
    for n in range(2, order + 1):
        check_wick_legs(state.degree, n)
    if joint:
        check_memory(state.width, order, memory_limit)
    b = wick(state)
    ctx, cache = _Contractions(memory_limit), {}
    cols = [b[0]]
    for n in range(2, order + 1):
        ctx.what = f"cumulant order={n} of a degree-{state.degree} polynomial of the sites"
        total = None
        for group in wick_groups(state.degree, n):
            term = _group_term(b, state.kappa, group, joint, ctx, cache)
            total = term if total is None else total + term
        shape = (state.width,) * (n if joint else 1)
        total = jnp.zeros(shape, b[0].dtype) if total is None else total
        cols.append(_symmetrise(total) if joint else total)
    cost = sum(ctx.flops)
    if cost > flop_limit:
        raise CumulantCostError(
            f"cumulant orders 1..{order} of a degree-{state.degree} polynomial of "
            f"{state.kappa.shape[0]} sites at width={state.width} would cost about "
            f"{cost:.3g} floating-point operations in {len(ctx.flops)} contractions, above "
            f"flop_limit={flop_limit:.3g}; lower the order, width or lattice, or raise "
            "flop_limit")
    return DenseCumulants(tuple(cols)) if joint else MarginalCumulants(jnp.stack(cols, -1))
