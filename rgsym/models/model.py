"""build(cfg) -> Model: a NamedTuple of pure functions for one point of the design space."""
from __future__ import annotations

import functools
import numbers
from typing import Any, Mapping, NamedTuple, Protocol

import jax
import jax.numpy as jnp
import numpy as np

from rgsym import validation
from rgsym.models.gnn import GNNKind
from rgsym.models.lattice import as_shape, check_input
from rgsym.models.layer_ops import to_chain
from rgsym.models.mlp import MLPKind
from rgsym.models.spec import ModelSpec, spec_from_config
from rgsym.models.symmetry import DIAGNOSTIC_NAMES

__all__ = ["Model", "build", "Params", "InitFn", "ApplyFn", "LayersFn", "PenaltyFn",
           "DiagnosticsFn", "DescribeFn"]

#: A model's parameters: flax's ``{'params': {...}}`` pytree of jax.Array leaves (with a
#: leading [S] axis on every leaf when stacked over seeds).
Params = Mapping[str, Any]


class InitFn(Protocol):
    def __call__(self, key: jax.Array, x: jax.typing.ArrayLike, *,
                 init_scale: jax.typing.ArrayLike | None = None) -> Params:
        """Fresh parameters; ``x`` [..., N] or [..., L, L] only gives the lattice shape."""


class ApplyFn(Protocol):
    def __call__(self, params: Params, x: jax.typing.ArrayLike, *,
                 alpha: jax.typing.ArrayLike | None = None) -> jax.Array:
        """The learned map: [..., N] -> [..., N / b] (or [..., L, L] -> [..., L/b, L/b])."""


class LayersFn(Protocol):
    def __call__(self, params: Params, lattice_shape: tuple[int, ...], *,
                 alpha: jax.typing.ArrayLike | None = None) -> tuple:
        """The same map as Affine / Elementwise layers on the flattened lattice."""


class PenaltyFn(Protocol):
    def __call__(self, params: Params,
                 strength: jax.typing.ArrayLike | None = None) -> jax.Array:
        """Scalar: strength x squared distance from the soft symmetry's subspace."""


class DiagnosticsFn(Protocol):
    def __call__(self, params: Params) -> dict[str, jax.Array]:
        """Scalar distance from each meaningful symmetric subspace, by name."""


class DescribeFn(Protocol):
    def __call__(self, params: Params | None = None) -> dict:
        """Parameter count, exact symmetries, iterability and the spec."""


class Model(NamedTuple):
    """Pure functions of one model; see :func:`build`."""
    spec: ModelSpec
    init: InitFn
    apply: ApplyFn
    describe: DescribeFn
    penalty: PenaltyFn
    symmetry_diagnostics: DiagnosticsFn
    layers: LayersFn


def build(cfg_or_spec: Mapping | ModelSpec) -> Model:
    """Builds the model named by a config (Mapping / ConfigDict) or a :class:`ModelSpec`.

    Returns a :class:`Model` whose functions are pure, jit-able and vmap-able:

    - ``init(key, x, *, init_scale=None) -> params``: x is an example fine lattice
      [..., N] or [..., L, L] (only its shape is used); consumes ``key``.
    - ``apply(params, x, *, alpha=None) -> y``: x [..., N] -> [..., N/b] or
      [..., L, L] -> [..., L/b, L/b], computed in ``spec.dtype``; ``alpha`` (may be traced)
      overrides ``spec.alpha``.
    - ``layers(params, lattice_shape, *, alpha=None)``: the same map as a tuple of Affine /
      Elementwise on the flattened lattice (compose them with ``layer_ops.compose``).
    - ``penalty(params, strength=None)``: strength * squared distance from the soft
      symmetry's subspace (0 without a soft symmetry).
    - ``symmetry_diagnostics(params)``: distances (norms, not squared: differentiate
      ``penalty`` instead) from each meaningful symmetric subspace.
    - ``describe(params=None)``: parameter count, exact symmetries, iterability, spec.

    Args:
      cfg_or_spec: ModelSpec fields as a Mapping or ConfigDict (see
        :func:`spec_from_config`), or a :class:`ModelSpec`.

    Returns:
      The :class:`Model` (cached per spec: equal specs share compiled functions).

    Raises:
      ValueError: naming the field for an invalid config, and for dtype='float64' while
        ``jax_enable_x64`` is off (JAX would build float32 parameters silently).
    """
    spec = spec_from_config(cfg_or_spec)
    validation.float_dtype("dtype", spec.dtype)
    return _build(spec)


@functools.lru_cache(maxsize=256)
def _build(spec: ModelSpec) -> Model:
    """One Model per spec, so equal specs share compiled functions."""
    net = MLPKind(spec) if spec.kind == "mlp" else GNNKind(spec)
    dtype = jnp.dtype(spec.dtype)
    # Jitted once per model: eager dispatch of the many small ops is far slower.
    _init, _apply, _distances = jax.jit(net.init), jax.jit(net.apply), jax.jit(net.distances)
    _layer_weights = jax.jit(net.layer_weights, static_argnums=1)

    def init(key, x, *, init_scale=None):
        check_input(jnp.shape(x), spec, net.iterable)
        if init_scale is None:
            init_scale = spec.init_scale
        elif isinstance(init_scale, numbers.Real):   # a traced scale (under vmap) is not checked
            validation.real("init_scale", init_scale, positive=True)
        return _init(key, init_scale)

    def apply(params, x, *, alpha=None):
        check_input(jnp.shape(x), spec, net.iterable)
        # alpha in the model dtype, so a float64 alpha cannot promote a float32 model.
        return _apply(params, jnp.asarray(x, dtype), jnp.asarray(_alpha(alpha), dtype))

    def _alpha(alpha):
        return spec.alpha if alpha is None else alpha

    def layers(params, lattice_shape, *, alpha=None):
        lattice_shape = as_shape(lattice_shape, "lattice_shape")
        if len(lattice_shape) != spec.dim:
            raise ValueError(f"lattice_shape={lattice_shape} is not valid: a dim={spec.dim} "
                             f"model needs {spec.dim} side length(s)")
        check_input(lattice_shape, spec, net.iterable, name="lattice_shape")
        return to_chain(_layer_weights(params, lattice_shape), spec.activation,
                        _alpha(alpha))

    def penalty(params, strength=None):
        if spec.soft_symmetry is None:
            return jnp.zeros((), dtype)
        strength = spec.symmetry_strength if strength is None else strength
        return strength * _distances(params)[spec.soft_symmetry]

    def symmetry_diagnostics(params) -> dict:
        return {DIAGNOSTIC_NAMES.get(k, k): jnp.sqrt(v) for k, v in _distances(params).items()}

    def describe(params=None) -> dict:
        if params is None:
            params = jax.eval_shape(lambda k: init(k, jnp.zeros(spec.lattice_shape, dtype)),
                                    jax.random.key(0))
        n_params = sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(params))
        out = {"kind": spec.kind, "symmetry": spec.symmetry, "activation": spec.activation,
               "n_params": n_params, "symmetries": net.symmetries(), "iterable": net.iterable,
               "width": spec.width, "depth": spec.depth, "b": spec.b, "dim": spec.dim,
               "sites": spec.sites, "soft_symmetry": spec.soft_symmetry,
               "symmetry_strength": spec.symmetry_strength}
        if spec.kind == "gnn":
            out.update(pooling=spec.pooling, boundary=spec.boundary,
                       block_edges=spec.block_edges)
        return out

    return Model(spec, init, apply, describe, penalty, symmetry_diagnostics, layers)
