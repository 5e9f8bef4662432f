"""A large GPU sweep: every MLP symmetry x activation and every GNN symmetry, 8192 seeds.

    python experiments/sweep.py --config=experiments/configs/gpu_large.py --workdir=runs/large

chunk_size bounds device memory (seeds x batch x width activations per chunk); the
seed axis of each chunk is sharded over every local device (and over hosts with
--config.multihost=True after jax.distributed.initialize).
"""
from rgsym.config import base_config

_MLP_SYMMETRIES = ("none", "block_local", "block_permutation", "tied_hidden", "odd",
                   "nonnegative", "symmetric_weights")
_ACTIVATIONS = ("identity", "quadratic", "cubic", "tanh", "relu", "gelu", "softplus")
_GNN_SYMMETRIES = ("shared", "separate", "edge_typed", "directional")


def get_config():
    c = base_config()
    c.name = "gpu_large"
    c.num_seeds = 8192
    c.chunk_size = 8192
    c.lattice.sites = 16
    c.data.batch = 256
    c.model.width = 64
    c.model.depth = 2
    c.optim.lr = 1e-3
    c.optim.schedule = "cosine"
    c.optim.steps = 5000
    c.eval.every = 250
    c.eval.batch = 1024
    c.eval.scales = (0.5, 2.0, 3.0, 5.0)
    c.eval.flow_steps = 3
    c.matmul_precision = "highest"  # exact maps are learned to ~1e-12: no TF32
    c.variants = tuple(dict(kind="mlp", symmetry=s, activation=a)
                       for s in _MLP_SYMMETRIES for a in _ACTIVATIONS) + tuple(
        # A GNN holds width activations per site: smaller chunks keep them in memory.
        dict(kind="gnn", symmetry=s, activation=a, width=32, chunk_size=1024)
        for s in _GNN_SYMMETRIES for a in ("tanh", "quadratic"))
    return c
