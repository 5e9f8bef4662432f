"""Independent references for the tests: brute-force enumeration of discrete lattices,
an explicit block-sum loop, joint cumulants from exact moments, closed-form activations and
their Taylor coefficients, Gaussian expectations by a Cholesky tensor-grid quadrature.

Nothing here calls rgsym: these are the numbers the library is checked against.
"""
import itertools
import math

import numpy as np


def set_partitions(items):
    """Every set partition of ``items`` (a list), each a list of blocks (lists)."""
    if not items:
        yield []
        return
    first, rest = items[0], items[1:]
    for part in set_partitions(rest):
        for i in range(len(part)):
            yield part[:i] + [[first] + part[i]] + part[i + 1:]
        yield [[first]] + part


def enumerate_lattice(values, probs, shape):
    """Every configuration of an i.i.d. lattice of a discrete site law.

    Returns (x [M, *shape], weight [M]) with M = len(values) ** prod(shape)."""
    values, probs = np.asarray(values, float), np.asarray(probs, float)
    n = math.prod(shape)
    idx = np.array(list(itertools.product(range(len(values)), repeat=n)))
    return values[idx].reshape((-1,) + tuple(shape)), probs[idx].prod(1)


def block_sum(x, b, dim):
    """RG step by explicit loops over blocks: each coarse site is the sum of its b**dim
    fine sites divided by sqrt(b**dim).  x [M, *lattice] -> [M, *coarse]."""
    x = np.asarray(x, float)
    side = x.shape[-1] // b
    out = np.zeros(x.shape[:1] + (side,) * dim)
    norm = math.sqrt(b ** dim)
    for coarse in itertools.product(range(side), repeat=dim):
        fine = tuple(slice(b * c, b * c + b) for c in coarse)
        block = x[(slice(None),) + fine].reshape(len(x), -1)
        out[(slice(None),) + coarse] = block.sum(1) / norm
    return out


def joint_cumulants(y, w, order=4):
    """Joint cumulant tensors [O]^n, n = 1..order (order <= 4), of y [M, O] under weights w."""
    y, w = np.asarray(y, float), np.asarray(w, float)
    mean = w @ y
    d = y - mean
    k2 = np.einsum("s,sa,sb->ab", w, d, d)
    out = [mean, k2, np.einsum("s,sa,sb,sc->abc", w, d, d, d)]
    m4 = np.einsum("s,sa,sb,sc,sd->abcd", w, d, d, d, d)
    out.append(m4 - np.einsum("ab,cd->abcd", k2, k2) - np.einsum("ac,bd->abcd", k2, k2)
               - np.einsum("ad,bc->abcd", k2, k2))
    return out[:order]


def marginal_cumulants(tensors):
    """[O, K] per-unit kappa_1..kappa_K from joint tensors."""
    o = tensors[0].shape[0]
    return np.stack([np.asarray(t)[(np.arange(o),) * t.ndim] for t in tensors], -1)


def site_cumulants(values, probs, order):
    """kappa_1..kappa_order of a discrete law from its raw moments (moment recursion)."""
    values, probs = np.asarray(values, float), np.asarray(probs, float)
    m = [1.0] + [float(probs @ values ** j) for j in range(1, order + 1)]
    k = [0.0] * (order + 1)
    for n in range(1, order + 1):
        k[n] = m[n] - sum(math.comb(n - 1, j - 1) * k[j] * m[n - j] for j in range(1, n))
    return np.array(k[1:])


def _sigmoid(z):
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(z, float)))


# Closed forms (numpy/scipy-free of jax): value, first and second derivative.
ACTIVATIONS = {
    "tanh": (np.tanh, lambda z: 1 - np.tanh(z) ** 2,
             lambda z: -2 * np.tanh(z) * (1 - np.tanh(z) ** 2)),
    "softplus": (lambda z: np.logaddexp(0.0, z), _sigmoid,
                 lambda z: _sigmoid(z) * (1 - _sigmoid(z))),
    "sigmoid": (_sigmoid, lambda z: _sigmoid(z) * (1 - _sigmoid(z)),
                lambda z: _sigmoid(z) * (1 - _sigmoid(z)) * (1 - 2 * _sigmoid(z))),
    "silu": (lambda z: z * _sigmoid(z),
             lambda z: _sigmoid(z) * (1 + z * (1 - _sigmoid(z))),
             lambda z: _sigmoid(z) * (1 - _sigmoid(z)) * (2 + z * (1 - 2 * _sigmoid(z)))),
}


def taylor2(name, centre):
    """phi(z) ~ c0 + c1 (z - m) + c2 (z - m)^2 about m = centre: returns a function of z."""
    f, d1, d2 = ACTIVATIONS[name]
    m = np.asarray(centre, float)
    return lambda z: f(m) + d1(m) * (z - m) + 0.5 * d2(m) * (z - m) ** 2


def gaussian_moments_of(fns, mean, cov, nodes=150):
    """E u and Cov u for u_i = fns[i](z_i), z ~ N(mean, cov): 1-D and pairwise 2-D
    Gauss-Hermite tensor grids through the Cholesky factor of each 2x2 covariance."""
    x, w = np.polynomial.hermite_e.hermegauss(nodes)
    w = w / w.sum()
    n = len(mean)
    sd = np.sqrt(np.diag(cov))
    e1 = np.array([w @ fns[i](mean[i] + sd[i] * x) for i in range(n)])
    e2 = np.zeros((n, n))
    xa, xb = np.meshgrid(x, x, indexing="ij")
    ww = np.outer(w, w)
    for i in range(n):
        for j in range(i, n):
            c = np.array([[cov[i, i], cov[i, j]], [cov[j, i], cov[j, j]]])
            ch = np.linalg.cholesky(c + 1e-300 * np.eye(2)) if c[1, 1] * c[0, 0] > c[0, 1] ** 2 \
                else np.array([[sd[i], 0.0], [cov[i, j] / max(sd[i], 1e-300), 0.0]])
            za = mean[i] + ch[0, 0] * xa
            zb = mean[j] + ch[1, 0] * xa + ch[1, 1] * xb
            e2[i, j] = e2[j, i] = np.sum(ww * fns[i](za) * fns[j](zb))
    return e1, e2 - np.outer(e1, e1)


def mlp_weights(params, symmetry, width, block_of=None):
    """[(W [out, in], bias [out])] of an MLP written out from its raw parameter arrays
    ``params['params']['layer_i']``, for each symmetry's parametrisation: nonnegative
    W = softplus(raw); symmetric_weights hidden W = (A + A^T) / 2; tied_hidden a repeated
    row, a I + c 11^T, a repeated column and shared biases; block_permutation first-layer
    column i = block_kernel[:, block_of[i]]; otherwise the kernel itself.  block_local gives
    the one per-block network, odd the network h of g(x) = (h(x) - h(-x)) / 2."""
    layers = params["params"]
    n = len(layers)
    out = []
    for i in range(n):
        q = {k: np.asarray(v, float) for k, v in layers[f"layer_{i}"].items()}
        hidden = 0 < i < n - 1
        if symmetry == "nonnegative":
            w = np.logaddexp(0.0, q["raw_kernel"])
        elif symmetry == "symmetric_weights" and hidden:
            w = (q["raw_kernel"] + q["raw_kernel"].T) / 2
        elif symmetry == "tied_hidden" and i == 0:
            w = np.repeat(q["row"], width, 0)
        elif symmetry == "tied_hidden" and hidden:
            w = q["diag"] * np.eye(width) + q["offdiag"] * np.ones((width, width))
        elif symmetry == "tied_hidden":
            w = np.repeat(q["column"], width, 1)
        elif symmetry == "block_permutation" and i == 0:
            w = q["block_kernel"][:, block_of]
        else:
            w = q["kernel"]
        out.append((w, np.broadcast_to(q.get("bias", 0.0), w.shape[:1]).copy()))
    return out


def assert_jacobian_is_finite_differences(out, net, params, order, mode="exact", rtol=1e-6,
                                          h=1e-5):
    """``out.jacobian`` [order, order] (``predict.rg_eigenvalues``) against central
    differences of the propagator's mean output cumulants about the Gaussian fixed point
    (kappa_2 = 1, the 2 * order input cumulants the exact rule needs)."""
    from rgsym.cumulants import predict
    star = np.zeros(2 * order)
    star[1] = 1.0

    def mean_output(kappa):
        return np.asarray(predict.clt_recursion_check(
            net, params, np.asarray(kappa), order=order, mode=mode).predicted.mean(0))
    for m in range(order):
        e = np.zeros(2 * order)
        e[m] = h
        fd = (mean_output(star + e) - mean_output(star - e)) / (2 * h)
        np.testing.assert_allclose(out.jacobian[:, m], fd, rtol=rtol, atol=1e-8)

