"""The learned map's RG eigenvalues (``predict.rg_eigenvalues``)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rgsym import models
from rgsym.cumulants import predict
from tests.reference import assert_jacobian_is_finite_differences, block_sum


def _exact_identity_net(dim, b, sites):
    """An identity MLP whose layers compose to the block map: W1 = I, W2 = the block-sum
    matrix built by a loop (tests.reference.block_sum on unit vectors)."""
    n = sites ** dim
    net = models.build(dict(kind="mlp", symmetry="none", activation="identity", width=n,
                            depth=1, b=b, dim=dim, sites=sites, dtype="float64"))
    params = net.init(jax.random.key(0), jnp.zeros((1,) + (sites,) * dim))
    basis = np.eye(n).reshape((n,) + (sites,) * dim)
    rg = block_sum(basis, b, dim).reshape(n, -1).T
    layers = params["params"]
    layers["layer_0"].update(kernel=jnp.eye(n), bias=jnp.zeros(n))
    layers["layer_1"].update(kernel=jnp.asarray(rg), bias=jnp.zeros(rg.shape[0]))
    return net, params


@pytest.mark.parametrize("dim, b, sites", [(1, 2, 8), (1, 3, 9), (2, 2, 4), (2, 3, 3)])
def test_exact_block_map_has_the_scaling_eigenvalues(dim, b, sites):
    net, params = _exact_identity_net(dim, b, sites)
    out = predict.rg_eigenvalues(net, params, order=5, variance=2.0)
    big_b = float(b ** dim)
    want = big_b ** (1 - np.arange(1, 6) / 2)  # kappa_n' = B^(1 - n/2) kappa_n
    np.testing.assert_allclose(out.eigenvalues.real, want, rtol=1e-10)
    np.testing.assert_allclose(out.eigenvalues.imag, 0.0, atol=1e-12)
    np.testing.assert_allclose(out.jacobian, np.diag(want), atol=1e-10)
    np.testing.assert_allclose(out.exact, want, rtol=1e-12)
    assert out.classes == ["relevant", "marginal", "irrelevant", "irrelevant", "irrelevant"]
    assert out.label == "exact"


def test_jacobian_of_a_quadratic_net_matches_finite_differences_of_the_propagator():
    net = models.build(dict(kind="mlp", symmetry="none", activation="quadratic", width=4,
                            depth=1, b=2, dim=1, sites=4, alpha=0.4, dtype="float64"))
    params = net.init(jax.random.key(3), jnp.zeros((1, 4)))
    out = predict.rg_eigenvalues(net, params, order=3)
    # kappa_1' picks up the quadratic term: d kappa_1' / d kappa_2 != 0 (not diagonal)
    assert abs(float(out.jacobian[0, 1])) > 1e-3
    assert_jacobian_is_finite_differences(out, net, params, order=3)


def test_bad_variance_is_refused_by_name():
    net, params = _exact_identity_net(1, 2, 4)
    with pytest.raises(ValueError, match="variance=-1"):
        predict.rg_eigenvalues(net, params, variance=-1.0)


def test_rg_eigenvalue_error_is_zero_for_the_exact_map_and_nan_where_no_exact_rule():
    net, params = _exact_identity_net(1, 2, 8)
    moved = jax.tree.map(lambda a: a, params)
    kernel = moved["params"]["layer_1"]["kernel"]
    moved["params"]["layer_1"]["kernel"] = kernel * 1.01     # every output 1% too large
    stacked = jax.tree.map(lambda a, b: jnp.stack([a, b]), params, moved)
    err = predict.rg_eigenvalue_error(net, stacked, order=4)
    assert err.shape == (2,) and err[0] < 1e-10
    # kappa_n' scales by 1.01^n: the largest relative eigenvalue shift is at n = 4
    np.testing.assert_allclose(err[1], 1.01 ** 4 - 1, rtol=1e-9)
    tanh = models.build(dict(kind="mlp", symmetry="none", activation="tanh", width=4,
                             depth=1, b=2, dim=1, sites=4, dtype="float64"))
    p = tanh.init(jax.random.key(0), jnp.zeros((1, 4)))
    assert np.isnan(predict.rg_eigenvalue_error(
        tanh, jax.tree.map(lambda a: a[None], p))).all()
    # two quadratic layers at order 4 run as a closure by default: NaN, not a number
    deep = models.build(dict(kind="mlp", symmetry="none", activation="quadratic", width=4,
                             depth=2, b=2, dim=1, sites=4, dtype="float64"))
    pd = deep.init(jax.random.key(0), jnp.zeros((1, 4)))
    assert predict.rg_eigenvalues(deep, pd, 4).label == "closure"
    assert np.isnan(predict.rg_eigenvalue_error(
        deep, jax.tree.map(lambda a: a[None], pd))).all()
