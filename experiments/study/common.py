"""What every claim of the study shares: sizes by mode, figures with stable links, number
formatting, and tables read from run directories.

A claim is a module with ``TITLE``, ``sweeps(quick) -> [config]`` (each config's ``name`` is
its run directory under the study's workdir) and ``report(ctx) -> markdown``.  Reports read
only the run directories (and recompute exact or Monte Carlo references from the saved
parameters), so docs/RESULTS.md is regenerated from them without training again.
"""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Callable, Sequence

import jax
import numpy as np

from rgsym import config, models, plotting, results


@dataclasses.dataclass(frozen=True)
class Context:
    """runs: the study's workdir (one run directory per sweep name); figures: where this
    mode's figures are written; quick: the mode; link: figure file name -> the link text
    written into docs/RESULTS.md (stable wherever the figures were written)."""
    runs: Path
    figures: Path
    quick: bool
    gpu: bool = False

    @property
    def mode(self) -> str:
        return "quick" if self.quick else "gpu" if self.gpu else "full"

    def run(self, name: str) -> results.RunRecord:
        return results.load_run(self.runs / name)

    def save(self, fig, name: str) -> str:
        """Writes ``fig`` as ``<figures>/<name>.png``; returns its markdown image line."""
        self.figures.mkdir(parents=True, exist_ok=True)
        plotting.save_figure(fig, str(self.figures / f"{name}.png"))
        return f"![{name}](figures/study/{self.mode}/{name}.png)"


def g2(x) -> str:
    """A number at 2 significant digits ('-' for None or NaN): tables compare magnitudes."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    x = float(x)
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return f"{x:.2g}"


def table(header: Sequence[str], rows: Sequence[Sequence]) -> str:
    """A markdown table; cells that are numbers are shown at 2 significant digits."""
    fmt = lambda c: g2(c) if isinstance(c, (float, np.floating)) else str(c)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def median_ci(summary: dict, metric: str) -> tuple[float, float, float]:
    """(median, ci_lo, ci_hi) over seeds of a variant summary (bootstrap CI of the median)."""
    s = summary.get(metric)
    if not s:
        return (math.nan,) * 3
    return s["median"], s["ci_lo"], s["ci_hi"]


def separated(a: tuple, b: tuple) -> int:
    """+1 if interval a lies above b, -1 below, 0 if the two (median, lo, hi) CIs overlap."""
    if a[1] > b[2]:
        return 1
    if a[2] < b[1]:
        return -1
    return 0


def variant_summaries(ctx: Context, run: str, where: Callable[[dict], bool] = lambda c: True):
    """``[(name, variant config, summary)]`` of the finished variants of one run directory."""
    rec = ctx.run(run)
    out = []
    for name in rec.variants:
        if name in rec.summaries:
            cfg = config.upgrade(json.loads(
                (rec.path / "variants" / name / "config.json").read_text()))
            if where(cfg):
                out.append((name, cfg, rec.summaries[name]))
    return out


def trained(ctx: Context, run: str) -> str:
    """One sentence saying what a run trained, read from its config."""
    c = ctx.run(run).config
    lat, m, o = c["lattice"], c["model"], c["optim"]
    n = c["data"].get("train_size", 0)
    data = f"{n} training pairs per seed" if n else "fresh samples every step"
    return (f"Trained (base settings; a variant's name lists what it changes): "
            f"{c['num_seeds']} seeds per variant on {c['data']['family']} inputs ({data}, "
            f"batch {c['data']['batch']}), a {lat['dim']}-D lattice of {lat['sites']} sites "
            f"per side in blocks of b = {lat['b']}, {m['kind']} width {m['width']} and depth "
            f"{m['depth']}, {o['steps']} {o['optimizer']} steps at learning rate {o['lr']:g} "
            f"({o['schedule']} schedule).")


def brief_sweep(name: str, s: dict):
    """A short training run (claims 3 and 4): s['seeds'] seeds of one-hidden-layer nets of
    width s['width'] on s['sites'] sites, s['steps'] Adam steps at lr 1e-2 on uniform
    inputs, one evaluation at the end on small sets."""
    c = config.base_config()
    c.name = name
    c.num_seeds = s["seeds"]
    c.lattice.sites = s["sites"]
    c.model.width, c.model.depth = s["width"], 1
    c.optim.lr, c.optim.steps = 1e-2, s["steps"]
    c.eval.every = s["steps"]
    c.eval.families = ("uniform", "exponential")
    c.eval.batch = c.eval.curve_batch = 256
    return c


def seed0(ctx, run: str, name: str):
    """(variant config, model, parameters) of seed 0 of one variant, all in float64."""
    rec = results.load_variant(ctx.runs / run / "variants" / name)
    vcfg = dict(rec.config, dtype="float64")
    i = list(rec.seeds).index(0)
    params = jax.tree.map(lambda a: np.asarray(a[i], np.float64), rec.params)
    return vcfg, models.build(vcfg), params
