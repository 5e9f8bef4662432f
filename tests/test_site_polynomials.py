"""Exact propagation of polynomial nets as polynomials of the input sites (``sites.py``,
``partitions.wick_groups``): partitions against brute force, cumulants against exhaustive
enumeration of discrete lattices (``tests/reference.py``), the dense rules and Monte Carlo,
refusals and the unchanged default.

Costly programs: the order-4 propagations at total degree 4 (the enumeration and the Monte
Carlo checks of one width-8 MLP shape, sharing their compiled programs); everything else
runs at order <= 3.
"""
import functools
import importlib
import itertools
import math
from collections import Counter

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from reference import (enumerate_lattice, joint_cumulants, marginal_cumulants, set_partitions,
                       site_cumulants)
from rgsym import distributions
from rgsym.cumulants import (CumulantCostError, CumulantMemoryError, DenseCumulants,
                             MarginalCumulants, independent_sites, iid_lattice, marginals,
                             monte_carlo, propagate, propagate_chain, propagate_many, rules,
                             sites, to_dense)
from rgsym.cumulants.partitions import (WICK_MAX_LEGS, _wick_partitions, check_wick_legs,
                                        wick_groups)
from rgsym.cumulants.predict import predict_mse
from rgsym.cumulants.propagate import site_degree
from rgsym.models import build
from rgsym.models.layer_ops import Affine, Elementwise, compose_all

# the module (the package re-exports its function propagate under the same name)
propagate_module = importlib.import_module("rgsym.cumulants.propagate")
RTOL = 1e-9
# asymmetric 3-point site law (all odd cumulants non-zero)
VALUES, PROBS = (-1.0, 0.5, 2.0), (0.5, 0.3, 0.2)


# ------------------------------------------------------------------------------ helpers



def _connected(part, n):
    parent = list(range(n))

    def root(i):
        while parent[i] != i:
            i = parent[i]
        return i
    for block in part:
        fs = sorted({i for i, _ in block})
        for f in fs[1:]:
            parent[root(f)] = root(fs[0])
    return len({root(i) for i in range(n)}) == 1


def _brute_wick_classes(q):
    """{sorted count vectors: number of set partitions} of the legs q: blocks >= 2 legs,
    none inside one factor, connected w.r.t. the factors."""
    legs = [(i, j) for i, qi in enumerate(q) for j in range(qi)]
    counts = Counter()
    for part in set_partitions(legs):
        if any(len(b) < 2 or len({i for i, _ in b}) < 2 for b in part):
            continue
        if not _connected(part, len(q)):
            continue
        counts[tuple(sorted(tuple(sum(1 for i, _ in b if i == f) for f in range(len(q)))
                            for b in part))] += 1
    return counts


def _orbit(form, n):
    """The set of all relabellings of a form (multiset of count vectors) by factor
    permutations: a labelling-independent key."""
    return frozenset(tuple(sorted(tuple(v[p] for p in perm) for v in form))
                     for perm in itertools.permutations(range(n)))


def _close(got, want, rtol=RTOL, what=""):
    got, want = np.asarray(got, float), np.asarray(want, float)
    assert got.shape == want.shape, (what, got.shape, want.shape)
    scale = max(float(np.max(np.abs(want))), 1e-300)
    err = float(np.max(np.abs(got - want)))
    assert err <= rtol * scale, (what, err, scale)


def _perturbed(params, key, scale=0.3):
    """Every leaf plus Gaussian noise: non-zero biases, generic weights."""
    leaves, tree = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(key, len(leaves))
    return jax.tree_util.tree_unflatten(tree, [
        l + scale * jax.random.normal(k, l.shape, l.dtype) for l, k in zip(leaves, keys)])


@functools.lru_cache(maxsize=None)
def _model(kind="mlp", symmetry="none", width=3, depth=2, sites_=4, alpha=0.5):
    return build(dict(kind=kind, symmetry=symmetry, activation="quadratic", width=width,
                      depth=depth, sites=sites_, b=2, dim=1, dtype="float64", alpha=alpha))


def _compare_states(out, chain, apply_fn, params, order, x=None, w=None):
    """Every recorded state of ``out`` against brute-force enumeration of the chain (and
    the output against the model's own apply); x [M, N], w [M]: the enumerated inputs
    (default all 3^4 lattices of the 3-point law)."""
    if x is None:
        x, w = enumerate_lattice(VALUES, PROBS, (4,))
    layers = [np.asarray(s) for s in compose_all(chain, jnp.asarray(x))]
    if apply_fn is not None:
        _close(layers[-1], np.asarray(apply_fn(params, jnp.asarray(x))), 1e-12, "chain/apply")
    assert len(out.states) == len(layers)
    for i, (state, y) in enumerate(zip(out.states, layers)):
        ref = joint_cumulants(y, w, order)
        _close(out.marginals(order)[i], marginal_cumulants(ref), what=f"marginals {i}")
        if not isinstance(state, MarginalCumulants):
            for n, (g, r) in enumerate(zip(to_dense(state, order).tensors, ref), 1):
                _close(g, r, what=f"state {i} G_{n}")
    _close(out.marginals(order)[-1], marginal_cumulants(joint_cumulants(layers[-1], w, order)))
    assert isinstance(out.output, DenseCumulants)


# ------------------------------------------------------------------ 1. wick_groups

@pytest.mark.parametrize("q", [(2, 2), (1, 2, 1), (2, 2, 2), (3, 1, 2), (1, 1), (3, 3)])
def test_wick_partitions_match_brute_force(q):
    """Per arrangement q, _wick_partitions' classes and multiplicities (as wick_groups
    weighs them) equal a set-partition enumeration: fails on a missed, duplicated or
    mis-weighted class or a block left inside one factor."""
    got = Counter()
    for blocks in _wick_partitions(q):
        denom = math.prod(math.factorial(c) for v in blocks for c in v)
        denom *= math.prod(math.factorial(k) for k in Counter(blocks).values())
        key = tuple(sorted(blocks))
        assert key not in got, ("class enumerated twice", q, key)
        got[key] = math.prod(math.factorial(x) for x in q) // denom
    assert got == _brute_wick_classes(q)


@pytest.mark.parametrize("degree,n", [(2, 2), (2, 3), (3, 2), (2, 4), (4, 2), (3, 3), (2, 5)])
def test_wick_groups_weights_match_brute_force(degree, n):
    """wick_groups' weights summed per orbit of factor relabellings equal the brute-force
    count of qualifying set partitions over all q in {1..degree}^n (so totals match too),
    and each orbit has one canonical form: fails on a wrong arrangement count, a wrong
    merge in the canonical relabelling, or mis-grouped legs."""
    brute = Counter()
    for q in itertools.product(range(1, degree + 1), repeat=n):
        for form, count in _brute_wick_classes(q).items():
            brute[_orbit(form, n)] += count
    got, forms = Counter(), Counter()
    for group in wick_groups(degree, n):
        k, m, _ = group.legs.shape
        assert group.weight.shape == (k,) and group.q.shape == (k, n)
        np.testing.assert_array_equal(group.q, group.legs.sum(1))
        for legs, weight in zip(group.legs, group.weight):
            inc = tuple(tuple(bool(c) for c in v) for v in legs)
            assert inc == group.incidence  # the group's einsum signature
            assert all(sum(c > 0 for c in v) >= 2 for v in legs)  # no block in one factor
            assert all(1 <= x <= degree for x in legs.sum(0))
            orbit = _orbit(tuple(tuple(int(c) for c in v) for v in legs), n)
            got[orbit] += float(weight)
            forms[orbit] += 1
    assert sum(got.values()) == sum(brute.values())
    assert dict(got) == {k: float(v) for k, v in brute.items()}
    assert max(forms.values()) == 1, "an orbit was split over several canonical forms"


def _random_poly(rng, width, n_sites, degree):
    """Random symmetric coefficient tensors A_0..A_degree [H, S^k]."""
    out = []
    for k in range(degree + 1):
        a = rng.normal(size=(width,) + (n_sites,) * k)
        if k > 1:
            a = sum(np.transpose(a, (0,) + tuple(1 + p for p in perm))
                    for perm in itertools.permutations(range(k))) / math.factorial(k)
        out.append(a)
    return out


@pytest.mark.parametrize("degree,order", [(3, 3), (2, 4), (4, 2)])
def test_site_polynomial_cumulants_match_enumeration(degree, order):
    """sites.wick + sites.cumulants (joint and per-unit) of random polynomials of 3
    independent, differently distributed 3-point sites, against enumerating all 27
    configurations: fails on a wrong Wick rewrite, diagram weight or contraction."""
    rng = np.random.default_rng(degree * 10 + order)
    laws = [((-1.0, 0.5, 2.0), (0.5, 0.3, 0.2)), ((0.0, 1.0, 3.0), (0.2, 0.7, 0.1)),
            ((-2.0, -0.5, 1.5), (0.25, 0.25, 0.5))]
    kappa = np.stack([site_cumulants(v, p, order * degree) for v, p in laws])
    coeffs = _random_poly(rng, 2, 3, degree)
    state = sites.PolynomialCumulants(tuple(jnp.asarray(a) for a in coeffs), jnp.asarray(kappa))
    assert state.order == order and state.degree == degree
    # enumeration: x [27, 3], weights the product of the per-site probabilities
    idx = np.array(list(itertools.product(range(3), repeat=3)))
    x = np.stack([np.asarray(laws[s][0])[idx[:, s]] for s in range(3)], 1)
    w = np.prod([np.asarray(laws[s][1])[idx[:, s]] for s in range(3)], 0)
    xt = x - kappa[:, 0]
    z = sum(np.einsum("h" + "nopq"[:k] + "," + ",".join("m" + c for c in "nopq"[:k]) + "->mh",
                      a, *([xt] * k)) if k else np.broadcast_to(a, (len(x), 2))
            for k, a in enumerate(coeffs))
    ref = joint_cumulants(z, w, order)
    _close(state.mean(), ref[0], what="mean")
    joint = jax.jit(functools.partial(sites.cumulants, order=order, joint=True))(state)
    for n, (g, r) in enumerate(zip(joint.tensors, ref), 1):
        _close(g, r, what=f"G_{n}")
    marg = jax.jit(functools.partial(sites.cumulants, order=order, joint=False))(state)
    _close(marg.kappa, marginal_cumulants(ref), what="marginals")
    with pytest.raises(ValueError, match=f"kappa_1..kappa_{order * degree}"):
        sites.cumulants(state._replace(kappa=state.kappa[:, :-1]), order)


# ------------------------------------------------------- 2. exact against enumeration

def test_depth2_quadratic_mlp_order4_matches_enumeration():
    """Every state of a depth-2 quadratic MLP (width 8, 8 sites, order 4, internal_order=8:
    the site path) against exhaustive enumeration of all 3^8 lattices of an asymmetric
    3-point law: marginals of every state, joint tensors G_1..G_4 of every Affine state and
    the output; fails on any error in the exact path, its recording or its labels.  The
    same shapes as the Monte Carlo test below, so the two share their compiled programs."""
    model = _model(width=8, sites_=8)
    params = _perturbed(model.init(jax.random.key(11), jnp.zeros(8)), jax.random.key(12), 0.1)
    out = propagate(model, params, site_cumulants(VALUES, PROBS, 16), order=4,
                    internal_order=8)
    assert site_degree(model.layers(params, (8,)), 4, 8) == 4
    assert out.labels == ("input",) + ("exact",) * 5
    assert [s.order for s in out.states] == [16, 16, 4, 4, 4, 4]
    x, w = enumerate_lattice(VALUES, PROBS, (8,))
    _compare_states(out, model.layers(params, (8,)), model.apply, params, 4, x, w)
    for e in out.errors:
        assert np.all(np.asarray(e) == 0)


@pytest.mark.parametrize("joint", [False, True])
def test_cubic_then_quadratic_chain_order2_matches_enumeration(joint):
    """A hand-built Affine-cubic-Affine-quadratic-Affine chain (total degree 6, order 2,
    internal_order=4) through propagate_chain, fed by correlated inputs x = M u + shift of
    3 independent, differently distributed sites u, against enumeration of the 27 u: fails
    on mixed degrees (degree-3 powers, 12 legs), a mishandled input weight/shift
    (from_factor) or, with joint=True, wrong joint tensors of the hidden activations."""
    rng = np.random.default_rng(5)
    dims = [3, 4, 3, 2]
    chain = []
    for i in range(3):
        chain.append(Affine(jnp.asarray(rng.normal(size=(dims[i + 1], dims[i])) * 0.7),
                            jnp.asarray(rng.normal(size=dims[i + 1]) * 0.3)))
        if i < 2:
            chain.append(Elementwise(("cubic", "quadratic")[i], 0.4))
    chain = tuple(chain)
    assert site_degree(chain, 2, 4) == 6 and site_degree(chain, 2, 3) is None
    laws = [((-1.0, 0.5, 2.0), (0.5, 0.3, 0.2)), ((0.0, 1.0, 3.0), (0.2, 0.7, 0.1)),
            ((-2.0, -0.5, 1.5), (0.25, 0.25, 0.5))]
    mix, shift = rng.normal(size=(3, 3)), rng.normal(size=3)
    state = independent_sites(np.stack([site_cumulants(v, p, 12) for v, p in laws]), mix,
                              shift)
    out = propagate_chain(chain, state, 2, internal_order=4, joint=joint)
    assert out.labels == ("input",) + ("exact",) * 5
    if joint:
        assert all(isinstance(s, DenseCumulants) for s in out.states[2:])
    idx = np.array(list(itertools.product(range(3), repeat=3)))
    u = np.stack([np.asarray(laws[s][0])[idx[:, s]] for s in range(3)], 1)
    w = np.prod([np.asarray(laws[s][1])[idx[:, s]] for s in range(3)], 0)
    _compare_states(out, chain, None, None, 2, u @ mix.T + shift, w)


def test_depth2_quadratic_gnn_order2_matches_enumeration():
    """A depth-2 quadratic GNN (message passing as structured Affines) at order 2,
    internal_order=4, against enumeration of its own apply: fails where the site path
    mishandles a chain from a non-MLP model."""
    model = _model(kind="gnn", symmetry="shared", width=2)
    params = _perturbed(model.init(jax.random.key(21), jnp.zeros(4)), jax.random.key(22))
    kappas = site_cumulants(VALUES, PROBS, 8)
    out = propagate(model, params, kappas, order=2, internal_order=4)
    assert out.labels[-1] == "exact"
    _compare_states(out, model.layers(params, (4,)), model.apply, params, 2)
    last = propagate(model, params, kappas, order=2, internal_order=4, every_layer=False)
    assert last.labels == ("input", "exact") and len(last.states) == 2
    for a, b in zip(last.output.tensors, out.output.tensors):
        _close(a, b, 1e-12, "every_layer=False")


def test_order1_and_propagate_many_on_the_site_path():
    """Order 1 (internal_order=2: no Wick classes at all) against enumeration, and
    propagate_many (vmap over two seeds) against propagate per seed at order 2: fails on
    the order-1 edge or where tracing under vmap changes the site path."""
    model = _model()
    kappas = site_cumulants(VALUES, PROBS, 8)
    keys = jax.random.split(jax.random.key(61), 2)
    many_params = jax.vmap(lambda k: _perturbed(model.init(k, jnp.zeros(4)), k))(keys)
    first = jax.tree_util.tree_map(lambda a: a[0], many_params)
    out = propagate(model, first, kappas, order=1, internal_order=2)
    assert out.labels[-1] == "exact"
    _compare_states(out, model.layers(first, (4,)), model.apply, first, 1)
    many = propagate_many(model, many_params, kappas, order=2, internal_order=4)
    assert many.labels[-1] == "exact"
    for s in range(2):
        params = jax.tree_util.tree_map(lambda a: a[s], many_params)
        one = propagate(model, params, kappas, order=2, internal_order=4)
        for a, b in zip(one.marginals(), many.marginals()):
            _close(b[s], a, 1e-12, f"seed {s}")


# ------------------------------------------------------------------- 3. predict_mse

def test_predict_mse_depth2_quadratic_exact_against_enumeration():
    """predict_mse with internal_order=4 (error chain with linear units through the site
    path) against the brute-force MSE over all 2^4 Bernoulli(0.3) lattices: fails where
    the carried RG target or the identity on linear units goes wrong."""
    model = _model(width=4)
    params = _perturbed(model.init(jax.random.key(31), jnp.zeros(4)), jax.random.key(32))
    p = 0.3
    pred = predict_mse(model, params, distributions.get("bernoulli", p=p), internal_order=4)
    assert pred.label == "exact"
    x, w = enumerate_lattice((0.0, 1.0), (1 - p, p), (4,))
    rg = np.stack([x[:, 0] + x[:, 1], x[:, 2] + x[:, 3]], 1) / np.sqrt(2)
    err2 = (np.asarray(model.apply(params, jnp.asarray(x))) - rg) ** 2
    _close(pred.per_site, w @ err2, what="per_site")
    _close(pred.mse, (w @ err2).mean(), what="mse")
    assert float(pred.error) == 0.0


def test_derivatives_through_the_site_path_match_finite_differences():
    """rg_eigenvalues' Jacobian (jacfwd in the input kappas, internal_order=4) and jax.grad
    in the params of a depth-2 quadratic net against central differences of propagate
    (the maps are polynomial, so differences are accurate): fails if the site path breaks
    or detaches under forward or reverse differentiation."""
    from rgsym.cumulants.predict import rg_eigenvalues
    model = _model(width=3, alpha=0.3)
    params = _perturbed(model.init(jax.random.key(71), jnp.zeros(4)), jax.random.key(72), 0.1)
    eig = rg_eigenvalues(model, params, order=2, internal_order=4)
    assert eig.label == "exact"
    star = np.zeros(8)
    star[1] = 1.0

    def mean_output(kappa, p=params):
        out = propagate(model, p, kappa, order=2, internal_order=4, every_layer=False)
        return np.asarray(out.marginals(2)[-1].mean(0))
    h = 1e-4
    for m in range(2):
        e = np.zeros(8)
        e[m] = h
        fd = (mean_output(star + e) - mean_output(star - e)) / (2 * h)
        _close(np.asarray(eig.jacobian)[:, m], fd, 1e-6, f"jacobian column {m}")
    kappas = site_cumulants(VALUES, PROBS, 8)

    def loss(p):
        return propagate(model, p, kappas, order=2, internal_order=4,
                         every_layer=False).marginals(2)[-1].sum()
    grad = jax.grad(loss)(params)
    leaves, tree = jax.tree_util.tree_flatten(params)
    direction = jax.tree_util.tree_unflatten(tree, [
        jax.random.normal(k, l.shape, l.dtype)
        for l, k in zip(leaves, jax.random.split(jax.random.key(73), len(leaves)))])

    def moved(t):
        return jax.tree_util.tree_map(lambda a, d: a + t * d, params, direction)
    fd = (float(loss(moved(h))) - float(loss(moved(-h)))) / (2 * h)
    analytic = sum(float(jnp.vdot(g, d)) for g, d in zip(jax.tree_util.tree_leaves(grad),
                                                         jax.tree_util.tree_leaves(direction)))
    assert abs(analytic - fd) <= 1e-6 * max(abs(fd), 1.0), (analytic, fd)


# ------------------------------------------------------------------- 4. Monte Carlo

def test_width8_depth2_quadratic_order4_matches_monte_carlo():
    """The order-4 programs again (width 8, 8 sites), uniform inputs, internal_order=8;
    every layer's kappa_1..kappa_4 within 4 SE of 2^20 Monte Carlo samples: fails on an
    error at a realistic size (more sites than the enumeration tests reach)."""
    model = _model(width=8, sites_=8, alpha=0.3)
    params = _perturbed(model.init(jax.random.key(41), jnp.zeros(8)), jax.random.key(42),
                        0.1)
    fam = distributions.get("uniform")
    out = propagate(model, params, fam, order=4, internal_order=8)
    assert out.labels[-1] == "exact"
    mc = monte_carlo(model, params, fam, jax.random.key(43), 2 ** 20, 2 ** 16, order=4)
    assert len(mc.layers) == len(out.states)
    for layer, (analytic, ks) in enumerate(zip(out.marginals(4), mc.layers)):
        dev = np.abs(np.asarray(analytic) - np.asarray(ks.value)) / np.asarray(ks.se)
        assert np.all(dev < 4.0), (layer, dev)


# -------------------------------------------------------------- 5. the dense route

def test_site_path_matches_dense_rules_order2():
    """propagate (site path, order 2, internal_order=4) against a manual chain of the
    dense rules (rules.affine / rules.polynomial, exact with 8 input orders, hidden
    order 4): two independent exact routes, to 1e-10 relative on every state."""
    model = _model(width=4)
    params = _perturbed(model.init(jax.random.key(51), jnp.zeros(4)), jax.random.key(52))
    fam = distributions.get("exponential")
    out = propagate(model, params, fam, order=2, internal_order=4)
    assert out.labels[-1] == "exact"
    chain = model.layers(params, (4,))
    state = iid_lattice(fam, 4, 8)
    dense = [state]
    for layer, order in zip(chain, (8, 4, 4, 2, 2)):
        if isinstance(layer, Affine):
            state = rules.affine(state, layer.weight, layer.bias)
        else:
            mean = state.mean()
            raw = jnp.broadcast_to(jnp.asarray([0.0, 1.0, model.spec.alpha]), (mean.shape[0], 3))
            state = rules.polynomial(state, rules.centre_coefficients(raw, mean), order)
        dense.append(state)
    for i, (a, b) in enumerate(zip(out.states, dense)):
        _close(out.marginals(2)[i], marginals(b, 2), 1e-10, f"marginals {i}")
        if not isinstance(a, MarginalCumulants):
            for n, (g, r) in enumerate(zip(to_dense(a, 2).tensors, to_dense(b, 2).tensors), 1):
                _close(g, r, 1e-10, f"state {i} G_{n}")


# ----------------------------------------------------------------------- 6. refusals

def test_order5_refused_beyond_wick_max_legs():
    """Depth-2 quadratic at order 5, internal_order=10 needs 20 legs > WICK_MAX_LEGS:
    ValueError naming the limit, from order_schedule before anything runs."""
    model = _model()
    params = model.init(jax.random.key(0), jnp.zeros(4))
    assert 4 * 5 > WICK_MAX_LEGS
    with pytest.raises(ValueError, match="WICK_MAX_LEGS=16"):
        propagate(model, params, distributions.get("uniform"), order=5, internal_order=10)
    with pytest.raises(ValueError, match="WICK_MAX_LEGS"):
        wick_groups(4, 5)
    check_wick_legs(4, 4)  # 16 legs: allowed


def test_memory_limit_refuses_site_polynomials():
    """A memory_limit above every dense tensor but below the degree-4 coefficient tensors
    ([8, 8^4] float64, ~300 kB): CumulantMemoryError naming memory_limit."""
    model = _model(width=8, sites_=8, alpha=0.3)
    params = model.init(jax.random.key(0), jnp.zeros(8))
    need = sites.polynomial_bytes(8, 8, 4)
    assert need > 1e5 > sites.polynomial_bytes(8, 8, 2)
    with pytest.raises(CumulantMemoryError, match="memory_limit"):
        propagate(model, params, distributions.get("uniform"), order=2, internal_order=4,
                  memory_limit=1e5)


def test_flop_limit_and_missing_site_cumulants_refused(monkeypatch):
    """A small flop_limit (CumulantCostError naming flop_limit) and input kappas short of
    order x total degree (ValueError naming the kappas needed) on the site path: fails if
    either runs silently (the latter would drop cumulants and return wrong values), or if
    the read-off's cost refusal comes only after the chain's program has run."""
    model = _model()
    params = model.init(jax.random.key(0), jnp.zeros(4))
    ran = []
    real = propagate_module._propagate_jit
    monkeypatch.setattr(propagate_module, "_propagate_jit",
                        lambda *a: ran.append(1) or real(*a))
    with pytest.raises(CumulantCostError, match="flop_limit"):
        propagate(model, params, distributions.get("uniform"), order=2, internal_order=4,
                  flop_limit=1e3)
    assert not ran, "the chain's program ran before the read-off's cost was refused"
    with pytest.raises(ValueError, match="kappa_1..kappa_8"):
        propagate(model, params, site_cumulants(VALUES, PROBS, 6), order=2, internal_order=4)


# ------------------------------------------------------------ 7. default unchanged

def test_default_internal_order_keeps_the_closure():
    """internal_order=None (and one below order x 2) on a depth-2 quadratic net keeps the
    dense route and its 'closure' label: fails if the site path is taken by default."""
    model = _model()
    params = model.init(jax.random.key(0), jnp.zeros(4))
    chain = model.layers(params, (4,))
    fam = distributions.get("uniform")
    assert site_degree(chain, 2, None) is None and site_degree(chain, 2, 3) is None
    for internal in (None, 3):
        out = propagate(model, params, fam, order=2, internal_order=internal)
        assert out.labels[-1] == "closure", internal
        assert not any(isinstance(s, sites.PolynomialCumulants) for s in out.states)
    assert predict_mse(model, params, fam).label == "closure"


def test_mean_and_gathers_are_refused_rather_than_wrong():
    """A degree-2 state with one site cumulant has no exact mean (ValueError, not the mean
    without kappa_2); a gather of class tensors above memory_limit is refused by name."""
    state = sites.from_factor(independent_sites(np.ones((3, 1)), np.eye(3)))
    squared = sites.activation(state, jnp.asarray(np.broadcast_to([0.0, 0.0, 1.0], (3, 3))))
    with pytest.raises(ValueError, match="kappa_1..kappa_2"):
        squared.mean()
    rng = np.random.default_rng(5)
    poly = _random_poly(rng, 4, 6, 4)
    rich = sites.PolynomialCumulants(poly, jnp.asarray(rng.uniform(0.5, 1.0, (6, 16))))
    with pytest.raises(CumulantMemoryError, match="gathers"):
        sites.cumulants(rich, 3, joint=False, memory_limit=2e5)


def test_site_path_checks_its_input_up_front_and_dense_inputs_keep_the_dense_route():
    """Too few kappas for the sites' path are refused before any program runs, naming the
    orders needed; a DenseCumulants input with internal_order at the threshold keeps the
    dense rules' capped schedule (the sites' path needs independent sites)."""
    model = _model(width=3)
    params = model.init(jax.random.key(3), jnp.zeros(4))
    kappas = site_cumulants(VALUES, PROBS, 16)
    with pytest.raises(ValueError, match="kappa_1..kappa_8; the input state holds 6"):
        propagate(model, params, kappas[:6], order=2, internal_order=4)
    chain = model.layers(params, (4,))
    factor = independent_sites(np.broadcast_to(kappas[:8], (4, 8)))
    dense = to_dense(factor, 8)
    via_dense = propagate_chain(chain, dense, order=2, internal_order=4)
    via_sites = propagate_chain(chain, factor, order=2, internal_order=4)
    _close(via_dense.marginals(2)[-1], via_sites.marginals(2)[-1], 1e-10, "dense vs sites")
    assert [s.order for s in via_dense.states][2:4] != [s.order for s in via_sites.states][2:4]
