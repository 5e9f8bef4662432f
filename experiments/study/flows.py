"""Claim (d): iterated flows of learned RG maps.

Trains the iterable MLP variants (those whose model acts on any lattice divisible by b, so
its output can be fed back in) on uniform inputs, then applies seed 0's learned map k =
1..K times to large samples of skewed and heavy-tailed standardised families and measures
skewness and excess kurtosis after each step (k-statistics, standard errors from the spread
over independent batches), against the exact block-sum flow skew_k = skew_0 B^(-k/2),
exkurt_k = exkurt_0 B^(-k).  The learned map's scaling eigenvalues at the Gaussian fixed
point (``predict.rg_eigenvalues``: exact for polynomial nets, the labelled 'hermite'
approximation for tanh) are set beside B^(1 - n/2), with the sweep's ``rg_eig_err``.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.figure import Figure

import common
from rgsym import clt, config, cumulants, distributions, models
from rgsym.cumulants import predict

TITLE = "4. Iterated flows of learned RG maps"
RUN = "flows"
CANDIDATE_SYMMETRIES = ("none", "block_local", "block_permutation")
SAMPLE_KEY = 11          # fixed key of the flow samples
BATCHES = 32             # independent batches: the standard errors of skewness and kurtosis
AGREE_SE = 3.0           # |measured - exact| below this many SE: agreement


def _sizes(quick: bool) -> dict:
    if quick:
        return dict(activations=("quadratic", "tanh"), sites=8, width=8, seeds=2, steps=400,
                    n_chains=2 ** 17, families=("exponential", "laplace"))
    return dict(activations=("quadratic", "cubic", "tanh"), sites=16, width=16, seeds=8,
                steps=3000, n_chains=2 ** 18, families=("exponential", "gamma", "laplace"))


def _iterable(cfg) -> bool:
    return bool(models.build(config.model_config(cfg)).describe()["iterable"])


def sweeps(quick: bool) -> list:
    s = _sizes(quick)
    c = common.brief_sweep(RUN, s)
    c.eval.flow_steps = int(np.log2(s["sites"]))  # b = 2: down to one site
    # Only the symmetries whose model can be iterated (decided by the model zoo).
    keep = []
    for v in config.grid(symmetry=CANDIDATE_SYMMETRIES, activation=s["activations"]):
        c.model.symmetry = v["symmetry"]
        if _iterable(c):
            keep.append(v)
    c.model.symmetry = "none"
    c.variants = keep
    return [c]


def _shape(x) -> tuple[np.ndarray, np.ndarray]:
    """(value, SE) of [skewness, excess kurtosis] of every value of ``x`` (i.i.d. sites):
    k-statistics of the whole sample, SE from the spread over ``BATCHES`` batches."""
    flat = x.reshape(-1)
    ratios = lambda k: np.stack([k[..., 2] / k[..., 1] ** 1.5, k[..., 3] / k[..., 1] ** 2], -1)
    whole = ratios(np.asarray(cumulants.k_statistics_with_se(flat).value))
    per = ratios(np.asarray(cumulants.k_statistics_with_se(flat.reshape(BATCHES, -1), 1).value))
    return whole, per.std(0, ddof=1) / np.sqrt(BATCHES)


def _flow(model, params, family: str, sites: int, steps: int, n_chains: int) -> dict:
    d = distributions.get(family, standardised=True)
    x = d.sample(jax.random.key(SAMPLE_KEY), (n_chains, sites), jnp.float64)
    vals, ses = [], []
    for k in range(steps + 1):
        if k:
            x = model.apply(params, x)
        v, se = _shape(x)
        vals.append(v)
        ses.append(se)
    kappa = np.asarray(d.cumulants(4), np.float64)
    return dict(value=np.array(vals), se=np.array(ses),
                start=np.array([kappa[2] / kappa[1] ** 1.5, kappa[3] / kappa[1] ** 2]))


def change_sentence(what: str, start: float, end: float, exact: float, margin: float) -> str:
    """How ``|what|`` (``'|skewness|'``) went from ``start`` to ``end`` beside the exact
    flow's nonzero ``exact``; a value that crossed to the other sign than the exact flow's
    (beyond ``margin``) is told with its sign, where absolute values alone would read as
    close to the exact flow (a kurtosis of -0.61 against the exact 0.75)."""
    v0, vk = abs(start), abs(end)
    if np.sign(end) != np.sign(exact) and vk > margin:
        return (f"{what[1:-1]} went from {common.g2(start)} to {common.g2(end)}, the other "
                f"sign than the exact flow's ({common.g2(exact)})")
    change = ("shrank" if vk + margin < v0 else
              "grew" if vk - margin > v0 else "did not change significantly")
    return (f"{what} {change} from {common.g2(v0)} to {common.g2(vk)} (exact "
            f"{common.g2(abs(exact))})")


def _exact(start: np.ndarray, B: int, steps: int) -> np.ndarray:
    k = np.arange(steps + 1)[:, None]
    return start[None, :] * np.asarray(B, np.float64) ** (-k * np.array([0.5, 1.0]))


def _figure(ctx, flows, families, B, steps) -> str:
    fig = Figure(figsize=(9, 3.2))
    axes = fig.subplots(1, 2)
    ks = np.arange(steps + 1)
    markers = "osD^v"
    for j, (ax, what) in enumerate(zip(axes, ("|skewness|", "|excess kurtosis|"))):
        for fi, fam in enumerate(families):
            start = next(f for f in flows if f["family"] == fam)["start"]
            exact = np.abs(_exact(start, B, steps)[:, j])
            if np.all(exact > 0):
                ax.semilogy(ks, exact, "k--", lw=0.8, label="exact" if fi == 0 else None)
            for vi, f in enumerate(x for x in flows if x["family"] == fam):
                ax.errorbar(ks + 0.06 * vi, np.maximum(np.abs(f["value"][:, j]), 1e-4),
                            yerr=f["se"][:, j], fmt=markers[vi % len(markers)] + "-",
                            color=f"C{fi}", ms=3, lw=0.8, mfc="none" if vi else None,
                            label=f"{fam} {f['activation']}")
        ax.set_yscale("log")
        ax.set_xlabel("RG steps k (learned map applied k times)")
        ax.set_ylabel(what)
        ax.set_xticks(ks)
    axes[0].legend(fontsize=6)
    fig.suptitle(f"learned flows vs the exact flow (B = {B}; dashed: exact)", fontsize=9)
    fig.tight_layout()
    return ctx.save(fig, "flows_shape")


def _eig_text(e) -> str:
    e = complex(e)
    if abs(e.imag) > 1e-9 * max(1.0, abs(e.real)):
        return f"{common.g2(e.real)}{'+' if e.imag >= 0 else '-'}{common.g2(abs(e.imag))}i"
    return common.g2(e.real)


def report(ctx) -> str:
    s = _sizes(ctx.quick)
    rec = ctx.run(RUN)
    names = [n for n in rec.variants if n in rec.summaries]
    cfg0 = rec.config
    b, dim, sites = cfg0["lattice"]["b"], cfg0["lattice"]["dim"], cfg0["lattice"]["sites"]
    B = b ** dim
    steps = cfg0["eval"]["flow_steps"]
    flows, eig_rows, eig_notes, diverged = [], [], [], []
    for name in names:
        vcfg, model, params = common.seed0(ctx, RUN, name)
        if bool(rec.variant(name).diverged[0]):
            diverged.append(name)
        act = vcfg["model"]["activation"]
        for fam in s["families"]:
            f = _flow(model, params, fam, sites, steps, s["n_chains"])
            flows.append(dict(f, variant=name, activation=act, family=fam))
        exact_rule = models.polynomial_coefficients(act) is not None
        eig = predict.rg_eigenvalues(model, params, 4, "exact" if exact_rule else "hermite")
        dist = float(np.max(np.abs(eig.eigenvalues - eig.exact) / eig.exact))
        med, lo, hi = common.median_ci(rec.summaries[name], "rg_eig_err")
        err = "-" if np.isnan(med) else f"{common.g2(med)} [{common.g2(lo)}, {common.g2(hi)}]"
        eig_rows.append([name, eig.label, *[_eig_text(e) for e in eig.eigenvalues],
                         common.g2(dist), err])
        eig_notes.append((name, eig.label, dist))
    exact_eigs = clt.scaling_eigenvalues(4, b, dim)

    iterable = sorted({v["symmetry"] for v in rec.config["variants"]})
    out = [f"### {TITLE}", "",
           f"Of the MLP symmetries {', '.join(CANDIDATE_SYMMETRIES)}, the model zoo marks "
           f"{', '.join(iterable)} as iterable; those variants ({sites} sites, b={b}, width "
           f"{s['width']}, one hidden layer, {s['steps']} steps on uniform inputs) are "
           f"trained, and seed 0's learned map is applied k = 1..{steps} times to "
           f"{s['n_chains']} chains of {sites} i.i.d. standardised sites (fixed key). Skewness "
           f"and excess kurtosis of the coarse sites are k-statistic ratios, with standard "
           f"errors from {BATCHES} independent batches; the exact flow is skew_0 B^(-k/2), "
           f"exkurt_0 B^(-k) with B = {B}. 'agrees' when within {common.g2(AGREE_SE)} SE.", ""]
    if diverged:
        out += [f"Seed 0 diverged in training (its last finite parameters are used) in: "
                f"{', '.join(diverged)}.", ""]
    rows, agree = [], {0: [], 1: []}
    for f in flows:
        exact = _exact(f["start"], B, steps)
        for k in range(1, steps + 1):
            cells = []
            for j in (0, 1):
                ok = abs(f["value"][k, j] - exact[k, j]) < AGREE_SE * f["se"][k, j]
                agree[j].append(ok)
                cells += [f"{common.g2(f['value'][k, j])} +- {common.g2(f['se'][k, j])}",
                          common.g2(exact[k, j]), "agrees" if ok else "differs"]
            rows.append([f["variant"], f["family"], k, *cells])
    out += [common.table(["variant", "input", "k", "skewness", "exact", "verdict",
                          "excess kurtosis", "exact", "verdict"], rows), ""]
    n = len(agree[0])
    out.append(f"Skewness agrees with the exact flow at {sum(agree[0])} of {n} (variant, input, "
               f"k) points and excess kurtosis at {sum(agree[1])} of {n}.")
    out += ["", f"**Verdict.** Iterated flows (beyond the abstract): the learned maps, iterated, "
                f"follow the exact flow to the Gaussian at {sum(agree[0])} of {n} points in "
                f"skewness and {sum(agree[1])} of {n} in excess kurtosis.", ""]
    for name in names:
        for fam in s["families"]:
            f = next(x for x in flows if x["variant"] == name and x["family"] == fam)
            exact = _exact(f["start"], B, steps)
            parts = []
            for j, what in ((0, "|skewness|"), (1, "|excess kurtosis|")):
                v0, vk = abs(f["value"][0, j]), abs(f["value"][steps, j])
                if exact[0, j] == 0:
                    parts.append(f"{what} went from {common.g2(v0)} to {common.g2(vk)} "
                                 f"(exact: 0 throughout)")
                else:
                    parts.append(change_sentence(
                        what, f["value"][0, j], f["value"][steps, j], exact[steps, j],
                        AGREE_SE * f["se"][steps, j]))
            out.append(f"- {name} on {fam}, after {steps} steps: {'; '.join(parts)}.")
    out += ["", _figure(ctx, flows, s["families"], B, steps), "",
            f"Learned scaling eigenvalues at the Gaussian fixed point (seed 0; sorted by "
            f"real part), the exact B^(1 - n/2) = "
            f"{', '.join(common.g2(e) for e in exact_eigs)}; 'distance': max_n "
            f"|lambda_n - B^(1-n/2)| / B^(1-n/2) of seed 0; rg_eig_err: the sweep's median "
            f"[CI] over seeds (exact rule only, '-' otherwise):", "",
            common.table(["variant", "rule", "lambda_1", "lambda_2", "lambda_3", "lambda_4",
                          "distance", "rg_eig_err"], eig_rows), ""]
    for name, label, dist in eig_notes:
        kind = "exact" if label == "exact" else f"approximate ('{label}')"
        out.append(f"- {name} ({kind}): the learned eigenvalues lie within "
                   f"{common.g2(dist)} (relative) of the block-sum RG's.")
    return "\n".join(out) + "\n"
