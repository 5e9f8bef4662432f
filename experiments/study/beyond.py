"""Beyond the paper: symmetry breaking during training, other lattices, and training on the
fixed point itself.

- A free net starts in no symmetric subspace; its distance from each (``sym/<name>``, the
  relative distance of the weights from their projection) is followed along training.
- 2-D lattices (B = 4) and blocks of b = 3 (B = 3), beside the 1-D b = 2 default.
- Training on the Gaussian, the RG's fixed point, where the map's non-linear terms are
  never probed by a non-zero kappa_3 or kappa_4, against training on the uniform family.
"""
from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

import common
import competition
from rgsym import config, results

TITLE = "5. Beyond the paper"
LATTICES = {"lattice.dim": (1, 2, 1), "lattice.b": (2, 2, 3), "lattice.sites": (8, 4, 9)}


def sweeps(quick: bool) -> list:
    lattices = competition.base("beyond_lattices", quick)
    lattices.variants = config.product(
        config.grid(symmetry=("block_local",) if quick else ("none", "block_local"),
                    activation=("tanh",)),
        config.zipped(**{k: v[1:] if quick else v for k, v in LATTICES.items()}))
    fixed = competition.base("beyond_fixed_point", quick)
    fixed.variants = config.grid(symmetry=("none",) if quick else ("none", "block_local"),
                                 activation=("tanh",) if quick else ("quadratic", "tanh"),
                                 **{"data.family": ("uniform", "gaussian")})
    return [lattices, fixed]


def _symmetry_breaking(ctx) -> list[str]:
    rec = results.load_variant(ctx.runs / "competition_mlp" / "variants" / "mlp-none-tanh")
    fig = Figure(figsize=(5, 3.5))
    ax = fig.add_subplot()
    rows = []
    for key in sorted(k for k in rec.curves if k.startswith("sym/")):
        med = np.median(rec.curves[key], axis=0)
        ax.plot(rec.steps, med, marker=".", label=key[4:])
        rows.append((key[4:], float(med[0]), float(med[-1])))
    ax.set(yscale="log", xlabel="step", ylabel="distance from subspace (median)")
    ax.legend(fontsize=7)
    return ["**Symmetry breaking along training** (free tanh MLP of claim 1; median over "
            "seeds).", "", ctx.save(fig, "beyond_symmetry_breaking"), "",
            common.table(("symmetric subspace", f"distance at step {rec.steps[0]}",
                          f"at step {rec.steps[-1]}"), rows)]


def _compare(ctx, run: str, label) -> str:
    rows = []
    for name, cfg, s in common.variant_summaries(ctx, run):
        rows.append((name, label(cfg), common.median_ci(s, "test_rel_err")[0],
                     common.median_ci(s, "ood_rel_err_median")[0],
                     common.median_ci(s, "flow_rel_err_max")[0],
                     common.median_ci(s, "fixed_point_violation")[0]))
    return common.table(("variant", "setting", "test rel. err", "OOD rel. err",
                         "iterated-flow rel. err", "fixed-point violation"), rows)


def _fixed_point_verdict(ctx) -> list[str]:
    by = {}
    for _, cfg, s in common.variant_summaries(ctx, "beyond_fixed_point"):
        m = cfg["model"]
        by.setdefault((m["symmetry"], m["activation"]), {})[cfg["data"]["family"]] = (
            common.median_ci(s, "ood_rel_err_median"))
    out = []
    for (sym, act), d in by.items():
        if "gaussian" in d and "uniform" in d:
            rel = {1: "worse than", -1: "better than", 0: "indistinguishable from"}[
                common.separated(d["gaussian"], d["uniform"])]
            out.append(f"- {sym} {act}: trained on the Gaussian, OOD error "
                       f"{common.g2(d['gaussian'][0])}, {rel} trained on uniform "
                       f"({common.g2(d['uniform'][0])}).")
    return out


def report(ctx) -> str:
    lat = lambda c: f"dim {c['lattice']['dim']}, b {c['lattice']['b']}, N {c['lattice']['sites']}"
    return "\n".join(
        [f"### {TITLE}", ""] + _symmetry_breaking(ctx) +
        ["", "**Other lattices** (tanh):", "", _compare(ctx, "beyond_lattices", lat), "",
         "**Training on the fixed point** (the Gaussian) against the uniform family:", "",
         _compare(ctx, "beyond_fixed_point", lambda c: c["data"]["family"]), ""]
        + _fixed_point_verdict(ctx))
