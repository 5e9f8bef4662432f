"""Claim 2: constrained MLPs fail for reasons the cumulant recursion shows.

One hidden quadratic layer, phi(z) = z + alpha z^2, makes each output a quadratic
polynomial f_o(x) = c_o + u_o . x + x^T Q_o x with Q_o = alpha sum_h V_oh w_h w_h^T (w_h the
h-th row of the first weight matrix, V the readout).  The block-sum map is linear, so
generalising to every family needs Q = 0.  A free net can cancel Q with readout weights of
both signs; tied hidden units share one w, so Q_o = alpha (sum_h V_oh) w w^T, which vanishes
only with the linear part u_o = (sum_h V_oh) w.  The error of such a net is a polynomial of
the input, so its MSE on any family is exact from the family's cumulants to order 4
(``predict_mse``): we compare that prediction with a Monte Carlo measurement per trained
seed, family and scale, and the trained Q's size.
"""
from __future__ import annotations

import jax
import numpy as np
from matplotlib.figure import Figure

import common
from rgsym import config, cumulants, distributions, metrics, models, results
from rgsym.cumulants import predict
from rgsym.cumulants.propagate import model_chain
from rgsym.models.layer_ops import Affine

TITLE = "2. The analytic demonstration: exact MSE of constrained quadratic MLPs"
QUICK_SYMMETRIES = ("none", "tied_hidden")
# (symmetric_weights needs depth >= 2: no one-layer exact case)
SYMMETRIES = ("none", "tied_hidden", "block_local", "block_permutation", "odd", "nonnegative")
QUICK_FAMILIES = ("exponential", "laplace")  # skewed, and symmetric with heavy tails
# The squared error of a quadratic net on skewed inputs is heavy-tailed (a quartic of the
# input): its Monte Carlo mean converges slowly and its standard error is itself noisy at
# 2^16 lattices (one point sat 5.4 SE below its prediction there, 0.3 SE with another key).
MC_SAMPLES = {True: 2 ** 20, False: 2 ** 21}
RESIDUAL_SE = 4.0  # |measured - predicted| beyond this many standard errors is a disagreement
MC_SEEDS = 4  # seeds checked against Monte Carlo per variant (a GPU study trains thousands)
AGREEMENT = 0.95  # the share of points within RESIDUAL_SE for the prediction to hold


def sweeps(quick: bool) -> list:
    c = config.base_config()
    c.name = "analytic"
    c.num_seeds = 3 if quick else 8
    c.data.batch = 128
    c.model.width, c.model.depth, c.model.activation = 16, 1, "quadratic"
    c.optim.lr, c.optim.schedule = 1e-2, "cosine"
    c.optim.steps = 600 if quick else 4000
    c.eval.every = 200 if quick else 500
    c.eval.batch, c.eval.curve_batch = 512, 128
    c.eval.families = QUICK_FAMILIES if quick else ()
    c.eval.scales, c.eval.flow_steps = (2.0,), 1
    # one block (N = B: the minimal probe) and two blocks
    c.variants = config.grid(symmetry=QUICK_SYMMETRIES if quick else SYMMETRIES,
                             **{"lattice.sites": (2,) if quick else (2, 4)})
    return [c]


def quadratic_form_norm(model, params) -> float:
    """||Q||_F / ||u||_2 over outputs: the quadratic part of a one-hidden-layer quadratic net
    relative to its linear part (0 for the exact, linear block map)."""
    first, *_, last = model_chain(model, params)
    assert isinstance(first, Affine) and isinstance(last, Affine), (first, last)
    w1, v = np.asarray(first.weight), np.asarray(last.weight)
    q = model.spec.alpha * np.einsum("oh,hi,hj->oij", v, w1, w1)
    u = v @ w1
    return float(np.linalg.norm(q) / np.linalg.norm(u))


def _families(cfg: dict, quick: bool) -> list:
    # Monte Carlo's standard error of a mean of e^2 (e quadratic in x) needs E x^8: families
    # without it (student_t) have an exact MSE but no trustworthy Monte Carlo twin.
    names = QUICK_FAMILIES if quick else tuple(distributions.finite_order_names(8))
    out = [(n, distributions.get(n, standardised=True)) for n in names if n != "uniform"]
    base = distributions.get(cfg["data"]["family"], standardised=True)
    return out + [(f"{cfg['data']['family']} x{s:g}", base.affine(s))
                  for s in cfg["eval"]["scales"]]


def _predictions(ctx, name: str, cfg: dict):
    """Exact MSE [S, F] of every seed on every set of ``_families`` (OOD families, then the
    training family at other scales); Monte Carlo measurement and SE [S', F] of the first
    S' = MC_SEEDS seeds; the quadratic part's size [S]."""
    model = models.build(cfg)
    params = results.load_params(ctx.runs / "analytic", name)
    sets = _families(cfg, ctx.quick)
    pred, meas, se, q = [], [], [], []
    for i in range(len(jax.tree.leaves(params)[0])):
        p = jax.tree.map(lambda a: a[i], params)
        q.append(quadratic_form_norm(model, p))
        row = [predict.predict_mse(model, p, dist) for _, dist in sets]
        assert all(r.label == "exact" for r in row), [r.label for r in row]
        pred.append([float(r.mse) for r in row])
        if i < MC_SEEDS:
            mc = [cumulants.monte_carlo(model, p, dist, jax.random.key(1000 * i + j),
                                        n_samples=MC_SAMPLES[ctx.quick], batch=2 ** 16, order=2)
                  for j, (_, dist) in enumerate(sets)]
            meas.append([float(m.mse) for m in mc])
            se.append([float(m.mse_se) for m in mc])
    return [n for n, _ in sets], *map(np.asarray, (pred, meas, se, q))


def _ci(values) -> tuple:
    a = metrics.aggregate(values)
    return a["median"], a["ci_lo"], a["ci_hi"]


def _ci_text(ci) -> str:
    return f"{common.g2(ci[0])} [{common.g2(ci[1])}, {common.g2(ci[2])}]"


def report(ctx) -> str:
    variants = common.variant_summaries(ctx, "analytic")
    fig = Figure(figsize=(10, 4), layout="constrained")
    ax, axr = fig.subplots(1, 2)
    rows, all_res, stats = [], [], {}
    for name, cfg, s in variants:
        sets, pred, meas, se, q = _predictions(ctx, name, cfg)
        res = ((meas - pred[: len(meas)]) / se).ravel()
        all_res += list(res)
        ax.scatter(pred[: len(meas)].ravel(), meas.ravel(), s=10, label=name)
        axr.hist(res, bins=20, histtype="step", label=name)
        fam = [j for j, n in enumerate(sets) if " x" not in n]  # OOD families, not scales
        scale = [j for j, n in enumerate(sets) if " x" in n]
        stats[name] = dict(mse=_ci(pred[:, fam].mean(1)), q=_ci(q))
        rows.append((name, _ci_text(stats[name]["mse"]),
                     common.g2(float(np.median(pred[:, scale].mean(1)))),
                     _ci_text(stats[name]["q"]), float(np.max(np.abs(res))),
                     common.median_ci(s, "test_rel_err")[0]))
    lo = min(v["mse"][1] for v in stats.values())
    hi = max(v["mse"][2] for v in stats.values())
    ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
    ax.set(xscale="log", yscale="log", xlabel="predicted MSE (exact, from cumulants)",
           ylabel="measured MSE (Monte Carlo)")
    axr.set(xlabel="(measured - predicted) / SE", ylabel="count")
    ax.legend(fontsize=6)
    all_res = np.asarray(all_res)
    n_out = int(np.sum(np.abs(all_res) > RESIDUAL_SE))
    width = ctx.run("analytic").config["model"]["width"]
    out = [f"### {TITLE}", "", common.trained(ctx, "analytic"), "",
           f"One hidden quadratic layer of width {width}. For every trained seed, OOD family "
           "and scale, the exact MSE from the family's cumulants; for the first "
           f"{MC_SEEDS} seeds also Monte Carlo ({MC_SAMPLES[ctx.quick]} lattices per point).",
           "", ctx.save(fig, "analytic_predicted_vs_measured"), "",
           f"**Prediction against measurement.** {len(all_res) - n_out} of {len(all_res)} "
           f"points agree within {common.g2(RESIDUAL_SE)} standard errors (largest |residual| "
           f"{common.g2(np.max(np.abs(all_res)))} SE; residual mean "
           f"{common.g2(np.mean(all_res))}, sd {common.g2(np.std(all_res))}).", "",
           "Exact OOD MSE: the mean over OOD families (scales apart) per seed, then the median "
           "and its bootstrap 95% CI over seeds; likewise the quadratic part's size "
           "norm(Q) / norm(u):", "",
           common.table(("variant", "exact OOD MSE", "exact MSE, other scales",
                         "norm Q / norm u", "max abs residual (SE)", "test rel. err"), rows)]
    tied_worse = []
    for name, st in stats.items():
        if name.startswith("mlp-tied_hidden-"):
            twin = stats.get("mlp-none-" + name[len("mlp-tied_hidden-"):])
            if twin is not None:
                mse_sep = common.separated(st["mse"], twin["mse"])
                q_sep = common.separated(st["q"], twin["q"])
                word = {1: "above", -1: "below", 0: "not separated from"}
                out += ["", f"**Mechanism ({name}).** Its quadratic part "
                            f"({common.g2(st['q'][0])} of its linear part) lies "
                            f"{word[q_sep]} the free net's ({common.g2(twin['q'][0])}), and its "
                            f"exact OOD MSE ({common.g2(st['mse'][0])}) lies {word[mse_sep]} "
                            f"the free net's ({common.g2(twin['mse'][0])}) (CIs over seeds)."]
                tied_worse.append(mse_sep > 0 and q_sep > 0)
    agree = len(all_res) - n_out >= AGREEMENT * len(all_res)
    verdict = ("agrees" if agree and tied_worse and all(tied_worse) else
               "is not reproduced" if not agree else
               "partly agrees (the prediction holds; the tied nets' larger quadratic part and "
               "error are not significant everywhere)")
    out += ["", f"**Verdict.** Claim 2 (constrained MLPs fail for reasons the cumulant "
                f"recursion shows: exact MSE from cumulants, a quadratic part the constraint "
                f"cannot cancel) {verdict} in this run."]
    return "\n".join(out)
