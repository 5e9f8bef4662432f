"""Generalisation predictions from cumulants: exact MSE and the CLT recursion check.

**Exact MSE.**  The error ``e = f(x) - RG(x)`` of a network whose output is a polynomial of
degree d in x is itself a polynomial, so ``E e^2 = kappa_2(e) + kappa_1(e)^2`` needs input
cumulants up to ``2 d``: exact on any family that has them.  We get it by propagating the
*error network*: the target ``R x`` (R the flattened block-sum matrix) rides along as
``linear_units`` extra identity units through every layer, and the last Affine becomes
``[W, -I]``.  One hidden polynomial layer (any symmetry, MLP or GNN) or identity nets of
any depth are exact; other networks get the approximate modes, labelled.

**Recursion check.**  For i.i.d. inputs with cumulants kappa_n the exact RG gives
``kappa_n^(k) = B^(k (1 - n/2)) kappa_n`` at every coarse site; we report, order by order,
how far the propagated output cumulants of the model (iterated ``steps`` times) are.

**RG eigenvalues.**  The learned map, read as a map from one site's input cumulants
(kappa_1..kappa_K, every site i.i.d.) to the cumulants of its output sites (averaged over
coarse sites), linearised at the Gaussian fixed point with ``jax.jacfwd`` through the
propagator.  The exact block-sum map has the diagonal Jacobian ``B^(1 - n/2)``: kappa_1
relevant, kappa_2 marginal, kappa_n>=3 irrelevant.
"""
from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.linalg import block_diag

from rgsym import clt
from rgsym.cumulants import rules
from rgsym.cumulants.propagate import (check_orders, geometry, input_state, model_chain,
                                       order_schedule, propagate, propagate_chain)
from rgsym.cumulants.state import (DEFAULT_MEMORY_LIMIT, CumulantCostError,
                                   CumulantMemoryError, marginals)
from rgsym.models.activations import polynomial_coefficients
from rgsym.distributions import Distribution
from rgsym.models.layer_ops import Affine
from rgsym.models.model import Model, Params

__all__ = ["MSEPrediction", "RecursionCheck", "RGEigenvalues", "error_chain", "predict_mse",
           "clt_recursion_check", "rg_eigenvalues", "rg_eigenvalue_error"]


class MSEPrediction(NamedTuple):
    """mse: mean over output sites of E (f - RG)^2; per_site: [O]; label: 'exact' or the
    approximation used ('closure', 'quadratic', 'gaussian_closure', 'hermite'); error: the
    estimated bound on |mse(true) - mse| from the propagation's error estimates (0 where
    exact, inf where unbounded; see ``surrogate.py``)."""
    mse: jnp.ndarray
    per_site: jnp.ndarray
    label: str
    error: jnp.ndarray | float = 0.0


class RecursionCheck(NamedTuple):
    """predicted: [O, K] output kappa_1..kappa_K per coarse site; target: [K] the exact
    recursion; distance: [K] max over sites |predicted - target|; standardised: [K]
    distance / target_kappa_2^(n/2) (scale-free; for n = 1 too); label: as above."""
    predicted: jnp.ndarray
    target: jnp.ndarray
    distance: jnp.ndarray
    standardised: jnp.ndarray
    label: str


def error_chain(chain: Sequence, target: jax.typing.ArrayLike) -> tuple:
    """The chain of ``[x, R x] -> f(x) - R x`` given f's chain and R = target [O, N].

    Hidden Affines act block-diagonally (identity on the O carried units); the final Affine
    becomes ``[W, -I]``.  Propagate it with ``linear_units=O`` from the state of
    ``[x; R x]`` (see :func:`predict_mse`).

    Args:
      chain: f's Affine / Elementwise layers on the flattened lattice (``model.layers``).
      target: R, [O, N] (e.g. ``clt.rg_matrix``).

    Returns:
      The layers of the error map [N + O] -> [O].
    """
    o = target.shape[0]
    last = max(i for i, l in enumerate(chain) if isinstance(l, Affine))
    out = []
    for i, layer in enumerate(chain):
        if not isinstance(layer, Affine):
            out.append(layer)
        elif i == last:
            out.append(Affine(jnp.concatenate([layer.weight, -jnp.eye(o)], 1), layer.bias))
        else:
            out.append(Affine(block_diag(layer.weight, jnp.eye(o, dtype=layer.weight.dtype)),
                              jnp.concatenate([layer.bias, jnp.zeros(o, layer.bias.dtype)])))
    return tuple(out)


def predict_mse(model: Model, params: Params, family: Distribution,
                mode: str = "exact", *, lattice_shape=None,
                alpha=None, steps: int = 1, internal_order: int | None = None,
                memory_limit: float = DEFAULT_MEMORY_LIMIT) -> MSEPrediction:
    """Mean squared error of ``model`` (iterated ``steps`` times) against RG^steps on
    i.i.d. lattices of ``family``, from the family's exact cumulants.

    Exact ('exact' label) when the output is polynomial with at most one non-linear
    polynomial layer, or with more when ``internal_order`` carries enough orders (e.g. 4 for
    two quadratic steps); mode names the approximation for non-polynomial activations.
    ``E (f - Rx)^2 = kappa_2 + kappa_1^2`` of the error map :func:`error_chain` propagated.

    Args:
      model, params: a built model and one seed's parameters.
      family: the i.i.d. site law (a Distribution).
      mode, lattice_shape, alpha, steps, internal_order, memory_limit: as
        :func:`~rgsym.cumulants.propagate`.

    Returns:
      :class:`MSEPrediction`: mse [], per_site [O] (O = N / B**steps coarse sites), label,
      error bound.

    Raises:
      CumulantDoesNotExist: the family lacks a cumulant of order ``2 * degree``.
      ValueError, CumulantMemoryError, CumulantCostError: as
        :func:`~rgsym.cumulants.propagate`.
    """
    _, internal_order = check_orders(2, internal_order)
    shape, b, dim = geometry(model, lattice_shape)
    chain = model_chain(model, params, shape, alpha, steps)
    target = clt.rg_matrix(shape, b, dim, steps)
    errors = error_chain(chain, target)
    state = input_state(family, math.prod(shape), order_schedule(errors, 2, internal_order)[0])
    state = rules.affine(state, jnp.concatenate([jnp.eye(target.shape[1]), target], 0))
    out = propagate_chain(errors, state, 2, mode, every_layer=False, memory_limit=memory_limit,
                          linear_units=target.shape[0], internal_order=internal_order)
    k = marginals(out.output, 2)
    per_site = k[:, 1] + k[:, 0] ** 2
    # E e^2 = kappa_2 + kappa_1^2: |Delta| <= d2 + 2 |kappa_1| d1 + d1^2 per site
    d = out.errors[-1]
    d1, d2 = d[:, 0], d[:, 1]
    bound = jnp.where(jnp.isfinite(d1) & jnp.isfinite(d2),
                      d2 + 2 * jnp.abs(k[:, 0]) * d1 + d1 ** 2, jnp.inf)
    return MSEPrediction(per_site.mean(), per_site, out.labels[-1], bound.mean())


def clt_recursion_check(model: Model, params: Params, family: Distribution,
                        order: int = 4, mode: str = "exact", *,
                        lattice_shape=None, alpha=None, steps: int = 1,
                        internal_order: int | None = None,
                        memory_limit: float = DEFAULT_MEMORY_LIMIT) -> RecursionCheck:
    """How far the model's propagated output cumulants are from the exact recursion
    ``kappa_n^(steps) = B^(steps (1 - n/2)) kappa_n``, order by order (n = 1..order).

    Args:
      model, params: a built model and one seed's parameters.
      family: the i.i.d. site law; order: orders 1..order compared.
      mode, lattice_shape, alpha, steps, internal_order, memory_limit: as
        :func:`~rgsym.cumulants.propagate`.

    Returns:
      :class:`RecursionCheck`: predicted [O, order], target [order], distance and
      standardised [order], label.

    Raises:
      As :func:`~rgsym.cumulants.propagate`.
    """
    _, b, dim = geometry(model, lattice_shape)
    out = propagate(model, params, family, order, mode, lattice_shape=lattice_shape,
                    alpha=alpha, steps=steps, every_layer=False,
                    internal_order=internal_order, memory_limit=memory_limit)
    predicted = marginals(out.output, order)
    kappa = jnp.asarray(marginals(out.states[0], order)[0])
    target = clt.cumulant_recursion(kappa, b, steps, dim)
    distance = jnp.abs(predicted - target).max(0)
    scale = jnp.abs(target[1]) ** (jnp.arange(1, order + 1) / 2) if order > 1 else 1.0
    return RecursionCheck(predicted, target, distance, distance / scale, out.labels[-1])


class RGEigenvalues(NamedTuple):
    """jacobian: [K, K] d(output kappa_n, mean over coarse sites) / d(input kappa_m) at the
    Gaussian fixed point; eigenvalues: [K] (complex in general) sorted by decreasing real
    part; exact: [K] B^(1 - n/2); classes: 'relevant' / 'marginal' / 'irrelevant' of the
    exact eigenvalue in the same position; label: as in :class:`RecursionCheck`."""
    jacobian: jnp.ndarray
    eigenvalues: np.ndarray
    exact: np.ndarray
    classes: list
    label: str


def rg_eigenvalues(model: Model, params: Params, order: int = 4, mode: str = "exact", *,
                   variance: float = 1.0, lattice_shape=None, alpha=None,
                   internal_order: int | None = None,
                   memory_limit: float = DEFAULT_MEMORY_LIMIT) -> RGEigenvalues:
    """The scaling eigenvalues of one application of ``model`` read as an RG map.

    The model's map from one site's input cumulants kappa_1..kappa_order (all sites i.i.d.)
    to its output cumulants (mean over coarse sites) is differentiated with ``jax.jacfwd``
    at the Gaussian fixed point ``[0, variance, 0, ...]`` (higher input cumulants held at
    0), and its eigenvalues are returned beside the exact ``B^(1 - n/2)``, n = 1..order
    (:func:`rgsym.clt.scaling_eigenvalues`, the block-sum RG of ``rgsym.clt``).
    Exact for polynomial networks in mode 'exact' (raise ``internal_order`` for deeper
    ones); the approximate modes are labelled.

    Args:
      model, params: a built model (iterable: output lattice a coarse copy of the input)
        and one seed's parameters.
      order: cumulant orders 1..order (the Jacobian is [order, order]).
      mode, lattice_shape, alpha, internal_order, memory_limit: as
        :func:`~rgsym.cumulants.propagate`.
      variance: kappa_2 of the fixed point the map is linearised at.

    Returns:
      :class:`RGEigenvalues`: the model's eigenvalues and the exact ones, [order] each.

    Raises:
      ValueError: order < 1, a non-positive variance, or an activation the mode cannot
        handle; CumulantMemoryError / CumulantCostError as :func:`propagate`.
    """
    order, internal_order = check_orders(order, internal_order)
    star_variance = clt.gaussian_fixed_point(variance, 2)[1]
    shape, b, dim = geometry(model, lattice_shape)
    chain = model_chain(model, params, shape, alpha)
    n_in = max(order_schedule(chain, order, internal_order)[0], order)
    star = jnp.zeros(n_in, jnp.float64).at[1].set(star_variance)
    labels = []

    def output_cumulants(kappa):
        state = input_state(star.at[:order].set(kappa), math.prod(shape), n_in)
        out = propagate_chain(chain, state, order, mode, every_layer=False,
                              memory_limit=memory_limit, internal_order=internal_order)
        labels.append(out.labels[-1])
        return marginals(out.output, order).mean(0)

    jacobian = jax.jacfwd(output_cumulants)(star[:order])
    eig = np.linalg.eigvals(np.asarray(jacobian))
    eig = eig[np.argsort(-eig.real, kind="stable")]
    return RGEigenvalues(jacobian, eig, clt.scaling_eigenvalues(order, b, dim),
                         clt.classify_orders(order), labels[-1])


def rg_eigenvalue_error(model: Model, params: Params, order: int = 4) -> np.ndarray:
    """[S] how far each seed's learned map is from the block-sum RG's scaling structure:
    ``max_n |lambda_n - B^(1 - n/2)| / B^(1 - n/2)``, n = 1..order, with the eigenvalues of
    :func:`rg_eigenvalues` (mode 'exact') and the exact ones both sorted by decreasing
    real part.

    The sweep summary's ``rg_eig_err`` column.

    Args:
      model: a built model.
      params: its parameters stacked over seeds, every leaf [S, ...]
        (``results.load_params``).
      order: cumulant orders 1..order.

    Returns:
      [S] float64 numpy; NaN for a seed where the exact rule does not apply: a
      non-polynomial activation, a polynomial net deeper than the exact rule reaches at
      this order (label 'closure'), or a request refused for its memory or cost.
    """
    leaves = jax.tree.leaves(params)
    seeds = int(np.shape(leaves[0])[0]) if leaves else 0
    out = np.full(seeds, np.nan)
    if not seeds:
        return out
    # Decided before any cumulant is built: the exact rule needs polynomial activations
    # and no hidden state asked for more orders than it carries (else a closure runs).
    chain = model_chain(model, jax.tree.map(lambda a: a[0], params))
    if any(not isinstance(l, Affine) and polynomial_coefficients(l.activation) is None
           for l in chain):
        return out
    try:
        if order_schedule(chain, order) != order_schedule(chain, order, 2 ** 20):
            return out
    except ValueError:  # the uncapped schedule needs more legs than are enumerated
        return out
    for s in range(seeds):
        try:
            eig = rg_eigenvalues(model, jax.tree.map(lambda a: a[s], params), order)
        except (CumulantMemoryError, CumulantCostError):
            return out  # too wide for the exact rule at this order: the same for every seed
        out[s] = float(np.max(np.abs(eig.eigenvalues - eig.exact) / eig.exact))
    return out
