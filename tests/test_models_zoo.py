"""Every allowed (kind, symmetry, activation) builds, jits and vmaps over 8 seeds."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rgsym import models

GRID = [("mlp", s) for s in models.MLP_SYMMETRIES] + [("gnn", s) for s in models.GNN_SYMMETRIES]
TANH, RELU = models.ACTIVATIONS.index("tanh"), models.ACTIVATIONS.index("relu")
# Parameter counts by hand for width 4.  mlp: 4 sites -> 2 blocks (depth 2 for none and
# symmetric_weights, else 1); gnn: 4x4 lattice, depth 1, T neighbour kernels [T, 4, 1],
# self kernel (not shared) 4, bias 4, readout 4, output bias 1.
N_PARAMS = {
    ("mlp", "none"): (16 + 4) + (16 + 4) + (8 + 2),
    ("mlp", "block_local"): (8 + 4) + (4 + 1),           # one 2 -> 4 -> 1 net per block
    ("mlp", "block_permutation"): (4 * 2 + 4) + (8 + 2),  # kernel tied within each block
    ("mlp", "tied_hidden"): (4 + 1) + (2 + 2),            # one row + bias; one column + biases
    ("mlp", "odd"): (16 + 4) + (8 + 2),
    ("mlp", "nonnegative"): (16 + 4) + (8 + 2),
    ("mlp", "symmetric_weights"): (16 + 4) + (16 + 4) + (8 + 2),
    ("gnn", "shared"): 4 + 4 + 4 + 1,
    ("gnn", "separate"): 4 + 4 + 4 + 4 + 1,
    ("gnn", "edge_typed"): 2 * 4 + 4 + 4 + 4 + 1,
    ("gnn", "directional"): 4 * 4 + 4 + 4 + 4 + 1,
}


@pytest.mark.parametrize("kind, symmetry", GRID)
def test_every_activation_jits_and_vmaps_over_8_seeds(kind, symmetry):
    """One compiled function per (kind, symmetry): params do not depend on the activation,
    so one vmapped init feeds the vmapped apply of all ten activations."""
    dim = 2 if kind == "gnn" else 1
    depth = 2 if symmetry in ("none", "symmetric_weights") else 1   # W = W^T needs depth 2
    built = [models.build(dict(kind=kind, symmetry=symmetry, activation=a, dim=dim,
                               sites=4, width=4, depth=depth)) for a in models.ACTIVATIONS]
    softs = ([models.build(built[0].spec.replace(soft_symmetry=s, symmetry_strength=1.0))
              for s in models.SOFT_SYMMETRIES] if symmetry == "none" else [])
    x = jax.random.normal(jax.random.key(1), (3,) + built[0].spec.lattice_shape, jnp.float32)

    @jax.jit
    def sweep(keys):
        params = jax.vmap(lambda k: built[0].init(k, x))(keys)
        ys = [jax.vmap(lambda p: m.apply(p, x))(params) for m in built]
        penalties = [jax.vmap(m.penalty)(params) for m in softs]
        return params, jnp.stack(ys), penalties, jax.vmap(built[0].symmetry_diagnostics)(params)

    params, ys, penalties, diag = sweep(jax.random.split(jax.random.key(0), 8))
    assert ys.shape == (len(models.ACTIVATIONS), 8, 3) + (2,) * dim
    assert ys.dtype == jnp.float32 and bool(jnp.isfinite(ys).all())
    assert all(leaf.shape[0] == 8 and leaf.dtype == jnp.float32
               for leaf in jax.tree.leaves(params))
    # Seeds differ (tanh; some nets vanish identically at init, e.g. odd with square units
    # and zero biases), and so do activations.
    assert float(jnp.abs(ys[TANH, 0] - ys[TANH, 1]).min()) > 0
    assert float(jnp.abs(ys[TANH] - ys[RELU]).max()) > 0
    for p in penalties:
        assert p.shape == (8,) and bool(jnp.all(p > 0))
    assert all(v.shape == (8,) for v in diag.values())
    # The vmapped model agrees with one seed at a time.
    one = jax.tree.map(lambda a: a[3], params)
    np.testing.assert_allclose(built[TANH].apply(one, x), ys[TANH, 3], rtol=1e-5, atol=1e-6)
    d = built[0].describe()
    assert d["n_params"] == N_PARAMS[kind, symmetry]
    assert sum(leaf[0].size for leaf in jax.tree.leaves(params)) == N_PARAMS[kind, symmetry]
    assert (d["kind"], d["symmetry"], d["activation"]) == (kind, symmetry,
                                                             models.ACTIVATIONS[0])
