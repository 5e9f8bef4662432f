"""Every propagation path on 1-D b=2, 2-D b=2, 1-D b=3 and 2-D b=3 lattices, checked
against brute-force enumeration of a discrete i.i.d. lattice (no sampling noise).

Site law: a shifted, scaled Bernoulli (values -0.5 and 1.5 with P(1.5) = 0.3): nonzero
mean and odd cumulants, so index or coefficient errors show.  The lattice has 3, 4, 9 or
(the 2-D case with several coarse sites) 16 sites, so 8, 16, 512 or 65536 configurations.
References come from ``tests/reference.py`` (explicit block sums, joint cumulants from
exact moments, closed-form activations), and the model output from ``model.apply``, never from the layer chain under test.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rgsym import distributions, models
from rgsym.cumulants import clt_recursion_check, predict_mse, propagate, to_dense
from rgsym.models import compose
from tests.reference import (ACTIVATIONS, block_sum, enumerate_lattice, gaussian_moments_of,
                             joint_cumulants, marginal_cumulants, site_cumulants, taylor2)

VALUES, PROBS = np.array([-0.5, 1.5]), np.array([0.7, 0.3])
SITE = distributions.get("bernoulli", p=0.3).affine(2.0, -0.5)
# (dim, b, sites): the lattices every path runs on.
GEOMETRIES = [(1, 2, 4), (2, 2, 2), (1, 3, 3), (2, 3, 3)]
# One architecture per geometry: MLP and GNN each run in 2-D and with b = 3.
ARCHS = [dict(kind="mlp", symmetry="none"), dict(kind="gnn", symmetry="directional"),
         dict(kind="gnn", symmetry="separate"), dict(kind="mlp", symmetry="block_local")]
CASES = list(zip(GEOMETRIES, ARCHS))
# and a linear (identity) net: its states stay in compact factor form, another code path
LINEAR = ((2, 3, 3), dict(kind="mlp", symmetry="tied_hidden", activation="identity"))
CASE_IDS = [f"{d}d-b{b}-{a['kind']}-{a['symmetry']}" for (d, b, _), a in CASES]
# a 4x4 lattice (2^16 configurations) with 2x2 coarse sites: the only 2-D lattice with more
# than one block, so the site order of the RG target and of the outputs matters
SEVERAL = [((2, 2, 4), dict(kind="mlp", symmetry="none")),
           ((2, 2, 4), dict(kind="gnn", symmetry="directional"))]
SEVERAL_IDS = ["2d-b2-4x4-mlp-none", "2d-b2-4x4-gnn-directional"]


@functools.lru_cache(maxsize=None)
def _model(dim, b, sites, arch, activation, width=3):
    arch = dict(arch)
    if arch["symmetry"] == "block_local":
        width = width * (sites // b) ** dim
    return models.build(dict(arch, activation=activation, width=width, depth=1, b=b, dim=dim,
                             sites=sites, alpha=0.4, dtype="float64"))


def random_params(model, key=0, scale=0.6):
    """Random parameters with every leaf (biases too) moved off its init."""
    params = model.init(jax.random.key(key), jnp.zeros(model.spec.lattice_shape))
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(key + 100), len(leaves))
    return jax.tree.unflatten(tree, [a + scale * jax.random.normal(k, a.shape, a.dtype)
                                     for a, k in zip(leaves, keys)])


def _outputs(model, params, x, steps=1):
    y, rg = jnp.asarray(x), np.asarray(x)
    for _ in range(steps):
        y = model.apply(params, y)
        rg = block_sum(rg, model.spec.b, model.spec.dim)
    return np.asarray(y).reshape(len(x), -1), rg.reshape(len(x), -1)


@pytest.mark.parametrize("geo, arch", CASES + [LINEAR] + SEVERAL,
                         ids=CASE_IDS + ["2d-b3-mlp-linear"] + SEVERAL_IDS)
def test_layers_equal_apply_and_exact_paths_equal_enumeration(geo, arch):
    """build, apply, layers() == apply, propagate (order 4, joint tensors),
    clt_recursion_check and predict_mse of a quadratic (or linear) net, all against
    enumeration."""
    arch = dict(arch)
    activation = arch.pop("activation", "quadratic")
    model = _model(*geo, tuple(arch.items()), activation)
    params = random_params(model)
    x, w = enumerate_lattice(VALUES, PROBS, model.spec.lattice_shape)
    out, rg = _outputs(model, params, x)
    b, dim = model.spec.b, model.spec.dim
    assert out.shape[1] == (model.spec.sites // b) ** dim
    chain = model.layers(params, model.spec.lattice_shape)
    np.testing.assert_allclose(compose(chain, jnp.asarray(x.reshape(len(x), -1))), out,
                               rtol=1e-12, atol=1e-12)

    want = joint_cumulants(out, w, 4)
    # the fused read-out (what predict_mse and clt_recursion_check run); the layer-by-layer
    # path once, on the baseline lattice (each is a separate compilation)
    for every_layer in (False, True) if geo == GEOMETRIES[0] else (False,):
        prop = propagate(model, params, SITE, order=4, every_layer=every_layer)
        assert prop.labels[-1] == "exact"
        for n, (got, ref) in enumerate(zip(to_dense(prop.output, 4).tensors, want), 1):
            np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-9, err_msg=f"kappa_{n}")

    check = clt_recursion_check(model, params, SITE, order=4)
    np.testing.assert_allclose(check.predicted, marginal_cumulants(want), rtol=1e-9, atol=1e-9)
    kappa = site_cumulants(VALUES, PROBS, 4)
    big_b = b ** dim
    target = kappa * big_b ** (1 - np.arange(1, 5) / 2)   # kappa_n' = B^(1 - n/2) kappa_n
    np.testing.assert_allclose(check.target, target, rtol=1e-12)
    dist = np.abs(marginal_cumulants(want) - target).max(0)
    np.testing.assert_allclose(check.distance, dist, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(check.standardised, dist / target[1] ** (np.arange(1, 5) / 2),
                               rtol=1e-9, atol=1e-12)

    mse = predict_mse(model, params, SITE)
    per_site = w @ (out - rg) ** 2
    assert mse.label == "exact"
    np.testing.assert_allclose(mse.per_site, per_site, rtol=1e-10)
    np.testing.assert_allclose(mse.mse, per_site.mean(), rtol=1e-10)
    if out.shape[1] > 1:   # positive control: another coarse-site order gives another MSE
        side = model.spec.sites // b   # 2-D: the transposed coarse lattice; 1-D: reversed
        swapped = (rg.reshape(len(x), side, side).swapaxes(1, 2).reshape(len(x), -1)
                   if dim == 2 else rg[:, ::-1])
        wrong = w @ (out - swapped) ** 2
        assert np.abs(wrong - per_site).max() > 1e-2 * per_site.max(), (wrong, per_site)
        # and the per-site cumulants differ between coarse sites (the MLP is not symmetric)
        if model.spec.kind == "mlp":
            k = marginal_cumulants(want)
            assert np.ptp(k[:, 1]) > 1e-2 * k[:, 1].max()


def test_two_rg_steps_of_an_iterable_net_equal_enumeration(geo=(1, 3, 9)):
    """steps=2: the chain of two applications (lattice shrinking by b) and the exact MSE
    against RG^2, with internal_order=4 (two quadratic layers: order 2 needs 4 inside)."""
    model = _model(*geo, (("kind", "gnn"), ("symmetry", "shared")), "quadratic")
    params = random_params(model, key=3, scale=0.3)
    x, w = enumerate_lattice(VALUES, PROBS, model.spec.lattice_shape)
    out, rg = _outputs(model, params, x, steps=2)
    mse = predict_mse(model, params, SITE, steps=2, internal_order=4)
    assert mse.label == "exact"
    np.testing.assert_allclose(mse.per_site, w @ (out - rg) ** 2, rtol=1e-10)


def _hidden(model, params, x):
    """Pre-activations h [M, H], the readout Affine, and the chain (one hidden layer)."""
    chain = model.layers(params, model.spec.lattice_shape)
    first, act, last = chain
    h = np.asarray(x.reshape(len(x), -1)) @ np.asarray(first.weight).T + np.asarray(first.bias)
    return h, last


@pytest.mark.parametrize("geo, arch, activation", [CASES[1] + ("tanh",), CASES[2] + ("softplus",)],
                         ids=[CASE_IDS[1], CASE_IDS[2]])
def test_quadratic_mode_equals_the_enumerated_taylor_network(geo, arch, activation):
    """mode='quadratic' is exactly the network with every hidden phi replaced by its
    second-order Taylor polynomial about the pre-activation mean: enumerate that network
    (closed-form derivatives) and compare orders 1-4 and the MSE (where the RG target rides
    through the activation as linear units, which must stay identities)."""
    model = _model(*geo, tuple(arch.items()), activation)
    params = random_params(model, key=1, scale=0.3)
    x, w = enumerate_lattice(VALUES, PROBS, model.spec.lattice_shape)
    h, last = _hidden(model, params, x)
    out, rg = _outputs(model, params, x)
    # the closed-form activation on the chain's pre-activations is the model
    np.testing.assert_allclose(ACTIVATIONS[activation][0](h) @ np.asarray(last.weight).T
                               + np.asarray(last.bias), out, rtol=1e-10, atol=1e-12)
    t = taylor2(activation, w @ h)(h) @ np.asarray(last.weight).T + np.asarray(last.bias)
    want = joint_cumulants(t, w, 4)
    prop = propagate(model, params, SITE, order=4, mode="quadratic")
    assert prop.labels[-1] == "quadratic"
    for n, (got, ref) in enumerate(zip(prop.output.tensors, want), 1):
        np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-10, err_msg=f"kappa_{n}")
    fused = clt_recursion_check(model, params, SITE, order=4, mode="quadratic")
    np.testing.assert_allclose(fused.predicted, marginal_cumulants(want), rtol=1e-9, atol=1e-10)
    mse = predict_mse(model, params, SITE, mode="quadratic")
    assert mse.label == "quadratic"
    np.testing.assert_allclose(mse.per_site, w @ (t - rg) ** 2, rtol=1e-9)


@pytest.mark.parametrize("geo, arch, activation", [CASES[0] + ("tanh",), CASES[3] + ("silu",)],
                         ids=[CASE_IDS[0], CASE_IDS[3]])
def test_gaussian_closure_equals_a_gaussian_quadrature_of_the_network(geo, arch, activation):
    """mode='gaussian_closure': orders 1-2 are E and Cov of phi(h) (and of the linear target
    units) for Gaussian pre-activations with the exact mean and covariance; orders 3-4 come
    from the Taylor network.  Reference: a Cholesky tensor-grid quadrature."""
    model = _model(*geo, tuple(arch.items()), activation)
    params = random_params(model, key=2, scale=0.3)
    x, w = enumerate_lattice(VALUES, PROBS, model.spec.lattice_shape)
    h, last = _hidden(model, params, x)
    _, rg = _outputs(model, params, x)
    a, c = np.asarray(last.weight), np.asarray(last.bias)
    phi = {"tanh": np.tanh, "silu": lambda z: z / (1 + np.exp(-z))}[activation]
    # hidden units, then the RG target as identity units (what predict_mse carries)
    u = np.concatenate([h, rg], 1)
    mean, k2 = joint_cumulants(u, w, 2)
    fns = [phi] * h.shape[1] + [lambda z: z] * rg.shape[1]
    e1, cov = gaussian_moments_of(fns, mean, k2)
    o = rg.shape[1]
    out_mean, out_cov = a @ e1[:-o] + c, a @ cov[:-o, :-o] @ a.T
    # rtol: the library's 48-node quadrature is good to ~2e-5 at these spreads (sd 1.5)
    prop = propagate(model, params, SITE, order=4, mode="gaussian_closure")
    np.testing.assert_allclose(prop.output.tensors[0], out_mean, rtol=1e-4, atol=1e-8)
    np.testing.assert_allclose(prop.output.tensors[1], out_cov, rtol=1e-4, atol=1e-8)
    if activation == "tanh":
        t = taylor2(activation, w @ h)(h) @ a.T + c
        for n, ref in ((3, joint_cumulants(t, w, 3)[2]), (4, joint_cumulants(t, w, 4)[3])):
            np.testing.assert_allclose(prop.output.tensors[n - 1], ref, rtol=1e-9, atol=1e-10)
    err = np.concatenate([a, -np.eye(o)], 1)
    e_mean = err @ e1 + c
    want = np.diag(err @ cov @ err.T) + e_mean ** 2
    mse = predict_mse(model, params, SITE, mode="gaussian_closure")
    assert mse.label == "gaussian_closure"
    np.testing.assert_allclose(mse.per_site, want, rtol=1e-4)
