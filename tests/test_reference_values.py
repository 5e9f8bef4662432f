"""Small value checks against independent references: activations against their closed
forms (scipy.special), training-pair targets against an explicit block-sum loop, the flow
check's k-statistics and z-scores against scipy, and the bootstrap interval of the median
against its asymptotic width."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special, stats

from rgsym import data, distributions, flow_check, metrics
from rgsym.models.activations import ACTIVATIONS, activation_fn, polynomial_coefficients
from tests.reference import block_sum

ALPHA = -0.35
CLOSED_FORMS = {
    "identity": lambda z: z,
    "quadratic": lambda z: z + ALPHA * z ** 2,
    "square": lambda z: z ** 2,
    "cubic": lambda z: z + ALPHA * z ** 3,
    "tanh": np.tanh,
    "relu": lambda z: np.maximum(z, 0.0),
    # jax.nn.gelu's default: the tanh approximation of Hendrycks & Gimpel (2016)
    "gelu": lambda z: 0.5 * z * (1 + np.tanh(math.sqrt(2 / math.pi) * (z + 0.044715 * z ** 3))),
    "silu": lambda z: z * special.expit(z),
    "sigmoid": special.expit,
    "softplus": lambda z: np.logaddexp(0.0, z),
}


def test_every_activation_equals_its_closed_form():
    assert set(CLOSED_FORMS) == set(ACTIVATIONS)
    z = np.linspace(-6.0, 6.0, 241)
    for name, ref in CLOSED_FORMS.items():
        got = np.asarray(activation_fn(name, ALPHA)(jnp.asarray(z)))
        np.testing.assert_allclose(got, ref(z), rtol=1e-13, atol=1e-14, err_msg=name)
        coeffs = polynomial_coefficients(name, ALPHA)
        if coeffs is not None:   # the coefficients the exact rule uses are the same function
            np.testing.assert_allclose(np.polynomial.polynomial.polyval(z, coeffs), ref(z),
                                       rtol=1e-13, atol=1e-14, err_msg=name)
    # the tanh-approximate gelu is within 5e-4 of the erf form (not another function)
    gelu_erf = 0.5 * z * (1 + special.erf(z / math.sqrt(2)))
    assert np.max(np.abs(CLOSED_FORMS["gelu"](z) - gelu_erf)) < 5e-4


@pytest.mark.parametrize("dim, b, sites, steps", [(1, 2, 8, 2), (2, 2, 4, 2), (1, 3, 9, 2),
                                                  (2, 3, 3, 1)])
def test_sample_pairs_targets_equal_an_explicit_block_sum(dim, b, sites, steps):
    dist = distributions.get("exponential", standardised=True)
    x, y = data.sample_pairs(jax.random.key(7), dist, 5, sites, b, dim, steps,
                             dtype=jnp.float64)
    assert x.shape == (5,) + (sites,) * dim
    want = np.asarray(x)
    for _ in range(steps):
        want = block_sum(want, b, dim)
    np.testing.assert_allclose(y, want, rtol=1e-13, atol=1e-14)


def test_flow_check_rows_equal_scipy_k_statistics_and_closed_form_flow():
    n, b, steps = 4000, 2, 2
    rows, levels = flow_check.flow_rows(distributions.get("exponential").standardised(),
                                        jax.random.key(3), b=b, steps=steps, n_final=n)
    x = levels[0].reshape(n, b ** steps)
    # standardised exponential: kappa_n = (n - 1)!, so kappa_n' = b^(k (1 - n/2)) (n - 1)!
    kappa = np.array([0.0, 1.0, 2.0, 6.0])
    level = x
    for k, row in enumerate(rows):
        if k:
            level = block_sum(level, b, 1)
        np.testing.assert_allclose(levels[k], level.ravel(), rtol=1e-13, atol=1e-14)
        sampled = [stats.kstat(levels[k], j) for j in range(1, 5)]
        np.testing.assert_allclose(row.sampled, sampled, rtol=1e-9, atol=1e-12)
        exact = kappa * float(b) ** (k * (1 - np.arange(1, 5) / 2))
        np.testing.assert_allclose(row.exact, exact, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(row.z, np.abs(np.array(sampled) - exact) / np.array(row.se),
                                   rtol=1e-9)
        # SEs against the asymptotic Var k1 = kappa_2 / m, Var k2 = (kappa_4 + 2 kappa_2^2) / m
        m = len(levels[k])
        np.testing.assert_allclose(row.se[:2], np.sqrt([exact[1] / m,
                                                        (exact[3] + 2 * exact[1] ** 2) / m]),
                                   rtol=0.25)


def test_bootstrap_interval_of_the_median_has_the_asymptotic_width():
    # median of m normal samples: SE = sqrt(pi / 2) sigma / sqrt(m)
    m = 801
    v = np.random.default_rng(0).normal(3.0, 2.0, m)
    a = metrics.aggregate(v, n_boot=2000)
    half = 1.959964 * math.sqrt(math.pi / 2) * 2.0 / math.sqrt(m)
    assert a["ci_lo"] < a["median"] < a["ci_hi"]
    np.testing.assert_allclose((a["ci_hi"] - a["ci_lo"]) / 2, half, rtol=0.25)
    np.testing.assert_allclose(a["median"], np.median(v), rtol=0)
    narrow = metrics.aggregate(v, n_boot=2000, level=0.5)
    np.testing.assert_allclose((narrow["ci_hi"] - narrow["ci_lo"]) / 2,
                               0.674490 * math.sqrt(math.pi / 2) * 2.0 / math.sqrt(m), rtol=0.3)
