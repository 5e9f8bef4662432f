"""A model written as an explicit chain of dense affine maps and elementwise activations.

This is the bridge to the analytic cumulant propagation: ``Model.layers(params, shape)``
returns a tuple of :class:`Affine` and :class:`Elementwise` acting on the flattened
(row-major) fine lattice and ending in the flattened coarse lattice.
"""
from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import jax

from rgsym.models.activations import activation_fn

__all__ = ["Affine", "Elementwise", "compose", "compose_all", "to_chain"]


class Affine(NamedTuple):
    """z = weight @ y + bias."""
    weight: jax.Array  # [out, in]
    bias: jax.Array    # [out]


class Elementwise(NamedTuple):
    """z = phi(y) with ``phi = activation_fn(activation, alpha)``."""
    activation: str
    alpha: Any  # float or scalar array


def compose_all(layers: Sequence[Affine | Elementwise], x: jax.Array) -> list:
    """Applies a layer chain to flattened inputs x [..., n_in]; returns every state
    ``[x, after layer 1, ..., output]`` (the Monte Carlo twin measures each)."""
    states = [x]
    for layer in layers:
        if isinstance(layer, Affine):
            x = x @ layer.weight.T + layer.bias
        else:
            x = activation_fn(layer.activation, layer.alpha)(x)
        states.append(x)
    return states


def compose(layers: Sequence[Affine | Elementwise], x: jax.Array) -> jax.Array:
    """Applies a layer chain to flattened inputs.

    Args:
      layers: Affine / Elementwise maps (``model.layers(params, lattice_shape)``).
      x: [..., n_in], the flattened lattice (row-major).

    Returns:
      [..., n_out].
    """
    return compose_all(layers, x)[-1]


def to_chain(weights: Sequence, activation: str, alpha) -> tuple:
    """[(W [out, in], b [out])] -> (Affine, Elementwise, ..., Elementwise, Affine)."""
    chain = []
    for w, b in weights[:-1]:
        chain += [Affine(w, b), Elementwise(activation, alpha)]
    return tuple(chain) + (Affine(*weights[-1]),)
