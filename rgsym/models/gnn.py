"""The GNN kind: message passing on the lattice graph (jraph + Flax), pooled per block.

Layer l (F_in -> F features per node):
    h_i' = phi( W_self h_i + sum_t W_t sum_{j -> i of type t} h_j + bias )
with the edge types set by the symmetry option:
    shared      one type and W_self = W_0 (self and neighbour messages share a weight);
    separate    one type, W_self free;
    edge_typed  intra-block vs inter-block bonds;
    directional one type per direction (+x, -x, +y, -y[, block edges]).
Readout: r_i = v . h_i, pooled per block with position weights (sum: 1, mean: 1/b^dim,
learned: free per position in the block), plus one output bias.  No weight depends on the
lattice size, so a GNN runs on (and can be iterated over) any lattice divisible by b.
"""
from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import jraph
import numpy as np

from rgsym.models import inits
from rgsym.models.activations import activation_fn
from rgsym.models.graphs import LatticeGraph, adjacency, lattice_graph
from rgsym.models.lattice import pooling_matrix
from rgsym.models.symmetry import sq

__all__ = ["MessagePassing", "GNN", "GNNKind", "edge_types"]


def edge_types(lg: LatticeGraph, symmetry: str) -> tuple[np.ndarray, int]:
    """(type of each edge [E], number of types) for a GNN symmetry option."""
    edges = lg.graph.edges
    if symmetry == "edge_typed":
        return np.where(edges["intra"], 0, 1), 2
    if symmetry == "directional":
        return edges["direction"], lg.n_directions
    return np.zeros_like(edges["direction"]), 1


def node_weights(p: dict, shared: bool):
    """(W_self [F, F_in], W_nb [T, F, F_in], bias [F]) from one layer's params."""
    w_nb = p["neighbour"]
    bias = p["bias"] if "bias" in p else jnp.zeros(w_nb.shape[1], w_nb.dtype)   # use_bias off
    return (w_nb[0] if shared else p["self"]), w_nb, bias


class MessagePassing(nn.Module):
    """One message-passing layer; its jraph update functions close over this module's
    parameters.  graph.nodes: [S, B, F_in] -> [S, B, F]; graph.edges: static int types [E]."""
    features: int
    n_types: int
    shared: bool
    fan: float            # 1 + mean in-degree: messages summed per node
    opts: inits.ParamOptions = inits.ParamOptions()

    @nn.compact
    def __call__(self, graph: jraph.GraphsTuple, phi) -> jraph.GraphsTuple:
        f, fin, dt = self.features, graph.nodes.shape[-1], self.opts.dtype
        std = self.opts.scale / np.sqrt(fin * self.fan)
        p = {"neighbour": self.param("neighbour", inits.normal(std), (self.n_types, f, fin), dt)}
        if not self.shared:
            p["self"] = self.param("self", inits.normal(std), (f, fin), dt)
        p["bias"] = inits.bias_param(self, "bias", (f,), self.opts)
        w_self, w_nb, bias = node_weights(p, self.shared)

        # Messages carry the sender features; they are summed per receiver and edge type
        # (segment ids receiver * T + type), and W_t is applied once per node and type
        # after the sum instead of once per edge.
        types, n_types = graph.edges, self.n_types

        def message(edges, sent, received, globals_):
            return sent                                                       # [E, B, F]

        def aggregate(msgs, node_ids, n_nodes):                               # [S, T, B, F]
            out = jax.ops.segment_sum(msgs, node_ids * n_types + types, n_nodes * n_types)
            return out.reshape(n_nodes, n_types, *msgs.shape[1:])

        def update(nodes, sent_agg, received_agg, globals_):
            nb = jnp.einsum("stbf,tgf->sbg", received_agg, w_nb)
            return phi(nodes @ w_self.T + nb + bias)

        out = jraph.GraphNetwork(update_edge_fn=message, update_node_fn=update,
                                 aggregate_edges_for_nodes_fn=aggregate)(graph)
        return out._replace(edges=graph.edges)   # keep the edge types for the next layer


def pool_weights(p: dict, pooling: str, n_pos: int, dtype):
    """[b^dim] weight of each position in a block."""
    if pooling == "learned":
        return p["pool"]
    return jnp.full((n_pos,), 1.0 if pooling == "sum" else 1.0 / n_pos, dtype)


class GNN(nn.Module):
    """x nodes [S, B, 1] on ``lg`` -> coarse lattice [n_blocks, B]."""
    width: int
    depth: int
    symmetry: str
    pooling: str
    n_pos: int
    opts: inits.ParamOptions = inits.ParamOptions()

    @nn.compact
    def __call__(self, nodes, lg: LatticeGraph, phi):
        types, n_types = edge_types(lg, self.symmetry)
        fan = 1.0 + len(types) / len(lg.block_of)
        graph = lg.graph._replace(nodes=nodes, edges=np.asarray(types, np.int32))
        for i in range(self.depth):
            graph = MessagePassing(self.width, n_types, self.symmetry == "shared", fan,
                                   self.opts, name=f"mp_{i}")(graph, phi)
        dt = self.opts.dtype
        p = {"readout": self.param("readout", inits.normal(self.opts.scale / np.sqrt(self.width)),
                                   (self.width,), dt)}
        if self.pooling == "learned":
            p["pool"] = self.param("pool", nn.initializers.ones, (self.n_pos,), dt)
        out_bias = inits.bias_param(self, "out_bias", (), self.opts)
        pw = pool_weights(p, self.pooling, self.n_pos, dt)[lg.pos]          # [S]
        r = (graph.nodes @ p["readout"]) * pw[:, None]                        # [S, B]
        return jax.ops.segment_sum(r, lg.block_of, lg.n_blocks) + out_bias


_cached_graph = functools.lru_cache(maxsize=64)(lattice_graph)


class GNNKind:
    """The GNN-specific pieces of a Model, for one validated spec."""
    iterable = True

    def __init__(self, spec):
        self.spec = spec
        self.n_pos = spec.b ** spec.dim
        self.module = lambda scale: GNN(
            spec.width, spec.depth, spec.symmetry, spec.pooling, self.n_pos,
            inits.ParamOptions(scale, jnp.dtype(spec.dtype), spec.use_bias))

    def graph(self, shape: tuple[int, ...]) -> LatticeGraph:
        return _cached_graph(tuple(shape), self.spec.b, self.spec.boundary,
                             self.spec.block_edges)

    def init(self, key, scale):
        shape = self.spec.lattice_shape
        nodes = jnp.zeros((int(np.prod(shape)), 1, 1), jnp.dtype(self.spec.dtype))
        return self.module(scale).init(key, nodes, self.graph(shape), lambda z: z)

    def apply(self, params, x, alpha):
        """x [..., lattice] (validated, in the model dtype) -> [..., coarse lattice]."""
        dim = self.spec.dim
        shape, lead = x.shape[x.ndim - dim:], x.shape[: x.ndim - dim]
        nodes = x.reshape(-1, int(np.prod(shape))).T[..., None]               # [S, B, 1]
        phi = activation_fn(self.spec.activation, alpha)
        y = self.module(self.spec.init_scale).apply(params, nodes, self.graph(shape), phi)
        return y.T.reshape(*lead, *(s // self.spec.b for s in shape))

    def layer_weights(self, params, shape) -> list:
        """[(W, b)] on node-major units: message passing is kron(I, W_self) +
        sum_t kron(A_t, W_t); the readout is kron(pooling matrix, v)."""
        lg, p = self.graph(tuple(shape)), params["params"]
        dt, n = jnp.dtype(self.spec.dtype), len(lg.block_of)
        types, n_types = edge_types(lg, self.spec.symmetry)
        adj = jnp.asarray(adjacency(lg, types, n_types), dt)
        eye = jnp.eye(n, dtype=dt)
        chain = []
        for i in range(self.spec.depth):
            w_self, w_nb, bias = node_weights(p[f"mp_{i}"], self.spec.symmetry == "shared")
            w = jnp.kron(eye, w_self) + sum(jnp.kron(adj[t], w_nb[t]) for t in range(n_types))
            chain.append((w, jnp.tile(bias, n)))
        pool = pooling_matrix(tuple(shape), self.spec.b,
                              pool_weights(p, self.spec.pooling, self.n_pos, dt))
        out_bias = p.get("out_bias", jnp.zeros((), dt))
        chain.append((jnp.kron(pool, p["readout"][None, :]),
                      jnp.full((lg.n_blocks,), out_bias, dt)))
        return chain

    def distances(self, params) -> dict:
        """Squared distances from parameter subspaces that make sense for this GNN."""
        p = params["params"]
        layers = [p[f"mp_{i}"] for i in range(self.spec.depth)]
        out = {}
        if self.spec.symmetry != "shared":
            # 'shared': self and every neighbour kernel equal.
            stacks = [jnp.concatenate([q["self"][None], q["neighbour"]]) for q in layers]
            out["shared_residual"] = sum(sq(k - k.mean(0)) for k in stacks)
        if layers[0]["neighbour"].shape[0] > 1:
            out["edge_type_spread"] = sum(sq(q["neighbour"] - q["neighbour"].mean(0))
                                          for q in layers)
        if self.spec.pooling == "learned":
            out["pool_spread"] = sq(p["pool"] - p["pool"].mean())
        return out

    def symmetries(self) -> list[str]:
        s = self.spec
        out = [s.symmetry]
        if s.boundary == "periodic":
            out.append("translation")
        if s.dim == 2 and s.symmetry != "directional" and s.pooling != "learned":
            out.append("rotation")
        return out
