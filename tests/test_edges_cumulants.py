"""Edges of the array functions, approximate modes, caches and streaming moments: each
failing input of the edge-case report with its right outcome, and the kind it belongs to."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rgsym import clt, config, cumulants, distributions as D, metrics, models
from rgsym.cumulants import rules
from rgsym.cumulants.state import DenseCumulants
from rgsym.models.activations import KINKS


# ---- integer and boolean arrays are promoted, never truncated --------------------------

@pytest.mark.parametrize("x", [jnp.array([[1, 1, 0, 0]]), np.array([[True, True, False, False]]),
                               [[1, 1, 0, 0]]], ids=["int", "bool", "list"])
def test_block_map_and_flow_promote_integer_and_boolean_lattices(x):
    np.testing.assert_allclose(clt.block_map(x, 2), [[math.sqrt(2), 0.0]], rtol=1e-7)
    np.testing.assert_allclose(clt.flow(x, 2, 2)[-1], [[1.0]], rtol=1e-7)
    np.testing.assert_allclose(clt.block_map(jnp.ones((1, 2, 2), int), 2, dim=2), [[[2.0]]])


def test_integer_samples_and_kappas_are_promoted_everywhere():
    counts = jnp.array([0, 1, 1, 2, 3, 5, 8, 13])
    np.testing.assert_allclose(cumulants.k_statistics(counts, order=2),
                               [4.125, np.var(np.asarray(counts, float), ddof=1)])
    np.testing.assert_allclose(clt.cumulant_recursion(jnp.array([1, 2, 3]), 2),
                               [math.sqrt(2), 2.0, 3 / math.sqrt(2)])
    # an integer mean once truncated alpha = 0.3 to 0 in the centred coefficients
    np.testing.assert_allclose(rules.centre_coefficients(jnp.array([0.0, 1.0, 0.3]),
                                                         jnp.array([1, 2])),
                               [[1.3, 1.6, 0.3], [3.2, 2.2, 0.3]])
    with pytest.raises(ValueError, match="x has dtype complex"):
        clt.block_map(jnp.ones((2, 4), jnp.complex64), 2)


def test_rg_matrix_defaults_to_the_default_float_and_refuses_float64_without_x64():
    assert clt.rg_matrix((4,), 2, 1).dtype == jnp.float64  # x64 on in the tests
    with jax.enable_x64(False):
        assert clt.rg_matrix((4,), 2, 1).dtype == jnp.float32
        with pytest.raises(ValueError, match="dtype=float64 .*jax_enable_x64"):
            clt.rg_matrix((4,), 2, 1, dtype=jnp.float64)


# ---- approximate modes never collapse silently at a kink ------------------------------

def _relu_net(bias=None):
    net = models.build(dict(kind="mlp", symmetry="none", activation="relu", width=8,
                            depth=1, b=2, dim=1, sites=4))
    params = net.init(jax.random.key(0), jnp.zeros((1, 4)))
    if bias is not None:
        params = jax.tree_util.tree_map_with_path(
            lambda path, a: a + bias if "layer_0" in str(path) and "bias" in str(path) else a,
            params)
    return net, params


def test_quadratic_mode_at_relu_kink_is_refused_naming_mode_and_activation():
    net, params = _relu_net()  # zero biases, zero-mean inputs: every unit on the kink
    assert KINKS["relu"] == (0.0,)
    with pytest.raises(ValueError, match=r"mode='quadratic' .*activation='relu'.*"
                                         r"mode='gaussian_closure' with order <= 2"):
        cumulants.propagate(net, params, D.get("uniform"), order=2, mode="quadratic")
    # gaussian_closure expands orders >= 3 the same way: refused there too
    with pytest.raises(ValueError, match="mode='gaussian_closure'"):
        cumulants.propagate(net, params, D.get("uniform"), order=3, mode="gaussian_closure")


def test_kink_under_tracing_gives_nan_not_the_collapsed_expansion():
    net, params = _relu_net()
    many = jax.tree_util.tree_map(lambda a: jnp.stack([a, a]), params)
    out = cumulants.propagate_many(net, many, D.get("uniform"), order=2, mode="quadratic")
    assert bool(jnp.all(jnp.isnan(out.output.tensors[1])))


def test_gaussian_closure_through_the_kink_matches_monte_carlo():
    net, params = _relu_net()
    fam = D.get("uniform")
    got = np.asarray(cumulants.propagate(net, params, fam, order=2,
                                         mode="gaussian_closure").marginals()[-1])
    mc = cumulants.monte_carlo(net, params, fam, jax.random.key(1), 1 << 18, 1 << 16, order=2)
    ks = mc.layers[-1]
    # the closure treats the (uniform-sum) pre-activations as Gaussian: a few per cent
    assert np.all(np.abs(got - ks.value) < 0.05 * np.abs(ks.value) + 5 * ks.se), (got, ks)
    assert np.all(got[:, 1] > 0.1)  # not the collapsed zero variance


def test_relu_far_from_its_kink_is_expanded_exactly_as_the_identity():
    net, params = _relu_net(bias=20.0)  # every pre-activation ~20 spreads above 0
    q = cumulants.propagate(net, params, D.get("uniform"), order=3, mode="quadratic")
    ident = models.build(dict(kind="mlp", symmetry="none", activation="identity", width=8,
                              depth=1, b=2, dim=1, sites=4))
    e = cumulants.propagate(ident, params, D.get("uniform"), order=3)
    np.testing.assert_allclose(q.marginals()[-1], e.marginals()[-1], rtol=1e-12, atol=1e-12)


# ---- gradients are finite wherever values are -----------------------------------------

def _closure_variance(v, fn=jax.nn.relu):
    state = DenseCumulants((jnp.zeros(1), jnp.full((1, 1), v)))
    return rules.gaussian_closure(state, fn, 2).tensors[1][0, 0]


@pytest.mark.parametrize("v", [1.0, 2.0, 0.3])
def test_gaussian_closure_gradient_is_finite_and_matches_its_own_finite_difference(v):
    grad = float(jax.grad(_closure_variance)(v))
    h = 1e-5
    fd = (float(_closure_variance(v + h)) - float(_closure_variance(v - h))) / (2 * h)
    assert math.isfinite(grad)
    np.testing.assert_allclose(grad, fd, rtol=1e-6)
    # Var relu(sqrt(v) Z) = v (1/2 - 1/(2 pi)); the 48-node quadrature of the kink is ~1% off
    np.testing.assert_allclose(grad, 0.5 - 1 / (2 * math.pi), rtol=0.02)


def test_closure_gradient_with_fully_correlated_units_is_finite():
    def f(scale):
        g = jnp.array([[1.0, 1.0], [1.0, 1.0]]) * scale  # rho = 1 off the diagonal too
        state = DenseCumulants((jnp.array([0.1, 0.2]), g))
        return rules.gaussian_closure(state, jnp.tanh, 2).tensors[1].sum()
    assert math.isfinite(float(jax.grad(f)(0.5)))


def test_propagated_cumulants_are_differentiable_in_the_parameters():
    net = models.build(dict(kind="mlp", symmetry="none", activation="tanh", width=4,
                            depth=1, b=2, dim=1, sites=4))
    params = net.init(jax.random.key(2), jnp.zeros((1, 4)))

    def loss(p):
        out = cumulants.propagate(net, p, D.get("uniform"), order=2, mode="gaussian_closure")
        return jnp.sum(out.output.tensors[1])
    grads = jax.grad(loss)(params)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree_util.tree_leaves(grads))


# ---- caches keyed by everything that changes the computation --------------------------

def test_evaluation_data_cache_never_serves_a_re_registered_family():
    def factory(stream):  # the same law (uniform on [-1, 1]) from two different streams
        return lambda: D.Distribution(
            "edgecase", (),
            lambda k, s, dt: jax.random.uniform(jax.random.fold_in(k, stream), s, dt, -1.0, 1.0),
            lambda n: np.array([0.0, 1 / 3, 0.0, -2 / 15, 0.0, 16 / 63, 0.0, -16 / 15])[:n])

    cfg = config.base_config()
    cfg.lattice.sites, cfg.eval.batch, cfg.eval.curve_batch = 4, 64, 64
    cfg.eval.families, cfg.eval.scales = ("gaussian",), ()
    cfg.data.family = "edgecase"
    net = models.build(dict(kind="mlp", symmetry="none", activation="identity", width=2,
                            depth=1, b=2, dim=1, sites=4))
    data = []
    try:
        for stream in (0, 1):
            D.register("edgecase", factory(stream), overwrite=True)
            x, _ = metrics.make_evaluator(config.resolve(cfg), net).fixed_data()
            data.append(np.asarray(x[0]))
    finally:
        D._REGISTRY.pop("edgecase", None)
    # equal names, parameters and cumulants: only a cache miss draws the second stream
    assert np.abs(data[0] - data[1]).max() > 0.1


# ---- streaming moments refuse a far shift ---------------------------------------------

def test_power_sums_about_a_far_shift_are_refused_eagerly_and_nan_under_jit():
    x = 1e6 + jnp.arange(1.0, 6.0)
    with pytest.raises(ValueError, match="shift is about .* standard deviations"):
        cumulants.k_statistics_from_power_sums(cumulants.power_sums(x, shift=0.0))
    traced = jax.jit(lambda v: cumulants.k_statistics_from_power_sums(
        cumulants.power_sums(v, shift=0.0)))(x)
    assert float(traced.value[0]) == 1000003.0 and bool(jnp.all(jnp.isnan(traced.value[1:])))
    good = cumulants.k_statistics_from_power_sums(cumulants.power_sums(x, shift=1e6 + 2.5))
    np.testing.assert_allclose(good.value, [1000003.0, 2.5, 0.0, -7.5], rtol=1e-12, atol=1e-9)


def test_nan_data_give_nan_statistics_not_a_shift_error():
    x = jnp.array([1.0, 2.0, jnp.nan, 4.0, 5.0, 6.0])
    ks = cumulants.k_statistics_from_power_sums(cumulants.power_sums(x, shift=3.0))
    assert bool(jnp.all(jnp.isnan(ks.value)))


def test_constant_sample_is_not_flagged_as_a_far_shift():
    ks = cumulants.k_statistics_from_power_sums(
        cumulants.power_sums(jnp.full(7, 3.3), shift=3.3000000000000003))
    np.testing.assert_allclose(ks.value, [3.3, 0.0, 0.0, 0.0], atol=1e-12)


# ---- found by review: more of the same kinds ------------------------------------------

def test_combine_refuses_power_sums_about_different_shifts():
    x = jax.random.normal(jax.random.key(0), (2000,))
    a, b = cumulants.power_sums(x[:1000], 0.0), cumulants.power_sums(x[1000:] + 3, 3.0)
    with pytest.raises(ValueError, match="different shifts"):
        cumulants.combine(a, b)
    traced = jax.jit(cumulants.combine)(a, b)
    assert bool(jnp.all(jnp.isnan(traced.sums)))


def test_float32_power_sums_about_their_mean_are_not_refused():
    x = jax.random.normal(jax.random.key(1), (1 << 16,), jnp.float32) * 2 + 1
    ks = cumulants.k_statistics_from_power_sums(cumulants.power_sums(x, x.mean()))
    ref = cumulants.k_statistics_with_se(x.astype(jnp.float64))
    assert bool(jnp.all(jnp.isfinite(ks.value))) and bool(jnp.all(jnp.isfinite(ks.se)))
    np.testing.assert_allclose(ks.value, ref.value, atol=1e-3)


def test_closure_gradient_with_a_unit_without_spread_is_finite():
    net = models.build(dict(kind="mlp", symmetry="none", activation="tanh", width=4,
                            depth=1, b=2, dim=1, sites=4, dtype="float64"))
    params = net.init(jax.random.key(0), jnp.zeros((1, 4)))
    kernel = params["params"]["layer_0"]["kernel"]
    params["params"]["layer_0"]["kernel"] = kernel.at[0, :].set(0.0)  # unit 0: constant

    def loss(p):
        out = cumulants.propagate(net, p, D.get("uniform"), order=2, mode="gaussian_closure")
        return out.marginals()[-1][:, 1].sum()
    grads = jax.grad(loss)(params)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree_util.tree_leaves(grads))
    # against central differences in one weight of a unit that has spread
    h, w = 1e-6, params["params"]["layer_0"]["kernel"]
    shifted = [jax.tree_util.tree_map(lambda a: a, params) for _ in range(2)]
    for sign, p in zip((1, -1), shifted):
        p["params"]["layer_0"]["kernel"] = w.at[1, 2].add(sign * h)
    fd = (float(loss(shifted[0])) - float(loss(shifted[1]))) / (2 * h)
    np.testing.assert_allclose(grads["params"]["layer_0"]["kernel"][1, 2], fd, rtol=1e-5)


def test_cumulant_states_and_float64_models_refuse_to_downcast_without_x64():
    with jax.enable_x64(False):
        with pytest.raises(ValueError, match="jax_enable_x64"):
            cumulants.iid_lattice(D.get("uniform"), 4, 4)
        with pytest.raises(ValueError, match="dtype=float64 .*jax_enable_x64"):
            models.build(dict(kind="mlp", symmetry="none", activation="tanh", width=4,
                              depth=1, b=2, dim=1, sites=4, dtype="float64"))


def test_recursion_steps_and_fixed_point_variance_are_validated_by_name():
    for steps in (jnp.array(-1), jnp.array(1.5), True, np.array([0, -2])):
        with pytest.raises(ValueError, match="steps=.*integers >= 0"):
            clt.cumulant_recursion([0.0, 1.0, 0.5], 2, steps)
    traced = jax.jit(lambda s: clt.cumulant_recursion(jnp.array([0.0, 1.0, 0.5]), 2, s))(2)
    np.testing.assert_allclose(traced, [0.0, 1.0, 0.25])
    with pytest.raises(ValueError, match="variance=True"):
        clt.gaussian_fixed_point(True)
