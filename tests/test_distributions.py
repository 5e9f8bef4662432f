"""Exact cumulants of every base family against independent references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, stats

from rgsym import distributions as D
from rgsym.cumulants import k_statistics_with_se

# (family, params, scipy frozen distribution or None).  Student-t uses df=12 for Monte Carlo:
# the standard error of k_4 needs the 8th moment.
CASES = [
    ("gaussian", dict(loc=0.3, scale=1.7), stats.norm(0.3, 1.7)),
    ("uniform", dict(low=-1.0, high=2.5), stats.uniform(-1.0, 3.5)),
    ("exponential", dict(rate=2.0), stats.expon(scale=0.5)),
    ("gamma", dict(shape=3.5, rate=1.5), stats.gamma(3.5, scale=1 / 1.5)),
    ("laplace", dict(loc=-0.5, scale=0.8), stats.laplace(-0.5, 0.8)),
    ("rademacher", {}, None),
    ("bernoulli", dict(p=0.3), stats.bernoulli(0.3)),
    ("beta", dict(a=2.0, b=5.0), stats.beta(2.0, 5.0)),
    ("student_t", dict(df=12.0), stats.t(12.0)),
    ("gaussian_mixture", dict(weight=0.3, loc1=-1.0, scale1=0.5, loc2=2.0, scale2=1.0), None),
    ("poisson", dict(rate=3.0), stats.poisson(3.0)),
    ("lognormal", dict(sigma=0.4), stats.lognorm(0.4)),
]


def _scipy_cumulants(frozen, n):
    raw = [frozen.moment(j) for j in range(1, n + 1)]
    return np.array(D.moments_to_cumulants(raw), dtype=np.float64)


def test_registry_names_cover_the_issue():
    for name in ["gaussian", "uniform", "exponential", "gamma", "laplace", "rademacher",
                 "bernoulli", "beta", "student_t", "gaussian_mixture"]:
        assert name in D.names()


@pytest.mark.parametrize("name,params,frozen", [c for c in CASES if c[2] is not None],
                         ids=[c[0] for c in CASES if c[2] is not None])
def test_cumulants_match_scipy_moments(name, params, frozen):
    dist = D.get(name, **params)
    # scipy converts float moments in float: cancellation spoils lognormal beyond order 4.
    n = min(4 if name == "lognormal" else 6, dist.max_order)
    np.testing.assert_allclose(dist.cumulants(n), _scipy_cumulants(frozen, n),
                               rtol=1e-7, atol=1e-9)
    mean, var, skew, kurt = frozen.stats(moments="mvsk")
    k = dist.cumulants(4)
    np.testing.assert_allclose(k, [mean, var, skew * var ** 1.5, kurt * var ** 2],
                               rtol=1e-9, atol=1e-12)


def test_rademacher_cumulants_follow_log_cosh_series():
    # log cosh t = t^2/2 - t^4/12 + t^6/45 - 17 t^8/2520: kappa_n = n! * coefficient.
    expected = [0, 1, 0, -2, 0, 16, 0, -272]
    np.testing.assert_allclose(D.get("rademacher").cumulants(8), expected, atol=1e-12)


def test_lognormal_cumulants_match_high_precision_moments():
    from decimal import Decimal, localcontext
    from fractions import Fraction
    with localcontext() as ctx:
        ctx.prec = 60
        raw = [Fraction((Decimal(j * j) * Decimal("0.4") ** 2 / 2).exp()) for j in range(1, 9)]
    expected = [float(c) for c in D.moments_to_cumulants(raw)]
    np.testing.assert_allclose(D.get("lognormal", sigma=0.4).cumulants(8), expected, rtol=1e-9)


def test_mixture_cumulants_match_quadrature():
    params = dict(weight=0.3, loc1=-1.0, scale1=0.5, loc2=2.0, scale2=1.0)
    pdf = lambda x: (0.3 * stats.norm.pdf(x, -1.0, 0.5) + 0.7 * stats.norm.pdf(x, 2.0, 1.0))
    raw = [integrate.quad(lambda x: x ** j * pdf(x), -30, 30, epsabs=1e-13)[0] for j in range(1, 9)]
    np.testing.assert_allclose(D.get("gaussian_mixture", **params).cumulants(8),
                               D.moments_to_cumulants(raw), rtol=1e-7, atol=1e-8)


@pytest.mark.parametrize("name,params,frozen", CASES, ids=[c[0] for c in CASES])
def test_cumulants_match_sampled_k_statistics(name, params, frozen):
    dist = D.get(name, **params)
    x = dist.sample(jax.random.key(1234), (2_000_000,), jnp.float64)
    ks = k_statistics_with_se(x)
    exact = dist.cumulants(4)
    z = np.abs(np.asarray(ks.value) - exact) / np.asarray(ks.se)
    assert np.all(z < 5), (name, np.asarray(ks.value), exact, z)


@pytest.mark.parametrize("name", D.names())
def test_standardised_has_zero_mean_unit_variance(name):
    dist = D.get(name) if name != "student_t" else D.get(name, df=12.0)
    std = dist.standardised()
    np.testing.assert_allclose(std.cumulants(2), [0.0, 1.0], atol=1e-12)
    k = dist.cumulants(4)
    np.testing.assert_allclose(std.cumulants(4)[2:], k[2:] / k[1] ** np.array([1.5, 2.0]),
                               rtol=1e-12)
    x = std.sample(jax.random.key(7), (400_000,), jnp.float64)
    ks = k_statistics_with_se(x, order=2)
    assert np.all(np.abs(np.asarray(ks.value) - [0.0, 1.0]) < 5 * np.asarray(ks.se))


def test_get_standardised_flag_equals_method():
    a = D.get("exponential", rate=3.0, standardised=True)
    b = D.get("exponential", rate=3.0).standardised()
    np.testing.assert_allclose(a.cumulants(5), b.cumulants(5))


def test_moment_cumulant_conversion_round_trips():
    k = [0.3, 1.2, -0.4, 2.0, 0.7, -1.1]
    np.testing.assert_allclose(D.moments_to_cumulants(D.cumulants_to_moments(k)), k, rtol=1e-12)


def test_sampler_is_jit_and_vmap_able():
    dist = D.get("gamma", shape=2.0)
    keys = jax.random.split(jax.random.key(0), 5)
    out = jax.jit(jax.vmap(lambda k: dist.sample(k, (3, 4))))(keys)
    assert out.shape == (5, 3, 4) and out.dtype == jnp.float32
    assert not np.allclose(out[0], out[1])


def test_register_a_user_family(monkeypatch):
    def shifted_exponential(shift=1.0):
        base = D.get("exponential")
        return base.affine(1.0, shift)

    # A private copy of the registry: later tests (default evaluation families) must not
    # see the test family, and a rerun in the same process must not find it registered.
    monkeypatch.setattr(D, "_REGISTRY", dict(D._REGISTRY))
    D.register("shifted_exponential_test", shifted_exponential)
    dist = D.get("shifted_exponential_test", shift=2.0)
    np.testing.assert_allclose(dist.cumulants(3), [3.0, 1.0, 2.0])
    assert "shifted_exponential_test" in D.names()
    with pytest.raises(ValueError, match="already registered"):
        D.register("shifted_exponential_test", shifted_exponential)


def test_student_t_nonexistent_cumulant_raises():
    dist = D.get("student_t", df=3.0)
    np.testing.assert_allclose(dist.cumulants(2), [0.0, 3.0])
    with pytest.raises(D.CumulantDoesNotExist, match=r"kappa_3 .*valid orders are n <= 2"):
        dist.cumulants(3)
    with pytest.raises(D.CumulantDoesNotExist):
        D.get("student_t", df=1.0).cumulants(1)  # Cauchy: no mean
    assert "student_t" not in D.finite_order_names(5)  # default df=5
    assert "gaussian" in D.finite_order_names(4)


@pytest.mark.parametrize("name,params,match", [
    ("gaussian", dict(scale=0.0), "scale=0.0"),
    ("gaussian", dict(scale=-1.0), "scale=-1.0"),
    ("student_t", dict(df=0.0), "df=0.0"),
    ("student_t", dict(df=-2.0), "df=-2.0"),
    ("bernoulli", dict(p=1.5), r"p=1.5 .*\[0.0, 1.0\]"),
    ("bernoulli", dict(p=-0.1), "p=-0.1"),
    ("uniform", dict(low=1.0, high=0.0), "high=0.0"),
    ("gamma", dict(shape=float("nan")), "shape=nan"),
    ("exponential", dict(lam=1.0), "invalid parameters"),
])
def test_invalid_parameters_name_the_argument(name, params, match):
    with pytest.raises(ValueError, match=match):
        D.get(name, **params)


def test_unknown_family_lists_known_ones():
    with pytest.raises(ValueError, match=r"unknown family name='cauchyy'.*gaussian.*uniform"):
        D.get("cauchyy")


def test_bad_sample_shape_refused_before_sampling():
    with pytest.raises(ValueError, match=r"shape entry=-3 .*integer >= 0"):
        D.get("gaussian").sample(jax.random.key(0), (4, -3))


@pytest.mark.parametrize("bad", [0, -1, 2.5, "3", True])
def test_bad_order_refused(bad):
    with pytest.raises(ValueError, match="n="):
        D.get("gaussian").cumulants(bad)
