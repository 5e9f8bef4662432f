"""One-hidden-layer quadratic nets: analytic cumulants and exact MSE against Monte Carlo."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from rgsym import clt, distributions
from rgsym.cumulants import iid_lattice, monte_carlo, propagate, propagate_many
from rgsym.cumulants.predict import predict_mse

FAMILIES = ["gaussian", "uniform", "exponential", "rademacher"]
N_SAMPLES, BATCH, Z = 2 ** 20, 2 ** 16, 4.0


@functools.lru_cache(maxsize=None)
def _model(symmetry):
    from rgsym.models import build
    return build(dict(kind="mlp", symmetry=symmetry, activation="quadratic", width=4, depth=1,
                      sites=4, b=2, alpha=0.3, dtype="float64"))


def _trained(model, params, steps=30):
    """A few Adam steps of MSE against the block map on uniform inputs."""
    opt = optax.adam(3e-2)
    fam = distributions.get("uniform")

    def step(carry, key):
        p, s = carry
        x = fam.sample(key, (256, 4), jnp.float64)
        loss, g = jax.value_and_grad(lambda p: ((model.apply(p, x) - clt.block_map(x, 2)) ** 2
                                                ).mean())(p)
        u, s = opt.update(g, s, p)
        return (optax.apply_updates(p, u), s), loss

    (params, _), losses = jax.lax.scan(step, (params, opt.init(params)),
                                       jax.random.split(jax.random.key(7), steps))
    assert losses[-1] < losses[0]
    return params


@functools.lru_cache(maxsize=None)
def _propagator(symmetry):
    """One compiled propagation per architecture: params and input state are arguments."""
    model = _model(symmetry)
    return jax.jit(lambda params, state: propagate(model, params, state, order=4))


@pytest.mark.parametrize("symmetry", ["none", "tied_hidden"])
def test_quadratic_net_cumulants_and_mse_match_monte_carlo(symmetry):
    """Random and trained parameters in one test: they share the compiled samplers."""
    model = _model(symmetry)
    random = model.init(jax.random.key(3), jnp.zeros(4))
    cases = [(p, f) for p in (random, _trained(model, random)) for f in FAMILIES]
    for i, (params, name) in enumerate(cases):
        fam = distributions.get(name)
        state = iid_lattice(fam, 4, 8)  # exact kappa_1..kappa_8: what order 4 needs
        out = _propagator(symmetry)(params, state)
        assert out.labels[-1] == "exact"
        mc = monte_carlo(model, params, fam, jax.random.key(100 + i), N_SAMPLES, BATCH)
        for layer, (analytic, ks) in enumerate(zip(out.marginals(4), mc.layers)):
            dev = np.abs(np.asarray(analytic) - np.asarray(ks.value)) / np.asarray(ks.se)
            last = layer == len(mc.layers) - 1
            # hidden units of exponential inputs are heavy tailed (their SEs are noisy)
            assert np.all(dev < (Z if last else 5.0)), (name, layer, dev)
        pred = predict_mse(model, params, fam)
        assert pred.label == "exact"
        assert abs(float(pred.mse) - float(mc.mse)) < Z * float(mc.mse_se), (
            name, pred.mse, mc.mse, mc.mse_se)


def test_propagate_many_vmaps_over_seeds():
    model = _model("none")
    keys = jax.random.split(jax.random.key(0), 3)
    params = jax.vmap(lambda k: model.init(k, jnp.zeros(4)))(keys)
    fam = distributions.get("exponential")
    many = propagate_many(model, params, fam, order=2)
    for s in range(3):
        one = propagate(model, jax.tree_util.tree_map(lambda a: a[s], params), fam, order=2)
        for a, b in zip(jax.tree_util.tree_leaves(one.output),
                        jax.tree_util.tree_leaves(many.output)):
            assert np.allclose(a, b[s], rtol=1e-12, atol=1e-12)
    assert many.labels == one.labels


def test_tied_quadratic_net_breaks_the_fixed_point():
    """docs/science.md: a tied quadratic net gives a Gaussian input skewness; the exact map does not."""
    from rgsym.cumulants.predict import clt_recursion_check
    model = _model("tied_hidden")
    params = _trained(model, model.init(jax.random.key(3), jnp.zeros(4)))
    check = clt_recursion_check(model, params, distributions.get("gaussian"), order=3)
    assert check.label == "exact"
    assert float(check.distance[2]) > 1e-3  # kappa_3 of the output is not zero


def test_two_quadratic_rg_steps_exact_with_internal_order():
    """Iterated block_local quadratic net: exact with internal_order = 2 x order (else the
    closure, labelled), layer by layer against Monte Carlo of the iterated model.  The exact
    path carries the layers as polynomials of the sites, so every state after the first
    activation is recorded with orders 1..order (the dense path carried 4 inside)."""
    from rgsym.cumulants.predict import clt_recursion_check
    from rgsym.models import build
    model = build(dict(kind="mlp", symmetry="block_local", activation="quadratic", width=4,
                       sites=4, b=2, alpha=0.3, dtype="float64"))
    params = model.init(jax.random.key(0), jnp.zeros(4))
    fam, kw = distributions.get("exponential"), dict(steps=2, lattice_shape=(8,))
    closure = clt_recursion_check(model, params, fam, order=2, **kw)
    assert closure.label == "closure" and closure.predicted.shape == (2, 2)
    out = propagate(model, params, fam, order=2, internal_order=4, **kw)
    assert out.labels[-1] == "exact"
    assert [s.order for s in out.states] == [8, 8, 2, 2, 2, 2, 2]
    mc = monte_carlo(model, params, fam, jax.random.key(1), N_SAMPLES, BATCH, order=2, **kw)
    for analytic, ks in zip(out.marginals(2), mc.layers):
        assert np.all(np.abs(np.asarray(analytic) - ks.value) < Z * ks.se)
    pred = predict_mse(model, params, fam, internal_order=4, **kw)
    assert pred.label == "exact"
    assert abs(float(pred.mse) - float(mc.mse)) < Z * float(mc.mse_se)
