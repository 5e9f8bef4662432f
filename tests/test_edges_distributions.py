"""Every family across its whole accepted domain (property tests): exact cumulants against an
independent high-precision reference, sampled k-statistics against the exact cumulants in
float32 and float64, or a refusal that names the parameter or the dtype.

The references share no code with rgsym: moments in mpmath at a working precision that
covers the cancellation, turned into cumulants by the power-series logarithm of the moment
generating function (not the Bell-polynomial recursion rgsym uses), and the variances of
the k-statistics from Fisher's formulas in the exact cumulants (so a rare-event law whose
sample shows no event is judged by its true spread, not the sample's).
"""
import math

import jax
import jax.numpy as jnp
import mpmath
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from rgsym import distributions as D
from rgsym.cumulants import k_statistics

# Derandomised (the same examples on every run), no example database, bounded counts.
PROPERTY = settings(derandomize=True, database=None, deadline=None,
                    suppress_health_check=list(HealthCheck))

# The whole float64 range (hypothesis favours its ends), mixed with log-uniform values of
# ordinary size so that most examples also exercise the accepted domain.
ORDINARY = st.floats(min_value=-8.0, max_value=8.0).map(lambda e: 10.0 ** e)
POSITIVE = st.one_of(st.floats(min_value=1e-300, max_value=1e300), ORDINARY)
REAL = st.one_of(st.floats(min_value=-1e300, max_value=1e300), ORDINARY,
                 ORDINARY.map(lambda v: -v))
UNIT = st.one_of(st.floats(min_value=0.0, max_value=1.0),
                 st.floats(min_value=-12.0, max_value=0.0).map(lambda e: 10.0 ** e),
                 st.floats(min_value=-12.0, max_value=0.0).map(lambda e: 1.0 - 10.0 ** e))

# family -> hypothesis strategy for its parameters (the whole domain get() accepts)
DOMAINS = {
    "gaussian": st.fixed_dictionaries(dict(loc=REAL, scale=POSITIVE)),
    "uniform": st.tuples(REAL, REAL).filter(lambda t: t[0] < t[1]).map(
        lambda t: dict(low=t[0], high=t[1])),
    "exponential": st.fixed_dictionaries(dict(rate=POSITIVE)),
    "gamma": st.fixed_dictionaries(dict(shape=POSITIVE, rate=POSITIVE)),
    "laplace": st.fixed_dictionaries(dict(loc=REAL, scale=POSITIVE)),
    "rademacher": st.just({}),
    "bernoulli": st.fixed_dictionaries(dict(p=UNIT)),
    "beta": st.fixed_dictionaries(dict(a=POSITIVE, b=POSITIVE)),
    "student_t": st.fixed_dictionaries(dict(df=POSITIVE)),
    "gaussian_mixture": st.fixed_dictionaries(dict(weight=UNIT, loc1=REAL, scale1=POSITIVE,
                                                   loc2=REAL, scale2=POSITIVE)),
    "poisson": st.fixed_dictionaries(dict(rate=POSITIVE)),
    "lognormal": st.fixed_dictionaries(dict(sigma=POSITIVE)),
}


def test_every_registered_family_has_a_domain():
    assert sorted(DOMAINS) == D.names()


# ----------------------------------------------------------------------------------------
# Independent references.

def _gaussian_moments(loc, scale, n):
    """E[(loc + scale Z)^j], j = 1..n, in mpmath."""
    return [mpmath.fsum(mpmath.binomial(j, k) * loc ** (j - k) * scale ** k
                        * (mpmath.fac2(k - 1) if k else 1) for k in range(0, j + 1, 2))
            for j in range(1, n + 1)]


def _reference_moments(name, p, n):
    """Raw moments 1..n of the family (mpmath, current precision); None where they diverge."""
    mp = {k: mpmath.mpf(v) for k, v in p.items()}
    if name == "gaussian":
        return _gaussian_moments(mp["loc"], mp["scale"], n)
    if name == "uniform":
        lo, hi = mp["low"], mp["high"]
        return [(hi ** (j + 1) - lo ** (j + 1)) / ((j + 1) * (hi - lo)) for j in range(1, n + 1)]
    if name == "exponential":
        return [mpmath.factorial(j) / mp["rate"] ** j for j in range(1, n + 1)]
    if name == "gamma":
        return [mpmath.rf(mp["shape"], j) / mp["rate"] ** j for j in range(1, n + 1)]
    if name == "laplace":
        central = [0 if j % 2 else mpmath.factorial(j) * mp["scale"] ** j for j in range(n + 1)]
        return [mpmath.fsum(mpmath.binomial(j, k) * mp["loc"] ** (j - k) * central[k]
                            for k in range(j + 1)) for j in range(1, n + 1)]
    if name == "rademacher":
        return [mpmath.mpf(1 - j % 2) for j in range(1, n + 1)]
    if name == "bernoulli":
        return [mp["p"]] * n
    if name == "beta":
        a, b = mp["a"], mp["b"]
        return [mpmath.rf(a, j) / mpmath.rf(a + b, j) for j in range(1, n + 1)]
    if name == "student_t":
        df = mp["df"]
        return [0 if j % 2 else df ** (j / 2) * mpmath.gamma((j + 1) / mpmath.mpf(2))
                * mpmath.gamma((df - j) / 2) / (mpmath.sqrt(mpmath.pi) * mpmath.gamma(df / 2))
                for j in range(1, n + 1)]
    if name == "gaussian_mixture":
        w = mp["weight"]
        m1 = _gaussian_moments(mp["loc1"], mp["scale1"], n)
        m2 = _gaussian_moments(mp["loc2"], mp["scale2"], n)
        return [w * a + (1 - w) * b for a, b in zip(m1, m2)]
    if name == "poisson":  # Touchard: sum_k S(j, k) rate^k
        return [mpmath.fsum(_stirling2(j, k) * mp["rate"] ** k for k in range(1, j + 1))
                for j in range(1, n + 1)]
    if name == "lognormal":
        return [mpmath.exp(j * j * mp["sigma"] ** 2 / 2) for j in range(1, n + 1)]
    raise KeyError(name)


def _stirling2(n, k):
    return sum((-1) ** i * math.comb(k, i) * (k - i) ** n for i in range(k + 1)) // math.factorial(k)


def _cumulants_from_moments(m):
    """Cumulants from raw moments through log M(t) as a power series: with
    a_j = m_j / j! and b = log a, b_j = a_j - (1/j) sum_{k<j} k b_k a_{j-k}; kappa_j = j! b_j."""
    n = len(m)
    a = [mpmath.mpf(1)] + [m[j - 1] / mpmath.factorial(j) for j in range(1, n + 1)]
    b = [mpmath.mpf(0)] * (n + 1)
    for j in range(1, n + 1):
        b[j] = a[j] - mpmath.fsum(k * b[k] * a[j - k] for k in range(1, j)) / j
    return [mpmath.factorial(j) * b[j] for j in range(1, n + 1)]


def reference_cumulants(name, params, n):
    """kappa_1..kappa_n to >= 40 significant digits of spread^n: the working precision
    doubles until two precisions agree (the moment-to-cumulant conversion cancels about
    n log10(|mean| / spread) digits, and huge parameters cost more)."""
    def at(dps):
        with mpmath.workdps(dps):
            return _cumulants_from_moments(_reference_moments(name, params, n))

    # parameters as large as 1e300 need their own digits before anything cancels
    dps = 60 + 2 * int(max([0.0] + [math.log10(abs(v)) for v in params.values() if v]))
    while True:
        lo, hi = at(dps), at(2 * dps)
        with mpmath.workdps(2 * dps):
            spread = mpmath.sqrt(abs(hi[1])) if n > 1 else 1
            scale = [abs(hi[0]) + spread] + [spread ** j for j in range(2, n + 1)]
            if all(abs(a - b) <= mpmath.mpf(10) ** -45 * s for a, b, s in zip(lo, hi, scale)):
                return [float(k) for k in hi]
        dps *= 2
        assert dps < 20000, (name, params)


def kstat_variances(k, n):
    """Exact variances of the k-statistics k_1..k_4 of n samples from cumulants k[0..7]
    (Fisher 1930; Kendall & Stuart, Advanced Theory of Statistics, Vol. 1, Sec. 12.15)."""
    k1, k2, k3, k4, k5, k6, k7, k8 = k
    return np.array([
        k2 / n,
        k4 / n + 2 * k2 ** 2 / (n - 1),
        k6 / n + 9 * (k2 * k4 + k3 ** 2) / (n - 1) + 6 * n * k2 ** 3 / ((n - 1) * (n - 2)),
        k8 / n + (16 * k2 * k6 + 48 * k3 * k5 + 34 * k4 ** 2) / (n - 1)
        + (72 * k2 ** 2 * k4 + 144 * k2 * k3 ** 2) * n / ((n - 1) * (n - 2))
        + 24 * n * (n + 1) * k2 ** 4 / ((n - 1) * (n - 2) * (n - 3))])


def _get_or_refusal(name, params):
    """The family, or None after checking the refusal names one of the parameters."""
    try:
        return D.get(name, **params)
    except ValueError as e:
        assert any(f"{k}=" in str(e) for k in params), (name, params, str(e))
        return None


# ----------------------------------------------------------------------------------------
# Properties.

@pytest.mark.parametrize("name", sorted(DOMAINS))
def test_exact_cumulants_match_high_precision_reference_across_the_domain(name):
    @settings(PROPERTY, max_examples=25)
    @given(DOMAINS[name])
    def check(params):
        dist = _get_or_refusal(name, params)
        if dist is None or dist.max_order < 1:
            return
        n = int(min(dist.max_order, D.RANGE_ORDER))
        try:
            got = dist.cumulants(n)
        except ValueError as e:  # an order that leaves float64 is refused by name
            assert "kappa_" in str(e) and any(f"{k}=" in str(e) for k in params), str(e)
            return
        ref = np.array(reference_cumulants(name, params, n))
        # A few ulps (rgsym rounds exact values once, or sums non-negative terms).  The
        # reference keeps >= 60 digits of spread^n (orders >= 2 are shift invariant), so
        # 1e-40 spread^n bounds its own error where the cumulant vanishes.
        spread = math.sqrt(ref[1]) if n > 1 else 1.0
        floor = 1e-40 * spread ** np.arange(1, n + 1)
        floor[0] = 1e-40 * (abs(ref[0]) + spread)
        bad = np.abs(got - ref) > 1e-11 * np.abs(ref) + floor
        assert not bad.any(), (params, got, ref)
    check()


N_SAMPLES = 1 << 15


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", sorted(DOMAINS))
def test_sampled_k_statistics_match_exact_cumulants_across_the_domain(name, dtype):
    """Within 5 exact standard errors per order, or a refusal naming a parameter/dtype."""
    @settings(PROPERTY, max_examples=100)
    @given(DOMAINS[name], st.integers(0, 2 ** 31 - 1))
    def check(params, seed):
        dist = _get_or_refusal(name, params)
        if dist is None or dist.max_order < 2:
            return
        try:
            x = dist.sample(jax.random.key(seed), (N_SAMPLES,), jnp.dtype(dtype))
        except ValueError as e:
            assert any(f"{k}=" in str(e) for k in params) or "dtype" in str(e), str(e)
            return
        assert x.dtype == jnp.dtype(dtype)
        assert bool(jnp.all(jnp.isfinite(x))), params
        if dist.degenerate:
            assert bool(jnp.all(x == dist.mean)), params
            return
        # order m needs kappa_2m for its standard error
        order = int(min(4, dist.max_order // 2))
        exact = dist.cumulants(2 * order)
        with np.errstate(over="ignore", invalid="ignore"):  # kappa_2^4 beyond float64: untestable
            se = np.sqrt(kstat_variances(np.pad(exact, (0, 8 - 2 * order)), N_SAMPLES)[:order])
        order = int(np.argmin(np.append(np.isfinite(se), False)))  # orders with a finite SE
        se, exact = se[:order], exact[:2 * order]
        got = np.asarray(k_statistics(x.astype(jnp.float64), order=order))
        # Fisher's variances are exact.  Where the standardised cumulants are small against
        # n the k-statistics are close to normal: 5 SE, plus (5 SE of the mean)^2-sized
        # terms r * 25 spread^r / n for statistics whose first-order variance nearly
        # vanishes (k_2 of +-1 spins is (1 - mean^2) n / (n - 1)).  Elsewhere (rare events:
        # Bernoulli p = 1e-5, Beta(1, 1e-7), a heavy lognormal) one event moves them by
        # tens of SE, so Chebyshev's bound is used: 100 SE, exceeded with probability <= 1e-4.
        r = np.arange(1, order + 1)
        spread = math.sqrt(exact[1])
        even = np.arange(4, 2 * order + 1, 2)
        near_normal = np.all(np.abs(exact[even - 1]) / spread ** even < N_SAMPLES / 100)
        tol = (5 * se + r * 25 * spread ** r / N_SAMPLES) if near_normal else 100 * se
        assert np.all(np.abs(got - exact[:order]) < tol), (params, dtype, got, exact, se)
    check()


# ----------------------------------------------------------------------------------------
# The failing inputs of the edge-case report, one test each.

def test_zero_variance_law_is_refused_by_standardised_naming_p():
    for p in (0.0, 1.0):
        assert D.get("bernoulli", p=p).cumulants(3).tolist() == [p, 0.0, 0.0]
        with pytest.raises(ValueError, match=rf"p={p:g}.*variance 0"):
            D.get("bernoulli", p=p, standardised=True)


def test_poisson_rate_beyond_its_sampler_is_refused_naming_the_largest_rate():
    dist = D.get("poisson", rate=3e9)
    assert dist.cumulants(2).tolist() == [3e9, 3e9]  # exact cumulants still available
    for dtype in (jnp.float32, jnp.float64):
        with pytest.raises(ValueError, match=rf"rate=3e\+09.*largest rate .* {D.POISSON_MAX_SAMPLED_RATE:g}"):
            dist.sample(jax.random.key(0), (4096,), dtype)
        with pytest.raises(ValueError, match=r"rate=3e\+09"):
            D.get("poisson", rate=3e9, standardised=True).sample(jax.random.key(0), (8,), dtype)


def test_jax_poisson_sampler_is_faithful_at_the_largest_rate_allowed():
    rate = D.POISSON_MAX_SAMPLED_RATE
    x = D.get("poisson", rate=rate).sample(jax.random.key(7), (1 << 20,), jnp.float64)
    z = (np.asarray(k_statistics(x, order=4)) - rate) / np.sqrt(kstat_variances([rate] * 8, 1 << 20))
    assert np.all(np.abs(z) < 5), z


def test_lognormal_cumulants_keep_their_digits_at_small_sigma():
    k = D.get("lognormal", sigma=0.01).cumulants(8)
    np.testing.assert_allclose(k[3], 1.60071016603e-11, rtol=1e-11)
    np.testing.assert_allclose(k[7], 2.62484499165e-23, rtol=1e-11)
    for sigma in (1e-3, 1e-8, 1e-15):  # kappa_n -> n^(n-2) sigma^(2n-2)
        k = D.get("lognormal", sigma=sigma).cumulants(8)
        lead = np.array([n ** (n - 2) * sigma ** (2 * n - 2) for n in range(1, 9)], float)
        lead[0] = 1.0
        np.testing.assert_allclose(k, lead, rtol=40 * sigma ** 2 + 1e-14)
    with pytest.raises(ValueError, match="sigma=1e-30 .*underflow"):  # kappa_8 ~ 1e-415
        D.get("lognormal", sigma=1e-30)


def test_float64_samples_without_x64_are_refused_naming_dtype():
    with jax.enable_x64(False):
        with pytest.raises(ValueError, match=r"dtype=float64.*jax_enable_x64"):
            D.get("gaussian").sample(jax.random.key(0), (3,), jnp.float64)
        assert D.get("gaussian").sample(jax.random.key(0), (3,)).dtype == jnp.float32
    with pytest.raises(ValueError, match=r"dtype=.*int32.* floating"):
        D.get("gaussian").sample(jax.random.key(0), (3,), jnp.int32)


def test_bernoulli_probabilities_below_float32_resolution_are_sampled_exactly():
    # 2^-23 was the resolution of jax.random.bernoulli without x64: p = 1e-9 came out at
    # 1.19e-7.  With 2^24 draws that is ~2 events expected against 0.017.
    with jax.enable_x64(False):
        x = D.get("bernoulli", p=1e-9).sample(jax.random.key(3), (1 << 24,))
    assert int(x.sum()) <= 1
    for p in (0.3, 1 - 3e-5, 3e-5):  # both tails, and the flip for p > 1/2
        x = D.get("bernoulli", p=p).sample(jax.random.key(4), (1 << 20,), jnp.float64)
        assert abs(float(x.mean()) - p) < 5 * math.sqrt(p * (1 - p) / (1 << 20)), p


def test_samples_rounded_by_the_dtype_are_refused():
    # N(1e8, 1) in float32 is rounded to multiples of 8: its variance would be wrong.
    with pytest.raises(ValueError, match=r"loc=1e\+08.*float32.*spread"):
        D.get("gaussian", loc=1e8).sample(jax.random.key(0), (4,), jnp.float32)
    assert D.get("gaussian", loc=1e8).sample(jax.random.key(0), (4,), jnp.float64).std() > 0
    # ... and so is a standardised law whose base samples are rounded before rescaling.
    with pytest.raises(ValueError, match=r"loc=1e\+08"):
        D.get("gaussian", loc=1e8, standardised=True).sample(jax.random.key(0), (4,), jnp.float32)
    with pytest.raises(ValueError, match=r"scale=1e\+36.*float32.*exceeds"):  # overflow
        D.get("laplace", scale=1e36).sample(jax.random.key(0), (4,), jnp.float32)
    with pytest.raises(ValueError, match=r"scale=1e\+37.*float32.*parameters must lie"):
        D.get("gaussian", scale=1e37).sample(jax.random.key(0), (4,), jnp.float32)


def test_spreads_whose_cumulants_leave_float64_are_refused_naming_the_parameter():
    for name, params in [("gaussian", dict(scale=1e-200)), ("exponential", dict(rate=1e-200)),
                         ("laplace", dict(scale=1e100)), ("bernoulli", dict(p=1e-300)),
                         ("uniform", dict(low=-1e300, high=1e300)), ("lognormal", dict(sigma=5.0))]:
        key = next(iter(params))
        with pytest.raises(ValueError, match=rf"{key}="):
            D.get(name, **params)


def test_re_registered_family_is_never_served_from_a_cache():
    from rgsym import cumulants, models
    net = models.build(dict(kind="mlp", symmetry="none", activation="identity", width=2,
                            depth=1, b=2, dim=1, sites=2))
    params = net.init(jax.random.key(1), jnp.zeros((1, 2)))

    def factory(loc):
        return lambda: D.Distribution(
            "shifted", (), lambda k, s, dt: loc + jax.random.normal(k, s, dt),
            lambda n: np.array([loc, 1.0] + [0.0] * (n - 2))[:n])

    means = []
    try:
        for loc in (0.0, 7.0):
            D.register("shifted", factory(loc), overwrite=True)
            mc = cumulants.monte_carlo(net, params, D.get("shifted"), jax.random.key(2), 4096,
                                       4096)
            means.append(float(mc.layers[0].value[0, 0]))
    finally:
        D._REGISTRY.pop("shifted", None)
    assert abs(means[0]) < 0.1 and abs(means[1] - 7.0) < 0.1, means


# ---- found by review ------------------------------------------------------------------

def test_standardised_laws_are_centred_before_they_are_scaled():
    for name, params in [("uniform", dict(low=1e15, high=1e15 + 3)), ("gamma", dict(shape=1e30)),
                         ("poisson", dict(rate=1e29)), ("gaussian", dict(loc=-3e14, scale=0.7))]:
        k = D.get(name, standardised=True, **params).cumulants(2)
        assert k[0] == 0.0 and abs(k[1] - 1) < 1e-12, (name, k)


def test_a_replaced_sampler_makes_a_different_law():
    import dataclasses
    g = D.get("gaussian")
    g2 = dataclasses.replace(g, sampler=lambda k, s, dt: 7 + jax.random.normal(k, s, dt))
    assert g2 != g and g == D.get("gaussian")
    assert D.get("uniform", standardised=True) == D.get("uniform", standardised=True)
    assert D.get("uniform").affine(2.0) != D.get("uniform").affine(3.0)


def test_half_precision_sampling_is_refused():
    for dtype in (jnp.float16, jnp.bfloat16):
        with pytest.raises(ValueError, match="half precision"):
            D.get("gaussian").sample(jax.random.key(0), (8,), dtype)


def test_sampler_limits_of_beta_and_student_t_are_refused_by_name():
    with pytest.raises(ValueError, match=r"beta: a=1e\+08.*float32"):
        D.get("beta", a=1e8, b=1e8).sample(jax.random.key(0), (8,), jnp.float32)
    assert D.get("beta", a=1e8, b=1e8).sample(jax.random.key(0), (8,), jnp.float64).shape == (8,)
    with pytest.raises(ValueError, match=r"df=0.1 .*float32"):
        D.get("student_t", df=0.1).sample(jax.random.key(0), (8,), jnp.float32)
    x = D.get("student_t", df=0.1).sample(jax.random.key(0), (1 << 16,), jnp.float64)
    assert bool(jnp.all(jnp.isfinite(x)))


def test_gamma_cumulants_whose_intermediates_overflow_are_exact():
    k = D.get("gamma", shape=1e100, rate=1e50).cumulants(8)
    np.testing.assert_allclose(k, [1e100 * math.factorial(j - 1) / 1e50 ** j for j in range(1, 6)]
                               + [math.factorial(j - 1) * 10.0 ** (100 - 50 * j) for j in range(6, 9)],
                               rtol=1e-14)


def test_moments_that_overflow_are_refused():
    with pytest.raises(ValueError, match="raw moment of order 2 overflows"):
        D.get("gaussian", loc=1e300).moments(4)
