"""Claim 1: weight constraints compete with expressivity; both over-constrained and
over-complex networks generalise badly.

Grids of constraint level (hard symmetries, and a soft penalty from 0 to hard) x
expressivity (activation, width, depth, and the amount of training data), trained on the
uniform family; judged by the median relative error over every OOD family with finite
kappa_4 (``ood_rel_err_median``) beside the in-distribution test error.
"""
from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

import common
from rgsym import config, results

TITLE = "1. Constraints against expressivity"
CONSTRAINTS = ("none", "block_local", "block_permutation", "odd", "symmetric_weights",
               "nonnegative", "tied_hidden")
ACTIVATIONS = ("identity", "quadratic", "cubic", "tanh", "relu")
QUICK_CONSTRAINTS = ("none", "block_local", "tied_hidden")
QUICK_ACTIVATIONS = ("identity", "quadratic", "tanh")
QUICK_FAMILIES = ("uniform", "gaussian", "exponential", "laplace")
WIDTHS, DEPTHS, TRAIN_SIZES = (4, 16, 64, 128), (1, 2, 3), (64, 1024, 16384, 0)
# A net that fails in distribution too has hit a representation limit, not a generalisation
# gap: flagged where the test error exceeds this and OOD is within a factor 2 of it.
REPRESENTATION_LIMIT = 1e-2


def base(name: str, quick: bool):
    c = config.base_config()
    c.name = name
    c.num_seeds = 4 if quick else 8
    c.lattice.sites = 4 if quick else 8
    c.data.batch = 64 if quick else 128
    c.model.width, c.model.depth = (8, 1) if quick else (32, 2)
    c.optim.lr, c.optim.schedule = 1e-2, "cosine"
    c.optim.steps = 300 if quick else 3000
    c.eval.every = 100 if quick else 250
    c.eval.batch, c.eval.curve_batch = (512, 128) if quick else (2048, 256)
    c.eval.scales = (2.0,) if quick else (0.5, 2.0, 4.0)
    if quick:  # (each evaluation set adds to the program that every variant compiles)
        c.eval.families = QUICK_FAMILIES
    c.eval.flow_steps = 1 if quick else 2
    return c


def sweeps(quick: bool) -> list:
    grid = config.grid
    hard = base("competition_mlp", quick)
    hard.variants = grid(symmetry=QUICK_CONSTRAINTS if quick else CONSTRAINTS,
                         activation=QUICK_ACTIVATIONS if quick else ACTIVATIONS)
    data = base("competition_data", quick)
    data.data.batch = 64  # (a finite set holds at least one batch: TRAIN_SIZES start at 64)
    data.variants = grid(symmetry=("none",) if quick else ("none", "block_local"),
                         activation=("tanh",),
                         **{"data.train_size": (64, 0) if quick else TRAIN_SIZES})
    if quick:
        return [hard, data]
    width = base("competition_width", quick)
    width.variants = grid(symmetry=("none", "block_local", "tied_hidden"), activation=("tanh",),
                          width=WIDTHS)
    depth = base("competition_depth", quick)
    depth.variants = grid(symmetry=("none", "block_local", "tied_hidden"), activation=("tanh",),
                          depth=DEPTHS)
    soft = base("competition_soft", quick)
    soft.variants = [dict(symmetry="none", activation="tanh")] + grid(
        symmetry=("none",), activation=("tanh",), soft_symmetry=("block_local",),
        symmetry_strength=(1e-3, 1e-2, 1e-1, 1.0)) + [dict(symmetry="block_local",
                                                          activation="tanh")]
    gnn = base("competition_gnn", quick)
    gnn.model.width = 8
    gnn.variants = grid(kind=("gnn",), symmetry=("shared", "separate", "edge_typed",
                                                   "directional"),
                        activation=("quadratic", "tanh"))
    return [hard, data, width, depth, soft, gnn]


def _point(summary: dict, metric: str = "ood_rel_err_median"):
    return common.median_ci(summary, metric)


def _lines(ctx, run: str, line_key: str, x_key: str, xs):
    """{line value: [(median, lo, hi)] over xs} from one run's variants."""
    out: dict = {}
    for _, cfg, s in common.variant_summaries(ctx, run):
        line, x = _field(cfg, line_key), _field(cfg, x_key)
        if x in xs:
            out.setdefault(line, [None] * len(xs))[list(xs).index(x)] = _point(s)
    return out


def _field(cfg: dict, dotted: str):
    for part in dotted.split("."):
        cfg = cfg[part]
    return cfg


def _plot(ax, xs, lines, xlabel, log_x=False):
    pos = np.asarray(xs, float) if log_x else np.arange(len(xs))
    for name, pts in lines.items():
        ok = [i for i, p in enumerate(pts) if p is not None and np.isfinite(p[0])]
        med = np.array([pts[i][0] for i in ok])
        err = np.array([[pts[i][0] - pts[i][1] for i in ok], [pts[i][2] - pts[i][0] for i in ok]])
        ax.errorbar(pos[ok], med, yerr=np.maximum(err, 0), marker="o", capsize=3, label=name)
    ax.set_yscale("log")
    if log_x:
        ax.set_xscale("log", base=2)
    else:
        ax.set_xticks(pos, [str(x) for x in xs])
    ax.set_xlabel(xlabel)
    ax.set_ylabel("OOD rel. error (median over families)")
    ax.grid(alpha=0.3)


def _table(ctx, run: str) -> tuple[str, list]:
    rows, flagged = [], []
    for name, cfg, s in common.variant_summaries(ctx, run):
        test, ood = _point(s, "test_rel_err")[0], _point(s)[0]
        ratio = ood / test if test > 0 else float("nan")
        limit = test > REPRESENTATION_LIMIT and ratio < 2
        if limit:
            flagged.append(name)
        gain, late = _plateau(ctx, run, name)
        rows.append((name, test, ood, ratio, _point(s, "scale_rel_err_max")[0],
                     _point(s, "flow_rel_err_max")[0], gain,
                     "representation limit" if limit else ""))
    header = ("variant", "test rel. err", "OOD rel. err", "OOD / test", "other scales",
              "iterated steps", "late gain", "")
    return common.table(header, rows), flagged, late


def _plateau(ctx, run: str, name: str) -> tuple[float, str]:
    """How much the test error still fell late in training: the median over seeds of
    err(last evaluation at or before 3/4 of the steps) / err(end), about 1 on a plateau;
    and that evaluation's step ('step 2250')."""
    v = results.load_variant(ctx.runs / run / "variants" / name)
    curve = v.curves["test_rel_err"]
    i = max(int(np.searchsorted(v.steps, 0.75 * v.steps[-1], side="right")) - 1, 0)
    return float(np.median(curve[:, i] / curve[:, -1])), f"step {v.steps[i]}"


def _curves_figure(ctx, run: str, activation: str) -> str:
    fig = Figure(figsize=(5, 3.5), layout="constrained")
    ax = fig.add_subplot()
    for name, cfg, _ in common.variant_summaries(ctx, run):
        if cfg["model"]["activation"] == activation:
            v = results.load_variant(ctx.runs / run / "variants" / name)
            c = v.curves["test_rel_err"]
            line, = ax.plot(v.steps, np.median(c, 0), label=cfg["model"]["symmetry"])
            ax.fill_between(v.steps, *np.percentile(c, [25, 75], axis=0), alpha=0.2,
                            color=line.get_color())
    ax.set(yscale="log", xlabel="step", ylabel="test rel. error (median, IQR)")
    fig.legend(loc="outside right upper", fontsize=7)
    return ctx.save(fig, f"competition_curves_{activation}")


def _over_constrained(lines: dict, activations) -> list[tuple[str, str]]:
    """(constraint, activation) pairs whose OOD CI lies above the free net's."""
    free = lines.get("none") or []
    return [(c, a) for c, pts in lines.items() if c != "none"
            for a, p, f in zip(activations, pts, free)
            if p is not None and f is not None and common.separated(p, f) > 0]


def _over_complex(points: list, xs) -> str | None:
    """The x with the lowest median if the last x's CI lies above it (a U or a rise), else
    None."""
    ok = [(x, p) for x, p in zip(xs, points) if p is not None and np.isfinite(p[0])]
    if len(ok) < 2:
        return None
    best_x, best = min(ok, key=lambda t: t[1][0])
    last_x, last = ok[-1]
    return best_x if last_x != best_x and common.separated(last, best) > 0 else None


def report(ctx) -> str:
    acts = QUICK_ACTIVATIONS if ctx.quick else ACTIVATIONS
    hard = _lines(ctx, "competition_mlp", "model.symmetry", "model.activation", acts)
    fig = Figure(figsize=(6.5, 4), layout="constrained")
    _plot(fig.add_subplot(), acts, hard, "activation")
    fig.legend(loc="outside right upper", fontsize=7)
    out = [f"### {TITLE}", "", common.trained(ctx, "competition_mlp"), "",
           "One line per hard constraint; error bars are the bootstrap 95% CI of the median "
           "over seeds; the OOD error is the median relative error over the OOD families. "
           "'iterated steps' is '-' where the net cannot be iterated.", "",
           ctx.save(fig, "competition_activation")]
    worse = _over_constrained(hard, acts)
    table, flagged, late = _table(ctx, "competition_mlp")
    limited = [f"{c}/{a}" for c, a in worse if f"mlp-{c}-{a}" in flagged]
    gaps = [f"{c}/{a}" for c, a in worse if f"mlp-{c}-{a}" not in flagged]
    n_pairs = sum(1 for c in hard if c != "none") * len(acts)
    out += ["", f"**Over-constrained.** {len(worse)} of {n_pairs} (constraint, activation) "
                f"pairs generalise worse than the free net with the same activation (CIs of "
                f"the OOD error separated). {len(limited)} of them fail in distribution as "
                f"badly (a representation limit: the constrained net cannot express the map "
                f"on this lattice" + (f": {', '.join(limited)}" if limited else "") + "); "
                f"{len(gaps)} fit in distribution and fail out of it (an over-constrained "
                f"generalisation gap" + (f": {', '.join(gaps)}" if gaps else "") + ")."]
    out += ["", f"Learning curves of the tanh nets (in-distribution test error). The table's "
                f"'late gain' is the median over seeds of the test error at {late} divided by "
                f"the final one: about 1 means training had plateaued.",
            "", _curves_figure(ctx, "competition_mlp", "tanh"), "", table, "",
            f"{len(flagged)} variants fail in distribution as much as out of it (test error > "
            f"{common.g2(REPRESENTATION_LIMIT)}, OOD/test < 2): a representation limit, not a "
            "generalisation gap" + (f": {', '.join(flagged)}." if flagged else ".")]
    sizes = (64, 0) if ctx.quick else TRAIN_SIZES
    data = _lines(ctx, "competition_data", "model.symmetry", "data.train_size", sizes)
    labels = [str(n) if n else "unlimited" for n in sizes]
    fig = Figure(figsize=(5, 3.5), layout="constrained")
    _plot(fig.add_subplot(), labels, data, "training samples")
    fig.legend(loc="outside right upper", fontsize=7)
    out += ["", ctx.save(fig, "competition_data")]
    for sym, pts in data.items():
        small, unlimited = pts[0], pts[-1]
        if small is not None and unlimited is not None:
            verdict = {1: "above", -1: "below", 0: "within the CI of"}[
                common.separated(small, unlimited)]
            out += ["", f"**Finite data ({sym}, tanh).** With {sizes[0]} training samples "
                        f"the OOD error ({common.g2(small[0])}) lies {verdict} the one with "
                        f"fresh samples every step ({common.g2(unlimited[0])})."]
    finite_data = any(p[0] is not None and p[-1] is not None
                      and common.separated(p[0], p[-1]) > 0 for p in data.values())
    over_complex = [finite_data]
    if {"quadratic", "cubic"} <= set(acts) and "none" in hard:
        # the polynomial degree of a one-activation net's output: 2 for quadratic, 3 cubic
        quad, cubic = (hard["none"][list(acts).index(a)] for a in ("quadratic", "cubic"))
        higher = quad is not None and cubic is not None and common.separated(cubic, quad) > 0
        over_complex.append(higher)
        out += ["", f"**Polynomial degree (free net).** The cubic net's OOD error "
                    f"({common.g2(cubic[0])}) lies "
                    + ("above" if higher else "not significantly above")
                    + f" the quadratic net's ({common.g2(quad[0])})."]
    if not ctx.quick:
        lines, over_complex_axes = _expressivity_axes(ctx)
        out += lines
        over_complex.append(over_complex_axes)
    sides = {"over-constrained": bool(gaps), "over-complex": any(over_complex)}
    shown = [k for k, v in sides.items() if v]
    verdict = ("agrees" if len(shown) == 2 else
               f"partly agrees (only the {shown[0]} side is shown)" if shown else
               "is not reproduced (neither side is significant)")
    out += ["", "The verdict counts the over-constrained side as shown when a constrained net "
                "has a generalisation gap (not a representation limit), and the over-complex "
                "side when more capacity than the data or the map needs generalises worse: "
                "fewer training samples than unlimited, a cubic over a quadratic free net, or "
                "the largest width or depth over the best one (CIs separated).", "",
            f"**Verdict.** Claim 1 (constraints compete with expressivity: over-constrained "
            f"and over-complex nets both generalise badly) {verdict} in this run."]
    return "\n".join(out)


def _expressivity_axes(ctx) -> tuple[list[str], bool]:
    """The width, depth and soft-strength figures and GNN table; and whether a larger
    width or depth generalised significantly worse than a smaller one (over-complex)."""
    out, over_complex = [], False
    fig = Figure(figsize=(10, 3.5), layout="constrained")
    for ax, (run, key, xs, label, log_x) in zip(
            fig.subplots(1, 2),
            (("competition_width", "model.width", WIDTHS, "width", True),
             ("competition_depth", "model.depth", DEPTHS, "depth", False))):
        lines = _lines(ctx, run, "model.symmetry", key, xs)
        _plot(ax, xs, lines, f"{label} (tanh)", log_x)
        for sym, pts in lines.items():
            best = _over_complex(pts, xs)
            over_complex |= best is not None
            out.append(f"- {label}, {sym}: " + (
                f"the largest {label} generalises worse than {label} {best} (CIs separated): "
                "over-complex." if best is not None else
                f"no {label} beyond the best one is significantly worse."))
    fig.legend(*fig.axes[0].get_legend_handles_labels(), loc="outside right upper", fontsize=7)
    soft = common.variant_summaries(ctx, "competition_soft")
    fig2 = Figure(figsize=(5, 3.5))
    ax = fig2.add_subplot()
    xs, pts = [], []
    for name, cfg, s in soft:
        m = cfg["model"]
        strength = (np.inf if m["symmetry"] != "none" else
                    m["symmetry_strength"] if m["soft_symmetry"] else 0.0)
        xs.append(strength)
        pts.append(_point(s))
    order = np.argsort(xs)
    labels = ["hard" if np.isinf(xs[i]) else common.g2(xs[i]) for i in order]
    _plot(ax, labels, {"block_local penalty": [pts[i] for i in order]},
          "soft block_local strength (tanh)")
    gnn_table = _table(ctx, "competition_gnn")[0]
    return ((["", "**Expressivity: width and depth** (tanh, three constraint levels).", "",
             ctx.save(fig, "competition_width_depth"), ""] + out +
            ["", "**Soft constraints** from free (0) to hard:", "",
             ctx.save(fig2, "competition_soft"), "",
             "**GNNs** (weight-sharing options x activation):", "", gnn_table]), over_complex)
