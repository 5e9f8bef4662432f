"""GNN propagation vs Monte Carlo for every GNN symmetry; approximate modes for tanh/relu."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rgsym import distributions
from rgsym.cumulants import (iid_lattice, k_statistics_with_se, marginals, monte_carlo,
                             propagate, propagate_chain, rules)
from rgsym.cumulants.predict import predict_mse
from rgsym.models import GNN_SYMMETRIES, Affine, Elementwise, activation_fn, build


@pytest.mark.parametrize("symmetry", GNN_SYMMETRIES)
@pytest.mark.parametrize("activation,dim", [("quadratic", 1), ("identity", 2)])
def test_gnn_layers_match_monte_carlo(symmetry, activation, dim):
    model = build(dict(kind="gnn", symmetry=symmetry, activation=activation, width=2, depth=1,
                       sites=4, b=2, dim=dim, alpha=0.3, dtype="float64"))
    shape = (4,) * dim
    params = model.init(jax.random.key(1), jnp.zeros(shape))
    fam = distributions.get("exponential")
    out = propagate(model, params, fam, order=4)
    assert out.labels[-1] == "exact"
    mc = monte_carlo(model, params, fam, jax.random.key(2), 2 ** (20 if dim == 1 else 18),
                     2 ** 16)
    assert len(mc.layers) == len(out.states)
    for layer, (analytic, ks) in enumerate(zip(out.marginals(4), mc.layers)):
        dev = np.abs(np.asarray(analytic) - np.asarray(ks.value)) / np.asarray(ks.se)
        assert np.all(dev < 5.0), (layer, dev)
    pred = predict_mse(model, params, fam)
    assert pred.label == "exact"
    assert abs(float(pred.mse) - float(mc.mse)) < 4 * float(mc.mse_se), (pred.mse, mc.mse)


# ---------------------------------------------------------------------------------------
# Approximate modes.  Pre-activations z = W x + b with small spread s: the quadratic
# expansion errs by O(s^3) relative in the mean and O(s^2) in the variance; the Gaussian
# closure is exact for mean and covariance when z is Gaussian (up to quadrature).

def _chain(activation, scale):
    rng = np.random.default_rng(0)
    w = scale * rng.normal(size=(3, 4)) / 2
    # relu: the kink more than rules.KINK_SPREADS spreads away (closer, the quadratic mode
    # refuses: tested in test_edges_cumulants.py)
    b = np.array([0.6, 0.4, 0.8]) + (1.0 if activation == "relu" else 0.0)
    return (Affine(jnp.asarray(w), jnp.asarray(b)), Elementwise(activation, 0.0))


def _mc_marginals(chain, fam, n=2 ** 20):
    x = fam.sample(jax.random.key(5), (n, 4), jnp.float64)
    y = activation_fn(chain[1].activation)(x @ chain[0].weight.T + chain[0].bias)
    return k_statistics_with_se(y, 0, 4)


@pytest.mark.parametrize("activation", ["tanh", "relu"])
@pytest.mark.parametrize("mode", ["quadratic", "gaussian_closure"])
def test_approximate_modes_within_stated_bound_for_small_spread(activation, mode):
    """Stated bound: relative error of kappa_1, kappa_2 below 2 s^2 (s = pre-activation sd)."""
    fam = distributions.get("uniform")
    for scale in (0.1, 0.2):
        chain = _chain(activation, scale)
        out = propagate_chain(chain, iid_lattice(fam, 4, 4), order=2, mode=mode)
        assert out.labels[-1] == mode
        ks = _mc_marginals(chain, fam)
        got = np.asarray(marginals(out.output, 2))
        s = np.sqrt(np.asarray(marginals(out.states[1], 2))[:, 1])
        rel = np.abs(got - ks.value[:, :2]) / np.abs(ks.value[:, :2])
        noise = 4 * ks.se[:, :2] / np.abs(ks.value[:, :2])
        print(f"{activation} {mode} s={s.max():.3f}: relative error {rel.max(0)}")
        # relu beyond 6 spreads from its kink (and, for uniform inputs, off it entirely) is
        # the identity there: both modes must then be exact up to the sampling noise
        bound = 1e-6 if activation == "relu" else 2 * s[:, None] ** 2
        assert np.all(rel < bound + noise), (scale, rel)


@pytest.mark.parametrize("activation", ["tanh", "softplus", "relu"])
def test_gaussian_closure_on_gaussian_preactivations(activation):
    """Exact up to quadrature: within 4 SE for smooth activations (Gauss-Hermite converges
    exponentially); relu's kink makes Gauss-Hermite converge as 1/nodes, so its stated
    bound is a relative error below 2e-2 at the default 48 nodes."""
    fam = distributions.get("gaussian")
    chain = (Affine(jnp.asarray(np.random.default_rng(1).normal(size=(3, 4))),
                    jnp.zeros(3)), Elementwise(activation, 0.0))
    out = propagate_chain(chain, iid_lattice(fam, 4, 8), order=2, mode="gaussian_closure")
    ks = _mc_marginals(chain, fam)
    got = np.asarray(marginals(out.output, 2))
    x = fam.sample(jax.random.key(5), (2 ** 20, 4), jnp.float64)
    cov = np.cov(np.asarray(activation_fn(activation)(x @ chain[0].weight.T)).T)
    rel = np.abs(got - ks.value[:, :2]) / np.abs(ks.value[:, :2])
    rel_cov = np.abs(np.asarray(out.output.tensors[1]) - cov).max() / np.abs(cov).max()
    print(f"gaussian_closure {activation}: relative error {rel.max(0)}, covariance {rel_cov:.2e}")
    if activation == "relu":
        assert np.all(rel < 2e-2) and rel_cov < 2e-2
    else:
        assert np.all(np.abs(got - ks.value[:, :2]) < 4 * ks.se[:, :2])
        assert rel_cov < 5e-3


def test_quadratic_mode_is_exact_on_a_quadratic_function():
    fam = distributions.get("exponential")
    st = rules.affine(iid_lattice(fam, 4, 8), np.eye(4)[:2], np.zeros(2))
    fn = lambda z: 0.5 + z - 0.3 * z ** 2  # noqa: E731
    approx = rules.quadratic_expansion(st, fn, 3)
    exact = rules.polynomial(st, rules.centre_coefficients(jnp.array([0.5, 1.0, -0.3]),
                                                           st.mean()), 3)
    for a, b in zip(approx.tensors, exact.tensors):
        assert np.allclose(a, b, rtol=1e-12, atol=1e-12)
