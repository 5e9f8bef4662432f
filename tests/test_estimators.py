"""k-statistics are unbiased and their standard errors are honest."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from rgsym.cumulants import (k_statistics, k_statistics_from_power_sums, k_statistics_with_se,
                             power_sums)


def test_k_statistics_match_scipy_kstat():
    x = np.random.default_rng(0).exponential(size=(3, 37))
    got = np.asarray(k_statistics(jnp.asarray(x), axis=1))
    ref = np.array([[stats.kstat(row, n) for n in range(1, 5)] for row in x])
    np.testing.assert_allclose(got, ref, rtol=1e-10)


def test_k_statistics_are_unbiased_on_tiny_samples():
    # averaged over many size-6 samples, k_n converges on the exact kappa_n (exponential: (n-1)!)
    x = jax.random.exponential(jax.random.key(0), (400_000, 6), jnp.float64)
    per_sample = k_statistics(x, axis=1)
    mean = np.asarray(per_sample.mean(0))
    se = np.asarray(per_sample.std(0)) / np.sqrt(per_sample.shape[0])
    assert np.all(np.abs(mean - [1, 1, 2, 6]) < 5 * se), (mean, se)


def test_standard_errors_match_replicate_spread():
    # 400 replicates pin the spread to ~4% (1 / sqrt(2 * 400)); 12% allows 3 of those.
    x = jax.random.exponential(jax.random.key(1), (400, 5000), jnp.float64)
    ks = k_statistics_with_se(x, axis=1)
    spread = np.asarray(ks.value.std(0))
    rms_se = np.sqrt(np.asarray((ks.se ** 2).mean(0)))
    np.testing.assert_allclose(rms_se, spread, rtol=0.12)


def test_float32_and_batch_axes():
    x = jax.random.normal(jax.random.key(2), (4, 10_000, 3), jnp.float32)
    ks = jax.jit(lambda v: k_statistics_with_se(v, axis=1))(x)
    assert ks.value.shape == (4, 3, 4) and ks.value.dtype == jnp.float32 and ks.n == 10_000
    assert np.all(np.abs(np.asarray(ks.value[..., 1]) - 1) < 5 * np.asarray(ks.se[..., 1]))


@pytest.mark.parametrize("order", [0, 5, 2.0])
def test_bad_order(order):
    with pytest.raises(ValueError, match="order="):
        k_statistics(jnp.ones(10), order=order)


def test_too_few_samples():
    with pytest.raises(ValueError, match="4 samples along axis=0"):
        k_statistics(jnp.ones(4), order=4)


def test_standard_errors_match_the_exact_gaussian_asymptotics():
    # For a standard Gaussian the influence function of kappa_k is the Hermite polynomial
    # He_k, so sqrt(n) * se -> sqrt(E[He_k^2]) = sqrt(k!).  Quadrature (exact for these
    # polynomials) gives the spread of the estimate: se^2 is a mean of n values He_k^2, so
    # se has relative standard error sqrt(Var He_k^2) / (2 sqrt(n) k!); allow 5 of those.
    # (A wrong influence coefficient, e.g. -2 m2 d for -3 m2 d in kappa_3, moves se by 8%.)
    n = 4_000_000
    x = jax.random.normal(jax.random.key(3), (n,), jnp.float64)
    shift = jnp.asarray(0.0)
    nodes, weights = np.polynomial.hermite_e.hermegauss(40)
    weights = weights / weights.sum()
    for ks in (k_statistics_with_se(x), k_statistics_from_power_sums(power_sums(x, shift))):
        for k in range(1, 5):
            he2 = np.polynomial.hermite_e.hermeval(nodes, [0] * k + [1]) ** 2
            rel_se = np.sqrt(weights @ he2 ** 2 - (weights @ he2) ** 2) / (2 * np.sqrt(n)
                                                                              * (weights @ he2))
            got = float(ks.se[k - 1]) * np.sqrt(n) / np.sqrt(math.factorial(k))
            assert abs(got - 1) < 5 * rel_se, (k, got, rel_se)
