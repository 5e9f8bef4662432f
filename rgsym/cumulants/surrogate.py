"""Polynomial surrogates of activations under each unit's law, and the error they leave.

A non-polynomial activation phi is replaced, unit by unit, by a polynomial p_a in the centred
pre-activation delta_a = z_a - E z_a, and the exact polynomial rule (``rules.polynomial``)
gives the cumulants of p(z) from the state.  What is left is the residual r_a = phi - p_a;
this module estimates its size and turns it into a bound on each output cumulant
(derivations in docs/science.md, "Cumulant propagation"):

* :func:`hermite` -- the least-squares (L2) projection of phi onto polynomials of degree d
  under the unit's own Gaussian law N(m_a, s_a^2) (m, s from the state): the probabilists'
  Hermite coefficients a_k = E[phi(m + s xi) He_k(xi)] / k!.  The residual is orthogonal to
  every polynomial of degree <= d under that law, so it has mean zero there.
* :func:`taylor_residual` -- the residual of the second-order Taylor expansion about m
  (the existing 'quadratic' mode), under the same law.

Expectations under N(m, s^2) are quadratures: Gauss-Hermite for smooth activations (exact for
polynomials of degree < 2 * nodes), Gauss-Legendre panels split at the kinks
(``activations.KINKS``) for the others, so a kink costs accuracy of nothing but the fit.

Residual norms are carried per unit as ``norms [H, R]``: column n-1 is ||r||_n =
(E |r|^n)^(1/n), n = 1..R (uncentred: the projection's residual has mean zero under the
Gaussian law but not under the unit's true law, so |E r| is only bounded by ||r||_1).
Through an affine map they add by the triangle inequality; through a later activation of
Lipschitz constant L they grow by L.  The bound on the cumulants (:func:`cumulant_bound`)
follows from Hoelder's inequality.  These are estimates, not proofs: the norms are taken
under each unit's Gaussian law, not its true law.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from rgsym.cumulants import rules
from rgsym.cumulants.state import (DEFAULT_FLOP_LIMIT, DEFAULT_MEMORY_LIMIT, DenseCumulants,
                                   MarginalCumulants, marginals, to_dense)

__all__ = ["DEFAULT_DEGREE", "LIPSCHITZ", "BOUND_ORDERS", "law_quadrature", "hermite",
           "taylor_residual", "residual_norms", "hermite_rule", "hermite_coefficients",
           "through_affine", "through_activation", "cumulant_bound", "RANGES", "range_check", "MAX_SKEWNESS", "MAX_EXCESS_KURTOSIS",
           "untrusted_where_far_from_gaussian"]

#: Degree of the 'hermite' surrogate unless told.  The exact polynomial rule's cost grows
#: steeply with degree (the classes of degree x order legs): degree 3 carries kappa_4 far
#: better at a far higher cost where the pre-activations are near Gaussian (finite error
#: estimates), and can be far worse where they are not (benchmarks/RESULTS.md, "Orders 3-4
#: through tanh and relu" and "Mode 'hermite', degree 2 vs 3, on skewed inputs").
DEFAULT_DEGREE = 2
#: sup |phi'| of each non-polynomial activation: a residual entering a later activation
#: grows by at most this factor (gelu: 1.129 at z = sqrt 2; silu: 1.0998).
LIPSCHITZ = {"tanh": 1.0, "relu": 1.0, "sigmoid": 0.25, "softplus": 1.0, "gelu": 1.13,
             "silu": 1.1}
#: [lo, hi] of the bounded activations: every cumulant of phi(z) then lies in a known
#: interval whatever z's law (:func:`range_check`).
RANGES = {"tanh": (-1.0, 1.0), "sigmoid": (0.0, 1.0)}
#: The residual norms are taken under each unit's Gaussian law; a pre-activation whose own
#: law is skewed or heavy-tailed beyond these (standardised kappa_3 / kappa_2^(3/2), and
#: kappa_4 / kappa_2^2) was measured to carry errors above the estimate (exponential and
#: lognormal inputs over few sites: tests/test_surrogate.py), so its estimate is not given.
#: Light tails (negative excess kurtosis: uniform, Rademacher) kept within the estimate.
MAX_SKEWNESS, MAX_EXCESS_KURTOSIS = 0.5, 1.0
#: Cumulant orders that :func:`cumulant_bound` covers (higher ones are reported unbounded).
BOUND_ORDERS = 4
_SMOOTH_NODES, _PANEL_NODES, _TAIL = 96, 64, 12.0
# A unit narrower than this is fitted on this spread (the fit stays a good local
# polynomial; dividing by s^q at s -> 0 would overflow).
_SD_FLOOR = 1e-4


def _spread(var):
    """sqrt(var) floored at _SD_FLOOR, with a finite gradient everywhere."""
    return jnp.sqrt(jnp.maximum(var, _SD_FLOOR ** 2))


def law_quadrature(mean, sd, kinks=()):
    """Nodes xi [H, Q] and weights w [H, Q] (sum 1) for E f(xi), xi ~ N(0, 1), f(xi) =
    g(mean + sd * xi) where g is smooth except at ``kinks``: Gauss-Hermite without kinks,
    else Gauss-Legendre panels on [-12, 12] split where mean + sd * xi crosses a kink."""
    if not kinks:
        x, w = np.polynomial.hermite_e.hermegauss(_SMOOTH_NODES)
        shape = mean.shape + x.shape
        return (jnp.broadcast_to(jnp.asarray(x, mean.dtype), shape),
                jnp.broadcast_to(jnp.asarray(w / w.sum(), mean.dtype), shape))
    t, wt = (jnp.asarray(a, mean.dtype) for a in np.polynomial.legendre.leggauss(_PANEL_NODES))
    cuts = jnp.sort(jnp.stack([jnp.clip((k - mean) / sd, -_TAIL, _TAIL) for k in kinks], -1), -1)
    edges = jnp.concatenate([jnp.full(mean.shape + (1,), -_TAIL, mean.dtype), cuts,
                             jnp.full(mean.shape + (1,), _TAIL, mean.dtype)], -1)
    lo, hi = edges[..., :-1, None], edges[..., 1:, None]              # [H, panels, 1]
    xi = lo + (hi - lo) * (t + 1) / 2
    w = wt * (hi - lo) / 2 * jnp.exp(-xi ** 2 / 2) / math.sqrt(2 * math.pi)
    return xi.reshape(mean.shape + (-1,)), w.reshape(mean.shape + (-1,))


def residual_norms(r, w, top: int):
    """[H, top]: ||r||_n = (E |r|^n)^(1/n) for n = 1..top, r [H, Q] at the nodes."""
    c = jnp.abs(r)
    return jnp.stack([((c ** n * w).sum(-1)) ** (1.0 / n) for n in range(1, top + 1)], -1)


def _herme_to_power(degree: int) -> np.ndarray:
    """[d+1, d+1]: row k = monomial coefficients of He_k."""
    out = np.zeros((degree + 1, degree + 1))
    for k in range(degree + 1):
        c = np.polynomial.hermite_e.herme2poly(np.eye(degree + 1)[k])
        out[k, :len(c)] = c
    return out


def hermite_coefficients(fn, mean, sd, degree: int, kinks=()):
    """(a [H, d+1] Hermite coefficients a_k = E[fn(m + sd xi) He_k(xi)] / k!, residual
    fn - sum_k a_k He_k [H, Q] at the nodes, weights [H, Q])."""
    xi, w = law_quadrature(mean, sd, kinks)
    f = fn(mean[:, None] + sd[:, None] * xi)                          # [H, Q]
    he = jnp.stack([_herme(k, xi) for k in range(degree + 1)], -1)   # [H, Q, d+1]
    norm = jnp.asarray([math.factorial(k) for k in range(degree + 1)], mean.dtype)
    a = jnp.einsum("hq,hqk,hq->hk", f, he, w) / norm
    return a, f - jnp.einsum("hqk,hk->hq", he, a), w


def hermite(fn, mean, var, degree: int, kinks=(), top: int = BOUND_ORDERS):
    """The degree-``degree`` L2 projection of ``fn`` under N(mean_a, var_a), per unit.

    mean, var: [H].  Returns (coeffs [H, d+1] ascending in delta = z - mean, as
    ``rules.polynomial`` takes them; norms [H, top] of the residual, see
    :func:`residual_norms`).  Exact (to rounding) when fn is a polynomial of degree <= d
    and has no kinks.
    """
    sd = _spread(var)
    a, resid, w = hermite_coefficients(fn, mean, sd, degree, kinks)
    b = a @ jnp.asarray(_herme_to_power(degree), mean.dtype)         # in powers of xi
    coeffs = b / sd[:, None] ** jnp.arange(degree + 1)               # in powers of delta
    return coeffs, residual_norms(resid, w, top)


def _herme(k: int, x):
    """He_k(x) by the three-term recurrence."""
    prev, cur = jnp.ones_like(x), x
    if k == 0:
        return prev
    for j in range(1, k):
        prev, cur = cur, x * cur - j * prev
    return cur


def taylor_residual(fn, mean, var, kinks=(), top: int = BOUND_ORDERS):
    """norms [H, top] of phi minus its second-order Taylor polynomial about the mean
    (what ``rules.quadratic_expansion`` uses), under N(mean_a, var_a)."""
    sd = _spread(var)
    xi, w = law_quadrature(mean, sd, kinks)
    d1 = jax.vmap(jax.grad(fn))(mean)
    d2 = jax.vmap(jax.grad(jax.grad(fn)))(mean)
    delta = sd[:, None] * xi
    taylor = fn(mean)[:, None] + d1[:, None] * delta + 0.5 * d2[:, None] * delta ** 2
    return residual_norms(fn(mean[:, None] + delta) - taylor, w, top)


def through_affine(norms, weight):
    """Residual norms of ``weight @ y`` [O, R] from those of y [H, R] (triangle
    inequality, no independence assumed).  A zero weight ignores its unit, unbounded or
    not (a plain product would make 0 * inf = NaN)."""
    a = jnp.abs(weight)
    finite = jnp.isfinite(norms)
    bound = a @ jnp.where(finite, norms, 0.0)
    return jnp.where(a @ (~finite).astype(a.dtype) > 0, jnp.inf, bound)


def through_activation(norms_in, norms_new, activation: str):
    """Residual norms after an activation: its own surrogate residual ``norms_new`` (None:
    exact) plus the incoming residual grown by the activation's Lipschitz constant
    (:data:`LIPSCHITZ`; a polynomial activation has none: the result is unbounded, inf)."""
    if norms_in is None:
        return norms_new
    lip = LIPSCHITZ.get(activation)
    if lip is None:
        return jnp.full_like(norms_in, jnp.inf)
    # phi(Z + R) - p(Z) = r(Z) + [phi(Z + R) - phi(Z)], the bracket at most L |R|
    return lip * norms_in if norms_new is None else lip * norms_in + norms_new


def cumulant_bound(kappa, norms, order: int):
    """[H, order] bounds on |kappa_n(true) - kappa_n(computed)|, n = 1..order.

    kappa: [H, >= min(order, 4)] the computed marginal cumulants (kappa_4 needed for the
    bounds on n = 3, 4); norms: [H, R] residual norms ||R||_n (see module doc), R >=
    min(order, 4).  With A the computed unit centred, D = R - E R the centred residual,
    a_n = ||A||_n and e_n = ||D||_n <= ||R||_n + ||R||_1: |Delta kappa_1| <= ||R||_1,
    |Delta mu_n| <= (a_n + e_n)^n - a_n^n (binomial expansion, Hoelder on each term),
    kappa_2 = mu_2, kappa_3 = mu_3 (a_3 <= a_4), kappa_4 = mu_4 - 3 mu_2^2.  Orders above 4,
    or 3 and 4 without kappa_4, are inf.  A unit whose computed kappa_2 is negative (no
    law's: a closure ran on a truncated state) is inf at every order: there is no computed
    variable A to apply Hoelder to (:func:`range_check` may still cap it rigorously).  An
    infinite norm gives inf, never NaN (at kappa_2 = 0 the kappa_4 term was 0 * inf).
    """
    inf = jnp.full(kappa.shape[:1], jnp.inf, kappa.dtype)
    k2 = jnp.clip(kappa[:, 1], 0.0) if kappa.shape[1] > 1 else None
    a = {2: jnp.sqrt(k2)} if k2 is not None else {}
    if kappa.shape[1] > 3:
        a[4] = jnp.clip(kappa[:, 3] + 3 * k2 ** 2, 0.0) ** 0.25
        a[3] = a[4]

    def dmu(n):
        e = norms[:, n - 1] + norms[:, 0]
        return (a[n] + e) ** n - a[n] ** n

    cols = [norms[:, 0]]
    if order > 1:
        cols.append(dmu(2))
    if order > 2:
        cols.append(dmu(3) if 3 in a else inf)
    if order > 3:
        d2 = dmu(2)
        cols.append(dmu(4) + jnp.where(jnp.isinf(d2), jnp.inf, 3 * (2 * k2 * d2 + d2 ** 2))
                    if 4 in a else inf)
    cols += [inf] * (order - len(cols))
    bound = jnp.stack(cols[:order], -1)
    if k2 is None:
        return bound
    return jnp.where((kappa[:, 1] < 0)[:, None], jnp.inf, bound)


def hermite_rule(state, fn, degree: int, order: int, readout=None,
                 memory_limit=DEFAULT_MEMORY_LIMIT, linear_units: int = 0, kinks=(),
                 flop_limit=DEFAULT_FLOP_LIMIT):
    """Mode 'hermite': each unit's ``fn`` replaced by :func:`hermite` under its Gaussian
    law (the state's mean and variance), then the exact ``rules.polynomial``.

    state: width H (a MarginalCumulants state gives each unit's own cumulants);
    readout: [O, H] or None (as in ``rules.polynomial``).  The trailing
    ``linear_units`` are identities (residual 0).  Returns (DenseCumulants of width H or
    O, norms [H, BOUND_ORDERS] of the hidden units' residuals).  Exact up to the
    residual when the state holds ``degree * order`` orders; fewer make the rule a
    closure (the caller labels it).
    """
    g = marginals(state, 2)
    coeffs, norms = hermite(fn, g[:, 0], g[:, 1], degree, kinks)
    lin = rules.linear_mask(state.width, linear_units)[:, None]
    ident = jnp.zeros_like(coeffs).at[:, 1].set(1.0)
    coeffs = jnp.where(lin, ident, coeffs)
    out = rules.polynomial(state, coeffs, order, readout, memory_limit, flop_limit)
    if degree == 2 and order >= 4:
        out = _cubic_correction(out, state, fn, g, lin[:, 0], readout, kinks)
    return out, jnp.where(lin, 0.0, norms)


def _cubic_correction(out, state, fn, g, lin, readout, kinks):
    """Adds to G_4 the first-order effect of each unit's He_3 component, which a degree-2
    surrogate leaves out and which is the leading error of kappa_4 (docs/science.md):
    for Gaussian xi, kappa(xi_b, xi_c, xi_d, He_3(xi_a)) = 6 rho_ab rho_ac rho_ad, so

        Delta G_4[p, q, r, s] = 6 sum_a W3[p, a] Q[q, a] Q[r, a] Q[s, a]  (+ 3 placements)

    with W3 = V diag(a_3), Q = V diag(a_1) rho (V the readout or the identity)."""
    sd = _spread(g[:, 1])
    a, _, _ = hermite_coefficients(fn, g[:, 0], sd, 3, kinks)
    a1 = jnp.where(lin, sd, a[:, 1])
    a3 = jnp.where(lin, 0.0, a[:, 3])
    if isinstance(out, MarginalCumulants):  # each unit on its own: rho_aa = 1
        return MarginalCumulants(out.kappa.at[:, 3].add(24 * a3 * a1 ** 3))
    cov = to_dense(state, 2).tensors[1]
    rho = cov / (sd[:, None] * sd[None, :])
    v = jnp.eye(state.width, dtype=cov.dtype) if readout is None else readout
    w3, q = v * a3, (v * a1) @ rho
    t = 6 * jnp.einsum("pa,qa,ra,sa->pqrs", w3, q, q, q)
    t = t + t.transpose(1, 0, 2, 3) + t.transpose(2, 1, 0, 3) + t.transpose(3, 1, 2, 0)
    return DenseCumulants(out.tensors[:3] + (out.tensors[3] + t,) + out.tensors[4:])


def _feasible(lo: float, hi: float, order: int):
    """[(low, high)] for n = 1..min(order, 4): where kappa_n of any variable with values in
    [lo, hi] lies (w = hi - lo): kappa_1 in [lo, hi], kappa_2 in [0, w^2/4], |kappa_3| =
    |mu_3| <= w mu_2 <= w^3/4, kappa_4 = mu_4 - 3 mu_2^2 in [-2 mu_2^2, w^2 mu_2] within
    [-w^4/8, w^4/4]."""
    w = hi - lo
    return [(lo, hi), (0.0, w ** 2 / 4), (-w ** 3 / 4, w ** 3 / 4),
            (-w ** 4 / 8, w ** 4 / 4)][:min(order, BOUND_ORDERS)]


def untrusted_where_far_from_gaussian(state, norms):
    """``norms`` [H, R] with inf (no estimate) on the units whose pre-activation law in
    ``state`` is too skewed or heavy-tailed for the Gaussian-law residual to be trusted
    (:data:`MAX_SKEWNESS`, :data:`MAX_EXCESS_KURTOSIS`; judged on the orders the state
    holds, at least 3).  A bounded activation still gets its range's rigorous bound
    (:func:`range_check`)."""
    k = marginals(state, min(state.order, 4))
    if k.shape[1] < 3:
        return norms
    var = jnp.where(k[:, 1] > 0, k[:, 1], 1.0)
    far = jnp.abs(k[:, 2]) > MAX_SKEWNESS * var ** 1.5
    if k.shape[1] >= 4:
        far = far | (k[:, 3] > MAX_EXCESS_KURTOSIS * var ** 2)
    return jnp.where(far[:, None], jnp.inf, norms)


def range_check(kappa, bound, activation: str, linear_units: int = 0):
    """Error bounds of a bounded activation's outputs (:data:`RANGES`) made honest.

    kappa, bound: [H, K] computed cumulants and their estimated bounds.  The true kappa_n
    lies in a known interval (:func:`_feasible`), so a computed value farther outside it
    than its estimated bound proves the estimate wrong (the residual norms were taken
    under the unit's Gaussian law, and a heavy-tailed or skewed true law can put the
    surrogate polynomial far out of range).  There the bound becomes the rigorous one, the
    distance to the interval's far end, which also caps any larger estimate, an unbounded
    one (inf: a closure, or an untrusted estimate) included: the range holds whatever
    produced the value.  Other activations, and the trailing ``linear_units``
    (identities): ``bound`` unchanged."""
    if activation not in RANGES:
        return bound
    lin = rules.linear_mask(kappa.shape[0], linear_units)
    cols = []
    for n, (low, high) in enumerate(_feasible(*RANGES[activation], kappa.shape[1])):
        c, b = kappa[:, n], bound[:, n]
        dist = jnp.maximum(jnp.maximum(low - c, c - high), 0.0)
        cap = jnp.maximum(jnp.abs(c - low), jnp.abs(c - high))
        cols.append(jnp.where(lin, b, jnp.where(b < dist, cap, jnp.minimum(b, cap))))
    return jnp.concatenate([jnp.stack(cols, -1), bound[:, len(cols):]], -1)
