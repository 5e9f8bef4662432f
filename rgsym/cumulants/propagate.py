"""Network-level propagation: cumulants after every layer of a model's layer chain.

A run that :func:`propagate`'s own example executes::

    model = build({'kind': 'mlp', 'symmetry': 'none', 'activation': 'quadratic', ...})
    out = propagate(model, params, distributions.get('uniform'), order=4)
    out.labels          # ('input', 'exact', 'exact', 'exact')
    out.marginals()[-1] # [N/b, 4]: kappa_1..kappa_4 of every output site
    out.states[2]       # MarginalCumulants: hidden units' own cumulants (joint=True
                        # keeps their joint tensors G_n [H]^n)

``model.layers(params, lattice_shape)`` rewrites any model (MLP or GNN: message passing
is its structured Affine operator) as Affine / Elementwise maps on the flattened lattice,
so the solver is generic over the chain.  Each layer is labelled by how its state was
obtained: 'exact', 'closure' (a polynomial rule whose input lacked orders above the state's
order: those were taken as zero), 'quadratic' or 'gaussian_closure' (approximate modes for
non-polynomial activations); a label, once inexact, is inherited downstream.  Hidden
dense states carry ``internal_order`` orders (default: the output order); raising it makes
deeper and iterated polynomial nets exact (see :func:`order_schedule`).
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp

from rgsym import distributions as _dist
from rgsym import compile_cache, validation
from rgsym.cumulants import rules, sites, surrogate
from rgsym.cumulants.partitions import MAX_LEGS, check_legs, check_wick_legs
from rgsym.cumulants.state import (DEFAULT_FLOP_LIMIT, DEFAULT_MEMORY_LIMIT, DenseCumulants, FactorCumulants,
                                   MarginalCumulants, State, iid_lattice, independent_sites,
                                   marginals)
from rgsym.models.activations import KINKS, activation_fn, polynomial_coefficients
from rgsym.models.layer_ops import Affine, Elementwise
from rgsym.models.model import Model, Params

__all__ = ["Propagation", "propagate", "propagate_chain", "propagate_many", "MODES",
           "APPROXIMATE_MODES", "geometry", "model_chain", "input_state", "order_schedule",
           "site_degree", "check_orders"]

APPROXIMATE_MODES = ("quadratic", "gaussian_closure", "hermite")
MODES = ("exact",) + APPROXIMATE_MODES


@functools.partial(jax.tree_util.register_dataclass, data_fields=["states", "errors"],
                   meta_fields=["labels"])
@dataclasses.dataclass(frozen=True)
class Propagation:
    """states: the input state then the state after each layer; labels: one per state;
    errors: one [H_layer, K_layer] array per state, the estimated bound on |kappa_n(true) -
    kappa_n(computed)| of each unit's marginal cumulants (0: exact; inf: unbounded, e.g. the
    truncation closure; see ``surrogate.py``)."""
    states: tuple
    labels: tuple
    errors: tuple = ()

    @property
    def output(self) -> State:
        return self.states[-1]

    def marginals(self, order: int | None = None) -> list:
        """Per-unit kappa_1..kappa_order of every state (:func:`rgsym.cumulants.marginals`).

        Args:
          order: how many cumulants per unit; default each state's order.

        Returns:
          One array per state, [H_layer, order], with the leading axes of a batched result
          (e.g. [S, H_layer, order] from :func:`propagate_many`).

        Raises:
          ValueError: ``order`` above a state's.
        """
        return [_batched_marginals(s, order) for s in self.states]

    def __repr__(self) -> str:
        # One line per state with array shapes: the default printed every array in full.
        from rgsym.reprs import short_repr
        return "\n".join([f"Propagation({len(self.states)} states)"] + [
            f"  {label}: {short_repr(s)}" for label, s in zip(self.labels, self.states)])


def _batched_marginals(state: State, order: int | None):
    """:func:`~rgsym.cumulants.state.marginals` mapped over the leading (batch) axes of
    ``state``, e.g. the seed axis of a :func:`propagate_many` result."""
    if isinstance(state, FactorCumulants):
        extra = state.weight.ndim - 2
    elif isinstance(state, DenseCumulants):
        extra = state.tensors[0].ndim - 1
    else:
        extra = state.kappa.ndim - 2
    fn = functools.partial(marginals, order=order)
    for _ in range(extra):
        fn = jax.vmap(fn)
    return fn(state)


def geometry(model, lattice_shape=None):
    """(lattice_shape, b, dim) of a built model (its spec), lattice_shape overriding."""
    spec = model.spec
    shape = tuple(spec.lattice_shape if lattice_shape is None else lattice_shape)
    return shape, int(spec.b), int(spec.dim)


def model_chain(model, params, lattice_shape=None, alpha=None, steps: int = 1) -> tuple:
    """The layer chain of ``steps`` (>= 1) successive applications (lattice shrinking by b)."""
    steps = validation.integer("steps", steps, 1)
    shape, b, _ = geometry(model, lattice_shape)
    chain = ()
    for _ in range(steps):
        chain += tuple(model.layers(params, shape, alpha=alpha))
        shape = tuple(s // b for s in shape)
    return chain


def _poly(layer):
    return polynomial_coefficients(layer.activation, layer.alpha)


def _degree(layer, degree: int = 2) -> int:
    """1 for Affine and identity; the polynomial degree; ``degree`` (that of the surrogate
    polynomial: 2 but for mode 'hermite') for other activations."""
    if isinstance(layer, Affine):
        return 1
    coeffs = _poly(layer)
    return degree if coeffs is None else len(coeffs) - 1


def check_orders(order, internal_order=None) -> tuple:
    """(order, internal_order) checked: order >= 1; internal_order None or >= order."""
    order = validation.integer("order", order, 1)
    if internal_order is not None:
        internal_order = validation.integer("internal_order", internal_order, order)
    return order, internal_order


def order_schedule(chain, order: int, internal_order: int | None = None, degree: int = 2,
                   sites_path: bool = True):
    """(input order, orders of the state after each layer) for an exact output of ``order``.

    A degree-d activation needs d times its output order at its input.  Orders carried by
    dense states (after the first non-linear layer) are capped at ``internal_order``
    (default ``order``); beyond the cap the truncation closure takes over.  The input state
    (compact factor form) is never capped.  degree: that of the surrogate polynomial of
    non-polynomial activations (2, or mode 'hermite''s degree).  Where the chain runs as
    polynomials of the sites (:func:`site_degree`), nothing is capped and no dense rule
    runs.  Raises ValueError where a layer's rule would need more than
    ``partitions.MAX_LEGS`` legs (see :func:`partitions.check_legs`), or, on the sites'
    path, the output order more than ``partitions.WICK_MAX_LEGS``.  sites_path=False: the
    dense rules' schedule even where :func:`site_degree` applies (an input that is not
    independent sites, e.g. a DenseCumulants state).
    """
    order, internal_order = check_orders(order, internal_order)
    total = site_degree(chain, order, internal_order) if sites_path else None
    if total is not None:  # exact as polynomials of the sites: no hidden cap, no dense rule
        check_wick_legs(total, order)
    cap = math.inf if total is not None else order if internal_order is None else internal_order
    first = next((i for i, l in enumerate(chain) if _degree(l, degree) > 1), len(chain))
    outs, cur = [0] * len(chain), order
    for i in reversed(range(len(chain))):
        outs[i] = cur
        if _degree(chain[i], degree) > 1 and total is None:  # refused before any layer runs
            surrogate = (chain[i].activation if degree != 2 and _poly(chain[i]) is None
                         else None)
            try:
                check_legs(_degree(chain[i], degree), cur, surrogate)
            except ValueError as e:
                if internal_order is None or cur == order:
                    raise
                # a hidden state's order is internal_order's doing, not the request's
                named = _internal_order_error(chain, order, internal_order, cur,
                                              _degree(chain[i], degree), surrogate)
                if named is None:
                    raise
                raise named from e
        cur *= _degree(chain[i], degree)
        if i > first:
            cur = min(cur, cap)
    return cur, tuple(outs)


def _internal_order_error(chain, order, internal_order, hidden, d, surrogate
                         ) -> ValueError | None:
    """The refusal of an ``internal_order`` under which a hidden state of order ``hidden``
    enters a degree-``d`` activation beyond MAX_LEGS, naming the values that work (None
    where none does: the request's own order is then at fault).  surrogate: the activation
    where the polynomial is mode 'hermite''s surrogate (a lower degree also works)."""
    valid = []
    top = MAX_LEGS // d
    if top >= order:
        valid.append(f"{order}..{top}" if top > order else f"{order}")
        valid[-1] += " (the truncation closure drops the cumulants above it)"
    nonlinear = [_degree(l) for l in chain if _degree(l) > 1]
    if len(nonlinear) > 1 and all(isinstance(l, Affine) or _poly(l) is not None
                                  for l in chain):  # as site_degree
        try:
            check_wick_legs(math.prod(nonlinear), order)
            valid.append(f">= {order * math.prod(nonlinear[1:])} (exact, as polynomials of "
                         "independent input sites)")
        except ValueError:
            pass  # the exact path's read-off is beyond its own limits at this order
    if not valid:
        return None
    lower = "" if surrogate is None else (f"; or a lower degree (mode 'hermite''s surrogate "
                                          f"of activation={surrogate!r} has degree {d})")
    return ValueError(
        f"internal_order={internal_order} is not valid for this net at order={order}: a "
        f"hidden state of order {hidden} into a degree-{d} activation needs the connected "
        f"partitions of {d * hidden} legs, beyond MAX_LEGS={MAX_LEGS}; valid: internal_order "
        f"{', or '.join(valid)}{lower}")


def site_degree(chain, order: int, internal_order: int | None) -> int | None:
    """The chain's total polynomial degree where it is propagated exactly as polynomials of
    the input sites (``sites.py``), else None.

    That path is taken for chains of Affine maps and polynomial activations with at least
    two non-linear activations, when ``internal_order`` asks for exactness (at least
    ``order`` times the degrees of every non-linear activation but the first: what the
    dense rule would need), and only for an input of independent sites (a Distribution,
    kappas or a FactorCumulants state: :func:`propagate_chain` checks that).  Below that,
    with other activations or with a DenseCumulants input, the dense rules run (exact
    within ``partitions.MAX_LEGS``).
    """
    if internal_order is None:
        return None
    degrees = [_degree(l) for l in chain
               if isinstance(l, Affine) or _poly(l) is not None]
    if len(degrees) < len(chain):
        return None
    nonlinear = [d for d in degrees if d > 1]
    if len(nonlinear) < 2 or internal_order < order * math.prod(nonlinear[1:]):
        return None
    return math.prod(nonlinear)


def input_state(input_cumulants, n_sites: int, order: int) -> State:
    """A state from a Distribution (its exact cumulants 1..order), kappas [K] of one site,
    or a state of width ``n_sites`` (checked finite unless traced)."""
    if isinstance(input_cumulants, (FactorCumulants, DenseCumulants)):
        if input_cumulants.width != n_sites:
            raise ValueError(
                f"input_cumulants has width {input_cumulants.width}: a state over the "
                f"flattened lattice needs width {n_sites} (one unit per lattice site)")
        for leaf in jax.tree_util.tree_leaves(input_cumulants):
            if not isinstance(leaf, jax.core.Tracer) and not bool(jnp.all(jnp.isfinite(leaf))):
                raise ValueError("input_cumulants holds non-finite values: cumulants must be "
                                 "finite (a family whose cumulants diverge is outside the CLT)")
        return input_cumulants
    if isinstance(input_cumulants, _dist.Distribution):
        return iid_lattice(input_cumulants, n_sites, order)
    kappas = jnp.asarray(input_cumulants, jnp.float64)
    if kappas.ndim != 1:
        raise ValueError(f"input_cumulants has shape {kappas.shape}: kappas must be 1-D [K] "
                         "(kappa_1..kappa_K of one site), or pass a Distribution or a state")
    return independent_sites(jnp.broadcast_to(kappas, (n_sites,) + kappas.shape))


def _elementwise(state: State, layer, order: int, mode: str, readout, memory_limit,
                 linear_units: int = 0, flop_limit: float = DEFAULT_FLOP_LIMIT,
                 degree: int = surrogate.DEFAULT_DEGREE):
    """One activation (identity on the trailing ``linear_units``); returns (state, label,
    norms): norms [H, R] of the activation's own residual (``surrogate.py``; None:
    exact; inf: a closure, unbounded)."""
    coeffs = _poly(layer)
    if coeffs is not None:
        mean = state.mean()
        raw = _raw_coefficients(layer, mean.shape[0], mean.dtype, linear_units)
        out = rules.polynomial(state, rules.centre_coefficients(raw, mean), order,
                               readout, memory_limit, flop_limit)
        if state.order >= (len(coeffs) - 1) * order:
            return out, "exact", None
        return out, "closure", _unbounded(state.width)
    if mode == "exact":
        raise ValueError(
            f"activation={layer.activation!r} has no exact cumulant rule (only polynomial "
            f"activations do): pass mode='hermite' (error estimate beside the cumulants), "
            f"'quadratic' or 'gaussian_closure' (approximate modes: "
            f"{', '.join(APPROXIMATE_MODES)})")
    fn = activation_fn(layer.activation, layer.alpha)
    kinks = KINKS.get(layer.activation, ())
    if mode == "hermite":
        out, norms = surrogate.hermite_rule(state, fn, degree, order, readout, memory_limit,
                                            linear_units, kinks, flop_limit)
        if state.order >= degree * order:
            return out, mode, surrogate.untrusted_where_far_from_gaussian(state, norms)
        return out, f"{mode}+closure", _unbounded(state.width)
    rule = rules.quadratic_expansion if mode == "quadratic" else rules.gaussian_closure
    out = rule(state, fn, order, readout, memory_limit, linear_units, kinks=kinks,
               flop_limit=flop_limit)
    if state.order < 2 * order:  # the expansion's polynomial rule ran as a closure
        return out, mode, _unbounded(state.width)
    g = marginals(state, 2)
    norms = surrogate.untrusted_where_far_from_gaussian(
        state, surrogate.taylor_residual(fn, g[:, 0], g[:, 1], kinks))
    return out, mode, jnp.where(rules.linear_mask(state.width, linear_units)[:, None], 0.0, norms)


def _raw_coefficients(layer, width: int, dtype, linear_units: int):
    """[H, Q+1] ascending coefficients of a polynomial activation, identity (0, 1, 0..) on
    the trailing ``linear_units``."""
    raw = jnp.stack([jnp.asarray(c, dtype) for c in _poly(layer)])
    ident = jnp.zeros_like(raw).at[1].set(1.0)
    return jnp.where(rules.linear_mask(width, linear_units)[:, None], ident, raw)


def _site_layer(state, layer, linear_units: int, memory_limit):
    """One layer of the exact path on the sites' polynomials (``sites.py``)."""
    if isinstance(state, FactorCumulants):
        state = sites.from_factor(state)
    if isinstance(layer, Affine):
        return sites.affine(state, layer.weight, layer.bias, memory_limit)
    if layer.activation == "identity" and not linear_units:
        return state
    raw = _raw_coefficients(layer, state.width, state.kappa.dtype, linear_units)
    return sites.activation(state, raw, memory_limit)


def _unbounded(width: int):
    return jnp.full((width, surrogate.BOUND_ORDERS), jnp.inf)


def _errors(state: State, norms, low_unbounded: bool, activation: str | None = None,
            linear_units: int = 0):
    """[H, K] error bounds of a state's marginal cumulants (``surrogate.cumulant_bound``);
    orders 1-2 unbounded after a Gaussian closure (its mean and covariance assume Gaussian
    pre-activations).  activation: the state is that activation's output (a bounded one's
    range then overrules an estimate it proves wrong, ``surrogate.range_check``; not on
    the trailing ``linear_units``)."""
    if norms is None:
        return jnp.zeros((state.width, state.order))
    kappa = marginals(state, min(state.order, surrogate.BOUND_ORDERS))
    bound = surrogate.cumulant_bound(kappa, norms, state.order)
    if low_unbounded:
        bound = bound.at[:, :2].set(jnp.inf)
    if activation is None:
        return bound
    return surrogate.range_check(kappa, bound, activation, linear_units)


def _output_of(chain, i: int):
    """The activation whose output layer ``i``'s state is (None after an Affine)."""
    layer = chain[i]
    return None if isinstance(layer, Affine) else layer.activation


def _expands_kink(layer, order: int, mode: str) -> bool:
    """Whether this layer's rule expands the activation about the mean across a kink
    (the quadratic mode; gaussian_closure for orders >= 3)."""
    return (_poly(layer) is None and bool(KINKS.get(layer.activation))
            and (mode == "quadratic" or (mode == "gaussian_closure" and order > 2)))


def _unit_marginals(state: State, layer, order: int, mode: str, memory_limit,
                    linear_units: int = 0, flop_limit: float = DEFAULT_FLOP_LIMIT,
                    degree: int = surrogate.DEFAULT_DEGREE) -> MarginalCumulants:
    """Each unit's own output cumulants: the layer's rule on the units' marginal cumulants
    alone, so no ``[H]^n`` joint tensor is built.  A unit's cumulants depend only on its
    own pre-activation law, so they equal the diagonals of the joint rule's tensors
    (closure included: the same orders are dropped)."""
    return _elementwise(MarginalCumulants(marginals(state)), layer, order, mode, None,
                        memory_limit, linear_units, flop_limit, degree)[0]


def _refuse_kinks(near: dict, chain, mode: str):
    """ValueError when a concrete propagation put a unit's pre-activation on a kink of an
    activation it expanded, where the second-order expansion collapses.  near: layer index
    -> [H] bool (:func:`rules.near_kink`); traced masks (under jit, vmap or grad) pass:
    the rule has made those units' cumulants NaN instead."""
    for i, mask in sorted(near.items()):
        if isinstance(mask, jax.core.Tracer) or not bool(mask.any()):
            continue
        activation = chain[i].activation
        raise ValueError(
            f"mode={mode!r} expands activation={activation!r} to second order about each "
            f"unit's mean, but {int(mask.sum())} of {mask.shape[0]} units have a kink "
            f"({KINKS[activation]}) within {rules.KINK_SPREADS:g} standard deviations of "
            "their mean, where that expansion collapses (at the kink itself it predicts "
            "zero variance); use mode='gaussian_closure' with order <= 2 (Gauss-Hermite "
            "quadrature through the kink)")


def _merge(label: str, new: str) -> str:
    """The labels so far joined with ``new``'s parts not yet named ('a+b')."""
    if label == "exact":
        return new
    parts = label.split("+")
    return "+".join(parts + [p for p in new.split("+") if p not in parts + ["exact"]])


def propagate_chain(chain: Sequence, state: State, order: int = 4, mode: str = "exact",
                    every_layer: bool = True,
                    memory_limit: float = DEFAULT_MEMORY_LIMIT,
                    linear_units: int = 0, internal_order: int | None = None,
                    joint: bool = False,
                    flop_limit: float = DEFAULT_FLOP_LIMIT,
                    degree: int = surrogate.DEFAULT_DEGREE) -> Propagation:
    """Propagates ``state`` through a chain of Affine / Elementwise layers.

    An activation followed by an Affine is fused unless ``joint``: the readout is
    contracted inside the einsums, so the hidden ``[H]^n`` joint tensors are never built.
    Identity activations are skipped (factor states stay compact through linear nets).

    Args:
      chain: Affine / Elementwise layers on the flattened lattice (``model.layers``).
      state: the input state over the chain's N input units.
      order, mode, memory_limit, flop_limit: as :func:`propagate`.
      every_layer: keep a state after every layer (else only input and output states).
      linear_units: activations act as identity on this many trailing units (carries the
        RG target through the net for exact MSEs, see ``predict.py``).
      internal_order: highest order carried by hidden dense states (default ``order``);
        see :func:`order_schedule`.  Raise it to make deeper polynomial nets exact (memory
        permitting): the final state always has orders 1..order.  A chain of affine maps
        and two or more polynomial activations on a FactorCumulants input then runs as
        polynomials of the sites (:func:`site_degree`), and every state it records after
        the first activation carries orders 1..order.
      joint: keep the joint cumulant tensors of hidden activations (dense ``[H]^n``,
        costly in time and memory at order >= 3); by default a hidden activation's state
        is a :class:`~rgsym.cumulants.state.MarginalCumulants` (each unit's kappas).
      degree: of mode 'hermite''s surrogate polynomial (the input state needs
        degree * order orders for the first non-linear layer; deeper ones run as
        closures, labelled).

    Returns:
      A :class:`Propagation`; its ``errors`` bound each state's marginal cumulants
      (``surrogate.py``).

    Raises:
      As :func:`propagate` (memory, cost, orders, legs).
    """
    validation.choice("mode", mode, MODES)
    degree = validation.integer("degree", degree, 1)
    memory_limit = validation.real("memory_limit", memory_limit, positive=True)
    flop_limit = validation.real("flop_limit", flop_limit, positive=True)
    for name, flag in (("every_layer", every_layer), ("joint", joint)):
        if not isinstance(flag, bool):
            raise ValueError(f"{name}={flag!r} is not valid: it must be True or False")
    chain = tuple(chain)
    factor = isinstance(state, FactorCumulants)
    _, outs = order_schedule(chain, order, internal_order, degree if mode == "hermite" else 2,
                             sites_path=factor)
    kinds = tuple(None if isinstance(l, Affine) else l.activation for l in chain)
    arrays = tuple(tuple(l) if isinstance(l, Affine) else l.alpha for l in chain)
    total = site_degree(chain, order, internal_order) if factor else None
    use_sites = total is not None
    if use_sites and state.order < total * order:  # refused before any program runs
        raise ValueError(
            f"order={order} of this net (a degree-{total} polynomial of the input sites) "
            f"needs the sites' cumulants kappa_1..kappa_{total * order}; the input state "
            f"holds {state.order} (pass a Distribution, or more kappas)")
    static = (outs, mode, every_layer, memory_limit, linear_units, joint, flop_limit, degree,
              use_sites)
    if use_sites:
        _check_read_off(kinds, arrays, state, static, order, memory_limit, flop_limit)
    out, near = _propagate_jit(kinds, arrays, state, *static)
    _refuse_kinks(near, chain, mode)
    return _read_off(out, order, memory_limit, flop_limit) if use_sites else out


#: The propagation programs are contractions run a few times, so compile time is what a
#: user waits for: XLA's backend optimisation passes cost more compile time than they save
#: (CPU: about half the first call's compile at order 4, benchmarks/compile_time.py) while
#: run time barely moves.
COMPILER_OPTIONS = {"xla_backend_optimization_level": 0}

#: The layer chain is ~1000 small fusions: XLA:CPU's MLIR fusion emitters compile each
#: through a pass pipeline of its own, and its classic emitters compile the chain faster
#: (first calls 1.1-2x shorter, most at orders 3-4; repeated calls within the runs' spread:
#: benchmarks/RESULTS.md).  Not for the sites' read-off (:func:`sites.cumulants`, a few
#: large contractions), which the classic emitters compile more slowly.  GPUs and TPUs
#: ignore the option (an XLA:CPU one); an XLA that no longer knows it drops it
#: (:func:`_known_options`).
CHAIN_COMPILER_OPTIONS = {**COMPILER_OPTIONS, "xla_cpu_use_fusion_emitters": False}


@functools.lru_cache(maxsize=None)
def _known_option(name: str, value) -> bool:
    """Whether this jaxlib's XLA accepts compiler option ``name`` (it refuses a compile that
    names an unknown one, and retires options as it evolves): a trivial program is compiled
    with it, once per process."""
    try:
        jax.jit(lambda x: x + 1, compiler_options={name: value}).lower(0.0).compile()
    except Exception as e:  # noqa: BLE001 (XLA's error type differs between jaxlib versions)
        if "No such compile option" in str(e):
            return False
        raise
    return True


def _known_options(options: dict) -> dict:
    """``options`` without the names this jaxlib's XLA does not know."""
    return {k: v for k, v in options.items() if _known_option(k, v)}


class _PendingJoint(NamedTuple):
    """A state of the sites' path whose joint cumulants are read off by :func:`_read_off`."""
    state: sites.PolynomialCumulants


class _PendingMarginal(NamedTuple):
    """A state of the sites' path whose units' own cumulants are read off."""
    state: sites.PolynomialCumulants


def _read_off(out: Propagation, order: int, memory_limit, flop_limit) -> Propagation:
    """The sites' path's recorded states turned into cumulants (orders 1..order), each by
    its own compiled program at top level: one program holding them all with the chain
    compiled about 30% slower than the parts (CPU, depth-2 quadratic net at order 4)."""
    states, errors = list(out.states), list(out.errors)
    for k, s in enumerate(states):
        if isinstance(s, (_PendingJoint, _PendingMarginal)):
            fn = _cumulants_nested if _traced(s) else _cumulants_top
            states[k] = fn(s.state, order, isinstance(s, _PendingJoint), memory_limit,
                           flop_limit)
            errors[k] = _errors(states[k], None, False)
    return Propagation(tuple(states), out.labels, tuple(errors))


def _check_read_off(kinds, arrays, state, static, order, memory_limit, flop_limit) -> None:
    """Traces the sites' path and its read-off without running either, so that the
    read-off's memory and cost refusals come before the chain's program runs.  The traces
    are cached: the run that follows reuses them.  First, compiled programs are dropped if
    the process's memory mappings are crowded (``compile_cache.release_if_crowded``).
    Inside a caller's trace nothing runs before the whole program is traced, so there is
    nothing to do."""
    if _traced((arrays, state)):
        return
    compile_cache.release_if_crowded()  # the path compiles thousands of kernels
    out, _ = _program_top().eval_shape(kinds, arrays, state, *static)
    for s in out.states:
        if isinstance(s, (_PendingJoint, _PendingMarginal)):
            _cumulants_top.eval_shape(s.state, order, isinstance(s, _PendingJoint),
                                      memory_limit, flop_limit)


def _propagate_jit(kinds, arrays, state, *static):
    """:func:`_propagate_program` compiled with :data:`CHAIN_COMPILER_OPTIONS` when called at
    top level (JAX accepts compiler options only there), else traced into the caller's
    program (under jit, grad or vmap)."""
    program = _program_nested if _traced((arrays, state)) else _program_top()
    return program(kinds, arrays, state, *static)


def _traced(tree) -> bool:
    """Whether ``tree`` holds a tracer (we are inside a caller's jit, grad or vmap)."""
    return any(isinstance(x, jax.core.Tracer) for x in jax.tree_util.tree_leaves(tree))


def _propagate_program(kinds, arrays, state, outs, mode, every_layer, memory_limit,
                       linear_units, joint, flop_limit, degree, use_sites):
    """The chain (kinds: None for Affine, else the activation; arrays: (weight, bias) or
    alpha) as one compiled program: eager layer-by-layer dispatch would compile dozens of
    small programs on the first call.  use_sites: polynomial chains run as polynomials
    of the input sites (:func:`site_degree`).  Returns (Propagation, {layer: near-kink
    mask})."""
    chain = [Affine(*a) if k is None else Elementwise(k, a) for k, a in zip(kinds, arrays)]
    states, labels, label, near = [state], ["input"], "exact", {}
    norms, low_unbounded = None, False  # residual norms of the current units [H, R]
    errors = [_errors(state, None, False)]
    i = 0
    while i < len(chain):
        layer = chain[i]
        if use_sites and (isinstance(state, sites.PolynomialCumulants) or (
                isinstance(layer, Elementwise) and _degree(layer) > 1)):
            state = _site_layer(state, layer, linear_units, memory_limit)
            last = i == len(chain) - 1
            if every_layer or last:  # read off after this program (_read_off), exact
                joint_here = joint or last or isinstance(layer, Affine)
                states.append((_PendingJoint if joint_here else _PendingMarginal)(state))
                labels.append(label)
                errors.append(None)
            i += 1
            continue
        if isinstance(layer, Affine):
            if isinstance(state, DenseCumulants):  # orders beyond the schedule are not needed
                state = DenseCumulants(state.tensors[:outs[i]])
            state = rules.affine(state, layer.weight, layer.bias, memory_limit)
            norms = None if norms is None else surrogate.through_affine(norms, layer.weight)
        elif layer.activation != "identity":
            if _expands_kink(layer, outs[i], mode):
                near[i] = rules.near_kink(state, KINKS[layer.activation], linear_units)
            readout = None
            if not joint and i + 1 < len(chain) and isinstance(chain[i + 1], Affine):
                readout = chain[i + 1].weight
            fused, new, fresh = _elementwise(state, layer, outs[i], mode, readout,
                                             memory_limit, linear_units, flop_limit, degree)
            label = _merge(label, new)
            norms = surrogate.through_activation(norms, fresh, layer.activation)
            low_unbounded |= new == "gaussian_closure"
            if readout is not None:
                if every_layer:  # the hidden layer as each unit's own cumulants
                    hidden = _unit_marginals(state, layer, outs[i], mode, memory_limit,
                                             linear_units, flop_limit, degree)
                    states.append(hidden)
                    labels.append(label)
                    errors.append(_errors(hidden, norms, low_unbounded, layer.activation,
                                          linear_units))
                fused = rules.add_bias(fused, chain[i + 1].bias)
                norms = None if norms is None else surrogate.through_affine(norms, readout)
                i += 1
            state = fused
        if every_layer:
            states.append(state)
            labels.append(label)
            errors.append(_errors(state, norms, low_unbounded, _output_of(chain, i),
                                  linear_units))
        i += 1
    if not every_layer and not isinstance(state, sites.PolynomialCumulants):
        states.append(state)
        labels.append(label)
        errors.append(_errors(state, norms, low_unbounded,
                              _output_of(chain, len(chain) - 1) if chain else None,
                              linear_units))
    return Propagation(tuple(states), tuple(labels), tuple(errors)), near


_STATIC = (0, 3, 4, 5, 6, 7, 8, 9, 10, 11)


@functools.lru_cache(maxsize=None)
def _program_top():
    """The chain's program for top-level calls (built at first use: checking the options
    compiles, which importing rgsym should not)."""
    return jax.jit(_propagate_program, static_argnums=_STATIC,
                   compiler_options=_known_options(CHAIN_COMPILER_OPTIONS))


_program_nested = jax.jit(_propagate_program, static_argnums=_STATIC)
_cumulants_top = jax.jit(sites.cumulants, static_argnums=(1, 2, 3, 4),
                         compiler_options=COMPILER_OPTIONS)
_cumulants_nested = jax.jit(sites.cumulants, static_argnums=(1, 2, 3, 4))


def propagate(model: Model, params: Params, input_cumulants, order: int = 4,
              mode: str = "exact", *, lattice_shape: tuple[int, ...] | None = None,
              alpha: jax.typing.ArrayLike | None = None, steps: int = 1,
              every_layer: bool = True, joint: bool = False,
              internal_order: int | None = None, degree: int = surrogate.DEFAULT_DEGREE,
              memory_limit: float = DEFAULT_MEMORY_LIMIT,
              flop_limit: float = DEFAULT_FLOP_LIMIT) -> Propagation:
    """Cumulants (orders 1..order) after every layer of ``model`` applied ``steps`` times.

    Affine layers map the cumulant tensors multilinearly; polynomial activations use the
    Leonov-Shiryaev formula for cumulants of products (sums over connected partitions,
    ``partitions.py``; Leonov & Shiryaev 1959), so 'exact' is exact for polynomial nets.

    Args:
      model: a built ``rgsym.models.Model`` (MLP or GNN).
      params: its parameter pytree (one seed: no leading [S] axis; see
        :func:`propagate_many`).
      input_cumulants: a Distribution (i.i.d. lattice; its exact cumulants up to the order
        the exact rules need, see :func:`order_schedule`), kappas [K] of one site, or a
        FactorCumulants / DenseCumulants over the N flattened lattice sites.
      order: output cumulant orders 1..order.
      mode: 'exact' (polynomial activations only; others raise) or an approximate mode for
        non-polynomial activations: 'hermite' (each unit's activation replaced by its
        degree-``degree`` least-squares polynomial under the unit's Gaussian law, then the
        exact rule; works through kinks), 'quadratic' (second-order Taylor) or
        'gaussian_closure' (mean and covariance by quadrature, higher orders as
        'quadratic').
      lattice_shape: (N,) or (L, L); default: the model's own lattice.
      alpha: activation parameter overriding the model's.
      steps: apply the model this many times (iterable models; the lattice shrinks by b).
      every_layer: a state after every layer (default), else only the input and the output.
      joint: keep hidden activations' joint tensors G_n [H]^n (``to_dense`` needs them);
        by default they hold each unit's own cumulants only (MarginalCumulants [H, order]),
        which is what ``marginals()`` reports and is far cheaper at order >= 3.
      internal_order: orders carried by hidden dense states (default ``order``: beyond one
        polynomial layer the truncation closure, labelled 'closure'); raise it for exact
        deeper or iterated polynomial nets (at least ``order`` times the degrees of every
        activation but the first, e.g. 8 for two quadratic layers at order 4): those then
        run as polynomials of the input sites (``sites.py``), with every state after the
        first activation recorded at orders 1..order.
      degree: the 'hermite' surrogate's polynomial degree.  3 improves kappa_4 where the
        pre-activations are near Gaussian (finite ``errors``) at a far higher cost; where
        ``errors`` are inf (skewed or heavy-tailed inputs, closures) it can be far worse
        than 2 (benchmarks/RESULTS.md).
      memory_limit: bytes, of each tensor the solver builds (not of the process: several
        are alive at once); flop_limit: floating-point operations per layer.

    Returns:
      A :class:`Propagation` (a pytree: jit/vmap over params works): the input state then
      one state per layer (output: N/b sites, ``marginals()[-1]`` [N/b, order]), a label
      per state, and ``errors``: estimated bounds on the marginal cumulants' error (inf
      where unbounded: closures, Gaussian closure's orders 1-2).

    Raises:
      CumulantMemoryError: dense tensors or contraction intermediates would exceed
        ``memory_limit`` bytes (checked before anything runs, as are the others).
      CumulantCostError: a layer's contractions would cost more than ``flop_limit``
        (opt_einsum's estimate).
      ValueError: order or steps < 1, internal_order < order, a layer needing more than
        ``partitions.MAX_LEGS`` legs (``WICK_MAX_LEGS`` on the sites' path), non-finite
        input, kappas that are not 1-D, a state whose width is not the number of lattice
        sites, or a float64 state without x64.
      CumulantDoesNotExist: the family lacks a needed cumulant.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from rgsym import cumulants, distributions, models
      >>> model = models.build({"kind": "mlp", "symmetry": "none",
      ...                       "activation": "quadratic", "width": 4, "sites": 4})
      >>> params = model.init(jax.random.key(0), jnp.zeros((4,)))
      >>> with jax.enable_x64(True):      # cumulant states are float64
      ...     out = cumulants.propagate(model, params, distributions.get("uniform"), order=2)
      ...     print(out.labels)           # input, Affine, quadratic, Affine
      ...     print(out.marginals()[-1].shape)   # [N/b, order]: kappa_1..2 of each output site
      ('input', 'exact', 'exact', 'exact')
      (2, 2)
    """
    order, internal_order = check_orders(order, internal_order)
    validation.choice("mode", mode, MODES)
    degree = validation.integer("degree", degree, 1)
    shape, _, _ = geometry(model, lattice_shape)
    chain = model_chain(model, params, shape, alpha, steps)
    state = input_state(input_cumulants, math.prod(shape), order_schedule(
        chain, order, internal_order, degree if mode == "hermite" else 2)[0])
    if state.order < order:  # a linear chain would return only state.order orders
        raise ValueError(
            f"input_cumulants has kappa_1..kappa_{state.order} only: order={order} needs "
            f"at least kappa_1..kappa_{order} of the input (pass more kappas, a state of "
            "that order or a Distribution)")
    return propagate_chain(chain, state, order, mode, every_layer, memory_limit,
                           internal_order=internal_order, joint=joint, flop_limit=flop_limit,
                           degree=degree)


def propagate_many(model: Model, params: Params, input_cumulants, order: int = 4,
                   mode: str = "exact", **kwargs) -> Propagation:
    """:func:`propagate` vmapped over a leading axis of ``params`` (seeds).

    Args:
      model: as :func:`propagate`; params: its pytree with every leaf [S, ...].
      input_cumulants, order, mode, **kwargs: as :func:`propagate`; the input state is
        shared by every seed.

    Returns:
      A :class:`Propagation` whose every state array gains the leading [S] axis.

    Raises:
      As :func:`propagate`.
    """
    shape, _, _ = geometry(model, kwargs.get("lattice_shape"))
    if isinstance(input_cumulants, _dist.Distribution):
        # resolve outside vmap so the family's cumulants are concrete constants
        probe = model_chain(model, jax.tree_util.tree_map(lambda a: a[0], params), shape,
                            kwargs.get("alpha"), kwargs.get("steps", 1))
        input_cumulants = input_state(
            input_cumulants, math.prod(shape),
            order_schedule(probe, order, kwargs.get("internal_order"),
                           kwargs.get("degree", surrogate.DEFAULT_DEGREE)
                           if mode == "hermite" else 2)[0])
    return jax.vmap(lambda p: propagate(model, p, input_cumulants, order, mode, **kwargs))(params)
