"""Every science metric of a short training run recomputed independently.

The evaluator's numbers (``rel_err``, ``mse``, ``cum_err``, ``fixed_point``, their
evaluation-set standard errors ``cum_err_se``, ``fixed_point_se`` (influence functions
written out here, the samples as independent units), ``flow_rel_err``, ``ood_rel_err_*``,
``sym/*``, and the last learning-curve point) are
recomputed from the run's parameters and evaluation inputs with: an explicit block-sum loop
for the RG target, scipy's k-statistics, scipy's skewness and excess kurtosis for the exact
cumulants of each standardised family (``kappa_n' = B^(1 - n/2) s^n kappa_n`` at scale s),
and group averages (orthogonal projections, written from the raw parameter arrays) for
every ``sym/*`` distance.  The runs are 1-D b=2 (float64 at depth 2 and the float32 path
``make run`` uses), a 2-D b=2 GNN with learned pooling, a depth-2 block_local MLP with b=3,
a 1-D b=3 directional GNN with block edges and a 2-D b=2 block_permutation MLP (4x4 lattice,
2x2 blocks, three OOD families so that their median is not their mean).
"""
import itertools
import math

import jax
import numpy as np
import pytest
from scipy import stats

from rgsym import train
from tests.reference import ACTIVATIONS, block_sum, mlp_weights
from tests.test_train import tiny

SCIPY = {"uniform": stats.uniform, "gaussian": stats.norm, "exponential": stats.expon,
         "laplace": stats.laplace}
# three OOD families (an odd count: their median is not their mean)
FOUR_FAMILIES = ("uniform", "gaussian", "exponential", "laplace")
RUNS = [
    dict(model__activation="tanh", model__width=4, model__depth=2),
    dict(model__activation="tanh", model__width=4, dtype="float32"),
    dict(lattice__dim=2, lattice__sites=4, eval__flow_steps=2, model__kind="gnn",
         model__symmetry="separate", model__activation="quadratic", model__pooling="learned"),
    dict(lattice__b=3, lattice__sites=9, eval__flow_steps=2, model__symmetry="block_local",
         model__width=6, model__depth=2, model__activation="tanh"),
    dict(lattice__b=3, lattice__sites=9, eval__flow_steps=2, model__kind="gnn",
         model__symmetry="directional", model__block_edges=True, model__activation="softplus"),
    dict(lattice__dim=2, lattice__sites=4, model__symmetry="block_permutation", model__width=4,
         model__activation="tanh", eval__families=FOUR_FAMILIES),
]
IDS = ["1d-b2-mlp-f64", "1d-b2-mlp-f32", "2d-b2-gnn", "1d-b3-mlp-block_local",
       "1d-b3-gnn-directional", "2d-b2-mlp-block_permutation"]


def _exact_rg_cumulants(name, train_family, b, dim):
    """kappa_1..4 of one coarse site for the standardised family (or the training family at
    scale s for ``scale_<s>``), from scipy's skewness and excess kurtosis."""
    s = 1.0
    if name.startswith("scale_"):
        s, name = float(name[len("scale_"):]), train_family
    skew, kurt = SCIPY[name].stats(moments="sk")
    kappa = np.array([0.0, 1.0, float(skew), float(kurt)]) * s ** np.arange(1, 5)
    return kappa * (b ** dim) ** (1 - np.arange(1, 5) / 2)


def _group_average_distance(theta, actions):
    """Distance of theta (a pytree of arrays) from the fixed subspace of a finite group of
    orthogonal linear maps: |theta - mean_g g(theta)| (the orthogonal projection)."""
    images = [jax.tree.leaves(g(theta)) for g in actions]
    avg = [np.mean(a, 0) for a in zip(*images)]
    return np.sqrt(sum(np.sum((t - a) ** 2) for t, a in zip(jax.tree.leaves(theta), avg)))


def _product_group_average_distance(theta, factors):
    """The same distance for the product of commuting groups (factors: lists of actions):
    the projection onto the joint fixed subspace is the product of the factors' projections,
    so average over one factor after another."""
    avg = theta
    for actions in factors:
        images = [jax.tree.leaves(g(avg)) for g in actions]
        avg = jax.tree.unflatten(jax.tree.structure(theta), [np.mean(a, 0) for a in zip(*images)])
    return np.sqrt(sum(np.sum((t - a) ** 2)
                       for t, a in zip(jax.tree.leaves(theta), jax.tree.leaves(avg))))


def _perm_matrices(n):
    return [np.eye(n)[list(p)] for p in itertools.permutations(range(n))]


def _relabel(ws, sites, hidden, out, signs=None):
    """An MLP [(W, b)] with inputs, every hidden layer's units and outputs mapped by the
    orthogonal matrices sites, hidden, out (W_l -> G_out W_l G_in^T, b_l -> G_out b_l);
    signs (one +-1 matrix per layer) multiply the weights entrywise first."""
    maps = [sites] + [hidden] * (len(ws) - 1) + [out]
    signs = signs or [1.0] * len(ws)
    return [(maps[i + 1] @ (w * s) @ maps[i].T, maps[i + 1] @ c)
            for i, ((w, c), s) in enumerate(zip(ws, signs))]


def _mlp_symmetry_references(ws, blocks):
    """sym/* of an MLP from its dense weights ws = [(W_1, c_1), ..., (V, d)], as group
    averages (at most 720 elements).  blocks: the input sites of each RG block."""
    n_in, h, n_out = ws[0][0].shape[1], ws[0][0].shape[0], ws[-1][0].shape[0]
    i_in, i_h, i_out = np.eye(n_in), np.eye(h), np.eye(n_out)
    out = {"sym/negative_mass": np.sqrt(sum(np.sum(np.minimum(w, 0) ** 2) for w, _ in ws)),
           # the same permutation of the units of every hidden layer
           "sym/tied_hidden_spread": _group_average_distance(
               ws, [lambda t, p=p: _relabel(t, i_in, p, i_out) for p in _perm_matrices(h)])}
    # exchanges of sites inside each block (all blocks independently): the whole product
    # group when small, else block after block ((4!)^4 elements for 2x2 blocks of a 4x4)
    def exchange(choice):
        order = np.arange(n_in)
        for blk, perm in zip(blocks, choice):
            order[list(blk)] = list(perm)
        p = np.eye(n_in)[order]
        return lambda t: _relabel(t, p, i_h, i_out)
    if math.prod(math.factorial(len(blk)) for blk in blocks) <= 720:
        out["sym/block_permutation_spread"] = _group_average_distance(
            ws, [exchange(c) for c in itertools.product(*map(itertools.permutations, blocks))])
    else:
        out["sym/block_permutation_spread"] = _product_group_average_distance(
            ws, [[exchange([perm if j == i else blk for j, blk in enumerate(blocks)])
                  for perm in itertools.permutations(blk)] for i, blk in enumerate(blocks)])
    if h % 2 == 0:   # mirror pairs: unit k <-> k + h/2, x -> -x, y -> -y
        swap = np.roll(i_h, h // 2, axis=0)
        out["sym/oddness_residual"] = _group_average_distance(
            ws, [lambda t: t, lambda t: _relabel(t, -i_in, swap, -i_out)])
    if len(ws) > 2:   # W -> W^T on the hidden-to-hidden maps
        transpose = lambda t: [t[0]] + [(w.T, c) for w, c in t[1:-1]] + [t[-1]]  # noqa: E731
        out["sym/asymmetry_norm"] = _group_average_distance(ws, [lambda t: t, transpose])
    n = len(blocks)
    if h % n == 0 and n_out == n:
        # one shared network per block: permutations pi of the blocks (acting on sites,
        # block-major hidden units and outputs) and sign flips s of the blocks that multiply
        # each weight between blocks I and J by s_I s_J (biases untouched): the fixed
        # points are equal diagonal blocks, zero off-diagonal blocks, equal per-block biases
        block_of = [np.zeros(n_in, int), np.repeat(np.arange(n), h // n), np.arange(n)]
        for i, blk in enumerate(blocks):
            block_of[0][list(blk)] = i
        layer_blocks = [(block_of[1], block_of[0])] + [(block_of[1], block_of[1])] * (
            len(ws) - 2) + [(block_of[2], block_of[1])]
        site_of = np.array([s for blk in blocks for s in blk])    # block-major site order
        group = []
        for p, s in itertools.product(_perm_matrices(n),
                                      itertools.product((1.0, -1.0), repeat=n)):
            s = np.array(s)
            signs = [np.outer(s[r], s[c]) for r, c in layer_blocks]
            # site site_of[I*B + q] -> site_of[pi(I)*B + q]
            sites = np.zeros((n_in, n_in))
            sites[site_of, :] = np.kron(p, np.eye(n_in // n))[:, np.argsort(site_of)]
            group.append(lambda t, p=p, sites=sites, signs=signs: _relabel(
                t, sites, np.kron(p, np.eye(h // n)), p, signs))
        out["sym/block_local_residual"] = _group_average_distance(ws, group)
    return out


def _gnn_symmetry_references(params, pooling):
    """sym/* of a GNN from its raw kernels: permutations of the (self, neighbour_t) kernels,
    of the neighbour kernels and of the pooling weights."""
    p = params["params"]
    layers = [{k: np.asarray(v, float) for k, v in q.items()}
              for name, q in sorted(p.items()) if name.startswith("mp_")]
    n_types = len(layers[0]["neighbour"])
    permute = lambda stacks, n: _group_average_distance(   # noqa: E731
        stacks, [lambda t, q=q: [np.einsum("ij,j...->i...", q, a) for a in t]
                 for q in _perm_matrices(n)])
    out = {}
    if "self" in layers[0]:
        out["sym/shared_residual"] = permute(
            [np.concatenate([q["self"][None], q["neighbour"]]) for q in layers], n_types + 1)
    if n_types > 1:
        out["sym/edge_type_spread"] = permute([q["neighbour"] for q in layers], n_types)
    if pooling == "learned":
        out["sym/pool_spread"] = permute([np.asarray(p["pool"], float)], len(p["pool"]))
    return out


def _reference(trainer, params, x, hp_alpha):
    """All final metrics from params and the evaluation inputs x [F, B, *lattice]."""
    cfg, model, sets = trainer.config, trainer.model, trainer.evaluator.sets
    b, dim = cfg.lattice.b, cfg.lattice.dim
    apply = lambda z: np.asarray(model.apply(params, z, alpha=hp_alpha), float)
    x64 = np.asarray(x, float)
    out, rel, mse, kst, infl = {}, {}, {}, {}, {}
    for i, name in enumerate(sets.names):
        pred, y = apply(x[i]), block_sum(x64[i], b, dim)
        s = float(name[len("scale_"):]) if name.startswith("scale_") else 1.0
        mse[name] = np.mean((pred - y) ** 2)
        rel[name] = mse[name] / s ** 2        # the RG keeps the variance s^2
        kst[name] = [stats.kstat(pred.ravel(), n) for n in range(1, 5)], \
            [stats.kstat(y.ravel(), n) for n in range(1, 5)]
        exact = _exact_rg_cumulants(name, cfg.data.family, b, dim)
        infl[name] = _influence(pred.reshape(len(pred), -1)), _influence(y.reshape(len(y), -1))
        for n in range(4):
            out[f"cum_err/{name}/k{n + 1}"] = abs(kst[name][0][n] - exact[n])
            out[f"cum_err_se/{name}/k{n + 1}"] = _sample_se(infl[name][0][n + 1])
        out[f"rel_err/{name}"], out[f"mse/{name}"] = rel[name], mse[name]
        # scipy's standard error of the mean of each sample's squared error (over its sites)
        per_sample = ((pred - y) ** 2).reshape(len(pred), -1).mean(1)
        out[f"rel_err_se/{name}"] = stats.sem(per_sample) / s ** 2
    train_name = cfg.data.family
    for kind in ("cum_err", "cum_err_se"):
        out.update({f"{kind}/k{n}": out[f"{kind}/{train_name}/k{n}"] for n in range(1, 5)})
    out["test_rel_err"], out["test_mse"] = rel[train_name], mse[train_name]
    out["test_rel_err_se"] = out[f"rel_err_se/{train_name}"]
    ood = [rel[f] for f in cfg.eval.families if f != train_name]
    out["ood_rel_err_median"], out["ood_rel_err_max"] = np.median(ood), np.max(ood)
    if len(ood) % 2:   # an odd count: the median is one of the sets, not their mean
        assert abs(np.median(ood) - np.mean(ood)) > 1e-3 * np.mean(ood), ood
    pred_k, rg_k = kst["gaussian"]
    out["fixed_point/k3"], out["fixed_point/k4"] = pred_k[2] - rg_k[2], pred_k[3] - rg_k[3]
    out["fixed_point_violation"] = np.hypot(out["fixed_point/k3"], out["fixed_point/k4"])
    # paired: the influence of the difference, samples as the independent units
    pred_i, rg_i = infl["gaussian"]
    diff = {n: pred_i[n] - rg_i[n] for n in (3, 4)}
    out["fixed_point_se/k3"], out["fixed_point_se/k4"] = _sample_se(diff[3]), _sample_se(diff[4])
    out["fixed_point_violation_se"] = _sample_se(
        (out["fixed_point/k3"] * diff[3] + out["fixed_point/k4"] * diff[4])
        / out["fixed_point_violation"])
    if model.describe()["iterable"]:
        pred, target = x[0], x64[0]
        for j in range(1, cfg.eval.flow_steps + 1):
            pred, target = apply(pred), block_sum(target, b, dim)
            if j > 1:
                out[f"flow_rel_err/k{j}"] = np.mean((pred - target) ** 2)
    m = cfg.model
    if m.kind == "gnn":
        out.update(_gnn_symmetry_references(params, m.pooling))
    else:   # block_local: the one block network, whose b^dim inputs are one block
        blocks = ([list(range(b ** dim))] if m.symmetry == "block_local"
                  else _blocks(cfg.lattice.sites, b, dim))
        block_of = np.zeros(cfg.lattice.sites ** dim, int)
        for i, blk in enumerate(blocks):
            block_of[blk] = i
        ws = mlp_weights(params, m.symmetry, m.width, block_of=block_of)
        if m.activation in ACTIVATIONS:   # the weights (and blocks) are the model's
            flat = x64[0].reshape(len(x64[0]), -1)
            net = lambda z: _dense_forward(ws, ACTIVATIONS[m.activation][0], z)  # noqa: E731
            got = (np.concatenate([net(flat[:, blk]) for blk in _blocks(cfg.lattice.sites, b, dim)],
                                  1) if m.symmetry == "block_local" else net(flat))
            np.testing.assert_allclose(got, apply(x[0]).reshape(len(flat), -1),
                                       rtol=1e-4 if cfg.dtype == "float32" else 1e-10, atol=1e-5)
        out.update(_mlp_symmetry_references(ws, blocks))
    return out


def _influence(z):
    """{n: the influence function of kappa_n at each value of z [B, m]} (pooled moments)."""
    d = z - z.mean()
    m2, m3, m4 = (np.mean(d ** p) for p in (2, 3, 4))
    return {1: d, 2: d ** 2 - m2, 3: d ** 3 - 3 * m2 * d - m3,
            4: d ** 4 - 4 * m3 * d - 6 * m2 * d ** 2 + 6 * m2 ** 2 - m4}


def _sample_se(influence):
    """SE of the pooled statistic whose influence at each value is ``influence`` [B, m]:
    the B samples (rows) are the independent units, their sites may be correlated."""
    per_sample = influence.sum(1) / influence.size
    b = len(per_sample)
    return np.sqrt(b / (b - 1) * np.sum((per_sample - per_sample.mean()) ** 2))


def _dense_forward(ws, phi, z):
    """The MLP [(W, c)] on inputs z [M, n_in]: phi after every layer but the last."""
    for i, (w, c) in enumerate(ws):
        z = z @ w.T + c
        z = phi(z) if i < len(ws) - 1 else z
    return z


def _blocks(sites, b, dim):
    """The flat (row-major) indices of the fine sites of each coarse site, coarse sites in
    row-major order, from the coordinates: block (I_1..I_d) holds the sites with
    b I_k <= x_k < b I_k + b, listed row-major inside the block."""
    out = []
    for coarse in itertools.product(range(sites // b), repeat=dim):
        blk = []
        for offset in itertools.product(range(b), repeat=dim):
            flat = 0
            for c, o in zip(coarse, offset):
                flat = flat * sites + b * c + o
            blk.append(flat)
        out.append(blk)
    return out


@pytest.mark.parametrize("overrides", RUNS, ids=IDS)
def test_final_metrics_equal_an_independent_recomputation(overrides):
    cfg = tiny(**overrides)
    trainer = train.make_train(cfg)
    run = jax.jit(trainer.train)   # one compilation for both runs below
    params, m = run(jax.random.key(4), trainer.hparams())
    final = jax.tree.map(np.asarray, m["final"])
    assert not bool(m["diverged"])
    x, _ = trainer.evaluator.fixed_data()
    ref = _reference(trainer, params, x, cfg.model.alpha)
    # every metric the run reports has a reference (train_loss aside), and vice versa
    assert not ref.keys() - final.keys(), ref.keys() - final.keys()
    missing = set(final) - set(ref) - {"train_loss"}
    assert not missing, missing
    f32 = cfg.dtype == "float32"
    for name, want in ref.items():
        # float32: the evaluation is computed in float32 (k-statistics of 128 outputs)
        rtol, atol = (2e-4, 2e-5) if f32 else (1e-8, 1e-12)
        np.testing.assert_allclose(final[name], want, rtol=rtol, atol=atol, err_msg=name)
    # the run learned something: the values checked are not the untrained network's
    _, m0 = run(jax.random.key(4), trainer.hparams(lr=0.0))
    assert final["test_rel_err"] < 0.9 * float(m0["final"]["test_rel_err"])
    # the last learning-curve point, on the first curve_batch samples
    b = cfg.eval.curve_batch
    sub = _reference(trainer, params, x[:, :b], cfg.model.alpha)
    for name in [k for k in sub if k.startswith("rel_err/")] + ["ood_rel_err_median"]:
        np.testing.assert_allclose(np.asarray(m["curves"][name])[-1], sub[name],
                                   rtol=2e-4 if f32 else 1e-8, err_msg=name)
