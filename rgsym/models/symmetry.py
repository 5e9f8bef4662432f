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
           "negative_sq", "block_local_sq", "mlp_distances"]


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


def tied_hidden_sq(weights: Sequence) -> jnp.ndarray:
    """Hidden-unit permutation symmetry: incoming rows equal, biases equal, hidden-to-hidden
    in span{I, 11^T}, outgoing columns equal."""
    (w1, b1), *hidden, (v, _) = weights
    out = sq(w1 - w1.mean(0)) + sq(b1 - b1.mean()) + sq(v - v.mean(1, keepdims=True))
    for w, b in hidden:
        out = out + sq(_perm_invariant_square(w)) + sq(b - b.mean())
    return out


def block_permutation_sq(weights: Sequence, block_of: np.ndarray) -> jnp.ndarray:
    """Exchange of sites inside a block: first-layer weights constant over each block.

    block_of: [n_in] block id of each input site.
    """
    w1 = weights[0][0]
    onehot = jnp.asarray(np.eye(block_of.max() + 1)[block_of], w1.dtype)   # [n_in, n_blocks]
    means = (w1 @ onehot) / onehot.sum(0)
    return sq(w1 - means @ onehot.T)


def _swap(a, axis):
    return jnp.roll(a, a.shape[axis] // 2, axis=axis)


def oddness_sq(weights: Sequence) -> jnp.ndarray:
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


def asymmetry_sq(weights: Sequence) -> jnp.ndarray:
    """W = W^T for every square hidden-to-hidden matrix."""
    return sum((sq(w - w.T) / 4 for w, _ in weights[1:-1]), jnp.zeros((), weights[0][0].dtype))


def negative_sq(weights: Sequence) -> jnp.ndarray:
    """Non-negative weights (biases free): distance to the non-negative orthant."""
    return sum(sq(jnp.minimum(w, 0)) for w, _ in weights)


def _off_shared_diagonal(full, in_block, diag):
    """Distance of a block matrix from 'diagonal blocks all equal, the rest zero'.

    full: the matrix; in_block: static mask of its diagonal-block entries; diag: the
    diagonal blocks stacked [n_blocks, ...].
    """
    return sq(jnp.where(in_block, 0, full)) + sq(diag - diag.mean(0))


def block_local_sq(weights: Sequence, block_of: np.ndarray, pos: np.ndarray) -> jnp.ndarray:
    """One shared network per block: hidden units block-major (unit I * h + k belongs to
    block I), weights kron(I, w) with the first layer reading only its own block's sites.

    block_of, pos: [n_in] block and in-block position of each input site; needs every
    hidden width divisible by the number of blocks.
    """
    n_blocks = int(block_of.max()) + 1
    blocks = np.arange(n_blocks)
    sites = np.zeros((n_blocks, pos.max() + 1), int)
    sites[block_of, pos] = np.arange(len(block_of))            # [n_blocks, B] site index
    (w1, b1), *hidden, (v, d) = weights
    h = w1.shape[0] // n_blocks
    unit_block = np.repeat(blocks, h)                            # [H] block of each unit
    w1_diag = w1.reshape(n_blocks, h, -1)[blocks[:, None, None], np.arange(h)[:, None],
                                          sites[:, None]]       # [n_blocks, h, B]
    out = _off_shared_diagonal(w1, unit_block[:, None] == block_of, w1_diag)
    out = out + _off_shared_diagonal(v, blocks[:, None] == unit_block,
                                     v.reshape(n_blocks, n_blocks, h)[blocks, blocks])
    out = out + sq(d - d.mean())
    for w, _ in hidden:
        out = out + _off_shared_diagonal(w, unit_block[:, None] == unit_block,
                                         w.reshape(n_blocks, h, n_blocks, h)[blocks, :, blocks])
    for _, b in [(w1, b1)] + list(hidden):
        out = out + sq(b.reshape(n_blocks, h) - b.reshape(n_blocks, h).mean(0))
    return out


def mlp_distances(weights: Sequence, block_of: np.ndarray, pos: np.ndarray) -> dict:
    """Squared distances from every subspace that makes sense for these weights, keyed by
    soft-symmetry name."""
    out = {"tied_hidden": tied_hidden_sq(weights),
           "block_permutation": block_permutation_sq(weights, block_of),
           "nonnegative": negative_sq(weights)}
    n_blocks = int(block_of.max()) + 1
    if weights[-1][0].shape[0] == n_blocks and all(w.shape[0] % n_blocks == 0
                                                   for w, _ in weights[:-1]):
        out["block_local"] = block_local_sq(weights, block_of, pos)
    if all(w.shape[0] % 2 == 0 for w, _ in weights[:-1]):
        out["odd"] = oddness_sq(weights)
    if len(weights) > 2:
        out["symmetric_weights"] = asymmetry_sq(weights)
    return out


# Names under which Model.symmetry_diagnostics reports the (unsquared) distances.
DIAGNOSTIC_NAMES = {"tied_hidden": "tied_hidden_spread",
                    "block_local": "block_local_residual",
                    "block_permutation": "block_permutation_spread",
                    "nonnegative": "negative_mass",
                    "odd": "oddness_residual",
                    "symmetric_weights": "asymmetry_norm"}
