"""The MLP kind: Flax modules that turn raw parameters into constrained dense weights.

Each symmetry is a parametrisation: the Flax module :class:`CoreMLP` owns the raw
parameters and returns the effective dense weights ``[(W_1, b_1), ..., (V, d)]`` (W as
[out, in]) that satisfy the constraint exactly, so any gradient step keeps it.  The forward
pass and the explicit layer chain are pure functions of those weights:

- none / nonnegative / tied_hidden / symmetric_weights / block_permutation: one dense
  network on the flattened lattice [..., N] -> [..., N/b^dim];
- block_local: one small network [..., b^dim] -> [..., 1] applied to every block;
- odd: g(x) = (h(x) - h(-x)) / 2 for an unconstrained h.

tied_hidden makes every hidden unit compute the same value, so the output is an affine
function of ONE scalar feature: on a lattice with several blocks that cannot even be the
linear RG map.  The study's probe (docs/science.md) uses one block (sites = b); use
block_local for a translation-symmetric network whose units are free.
"""
from __future__ import annotations

import functools
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from rgsym.models import inits, symmetry
from rgsym.models.activations import activation_fn
from rgsym.models.lattice import block_index, to_blocks

__all__ = ["ConstrainedDense", "CoreMLP", "layer_kinds", "dense_forward", "MLPKind"]


class ConstrainedDense(nn.Module):
    """One affine map, parametrised so its constraint holds exactly.

    Returns ``(W [n_out, n_in], b [n_out])``.  kinds:
      free: W, b unconstrained.
      nonnegative: W = softplus(raw) > 0; b free.
      symmetric: W = (A + A^T) / 2 (square).
      tied_in: every row of W equal, every bias equal (identical incoming units).
      tied_square: W = a I + c 11^T, equal biases (fixed points of hidden permutations).
      tied_out: every column of W equal (identical outgoing weights); b free.
      block_tied: W[:, i] = U[:, block_of[i]] (sites of a block exchangeable); b free.
    """
    n_out: int
    n_in: int
    kind: str = "free"
    opts: inits.ParamOptions = inits.ParamOptions()
    block_of: tuple = ()

    @nn.compact
    def __call__(self):
        n_out, n_in, dt, s = self.n_out, self.n_in, self.opts.dtype, self.opts.scale
        std = s / np.sqrt(n_in)
        p = lambda name, init, shape: self.param(name, init, shape, dt)  # noqa: E731
        if self.kind == "free":
            w = p("kernel", inits.normal(std), (n_out, n_in))
        elif self.kind == "nonnegative":
            w = jax.nn.softplus(p("raw_kernel", inits.softplus_of_abs_normal(std), (n_out, n_in)))
        elif self.kind == "symmetric":
            a = p("raw_kernel", inits.normal(std * np.sqrt(2.0)), (n_out, n_in))
            w = (a + a.T) / 2
        elif self.kind == "tied_in":
            w = jnp.broadcast_to(p("row", inits.normal(std), (1, n_in)), (n_out, n_in))
        elif self.kind == "tied_square":
            a = p("diag", inits.normal(std), ())
            c = p("offdiag", inits.normal(s / n_in), ())
            w = a * jnp.eye(n_in, dtype=dt) + c
        elif self.kind == "tied_out":
            # n_in identical units feed each output: scale 1/n_in keeps the output O(s).
            w = jnp.broadcast_to(p("column", inits.normal(s / n_in), (n_out, 1)), (n_out, n_in))
        elif self.kind == "block_tied":
            ids = np.asarray(self.block_of)
            w = p("block_kernel", inits.normal(std), (n_out, ids.max() + 1))[:, ids]
        else:
            raise ValueError(f"kind={self.kind!r} is unknown")
        tied_bias = self.kind in ("tied_in", "tied_square")
        bias = inits.bias_param(self, "bias", (1,) if tied_bias else (n_out,), self.opts)
        return w, jnp.broadcast_to(bias, (n_out,))


def layer_kinds(symmetry: str, depth: int) -> tuple[str, ...]:
    """The ConstrainedDense kind of each of the depth + 1 affine maps."""
    first, hidden, last = {
        "nonnegative": ("nonnegative",) * 3,
        "symmetric_weights": ("free", "symmetric", "free"),
        "tied_hidden": ("tied_in", "tied_square", "tied_out"),
        "block_permutation": ("block_tied", "free", "free"),
    }.get(symmetry, ("free",) * 3)
    return (first,) + (hidden,) * (depth - 1) + (last,)


class CoreMLP(nn.Module):
    """The dense network behind every MLP symmetry: ``() -> [(W, b)] * (depth + 1)``."""
    n_in: int
    n_out: int
    width: int
    kinds: tuple
    opts: inits.ParamOptions = inits.ParamOptions()
    block_of: tuple = ()

    @nn.compact
    def __call__(self):
        sizes = (self.n_in,) + (self.width,) * (len(self.kinds) - 1) + (self.n_out,)
        return [ConstrainedDense(sizes[i + 1], sizes[i], kind, self.opts, self.block_of,
                                 name=f"layer_{i}")()
                for i, kind in enumerate(self.kinds)]


def dense_forward(weights: Sequence, x, phi):
    """The dense network: ``phi`` after every affine map but the last.

    Args:
      weights: ``[(W [out, in], b [out]), ...]``, input layer first.
      x: [..., n_in], any number of leading (batch) axes.
      phi: an elementwise activation (the two layouts below apply it to transposed arrays).

    Returns:
      [..., n_out].
    """
    # On CPUs feature-major (h [n, ...]): each weight gradient is then a plain
    # [out, B] x [B, in] product, which XLA:CPU hands to its fast matmul library, where the
    # batch-major form's [B, out]^T x [B, in] is not (2-13% more seed-steps/s, depending on
    # the VM; benchmarks/RESULTS.md).  Elsewhere (GPU, TPU) the GEMM libraries take either
    # form: batch-major, as measured there.
    return jax.lax.platform_dependent(weights, x, cpu=functools.partial(_feature_major, phi=phi),
                                      default=functools.partial(_batch_major, phi=phi))


def _batch_major(weights: Sequence, x, phi):
    """:func:`dense_forward` with activations [..., n] (GPUs, TPUs)."""
    for w, b in weights[:-1]:
        x = phi(x @ w.T + b)
    w, b = weights[-1]
    return x @ w.T + b


def _feature_major(weights: Sequence, x, phi):
    """:func:`dense_forward` with activations [n, ...] (CPUs)."""
    h = jnp.moveaxis(x, -1, 0)
    for i, (w, b) in enumerate(weights):
        h = jnp.tensordot(w, h, axes=1) + b.reshape(b.shape + (1,) * (h.ndim - 1))
        if i < len(weights) - 1:
            h = phi(h)
    return jnp.moveaxis(h, 0, -1)


def odd_pairs(weights: Sequence) -> list:
    """The dense network of g(x) = (h(x) - h(-x)) / 2 with mirror-paired units (width 2H)."""
    (w1, b1), *hidden, (v, d) = weights
    out = [(jnp.concatenate([w1, -w1]), jnp.concatenate([b1, b1]))]
    for w, b in hidden:
        z = jnp.zeros_like(w)
        out.append((jnp.block([[w, z], [z, w]]), jnp.concatenate([b, b])))
    out.append((jnp.concatenate([v, -v], axis=1) / 2, jnp.zeros_like(d)))
    return out


def block_local_expand(weights: Sequence, shape: tuple[int, ...], b: int) -> list:
    """A per-block network as dense maps on the whole flattened lattice of ``shape``.

    Hidden units are block-major (index = block * H + h); weights are kron(I, W) with the
    first layer's columns permuted from (block, position) order to row-major site order.
    """
    block_of, pos = block_index(shape, b)
    n_blocks = block_of.max() + 1
    eye = jnp.eye(n_blocks, dtype=weights[0][0].dtype)
    out = [(jnp.kron(eye, w), jnp.tile(bias, n_blocks)) for w, bias in weights]
    w1, b1 = out[0]
    out[0] = (w1[:, block_of * b ** len(shape) + pos], b1)
    return out


class MLPKind:
    """The MLP-specific pieces of a Model, for one validated spec."""

    def __init__(self, spec):
        self.spec = spec
        self.block_local = spec.symmetry == "block_local"
        self.iterable = self.block_local
        n_block = spec.b ** spec.dim
        n_in = n_block if self.block_local else spec.sites ** spec.dim
        # Block and in-block position of each input of the core network.
        self.block_of, self.pos = ((np.zeros(n_block, int), np.arange(n_block))
                                   if self.block_local
                                   else block_index(spec.lattice_shape, spec.b))
        kinds = layer_kinds(spec.symmetry, spec.depth)
        self.core = lambda scale: CoreMLP(
            n_in, 1 if self.block_local else n_in // n_block, spec.width, kinds,
            inits.ParamOptions(scale, jnp.dtype(spec.dtype), spec.use_bias),
            tuple(self.block_of.tolist()) if spec.symmetry == "block_permutation" else ())

    def init(self, key, scale):
        return self.core(scale).init(key)

    def weights(self, params):
        return self.core(self.spec.init_scale).apply(params)

    def apply(self, params, x, alpha):
        """x [..., lattice] (validated, in the model dtype) -> [..., coarse lattice]."""
        spec, w = self.spec, self.weights(params)
        phi = activation_fn(spec.activation, alpha)
        if self.block_local:
            return dense_forward(w, to_blocks(x, spec.b, spec.dim), phi)[..., 0]
        lead = x.shape[: x.ndim - spec.dim]
        flat = x.reshape(*lead, -1)
        if spec.symmetry == "odd":
            y = (dense_forward(w, flat, phi) - dense_forward(w, -flat, phi)) / 2
        else:
            y = dense_forward(w, flat, phi)
        return y.reshape(*lead, *(s // spec.b for s in x.shape[x.ndim - spec.dim:]))

    def standard_weights(self, params):
        """The dense network whose parameters the symmetry constrains (see symmetry.py)."""
        w = self.weights(params)
        return odd_pairs(w) if self.spec.symmetry == "odd" else w

    def layer_weights(self, params, shape) -> list:
        """[(W, b)] of the layer chain on the flattened lattice of ``shape``."""
        w = self.standard_weights(params)
        return block_local_expand(w, shape, self.spec.b) if self.block_local else w

    def distances(self, params) -> dict:
        return symmetry.mlp_distances(self.standard_weights(params), self.block_of,
                                      self.pos)

    def symmetries(self) -> list[str]:
        s = self.spec.symmetry
        return {"none": [], "block_local": ["block_local", "translation"]}.get(s, [s])
