"""Cumulant states: the joint cumulants of orders 1..K of one layer's units, as pytrees.

Two forms, both NamedTuples of arrays (pytrees, so jit/vmap pass through them):

* :class:`FactorCumulants` -- units ``z = W x + b`` of independent inputs ``x_s`` with
  cumulants ``kappa[s, n-1]``.  The joint cumulant tensor is a sum of rank-one terms,

      G_n(z)[a_1..a_n] = sum_s kappa[s, n-1] W[a_1, s] ... W[a_n, s]   (+ b in G_1),

  so we never store the dense ``[H]^n`` arrays.  An i.i.d. lattice is ``W = I``.
* :class:`DenseCumulants` -- explicit symmetric tensors ``G_1 [H], G_2 [H, H], ...``.
* :class:`MarginalCumulants` -- only each unit's own cumulants ``kappa [H, K]`` (the
  diagonals of the ``G_n``): what a propagation keeps of a hidden layer unless the joint
  tensors are asked for.  It is a record, not an input: no rule takes it.

Orders are static (shapes), so a state's order is known at trace time.
"""
from __future__ import annotations

from typing import NamedTuple, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np

from rgsym import distributions as _dist
from rgsym import validation

__all__ = [
    "FactorCumulants",
    "DenseCumulants",
    "MarginalCumulants",
    "State",
    "CumulantMemoryError",
    "iid_lattice",
    "independent_sites",
    "from_tensors",
    "to_dense",
    "marginals",
    "dense_bytes",
    "check_memory",
    "DEFAULT_MEMORY_LIMIT",
    "DEFAULT_FLOP_LIMIT",
    "CumulantCostError",
]

DEFAULT_MEMORY_LIMIT = 2 * 2 ** 30  # bytes
#: Floating-point operations one polynomial rule may cost (opt_einsum's estimate of its
#: contractions): about a minute on two CPU cores.
DEFAULT_FLOP_LIMIT = 1e11


class CumulantCostError(RuntimeError):
    """Raised at trace time, before anything runs, when a rule's contractions would cost
    more floating-point operations than its flop limit."""


class CumulantMemoryError(MemoryError):
    """Raised before building tensors whose estimated size exceeds the memory limit."""


class FactorCumulants(NamedTuple):
    """Cumulants of ``z = weight @ x + shift`` for independent x_s.

    weight: [H, S]; kappa: [S, K] (kappa_1..kappa_K of each input site); shift: [H].
    """
    weight: jnp.ndarray
    kappa: jnp.ndarray
    shift: jnp.ndarray

    @property
    def order(self) -> int:
        return self.kappa.shape[-1]

    @property
    def width(self) -> int:
        return self.weight.shape[-2]

    def mean(self):
        """E[z] = weight @ kappa_1 + shift, [H] (unbatched states only)."""
        return self.weight @ self.kappa[:, 0] + self.shift


class DenseCumulants(NamedTuple):
    """tensors: (G_1 [H], G_2 [H, H], ..., G_K [H]*K), each symmetric."""
    tensors: tuple

    @property
    def order(self) -> int:
        return len(self.tensors)

    @property
    def width(self) -> int:
        return self.tensors[0].shape[-1]

    def mean(self):
        """E[z] = G_1, [H]."""
        return self.tensors[0]


class MarginalCumulants(NamedTuple):
    """kappa: [H, K], kappa_1..kappa_K of each unit on its own; the joint cumulants between
    units were not kept (``propagate(..., joint=True)`` keeps them)."""
    kappa: jnp.ndarray

    @property
    def order(self) -> int:
        return self.kappa.shape[-1]

    @property
    def width(self) -> int:
        return self.kappa.shape[-2]

    def mean(self):
        """kappa_1 of each unit, [H] (unbatched states only)."""
        return self.kappa[:, 0]


State = Union[FactorCumulants, DenseCumulants]


def _finite(name: str, arr) -> np.ndarray:
    """``arr`` as float64, refused if non-finite; traced arrays (under jit/grad/vmap) pass
    unchecked, so states can be built inside differentiated functions."""
    if isinstance(arr, jax.core.Tracer):
        return arr
    if not jax.config.jax_enable_x64:
        raise ValueError(f"{name}: cumulant states are float64, which needs "
                         "jax.config.update('jax_enable_x64', True) first (without it JAX "
                         "would compute them in float32 silently)")
    arr = np.asarray(arr, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} holds non-finite values: cumulants must be finite (a family "
                         "whose cumulants diverge is outside the CLT)")
    return arr


def independent_sites(kappa: jax.typing.ArrayLike, weight: jax.typing.ArrayLike | None = None,
                      shift: jax.typing.ArrayLike | None = None) -> FactorCumulants:
    """Independent sites with given cumulants, optionally seen through ``weight``/``shift``.

    Args:
      kappa: [S, K] kappa_1..kappa_K of each of S sites, or [K] (then broadcast to
        ``weight.shape[1]`` identical sites).
      weight: [H, S] (default identity); shift: [H] (default 0).

    Returns:
      The :class:`FactorCumulants` of ``weight @ x + shift``, H units, order K.

    Raises:
      ValueError: non-finite input, float64 without x64, kappa [K] without weight, or
        shapes that do not match.
    """
    kappa = _finite("kappa", kappa)
    if kappa.ndim == 1:
        if weight is None:
            raise ValueError("kappa has shape [K]: pass weight [H, S] or kappa [S, K]")
        kappa = np.broadcast_to(kappa, (np.shape(weight)[-1], kappa.shape[0]))
    if kappa.ndim != 2 or kappa.shape[1] < 1:
        raise ValueError(f"kappa has shape {kappa.shape}: expected [S, K] with K >= 1")
    weight = np.eye(kappa.shape[0]) if weight is None else _finite("weight", weight)
    if weight.ndim != 2 or weight.shape[1] != kappa.shape[0]:
        raise ValueError(f"weight has shape {weight.shape}: expected [H, {kappa.shape[0]}]")
    shift = np.zeros(weight.shape[0]) if shift is None else _finite("shift", shift)
    return FactorCumulants(jnp.asarray(weight), jnp.asarray(kappa), jnp.asarray(shift))


def iid_lattice(family: Union[_dist.Distribution, Sequence[float]], n_sites: int,
                order: int = 8) -> FactorCumulants:
    """An i.i.d. lattice of ``n_sites`` (flattened, row-major) in compact factor form.

    Args:
      family: a :class:`~rgsym.distributions.Distribution` (its exact cumulants 1..order
        are used) or a sequence kappa_1..kappa_K of one site.
      n_sites: N, the flattened lattice size.
      order: cumulant orders kept for a Distribution.  A polynomial activation of degree
        d needs ``d * K`` input orders for exact output order K (quadratic, K = 4: 8).

    Returns:
      :class:`FactorCumulants` over N units (kappa [N, K]).

    Raises:
      CumulantDoesNotExist: a needed cumulant of the family diverges.
      ValueError: non-finite kappas, or float64 without x64.
    """
    if isinstance(family, _dist.Distribution):
        kappa = family.cumulants(order)
    else:
        kappa = np.asarray(family, dtype=np.float64)
    n_sites = int(n_sites)
    return independent_sites(np.broadcast_to(_finite("kappa", kappa), (n_sites, len(kappa))))


def from_tensors(tensors: Sequence) -> DenseCumulants:
    """A dense state from user tensors ``[G_1 [H], G_2 [H, H], ...]``.

    Args:
      tensors: G_n of shape [H]*n for n = 1..K, the joint cumulant tensors.

    Returns:
      :class:`DenseCumulants` of order K over H units.

    Raises:
      ValueError: no tensors, a G_n of the wrong shape, non-finite values, or float64
        without x64.
    """
    tensors = tuple(jnp.asarray(_finite(f"G_{n + 1}", t)) for n, t in enumerate(tensors))
    if not tensors:
        raise ValueError("tensors is empty: pass at least the mean G_1 [H]")
    h = tensors[0].shape[0] if tensors[0].ndim == 1 else None
    for n, t in enumerate(tensors, 1):
        if t.shape != (h,) * n:
            raise ValueError(f"G_{n} has shape {t.shape}: expected {(h,) * n}")
    return DenseCumulants(tensors)


def dense_bytes(width: int, order: int, itemsize: int = 8) -> int:
    """Bytes of G_1..G_order for ``width`` units."""
    return itemsize * sum(int(width) ** n for n in range(1, order + 1))


def check_memory(width: int, order: int, limit: float = DEFAULT_MEMORY_LIMIT,
                 what: str = "cumulant tensors") -> None:
    """Refuses, with the estimate, dense tensors that would exceed ``limit`` bytes."""
    need = dense_bytes(width, order)
    if need > limit:
        raise CumulantMemoryError(
            f"{what} of order={order} at width={width} need about {need / 2 ** 30:.3g} GiB "
            f"(dense [width]^n float64 tensors, n <= {order}), above memory_limit="
            f"{limit / 2 ** 30:.3g} GiB; lower the order or width, or raise memory_limit")


def _factor_tensor(state: FactorCumulants, n: int):
    """Dense G_n of a factor state (n >= 1)."""
    letters = "abcdefghijklmnop"[:n]
    ops = [state.weight] * n + [state.kappa[:, n - 1]]
    out = jnp.einsum(",".join(f"{c}z" for c in letters) + ",z->" + letters, *ops)
    return out + state.shift if n == 1 else out


def _checked_order(state: State, order: int | None) -> int:
    """``order`` (default: the state's), refused beyond the orders the state holds (JAX
    would clamp the index and repeat the last cumulant instead of failing)."""
    if order is None:
        return state.order
    order = validation.integer("order", order, 1)
    if order > state.order:
        raise ValueError(f"order={order} exceeds the state's order {state.order}")
    return order


def to_dense(state: State, order: int | None = None,
             memory_limit: float = DEFAULT_MEMORY_LIMIT) -> DenseCumulants:
    """The dense form with orders 1..order.

    Args:
      state: a FactorCumulants or DenseCumulants over H units.
      order: default the state's order; a dense state's orders above those stored are
        refused.
      memory_limit: bytes the tensors [H]^n may take together.

    Returns:
      :class:`DenseCumulants` with G_n [H]^n, n = 1..order.

    Raises:
      CumulantMemoryError: the dense tensors would exceed ``memory_limit``.
      ValueError: an order the state cannot give, or a MarginalCumulants state (its joint
        tensors were never built: propagate with ``joint=True``).
    """
    order = _checked_order(state, order)
    if isinstance(state, MarginalCumulants):
        raise ValueError(
            "state holds only per-unit marginal cumulants (a hidden layer propagated with "
            "joint=False, the default): its joint tensors were never built; pass joint=True "
            "to propagate to keep them")
    check_memory(state.width, order, memory_limit)
    if isinstance(state, DenseCumulants):
        return DenseCumulants(state.tensors[:order])
    return DenseCumulants(tuple(_factor_tensor(state, n) for n in range(1, order + 1)))


def marginals(state: State, order: int | None = None) -> jax.Array:
    """Per-unit cumulants kappa_1..kappa_order (the diagonals of G_n).

    Args:
      state: any state over H units; order: default the state's order.

    Returns:
      [H, order].

    Raises:
      ValueError: order above the state's.
    """
    order = _checked_order(state, order)
    if isinstance(state, MarginalCumulants):
        return state.kappa[:, :order]
    if isinstance(state, FactorCumulants):
        cols = [state.weight ** n @ state.kappa[:, n - 1] for n in range(1, order + 1)]
        cols[0] = cols[0] + state.shift
        return jnp.stack(cols, -1)
    h = state.width
    return jnp.stack([t.reshape(-1)[:: sum(h ** k for k in range(n))] if n > 1 else t
                      for n, t in enumerate(state.tensors[:order], 1)], -1)
