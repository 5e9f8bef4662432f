"""Linear (identity-activation) networks: propagation against closed forms and the exact RG."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rgsym import distributions
from rgsym.cumulants import marginals, propagate, to_dense
from rgsym.cumulants.predict import clt_recursion_check, predict_mse
from rgsym.models import build, compose
from tests.reference import block_sum, mlp_weights
from tests.test_paths_2d_b3 import random_params

SYMMETRIES = ["none", "block_local", "block_permutation", "tied_hidden", "odd", "nonnegative",
              "symmetric_weights"]


def _model(symmetry, depth, activation="identity", sites=4, width=4, **kw):
    cfg = dict(kind="mlp", symmetry=symmetry, activation=activation, width=width,
               depth=depth, sites=sites, b=2, dtype="float64", **kw)
    model = build(cfg)
    return model, random_params(model, key=depth, scale=0.3)   # biases off zero too


def _closed_form(model, params):
    """The identity net as one affine map x -> A x + c, written from the raw parameter
    arrays (N = 4, b = 2, so sites 2 I, 2 I + 1 form block I)."""
    sym, width = model.spec.symmetry, model.spec.width
    a, c = np.eye(4 if sym != "block_local" else 2), np.zeros(4 if sym != "block_local" else 2)
    for w, bias in mlp_weights(params, sym, width, block_of=[0, 0, 1, 1]):
        a, c = w @ a, w @ c + bias
    if sym == "odd":         # (h(x) - h(-x)) / 2 of an affine h = A x + c is A x
        c = np.zeros_like(c)
    if sym == "block_local":  # the block network [1, 2] on each block, by a loop
        full, c = np.zeros((2, 4)), np.full(2, c[0])
        for block in range(2):
            full[block, 2 * block:2 * block + 2] = a[0]
        a = full
    return a, c


# The block map as a matrix: the explicit block-sum loop applied to the unit vectors.
RG_MATRIX = block_sum(np.eye(4), 2, 1).T


@pytest.mark.parametrize("symmetry,depth", [(s, d) for s in SYMMETRIES for d in (1, 2)
                                            if not (s == "symmetric_weights" and d < 2)]
                         + [("none", 3), ("symmetric_weights", 3), ("tied_hidden", 3)])
def test_linear_nets_match_closed_form(symmetry, depth):
    model, params = _model(symmetry, depth)
    fam = distributions.get("gamma")
    out = propagate(model, params, fam, order=4)
    a, c = _closed_form(model, params)
    k = fam.cumulants(4)
    g = to_dense(out.output).tensors
    assert np.allclose(g[0], a.sum(1) * k[0] + c, rtol=0, atol=1e-10)
    assert np.allclose(g[1], k[1] * a @ a.T, rtol=0, atol=1e-10)
    assert np.allclose(g[2], k[2] * np.einsum("as,bs,cs->abc", a, a, a), rtol=0, atol=1e-10)
    assert np.allclose(g[3], k[3] * np.einsum("as,bs,cs,ds->abcd", a, a, a, a), atol=1e-10)
    assert out.labels == ("input",) + ("exact",) * (len(out.states) - 1)
    # the exact MSE of a linear map: tr((A - R) Sigma (A - R)^T) + |mean error|^2
    e = a - RG_MATRIX
    want = (k[1] * (e ** 2).sum(1) + (e.sum(1) * k[0] + c) ** 2).mean()
    assert abs(float(predict_mse(model, params, fam).mse) - want) < 1e-10


def _exact_rg_params(symmetry, params):
    """Identity-MLP parameters that make the net the block map (width 4, N = 4, b = 2)."""
    p = jax.tree_util.tree_map(jnp.zeros_like, params)["params"]
    s = 2 ** -0.5
    if symmetry == "none":
        p["layer_0"]["kernel"] = jnp.array([[s, s, 0, 0], [0, 0, s, s], [0] * 4, [0] * 4])
        p["layer_1"]["kernel"] = jnp.eye(2, 4)
    else:  # block_local: one shared block network of 2 inputs
        p["layer_0"]["kernel"] = jnp.array([[s, s], [0, 0], [0, 0], [0, 0]])
        p["layer_1"]["kernel"] = jnp.eye(1, 4)
    return {"params": p}


@pytest.mark.parametrize("symmetry", ["none", "block_local"])
def test_exact_rg_weights_reproduce_the_recursion(symmetry):
    model, params = _model(symmetry, 1)
    params = _exact_rg_params(symmetry, params)
    x = jax.random.normal(jax.random.key(0), (3, 4), jnp.float64)
    assert np.allclose(model.apply(params, x), block_sum(x, 2, 1), atol=1e-14)
    prop = jax.jit(lambda st: propagate(model, params, st, order=8).output)
    for name in distributions.finite_order_names(4):
        fam = distributions.get(name)
        order = int(min(fam.max_order, 8))
        state = propagate(model, params, fam, order=order).states[0]
        got = marginals(prop(state) if order == 8 else
                        propagate(model, params, state, order=order).output, order)
        # one RG step with B = 2: kappa_n -> 2^(1 - n/2) kappa_n
        want = np.asarray(fam.cumulants(order)) * 2.0 ** (1 - np.arange(1, order + 1) / 2)
        assert np.allclose(got, np.broadcast_to(want, got.shape), rtol=1e-12, atol=1e-12), name
        assert float(predict_mse(model, params, fam).mse) < 1e-24
    if symmetry == "block_local":  # iterable: k steps on a larger lattice
        fam = distributions.get("exponential")
        for steps in (1, 2, 3):
            check = clt_recursion_check(model, params, fam, order=6, steps=steps,
                                        lattice_shape=(16,))
            assert check.predicted.shape == (16 // 2 ** steps, 6)
            assert np.all(check.distance < 1e-12), (steps, check.distance)
            # Exp(1): kappa_n = (n - 1)!, scaled by B^(1 - n/2) per step (B = 2), written out
            # here so that the target is not checked against the formula that computed it
            want = [math.factorial(n - 1) * 2.0 ** (steps * (1 - n / 2)) for n in range(1, 7)]
            assert np.allclose(check.target, want, rtol=1e-12, atol=0)
            assert np.allclose(check.predicted, np.broadcast_to(want, check.predicted.shape),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("symmetry,depth", [("none", 3), ("tied_hidden", 2), ("block_local", 1)])
def test_gaussian_input_stays_gaussian_through_identity_nets(symmetry, depth):
    model, params = _model(symmetry, depth)
    out = propagate(model, params, distributions.get("gaussian", loc=0.3, scale=2.0), order=4)
    for state in out.states:
        dense = to_dense(state).tensors
        assert np.all(np.asarray(dense[2]) == 0.0) and np.all(np.asarray(dense[3]) == 0.0)
    chain = model.layers(params, (4,))
    x = jnp.array([[0.3, -1.0, 2.0, 0.5]])
    a, c = _closed_form(model, params)
    assert np.allclose(model.apply(params, x), x @ a.T + c, atol=1e-12)
    assert np.allclose(compose(chain, x), x @ a.T + c, atol=1e-12)
