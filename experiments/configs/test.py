"""Tiny sweep for the end-to-end test: 2 MLP variants x 4 seeds in 2 chunks, 40 steps."""
from rgsym.config import base_config


def get_config():
    c = base_config()
    c.name = "test"
    c.num_seeds = 4
    c.chunk_size = 2
    c.lattice.sites = 8
    c.data.batch = 32
    c.model.width = 8
    c.model.depth = 1
    c.optim.steps = 40
    c.optim.lr = 1e-2
    c.eval.every = 20
    c.eval.batch = 64
    c.eval.curve_batch = 32
    c.eval.families = ("uniform", "gaussian", "exponential")
    c.eval.scales = (2.0,)
    c.variants = (dict(symmetry="none", activation="tanh"),
                  dict(symmetry="block_local", activation="quadratic"))
    return c
