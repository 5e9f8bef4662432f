"""Static (numpy) block bookkeeping shared by the MLP and GNN families.

Sites are numbered row-major (``x.reshape(-1)``); blocks are numbered row-major on the
coarse lattice, so block ``I`` is site ``I`` of the flattened RG output.
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from rgsym import clt, validation

__all__ = ["as_shape", "block_index", "to_blocks", "check_input", "pooling_matrix"]


def as_shape(shape, name: str = "shape") -> tuple[int, ...]:
    """``shape`` as a tuple of int side lengths; a bare number (or anything else that is not
    a sequence of positive integers) is refused with a clear ValueError."""
    try:
        sides = tuple(shape)
    except TypeError:
        raise ValueError(f"{name}={shape!r} is not valid: a lattice shape must be a tuple of "
                         "side lengths, e.g. (8,) or (8, 8)") from None
    return tuple(validation.integer(f"{name}[{i}]", s, 1) for i, s in enumerate(sides))


def block_index(shape: tuple[int, ...], b: int) -> tuple[np.ndarray, np.ndarray]:
    """For a lattice of ``shape`` ((N,) or (L1, L2)): ``(block_of [S], pos_in_block [S])``.

    ``pos_in_block`` is the row-major index of the site inside its b^dim block.
    """
    coords = np.indices(shape).reshape(len(shape), -1)          # [dim, S]
    coarse = tuple(s // b for s in shape)
    block_of = np.ravel_multi_index(tuple(coords // b), coarse)
    pos = np.ravel_multi_index(tuple(coords % b), (b,) * len(shape))
    return block_of, pos


def pooling_matrix(shape: tuple[int, ...], b: int, position_weights) -> jnp.ndarray:
    """[n_blocks, S] matrix with entry ``position_weights[pos(i)]`` where site i is in block I,
    in the dtype of ``position_weights``."""
    block_of, pos = block_index(shape, b)
    weights = jnp.asarray(position_weights)
    onehot = np.eye(int(np.prod(shape)) // b ** len(shape))[:, block_of]   # [n_blocks, S]
    return jnp.asarray(onehot, weights.dtype) * weights[pos]


def to_blocks(x, b: int, dim: int):
    """x [..., N] -> [..., N/b, b];  x [..., L1, L2] -> [..., L1/b, L2/b, b*b] (row-major)."""
    lead = x.shape[: x.ndim - dim]
    if dim == 1:
        return x.reshape(*lead, x.shape[-1] // b, b)
    l1, l2 = x.shape[-2:]
    x = x.reshape(*lead, l1 // b, b, l2 // b, b)
    return jnp.swapaxes(x, -3, -2).reshape(*lead, l1 // b, l2 // b, b * b)


def check_input(x_shape, spec, iterable: bool, name: str = "x") -> tuple[int, ...]:
    """Validates an input lattice; returns its lattice shape (the trailing ``dim`` axes).

    Iterable models accept any lattice divisible by b; the others need exactly the lattice
    they were built for.
    """
    sites = clt.validate_lattice(x_shape, spec.b, spec.dim, name=name)
    if not iterable and sites != spec.lattice_shape:
        raise ValueError(
            f"{name} has shape {tuple(x_shape)}: this {spec.kind} (symmetry={spec.symmetry!r}) "
            f"was built for lattice {spec.lattice_shape}, so {name} must be "
            f"[..., {', '.join(map(str, spec.lattice_shape))}]; symmetry='block_local' or a "
            "gnn runs on any lattice size")
    return sites
