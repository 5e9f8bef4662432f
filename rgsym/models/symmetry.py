"""Distances of MLP weights from symmetric subspaces (diagnostics and soft penalties).

Every function takes the dense form of an MLP, ``weights = [(W_1, b_1), ..., (V, d)]`` with
``W`` as [out, in], and returns the SQUARED Euclidean distance of those parameters from the
symmetric subspace (the norm of the residual of its orthogonal projection).  Squared
distances are smooth at the subspace, so they serve directly as penalties.  All pure
jnp: jit/vmap-able.
"""
from __future__ import annotations

from typing import Sequence

import jax.numpy as jnp
import numpy as np

__all__ = ["sq", "tied_hidden_sq", "block_permutation_sq", "oddness_sq", "asymmetry_sq",
           "negative_sq", "mlp_distances"]


def sq(a):
    """Squared Euclidean norm."""
    return jnp.sum(jnp.square(a))


def _perm_invariant_square(w):
    """Residual of W [H, H] off span{I, 11^T}: the fixed points of W -> P W P^T."""
    h = w.shape[0]
    if h == 1:
        return jnp.zeros_like(w)
    diag = jnp.trace(w) / h
    off = (jnp.sum(w) - jnp.trace(w)) / (h * (h - 1))
    eye = jnp.eye(h, dtype=w.dtype)
    return w - (diag * eye + off * (1 - eye))


def tied_hiddensq(weights: Sequence) -> jnp.ndarray:
    """Hidden-unit permutation symmetry: incoming rows equal, biases equal, hidden-to-hidden
    in span{I, 11^T}, outgoing columns equal."""
    (w1, b1), *hidden, (v, _) = weights
    out = sq(w1 - w1.mean(0)) + sq(b1 - b1.mean()) + sq(v - v.mean(1, keepdims=True))
    for w, b in hidden:
        out = out + sq(_perm_invariant_square(w)) + sq(b - b.mean())
    return out


def block_permutationsq(weights: Sequence, block_of: np.ndarray) -> jnp.ndarray:
    """Exchange of sites inside a block: first-layer weights constant over each block.

    block_of: [n_in] block id of each input site.
    """
    w1 = weights[0][0]
    onehot = jnp.asarray(np.eye(block_of.max() + 1)[block_of], w1.dtype)   # [n_in, n_blocks]
    means = (w1 @ onehot) / onehot.sum(0)
    return sq(w1 - means @ onehot.T)


def _swap(a, axis):
    return jnp.roll(a, a.shape[axis] // 2, axis=axis)


def oddnesssq(weights: Sequence) -> jnp.ndarray:
    """Mirror-pair subspace (f(-x) = -f(x) for any activation): hidden units come in pairs
    swapped by S, with W_1 = -S W_1, b = S b, W = S W S, V = -V S and zero output bias.
    Needs even widths.
    """
    (w1, b1), *hidden, (v, d) = weights
    out = sq(w1 + _swap(w1, 0)) / 4 + sq(b1 - _swap(b1, 0)) / 4
    out = out + sq(v + _swap(v, 1)) / 4 + sq(d)
    for w, b in hidden:
        out = out + sq(w - _swap(_swap(w, 0), 1)) / 4 + sq(b - _swap(b, 0)) / 4
    return out


def asymmetrysq(weights: Sequence) -> jnp.ndarray:
    """W = W^T for every square hidden-to-hidden matrix."""
    return sum((sq(w - w.T) / 4 for w, _ in weights[1:-1]), jnp.zeros((), weights[0][0].dtype))


def negativesq(weights: Sequence) -> jnp.ndarray:
    """Non-negative weights (biases free): distance to the non-negative orthant."""
    return sum(sq(jnp.minimum(w, 0)) for w, _ in weights)


def mlp_distances(weights: Sequence, block_of: np.ndarray) -> dict:
    """Squared distances from every subspace that makes sense for these weights, keyed by
    soft-symmetry name."""
    out = {"tied_hidden": tied_hiddensq(weights),
           "block_permutation": block_permutationsq(weights, block_of),
           "nonnegative": negativesq(weights)}
    if all(w.shape[0] % 2 == 0 for w, _ in weights[:-1]):
        out["odd"] = oddnesssq(weights)
    if len(weights) > 2:
        out["symmetric_weights"] = asymmetrysq(weights)
    return out


# Names under which Model.symmetry_diagnostics reports the (unsquared) distances.
DIAGNOSTIC_NAMES = {"tied_hidden": "tied_hidden_spread",
                    "block_permutation": "block_permutation_spread",
                    "nonnegative": "negative_mass",
                    "odd": "oddness_residual",
                    "symmetric_weights": "asymmetry_norm"}
