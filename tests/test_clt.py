"""The block map and the exact cumulant recursion, against sampled lattices."""
import zlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from rgsym import clt, data
from rgsym import distributions as D
from rgsym.cumulants import k_statistics_with_se


def _numpy_block_map(x, b, dim):
    if dim == 1:
        n = x.shape[-1]
        return np.stack([x[..., i * b:(i + 1) * b].sum(-1) for i in range(n // b)], -1) / np.sqrt(b)
    l1, l2 = x.shape[-2:]
    out = np.zeros(x.shape[:-2] + (l1 // b, l2 // b))
    for i in range(l1 // b):
        for j in range(l2 // b):
            out[..., i, j] = x[..., i * b:(i + 1) * b, j * b:(j + 1) * b].sum((-2, -1)) / b
    return out


@pytest.mark.parametrize("dim,shape,b", [(1, (3, 12), 2), (1, (2, 5, 9), 3), (2, (4, 6, 6), 2),
                                         (2, (2, 9, 6), 3), (1, (8,), 2)])
def test_block_map_matches_reference(dim, shape, b):
    x = np.random.default_rng(0).normal(size=shape)
    np.testing.assert_allclose(clt.block_map(x, b, dim), _numpy_block_map(x, b, dim), rtol=1e-12)


def test_block_map_jits_and_vmaps():
    x = jnp.arange(2 * 3 * 8, dtype=jnp.float32).reshape(2, 3, 8)
    f = jax.jit(jax.vmap(lambda v: clt.block_map(v, 2)))
    np.testing.assert_allclose(f(x), clt.block_map(x, 2), rtol=1e-6)
    assert f(x).dtype == jnp.float32


def test_flow_lists_every_level():
    x = jnp.ones((5, 27))
    levels = clt.flow(x, 3, 3)
    assert [v.shape for v in levels] == [(5, 27), (5, 9), (5, 3), (5, 1)]
    # a constant lattice of ones gives sqrt(B)^k per level
    np.testing.assert_allclose(levels[-1], 3 ** 1.5, rtol=1e-6)


# Sampled block maps follow kappa_n' = B^(1 - n/2) kappa_n: 1-D and 2-D, b = 2 and 3.
FLOW_CASES = [(1, 2, 3), (1, 3, 2), (2, 2, 2), (2, 3, 1)]


@pytest.mark.parametrize("family", ["exponential", "uniform", "rademacher", "laplace"])
@pytest.mark.parametrize("dim,b,steps", FLOW_CASES)
def test_sampled_flow_follows_recursion(family, dim, b, steps):
    dist = D.get(family)
    sites = b ** steps
    n_lattices = max(2_000_000 // sites ** dim, 1)
    x = dist.sample(jax.random.key(zlib.crc32(f"{family}-{dim}-{b}".encode())),
                    (n_lattices,) + (sites,) * dim,
                    jnp.float64)
    exact0 = dist.cumulants(4)
    for k, level in enumerate(clt.flow(x, b, steps, dim)):
        ks = k_statistics_with_se(level.reshape(-1))
        exact = np.asarray(clt.cumulant_recursion(exact0, b, k, dim))
        z = np.abs(np.asarray(ks.value) - exact) / np.asarray(ks.se)
        assert np.all(z < 5), (family, dim, b, k, np.asarray(ks.value), exact, z)


def test_exponential_blocks_are_gamma():
    b, rate = 4, 2.0
    y = clt.block_map(D.get("exponential", rate=rate).sample(jax.random.key(3), (50_000, b),
                                                             jnp.float64), b)
    sums = np.asarray(y).reshape(-1) * np.sqrt(b)
    assert stats.kstest(sums, stats.gamma(b, scale=1 / rate).cdf).pvalue > 1e-3
    # and a clearly different law is rejected by the same test: the check has power
    assert stats.kstest(sums, stats.gamma(b + 1, scale=1 / rate).cdf).pvalue < 1e-6


def test_gaussian_blocks_stay_gaussian_2d():
    y = clt.block_map(D.get("gaussian", loc=0.0, scale=1.5).sample(
        jax.random.key(4), (20_000, 6, 6), jnp.float64), 3, dim=2)
    assert stats.kstest(np.asarray(y).reshape(-1), stats.norm(0, 1.5).cdf).pvalue > 1e-3


def test_rademacher_blocks_are_scaled_binomials():
    b = 5
    y = clt.block_map(D.get("rademacher").sample(jax.random.key(5), (100_000, b), jnp.float64), b)
    sums = np.rint(np.asarray(y).reshape(-1) * np.sqrt(b)).astype(int)  # 2 * Binomial(b, 1/2) - b
    heads = (sums + b) // 2
    assert np.all((sums + b) % 2 == 0)
    observed = np.bincount(heads, minlength=b + 1)
    expected = stats.binom(b, 0.5).pmf(np.arange(b + 1)) * len(heads)
    assert stats.chisquare(observed, expected).pvalue > 1e-3


def test_recursion_closed_form_and_composition():
    k = np.array([0.5, 2.0, -1.0, 3.0, 0.25])
    one = np.asarray(clt.cumulant_recursion(k, 2, 1, dim=2))  # B = 4
    np.testing.assert_allclose(one, k * 4.0 ** (1 - np.arange(1, 6) / 2))
    np.testing.assert_allclose(clt.cumulant_recursion(one, 2, 2, dim=2),
                               clt.cumulant_recursion(k, 2, 3, dim=2), rtol=1e-12)
    np.testing.assert_allclose(clt.cumulant_recursion(k, 3, 0), k)


def test_recursion_jits_and_vmaps_over_cumulants_and_steps():
    ks = jnp.asarray(np.random.default_rng(1).normal(size=(7, 4)))
    steps = jnp.arange(7)
    out = jax.jit(jax.vmap(lambda k, s: clt.cumulant_recursion(k, 2, s)))(ks, steps)
    ref = np.stack([np.asarray(clt.cumulant_recursion(ks[i], 2, i)) for i in range(7)])
    np.testing.assert_allclose(out, ref, rtol=1e-12)


def test_eigenvalues_classification_and_fixed_point():
    np.testing.assert_allclose(clt.scaling_eigenvalues(4, 3, dim=2), [3.0, 1.0, 1 / 3, 1 / 9])
    assert clt.classify_orders(3) == ["relevant", "marginal", "irrelevant"]
    np.testing.assert_allclose(clt.gaussian_fixed_point(2.0, 4), [0, 2.0, 0, 0])
    # the recursion drives a centred family onto the fixed point
    k = D.get("exponential").standardised().cumulants(4)
    np.testing.assert_allclose(clt.cumulant_recursion(k, 2, 60), clt.gaussian_fixed_point(1.0, 4),
                               atol=1e-8)


@pytest.mark.parametrize("call,match", [
    (lambda: clt.block_map(np.ones((4, 8)), 1), r"b=1 .*integer >= 2"),
    (lambda: clt.block_map(np.ones((4, 8)), 2.5), r"b=2.5"),
    (lambda: clt.block_map(np.ones((4, 9)), 2), r"\(9,\).*multiple of b=2"),
    (lambda: clt.block_map(np.ones((4, 6, 5)), 2, dim=2), r"\(6, 5\).*multiple of b=2"),
    (lambda: clt.block_map(np.ones((4, 8)), 2, dim=3), r"dim=3 .*1 \(chain\) or 2"),
    (lambda: clt.block_map(np.ones(8), 2, dim=2), r"at least 2 trailing axes"),
    (lambda: clt.flow(np.ones((4, 8)), 2, -1), r"steps=-1"),
    (lambda: clt.flow(np.ones((4, 12)), 2, 3), r"b\*\*steps=8"),
    (lambda: clt.cumulant_recursion([1.0, 2.0], 2, steps=-2), r"steps=-2"),
    (lambda: clt.scaling_eigenvalues(0, 2), r"order=0"),
    (lambda: clt.gaussian_fixed_point(-1.0), r"variance=-1.0"),
])
def test_bad_input_is_refused_with_named_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_sample_pairs_targets_are_the_flow():
    dist = D.get("uniform")
    x, y = jax.jit(lambda k: data.sample_pairs(k, dist, 6, 9, 3, dim=2, steps=2))(jax.random.key(0))
    assert x.shape == (6, 9, 9) and y.shape == (6, 1, 1) and x.dtype == jnp.float32
    np.testing.assert_allclose(y, clt.flow(x, 3, 2, 2)[-1], rtol=1e-5, atol=1e-5)
    xs, _ = jax.vmap(lambda k: data.sample_pairs(k, dist, 2, 4, 2))(jax.random.split(jax.random.key(1), 3))
    assert xs.shape == (3, 2, 4)
    with pytest.raises(ValueError, match="batch=0"):
        data.sample_pairs(jax.random.key(0), dist, 0, 4, 2)
    with pytest.raises(ValueError, match="sites=0"):
        data.sample_pairs(jax.random.key(0), dist, 2, 0, 2)


def test_sample_pairs_stream_is_pinned_to_non_partitionable_threefry():
    # The training stream is the same whatever the global flag, and it is the cheaper
    # non-partitionable draw (the partitionable one gives other numbers).
    dist = D.get("gaussian")
    key = jax.random.key(3)
    draw = jax.jit(lambda k: data.sample_pairs(k, dist, 8, 4, 2)[0])
    with jax.threefry_partitionable(False):
        plain = np.asarray(dist.sample(key, (8, 4)))
        np.testing.assert_array_equal(np.asarray(draw(key)), plain)
    with jax.threefry_partitionable(True):
        np.testing.assert_array_equal(np.asarray(draw(key)), plain)
        assert not np.array_equal(np.asarray(dist.sample(key, (8, 4))), plain)
