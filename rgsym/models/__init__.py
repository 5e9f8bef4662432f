"""Model zoo: Flax MLPs and Jraph GNNs with selectable weight symmetries and activations.

    >>> import jax, jax.numpy as jnp
    >>> from rgsym.models import build
    >>> model = build({"kind": "mlp", "symmetry": "tied_hidden", "activation": "quadratic"})
    >>> params = model.init(jax.random.key(0), jnp.zeros((16,)))
    >>> model.apply(params, jnp.zeros((3, 16))).shape    # x [B, 16] -> y [B, 8]
    (3, 8)
"""
from rgsym.models.activations import ACTIVATIONS, activation_fn, polynomial_coefficients
from rgsym.models.graphs import LatticeGraph, lattice_graph
from rgsym.models.layer_ops import Affine, Elementwise, compose
from rgsym.models.model import (ApplyFn, DescribeFn, DiagnosticsFn, InitFn, LayersFn, Model,
                                Params, PenaltyFn, build)
from rgsym.models.spec import (KINDS, GNN_SYMMETRIES, MLP_SYMMETRIES, SOFT_SYMMETRIES,
                               ModelSpec, spec_from_config)

__all__ = ["build", "ModelSpec", "spec_from_config", "Model", "KINDS", "MLP_SYMMETRIES",
           "GNN_SYMMETRIES", "SOFT_SYMMETRIES", "ACTIVATIONS", "Affine", "Elementwise",
           "compose", "activation_fn", "polynomial_coefficients", "lattice_graph",
           "LatticeGraph", "Params", "InitFn", "ApplyFn", "LayersFn", "PenaltyFn",
           "DiagnosticsFn", "DescribeFn"]
