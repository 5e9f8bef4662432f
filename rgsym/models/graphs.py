"""Lattice graphs as jraph.GraphsTuples: 1-D chains and 2-D square lattices.

Edges are directed (sender -> receiver) nearest-neighbour bonds, optionally plus every other
pair of sites inside a block.  Each edge carries its type labels in ``graph.edges``:
``intra`` (both ends in one RG block) and ``direction`` (2 * axis + (0 for a message from
the + neighbour, 1 from the - neighbour); ``2 * dim`` for the extra block edges).  All
arrays are static numpy, built once per lattice shape at trace time.
"""
from __future__ import annotations

import itertools
from typing import NamedTuple

import jraph
import numpy as np

from rgsym import clt, validation
from rgsym.models.lattice import as_shape, block_index

__all__ = ["LatticeGraph", "lattice_graph", "adjacency", "BOUNDARIES"]

BOUNDARIES = ("periodic", "open")


class LatticeGraph(NamedTuple):
    """A lattice as a graph: S sites (row-major), E directed edges, blocks of b per axis."""
    graph: jraph.GraphsTuple  # nodes None; edges {'intra': bool [E], 'direction': int [E]}
    block_of: np.ndarray      # [S] coarse-lattice index of each site's block
    pos: np.ndarray           # [S] row-major position of each site inside its block
    n_blocks: int
    n_directions: int         # 2 * dim, plus one when block edges are present


def lattice_graph(shape: tuple[int, ...], b: int, boundary: str = "periodic",
                  block_edges: bool = False) -> LatticeGraph:
    """The graph of a lattice of ``shape`` ((N,) or (L1, L2)) with blocks of b per axis.

    Periodic boundaries wrap the nearest-neighbour bonds (on a side of 2 a site then
    receives two messages from the same neighbour, one per bond), open ones drop them.

    Args:
      shape: (N,) or (L1, L2); b: block size per axis; boundary: 'periodic' or 'open';
      block_edges: also join every pair of sites within a block.

    Returns:
      The :class:`LatticeGraph`: a jraph graph over the row-major sites, each site's
      block and its position in the block.

    Raises:
      ValueError: ``shape`` of another rank than 1 or 2, a side not divisible by ``b``,
        an invalid ``b``, or an unknown ``boundary``.
    """
    shape = as_shape(shape)
    dim = clt.validate_dim(len(shape))
    shape = clt.validate_lattice(shape, b, dim, name="shape")
    validation.choice("boundary", boundary, BOUNDARIES)
    coords = np.indices(shape).reshape(dim, -1).T                 # [S, dim]
    n = len(coords)
    senders, receivers, direction = [], [], []
    for axis, (k, sign) in itertools.product(range(dim), enumerate((1, -1))):
        nbr = coords.copy()
        nbr[:, axis] += sign
        keep = (nbr[:, axis] >= 0) & (nbr[:, axis] < shape[axis])
        if boundary == "periodic":
            nbr[:, axis] %= shape[axis]
            keep[:] = True
        senders.append(np.ravel_multi_index(tuple(nbr[keep].T), shape))
        receivers.append(np.flatnonzero(keep))
        direction.append(np.full(keep.sum(), 2 * axis + k))
    block_of, pos = block_index(shape, b)
    if block_edges:
        # Every ordered pair in one block that is not a nearest-neighbour bond inside it.
        recv, send = np.nonzero((block_of[:, None] == block_of[None, :])
                                & (np.abs(coords[:, None] - coords[None, :]).sum(-1) > 1))
        senders.append(send)
        receivers.append(recv)
        direction.append(np.full(len(send), 2 * dim))
    senders, receivers = np.concatenate(senders), np.concatenate(receivers)
    graph = jraph.GraphsTuple(
        nodes=None,
        edges={"intra": block_of[senders] == block_of[receivers],
               "direction": np.concatenate(direction)},
        senders=senders.astype(np.int32), receivers=receivers.astype(np.int32),
        globals=None, n_node=np.array([n]), n_edge=np.array([len(senders)]))
    return LatticeGraph(graph, block_of, pos, int(block_of.max()) + 1,
                        2 * dim + int(block_edges))


def adjacency(lg: LatticeGraph, edge_type: np.ndarray, n_types: int) -> np.ndarray:
    """[T, S, S] counts: entry [t, i, j] = number of type-t edges j -> i."""
    n = len(lg.block_of)
    out = np.zeros((n_types, n, n))
    np.add.at(out, (edge_type, lg.graph.receivers, lg.graph.senders), 1.0)
    return out
