"""The MLP kind: exact rewrites, exact constraints through training, expressivity facts."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from rgsym import clt, data, distributions, models
from rgsym.models import compose

UNIFORM = distributions.get("uniform")
DIAGNOSTIC = {"tied_hidden": "tied_hidden_spread", "odd": "oddness_residual",
              "block_local": "block_local_residual",
              "nonnegative": "negative_mass", "symmetric_weights": "asymmetry_norm",
              "block_permutation": "block_permutation_spread"}


def make(symmetry="none", activation="tanh", dim=1, sites=4, **kw):
    cfg = dict(kind="mlp", symmetry=symmetry, activation=activation, dim=dim, sites=sites,
               width=6, depth=2, dtype="float64", **kw)
    return models.build(cfg)


def lattice(key, shape, batch=5):
    return jax.random.normal(key, (batch,) + tuple(shape), jnp.float64)


def adam_train(model, params, steps, lr=1e-2, batch=64, key=1, penalty=None):
    """``steps`` Adam steps on uniform (x, RG(x)) pairs in one lax.scan; returns params, losses.

    penalty: optional ``params -> scalar`` added to the MSE (default ``model.penalty``).
    """
    spec, opt = model.spec, optax.adam(lr)
    penalty = model.penalty if penalty is None else penalty

    def loss(p, k):
        x, y = data.sample_pairs(k, UNIFORM, batch, spec.sites, spec.b, spec.dim,
                                 dtype=jnp.float64)
        return jnp.mean((model.apply(p, x) - y) ** 2) + penalty(p)

    def step(carry, k):
        p, s = carry
        value, g = jax.value_and_grad(loss)(p, k)
        updates, s = opt.update(g, s, p)
        return (optax.apply_updates(p, updates), s), value

    keys = jax.random.split(jax.random.key(key), steps)
    (params, _), losses = jax.lax.scan(step, (params, opt.init(params)), keys)
    return params, losses


@pytest.mark.parametrize("dim", [1, 2])
@pytest.mark.parametrize("symmetry", models.MLP_SYMMETRIES)
def test_layers_reproduce_apply(symmetry, dim):
    model = make(symmetry, "quadratic", dim)
    x = lattice(jax.random.key(2), model.spec.lattice_shape)
    params = model.init(jax.random.key(0), x)
    chain = model.layers(params, model.spec.lattice_shape)
    assert isinstance(chain[0], models.Affine) and isinstance(chain[-1], models.Affine)
    assert chain[0].weight.shape[1] == x[0].size
    y = model.apply(params, x)
    np.testing.assert_allclose(compose(chain, x.reshape(len(x), -1)), y.reshape(len(x), -1),
                               atol=1e-12)
    if symmetry == "block_local":  # also on a lattice it was not built with
        x8 = lattice(jax.random.key(3), (8,) * dim)
        np.testing.assert_allclose(compose(model.layers(params, (8,) * dim),
                                           x8.reshape(len(x8), -1)),
                                   model.apply(params, x8).reshape(len(x8), -1), atol=1e-12)


def test_alpha_override_is_traceable():
    model = make("none", "quadratic")
    x = lattice(jax.random.key(2), (4,))
    params = model.init(jax.random.key(0), x)
    ys = jax.vmap(lambda a: model.apply(params, x, alpha=a))(jnp.array([0.1, 0.5]))
    np.testing.assert_allclose(ys[0], model.apply(params, x), atol=1e-14)
    assert not np.allclose(ys[0], ys[1])
    chain = model.layers(params, (4,), alpha=0.5)
    np.testing.assert_allclose(compose(chain, x), ys[1], atol=1e-12)


def check_constraint(model, params, x):
    """Asserts the model's symmetry holds exactly, on the function and on its weights."""
    sym, spec = model.spec.symmetry, model.spec
    y = model.apply(params, x)
    affines = [layer for layer in model.layers(params, spec.lattice_shape)
               if isinstance(layer, models.Affine)]
    assert float(model.symmetry_diagnostics(params)[DIAGNOSTIC[sym]]) < 1e-12
    if sym == "tied_hidden":
        chain = model.layers(params, spec.lattice_shape)
        for depth in range(2, len(chain), 2):   # every hidden unit computes the same value
            h = compose(chain[:depth], x.reshape(len(x), -1))
            np.testing.assert_allclose(h, jnp.broadcast_to(h[:, :1], h.shape), rtol=1e-14)
        np.testing.assert_array_equal(affines[0].weight[1:], affines[0].weight[:-1])
    elif sym == "odd":
        np.testing.assert_allclose(model.apply(params, -x), -y, atol=1e-13)
    elif sym == "nonnegative":
        assert all(bool(jnp.all(a.weight >= 0)) for a in affines)
    elif sym == "symmetric_weights":
        for a in affines[1:-1]:
            np.testing.assert_array_equal(a.weight, a.weight.T)
    elif sym == "block_permutation":
        # Exchange two sites inside every block (and permute within 2-D blocks).
        perm = np.arange(x.shape[-1]).reshape(-1, spec.b)[:, ::-1].reshape(-1)
        xp = x[..., perm] if spec.dim == 1 else x[..., perm, :][..., :, perm]
        np.testing.assert_allclose(model.apply(params, xp), y, atol=1e-13)


@pytest.mark.parametrize("symmetry", ["tied_hidden", "odd", "nonnegative", "symmetric_weights",
                                      "block_permutation"])
def test_constraints_exact_at_init_and_after_100_adam_steps(symmetry):
    activation = "softplus" if symmetry == "odd" else "quadratic"   # odd for a non-odd phi
    for dim in (2, 1):   # the parametrisation does not depend on dim: train on the chain
        model = make(symmetry, activation, dim)
        x = lattice(jax.random.key(2), model.spec.lattice_shape)
        params = model.init(jax.random.key(0), x)
        check_constraint(model, params, x)
    trained, losses = jax.jit(lambda p: adam_train(model, p, 100))(params)
    moved = jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()), trained, params)
    assert max(jax.tree.leaves(moved)) > 1e-2 and losses[-1] < losses[0]
    check_constraint(model, trained, x)


def test_unconstrained_mlp_is_not_symmetric():
    """The checks above can fail: a free MLP breaks every one of them."""
    model = make("none", "softplus")
    params = model.init(jax.random.key(0), jnp.zeros((4,)))
    diag = model.symmetry_diagnostics(params)
    assert set(diag) == {"tied_hidden_spread", "oddness_residual", "negative_mass",
                         "asymmetry_norm", "block_permutation_spread", "block_local_residual"}
    assert min(float(v) for v in diag.values()) > 1e-2
    x = lattice(jax.random.key(2), (4,))
    assert not np.allclose(model.apply(params, -x), -model.apply(params, x), atol=1e-3)


@pytest.mark.parametrize("dim", [1, 2])
def test_block_local_translation_equivariant_and_iterable(dim):
    model = make("block_local", "tanh", dim, b=2)
    x = lattice(jax.random.key(2), (8,) * dim)
    params = model.init(jax.random.key(0), jnp.zeros((4,) * dim))
    y = model.apply(params, x)
    assert y.shape == (5,) + (4,) * dim
    for axis in range(-dim, 0):
        np.testing.assert_allclose(model.apply(params, jnp.roll(x, 2, axis)),
                                   jnp.roll(y, 1, axis), atol=1e-14)
    # Iterated: 8 -> 4 -> 2 sites per side.
    assert model.apply(params, y).shape == (5,) + (2,) * dim
    assert model.describe()["symmetries"] == ["block_local", "translation"]


@pytest.mark.parametrize("dim, b", [(1, 2), (1, 4), (2, 2)])
def test_identity_mlp_represents_exact_rg(dim, b):
    """Set the weights of an unconstrained identity MLP to the block map: error 0."""
    sites = 2 * b
    model = models.build(dict(kind="mlp", symmetry="none", activation="identity", dim=dim,
                              b=b, sites=sites, width=(sites // b) ** dim, depth=1,
                              dtype="float64"))
    x = lattice(jax.random.key(2), (sites,) * dim, batch=64)
    params = model.init(jax.random.key(0), x)
    n_out = (sites // b) ** dim
    block_of, _ = models.lattice.block_index((sites,) * dim, b)
    pool = np.eye(n_out)[:, block_of] / np.sqrt(b ** dim)
    params = {"params": {"layer_0": {"kernel": jnp.asarray(pool), "bias": jnp.zeros(n_out)},
                         "layer_1": {"kernel": jnp.eye(n_out), "bias": jnp.zeros(n_out)}}}
    target = clt.block_map(x, b, dim)
    assert float(jnp.max(jnp.abs(model.apply(params, x) - target))) <= 1e-15
    # The hand-set tree is the model's own: init builds the same structure.
    assert (jax.tree.structure(params)
            == jax.tree.structure(model.init(jax.random.key(0), x)))


def test_tied_quadratic_trains_to_a_floor_free_quadratic_does_not():
    """One block, 16 units, Adam on uniform data (docs/science.md, "Why weight symmetries can hurt").

    A free quadratic net cancels Q = sum_h v_h w_h w_h^T with mirror pairs at finite weights;
    a tied one has Q = alpha (H v w) w^T, which vanishes only as |w| -> 0, |v| -> inf, so
    at any finite training budget it stalls on a floor set by the data's higher cumulants.
    """
    final = {}
    for symmetry in ("none", "tied_hidden"):
        model = models.build(dict(kind="mlp", symmetry=symmetry, activation="quadratic",
                                  sites=2, b=2, width=16, depth=1, dtype="float64"))
        params = model.init(jax.random.key(0), jnp.zeros((2,)))
        _, losses = jax.jit(lambda p: adam_train(model, p, 600, batch=256))(params)
        final[symmetry] = float(losses[-100:].mean())
    assert final["tied_hidden"] > 1e-4
    assert final["none"] < final["tied_hidden"] / 100


def test_soft_symmetry_breaking_and_restoration():
    """Strength 0 leaves each symmetry broken after training; a strong penalty restores it.

    All soft symmetries x two strengths train in one compiled, vmapped scan: the
    penalties are summed with a traced one-hot strength vector.
    """
    softs = list(DIAGNOSTIC)
    models_ = [make("none", "tanh", soft_symmetry=s, symmetry_strength=1.0) for s in softs]
    base = models_[0]
    params = base.init(jax.random.key(0), jnp.zeros((4,)))

    def run(strengths):   # [n]
        penalty = lambda p: sum(m.penalty(p, strength=s)   # noqa: E731
                                for m, s in zip(models_, strengths))
        return adam_train(base, params, 100, penalty=penalty)[0]

    # penalty = strength * squared distance, with the spec's strength as default.
    values = jax.jit(lambda p: [(m.penalty(p), m.penalty(p, strength=2.0)) for m in models_])
    d0 = base.symmetry_diagnostics(params)
    for soft, (default, two) in zip(softs, values(params)):
        np.testing.assert_allclose(default, float(d0[DIAGNOSTIC[soft]]) ** 2, rtol=1e-12)
        np.testing.assert_allclose(two, 2 * default, rtol=1e-12)
    assert float(make("none").penalty(params)) == 0.0

    n = len(softs)
    strengths = np.concatenate([np.zeros((1, n)), 10.0 * np.eye(n)])      # [n + 1, n]
    trained = jax.jit(jax.vmap(run))(jnp.asarray(strengths))
    diag = jax.vmap(base.symmetry_diagnostics)(trained)
    for i, soft in enumerate(softs):
        name = DIAGNOSTIC[soft]
        free, strong = float(diag[name][0]), float(diag[name][i + 1])
        assert strong < 0.3 * float(d0[name]) and strong < 0.3 * free, (soft, free, strong)


@pytest.mark.parametrize("x_shape", [(5,), (7, 5), (2, 3, 5)])
@pytest.mark.parametrize("maps", [1, 2, 3])
def test_dense_forward_layouts_agree_in_value_and_gradient(x_shape, maps):
    """The CPU's feature-major form and the batch-major form other platforms run (which no
    CPU test would otherwise reach) are the same function: values, weight gradients and
    input gradients to float64 rounding, for unbatched and multiply batched inputs."""
    from rgsym.models.mlp import _batch_major, _feature_major, dense_forward
    keys = jax.random.split(jax.random.key(0), 2 * maps + 1)
    sizes = [5] + [4] * (maps - 1) + [3]
    weights = [(jax.random.normal(keys[2 * i], (sizes[i + 1], sizes[i]), jnp.float64),
                jax.random.normal(keys[2 * i + 1], (sizes[i + 1],), jnp.float64))
               for i in range(maps)]
    x = jax.random.normal(keys[-1], x_shape, jnp.float64)

    def loss(form):
        return lambda w, x: jnp.sum(jnp.sin(form(w, x, jnp.tanh)))

    want = _batch_major(weights, x, jnp.tanh)
    assert want.shape == x_shape[:-1] + (3,)
    for form in (_feature_major, dense_forward):
        np.testing.assert_allclose(form(weights, x, jnp.tanh), want, rtol=1e-13, atol=1e-14)
        got_g, want_g = (jax.grad(loss(f), argnums=(0, 1))(weights, x)
                         for f in (form, _batch_major))
        for a, b in zip(jax.tree.leaves(got_g), jax.tree.leaves(want_g)):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13)
