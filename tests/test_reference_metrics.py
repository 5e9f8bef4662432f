"""Every science metric of a short training run recomputed independently.

The evaluator's numbers (``rel_err``, ``mse``, ``cum_err``, ``fixed_point``,
``flow_rel_err``, ``ood_rel_err_*``, ``sym/*``, and the last learning-curve point) are
recomputed from the run's parameters and evaluation inputs with: an explicit block-sum loop
for the RG target, scipy's k-statistics, scipy's skewness and excess kurtosis for the exact
cumulants of each standardised family (``kappa_n' = B^(1 - n/2) s^n kappa_n`` at scale s),
and group averages (orthogonal projections) for the symmetry distances.  The runs are 1-D
b=2 (float64 and the float32 path ``make run`` uses), 2-D b=2 and 1-D b=3.
"""
import itertools

import jax
import numpy as np
import pytest
from scipy import stats

from rgsym import train
from tests.reference import block_sum
from tests.test_train import tiny

SCIPY = {"uniform": stats.uniform, "gaussian": stats.norm, "exponential": stats.expon}
RUNS = [
    dict(model__activation="tanh", model__width=4),
    dict(model__activation="tanh", model__width=4, dtype="float32"),
    dict(lattice__dim=2, lattice__sites=4, eval__flow_steps=2, model__family="gnn",
         model__symmetry="separate", model__activation="quadratic"),
    dict(lattice__b=3, lattice__sites=9, eval__flow_steps=2, model__symmetry="block_local",
         model__width=6, model__activation="tanh"),
]
IDS = ["1d-b2-mlp-f64", "1d-b2-mlp-f32", "2d-b2-gnn", "1d-b3-mlp-block_local"]


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
    """Distance of theta (a tuple of arrays) from the fixed subspace of a finite group of
    orthogonal linear maps: |theta - mean_g g(theta)| (the orthogonal projection)."""
    images = [g(theta) for g in actions]
    avg = [np.mean([im[i] for im in images], 0) for i in range(len(theta))]
    return np.sqrt(sum(np.sum((t - a) ** 2) for t, a in zip(theta, avg)))


def _mlp_symmetry_references(chain, n_sites, b):
    """sym/* of a one-hidden-layer MLP from its dense weights (W, c, V, d)."""
    (w, c), (v, d) = [(np.asarray(l.weight, float), np.asarray(l.bias, float))
                      for l in chain[::2]]
    h = w.shape[0]
    theta = (w, c, v, d)
    perms = [np.eye(h)[list(p)] for p in itertools.permutations(range(h))]
    tied = [lambda t, p=p: (p @ t[0], p @ t[1], t[2] @ p.T, t[3]) for p in perms]
    # exchanges of sites inside each block (b! per block, all blocks independently)
    blocks = [range(i, i + b) for i in range(0, n_sites, b)]
    site_perms = []
    for choice in itertools.product(*(itertools.permutations(blk) for blk in blocks)):
        site_perms.append(np.eye(n_sites)[[s for blk in choice for s in blk]])
    block_perm = [lambda t, p=p: (t[0] @ p, t[1], t[2], t[3]) for p in site_perms]
    swap = np.roll(np.eye(h), h // 2, axis=0)   # unit k <-> unit k + h/2
    odd = [lambda t: t, lambda t: (-swap @ t[0], swap @ t[1], -t[2] @ swap, -t[3])]
    return {"sym/tied_hidden_spread": _group_average_distance(theta, tied),
            "sym/block_permutation_spread": _group_average_distance(theta, block_perm),
            "sym/oddness_residual": _group_average_distance(theta, odd),
            "sym/negative_mass": np.sqrt(np.sum(np.minimum(w, 0) ** 2)
                                         + np.sum(np.minimum(v, 0) ** 2))}


def _reference(trainer, params, x, hp_alpha):
    """All final metrics from params and the evaluation inputs x [F, B, *lattice]."""
    cfg, model, sets = trainer.config, trainer.model, trainer.evaluator.sets
    b, dim = cfg.lattice.b, cfg.lattice.dim
    apply = lambda z: np.asarray(model.apply(params, z, alpha=hp_alpha), float)
    x64 = np.asarray(x, float)
    out, rel, mse, kst = {}, {}, {}, {}
    for i, name in enumerate(sets.names):
        pred, y = apply(x[i]), block_sum(x64[i], b, dim)
        s = float(name[len("scale_"):]) if name.startswith("scale_") else 1.0
        mse[name] = np.mean((pred - y) ** 2)
        rel[name] = mse[name] / s ** 2        # the RG keeps the variance s^2
        kst[name] = [stats.kstat(pred.ravel(), n) for n in range(1, 5)], \
            [stats.kstat(y.ravel(), n) for n in range(1, 5)]
        exact = _exact_rg_cumulants(name, cfg.data.family, b, dim)
        for n in range(4):
            out[f"cum_err/{name}/k{n + 1}"] = abs(kst[name][0][n] - exact[n])
        out[f"rel_err/{name}"], out[f"mse/{name}"] = rel[name], mse[name]
    train_name = cfg.data.family
    out.update({f"cum_err/k{n}": out[f"cum_err/{train_name}/k{n}"] for n in range(1, 5)})
    out["test_rel_err"], out["test_mse"] = rel[train_name], mse[train_name]
    ood = [rel[f] for f in cfg.eval.families if f != train_name]
    out["ood_rel_err_median"], out["ood_rel_err_max"] = np.median(ood), np.max(ood)
    pred_k, rg_k = kst["gaussian"]
    out["fixed_point/k3"], out["fixed_point/k4"] = pred_k[2] - rg_k[2], pred_k[3] - rg_k[3]
    out["fixed_point_violation"] = np.hypot(out["fixed_point/k3"], out["fixed_point/k4"])
    if model.describe()["iterable"]:
        pred, target = x[0], x64[0]
        for j in range(1, cfg.eval.flow_steps + 1):
            pred, target = apply(pred), block_sum(target, b, dim)
            if j > 1:
                out[f"flow_rel_err/k{j}"] = np.mean((pred - target) ** 2)
    if cfg.model.family == "mlp" and cfg.model.symmetry == "none":   # (H! permutations)
        chain = model.layers(params, model.spec.lattice_shape)
        out.update(_mlp_symmetry_references(chain, cfg.lattice.sites, b))
    elif cfg.model.symmetry == "separate":
        # distance of (self, neighbour) kernels from 'all equal': |self - neighbour| / sqrt 2
        mp = params["params"]["mp_0"]
        out["sym/shared_residual"] = np.linalg.norm(np.asarray(mp["self"])
                                                    - np.asarray(mp["neighbour"][0])) / 2 ** 0.5
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
    missing = {k for k in final if not k.startswith("sym/")} - set(ref) - {"train_loss"}
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
