"""The GNN kind: lattice graphs, exact layer rewrite, lattice symmetries, any lattice size."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from rgsym import clt, data, distributions, models
from rgsym.models import compose, lattice_graph


def make(symmetry="separate", dim=1, sites=4, **kw):
    cfg = dict(kind="gnn", symmetry=symmetry, activation="tanh", dim=dim, sites=sites,
               width=3, depth=2, dtype="float64")
    return models.build({**cfg, **kw})


def lattice(key, shape, batch=5):
    return jax.random.normal(key, (batch,) + tuple(shape), jnp.float64)


@pytest.mark.parametrize("shape, boundary, block_edges, n_edges", [
    ((8,), "periodic", False, 16), ((8,), "open", False, 14), ((6,), "open", True, 14),
    ((4, 4), "periodic", False, 64), ((4, 4), "open", False, 48), ((4, 4), "open", True, 64),
])
def test_lattice_graph_edges(shape, boundary, block_edges, n_edges):
    b = 3 if shape == (6,) else 2
    lg = lattice_graph(shape, b, boundary, block_edges)
    g = lg.graph
    assert int(g.n_edge[0]) == len(g.senders) == n_edges and int(g.n_node[0]) == np.prod(shape)
    coords = np.indices(shape).reshape(len(shape), -1).T
    block = coords // b
    np.testing.assert_array_equal(g.edges["intra"],
                                  (block[g.senders] == block[g.receivers]).all(-1))
    np.testing.assert_array_equal(lg.block_of, np.ravel_multi_index(tuple(block.T),
                                                                     tuple(s // b for s in shape)))
    # Direction 2a + k: the sender is the receiver's +1 (k=0) / -1 (k=1) neighbour on axis a.
    for d in range(2 * len(shape)):
        sel = g.edges["direction"] == d
        delta = (coords[g.senders[sel]] - coords[g.receivers[sel]]) % np.array(shape)
        expect = np.zeros(len(shape), int)
        expect[d // 2] = 1 if d % 2 == 0 else -1
        np.testing.assert_array_equal(delta, np.broadcast_to(expect % np.array(shape),
                                                             delta.shape))
    if block_edges:   # extra edges join non-adjacent sites of one block
        extra = g.edges["direction"] == 2 * len(shape)
        assert extra.sum() > 0 and g.edges["intra"][extra].all()


def test_lattice_graph_refuses_bad_shape():
    with pytest.raises(ValueError, match="multiple of b=2"):
        lattice_graph((5,), 2)
    with pytest.raises(ValueError, match="boundary='mirror'"):
        lattice_graph((4,), 2, "mirror")


# Every symmetry in both dims, then option variants in the dim where they matter most.
CASES = [(dict(symmetry=s), dim) for s in models.GNN_SYMMETRIES for dim in (1, 2)] + [
    (dict(symmetry="edge_typed", pooling="learned", block_edges=True), 2),
    (dict(symmetry="directional", boundary="open", pooling="mean"), 1),
    (dict(symmetry="shared", use_bias=False), 1)]


@pytest.mark.parametrize("case, dim", CASES,
                         ids=lambda c: "-".join(map(str, c.values())) if isinstance(c, dict)
                         else f"{c}d")
def test_layers_reproduce_apply(case, dim):
    model = make(dim=dim, **case)
    params = model.init(jax.random.key(0), jnp.zeros(model.spec.lattice_shape))
    if "pool" in params["params"]:   # move learned pooling off its uniform init
        params["params"]["pool"] = params["params"]["pool"] * jnp.arange(1.0, 1 + 2 ** dim)
    for shape in [(4,) * dim, (6,) * dim]:   # and on a lattice it was not built with
        x = lattice(jax.random.key(2), shape)
        chain = model.layers(params, shape)
        assert chain[0].weight.shape == (np.prod(shape) * 3, np.prod(shape))   # node-major
        y, y_chain = jax.jit(lambda p, x: (model.apply(p, x).reshape(len(x), -1),
                                           compose(chain, x.reshape(len(x), -1))))(params, x)
        np.testing.assert_allclose(y_chain, y, atol=1e-12)
    # A float32 model's chain stays float32 under x64 (no float64 graph matrices leak in).
    f32 = make(dim=dim, dtype="float32", **case)
    chain32 = f32.layers(jax.tree.map(lambda a: a.astype(jnp.float32), params), (4,) * dim)
    assert all(a.dtype == jnp.float32 for layer in chain32 if isinstance(layer, models.Affine)
               for a in layer)


@pytest.mark.parametrize("dim", [1, 2])
def test_translation_by_b_and_rotation(dim):
    x = lattice(jax.random.key(2), (8,) * dim)
    for symmetry in models.GNN_SYMMETRIES:
        model = make(symmetry, dim)
        params = model.init(jax.random.key(0), jnp.zeros((4,) * dim))
        y = model.apply(params, x)          # built for 4 sites, run on 8
        assert y.shape == (5,) + (4,) * dim
        assert model.apply(params, y).shape == (5,) + (2,) * dim   # iterable
        for axis in range(-dim, 0):
            np.testing.assert_allclose(model.apply(params, jnp.roll(x, 2, axis)),
                                       jnp.roll(y, 1, axis), atol=1e-13)
        assert "translation" in model.describe()["symmetries"]
        if dim == 2:
            rotated = model.apply(params, jnp.rot90(x, axes=(-2, -1)))
            equivariant = np.allclose(rotated, jnp.rot90(y, axes=(-2, -1)), atol=1e-13)
            assert equivariant == (symmetry != "directional"), symmetry
            assert ("rotation" in model.describe()["symmetries"]) == equivariant


def test_open_boundary_breaks_translation_not_rotation():
    model = make("edge_typed", 2, boundary="open")
    params = model.init(jax.random.key(0), jnp.zeros((4, 4)))
    x = lattice(jax.random.key(2), (4, 4))
    y = model.apply(params, x)
    assert not np.allclose(model.apply(params, jnp.roll(x, 2, -1)), jnp.roll(y, 1, -1))
    np.testing.assert_allclose(model.apply(params, jnp.rot90(x, axes=(-2, -1))),
                               jnp.rot90(y, axes=(-2, -1)), atol=1e-13)
    assert model.describe()["symmetries"] == ["edge_typed", "rotation"]


@pytest.mark.parametrize("dim", [1, 2])
def test_separate_identity_gnn_represents_exact_rg(dim):
    model = make("separate", dim, activation="identity", width=1, depth=1)
    x = lattice(jax.random.key(2), (8,) * dim)
    p = model.init(jax.random.key(0), x)["params"]
    p = {"mp_0": {"self": jnp.ones((1, 1)), "neighbour": jnp.zeros((1, 1, 1)),
                  "bias": jnp.zeros(1)},
         "readout": jnp.full((1,), 2.0 ** (-dim / 2)), "out_bias": jnp.zeros(())}
    err = model.apply({"params": p}, x) - clt.block_map(x, 2, dim)
    assert float(jnp.abs(err).max()) < 1e-14


def test_equivariance_holds_after_100_adam_steps():
    model = make("edge_typed", 2, activation="quadratic", pooling="mean", block_edges=True)
    params = model.init(jax.random.key(0), jnp.zeros((4, 4)))
    opt, dist = optax.adam(1e-2), distributions.get("uniform")

    def step(carry, k):
        p, s = carry
        x, y = data.sample_pairs(k, dist, 32, 4, 2, 2, dtype=jnp.float64)
        loss, g = jax.value_and_grad(lambda q: jnp.mean((model.apply(q, x) - y) ** 2))(p)
        updates, s = opt.update(g, s, p)
        return (optax.apply_updates(p, updates), s), loss

    keys = jax.random.split(jax.random.key(1), 100)
    (trained, _), losses = jax.jit(lambda p: jax.lax.scan(step, (p, opt.init(p)), keys))(params)
    assert losses[-1] < 0.5 * losses[0]
    diag = model.symmetry_diagnostics(trained)
    assert float(diag["edge_type_spread"]) > 0 and float(diag["shared_residual"]) > 0
    x = lattice(jax.random.key(2), (8, 8))
    y = model.apply(trained, x)
    np.testing.assert_allclose(model.apply(trained, jnp.roll(x, 2, -2)), jnp.roll(y, 1, -2),
                               atol=1e-13)
    np.testing.assert_allclose(model.apply(trained, jnp.rot90(x, axes=(-2, -1))),
                               jnp.rot90(y, axes=(-2, -1)), atol=1e-13)


def test_learned_pooling_keeps_translation_breaks_rotation():
    model = make("separate", 2, pooling="learned")
    params = model.init(jax.random.key(0), jnp.zeros((4, 4)))
    params["params"]["pool"] = jnp.array([1.0, 2.0, 3.0, 4.0])   # one weight per position
    x = lattice(jax.random.key(2), (4, 4))
    y = model.apply(params, x)
    np.testing.assert_allclose(model.apply(params, jnp.roll(x, 2, -1)), jnp.roll(y, 1, -1),
                               atol=1e-13)
    assert not np.allclose(model.apply(params, jnp.rot90(x, axes=(-2, -1))),
                           jnp.rot90(y, axes=(-2, -1)))
    assert model.describe()["symmetries"] == ["separate", "translation"]
    assert float(model.symmetry_diagnostics(params)["pool_spread"]) > 1
