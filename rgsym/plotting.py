"""Figures (matplotlib, headless).  Every function writes one file atomically and returns its path.

Figures are built with matplotlib's object API (``matplotlib.figure.Figure``), never
pyplot: importing this module leaves matplotlib's global backend and state alone, and
nothing of the training stack is imported."""
from __future__ import annotations

import io
import os
import warnings
from typing import TYPE_CHECKING

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from rgsym.atomic import atomic_write_bytes

if TYPE_CHECKING:
    from rgsym.results import VariantRecord

__all__ = ["save_figure", "flow_histograms"]


def save_figure(fig, path: str) -> str:
    """Renders ``fig`` (format from the suffix, PNG by default) and writes it atomically
    with :func:`rgsym.atomic.atomic_write_bytes`.  A Figure made without pyplot is not
    registered anywhere: nothing to close.

    Args:
      fig: a ``matplotlib.figure.Figure``.
      path: the file; its suffix (``.png``, ``.pdf``, ``.svg``, ...) picks the format.

    Returns:
      ``path``.

    Raises:
      ValueError: a suffix matplotlib has no writer for.
      OSError: as :func:`rgsym.atomic.atomic_write_bytes`.
    """
    buf = io.BytesIO()
    fig.savefig(buf, format=os.path.splitext(path)[1][1:] or "png", dpi=110,
                bbox_inches="tight")
    return atomic_write_bytes(path, buf.getvalue())


def flow_histograms(levels_by_family: dict[str, list[np.ndarray]], path: str) -> str:
    """Grid of histograms: one row per family, one column per RG step, each standardised by
    its own sample mean and sd and overlaid with the unit Gaussian (the fixed point).

    Args:
      levels_by_family: ``{family: levels}``, ``levels[k]`` the sampled sites [n_k] after k
        steps (as :func:`rgsym.flow_check.flow_rows` returns); the same step count for all.
      path: the image file.

    Returns:
      ``path``.

    Raises:
      StopIteration: ``levels_by_family`` is empty.
      ValueError, OSError: as :func:`save_figure`.
    """
    families = list(levels_by_family)
    steps = len(next(iter(levels_by_family.values())))
    fig = Figure(figsize=(1.9 * steps, 1.3 * len(families)))
    axes = fig.subplots(len(families), steps, squeeze=False, sharex=True)
    grid = np.linspace(-4, 4, 200)
    gauss = np.exp(-grid ** 2 / 2) / np.sqrt(2 * np.pi)
    for i, fam in enumerate(families):
        for k, level in enumerate(levels_by_family[fam]):
            ax = axes[i, k]
            z = (level - level.mean()) / max(level.std(), 1e-12)
            ax.hist(z, bins=60, range=(-4, 4), density=True, color="tab:blue", alpha=0.7)
            ax.plot(grid, gauss, color="k", lw=0.8)
            ax.set_yticks([])
            if i == 0:
                ax.set_title(f"k = {k}", fontsize=8)
            if k == 0:
                ax.set_ylabel(fam, fontsize=7, rotation=0, ha="right")
    fig.suptitle("Block-sum RG flow: standardised site histograms vs the Gaussian fixed point",
                 fontsize=9)
    return save_figure(fig, path)


# ------------------------------------------------------------------------------------------
# Sweep figures (rgsym.results writes them at the end of a run).

__all__ += ["learning_curves", "ood_by_family", "sweep_figures"]


def _quantiles_over_seeds(a: np.ndarray, diverged: np.ndarray, q) -> np.ndarray | None:
    """Percentiles ``q`` over the seeds [S, ...] that did not diverge, of the finite entries
    only, as metrics.aggregate takes them for the summary; None when no seed is left."""
    a = np.asarray(a, dtype=np.float64)[~np.asarray(diverged, bool)]
    if not len(a):
        return None
    with warnings.catch_warnings():  # an all-NaN column is a NaN cell, not a warning
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanpercentile(np.where(np.isfinite(a), a, np.nan), q, axis=0)


def _metrics():
    """rgsym.metrics, imported when a figure is drawn (not with this module: it loads JAX)."""
    from rgsym import metrics
    return metrics


def learning_curves(variants: dict[str, VariantRecord], path: str,
                    metrics=("train_loss", "test_rel_err", "ood_rel_err_median")) -> str:
    """One panel per metric: median over seeds (IQR band) against the training step; titles
    and axis labels from the metrics' declarations (``rgsym.metrics.REGISTRY``).

    Args:
      variants: ``{name: results.load_variant(...)}`` (curves [S, E], steps [E], diverged
        [S]); a variant lacking a metric, or whose seeds all diverged, is left out of its panel.
      path: the image file.
      metrics: metric names the registry knows (a pattern's too, e.g. ``rel_err/laplace``).

    Returns:
      ``path``.

    Raises:
      ValueError: a metric name the registry does not know; as :func:`save_figure`.
      OSError: as :func:`save_figure`.
    """
    infos = [_metrics().metric_info(m) for m in metrics]
    fig = Figure(figsize=(4.2 * len(metrics), 3.4))
    axes = fig.subplots(1, len(metrics), squeeze=False)
    colours = matplotlib.colormaps["tab20"]
    for ax, metric, info in zip(axes[0], metrics, infos):
        for c, (name, v) in enumerate(variants.items()):
            if metric not in v.curves:
                continue
            bands = _quantiles_over_seeds(v.curves[metric], v.diverged, [25, 50, 75])
            if bands is None:
                continue
            lo, med, hi = bands
            style = "--" if v.config["model"]["kind"] == "gnn" else "-"
            ax.plot(v.steps, med, style, label=name, lw=1.2, color=colours(c % 20))
            ax.fill_between(v.steps, lo, hi, color=colours(c % 20), alpha=0.15)
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel(_axis_label(info), fontsize=8)
        ax.set_title(metric, fontsize=9)
    axes[0, -1].legend(fontsize=6, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.suptitle("Learning curves: median over seeds, inter-quartile band", fontsize=9)
    return save_figure(fig, path)


def ood_by_family(variants: dict[str, VariantRecord], path: str) -> str:
    """Heat map of log10 median relative error: variants (sorted by model kind, symmetry,
    activation) x evaluation sets (families and scales); cells of a variant without that
    set, or whose seeds all diverged, are blank.

    Args:
      variants: ``{name: results.load_variant(...)}`` (final [S] per metric, diverged [S]).
      path: the image file.

    Returns:
      ``path``.

    Raises:
      ValueError, OSError: as :func:`save_figure`.
    """
    rel_err = _metrics().REL_ERR
    names = sorted(variants, key=lambda n: tuple(
        variants[n].config["model"][k] for k in ("kind", "symmetry", "activation")))
    sets = list(dict.fromkeys(rel_err.match(k)["set"] for n in names
                              for k in variants[n].final if rel_err.matches(k)))
    grid = np.full((len(names), len(sets)), np.nan)
    for i, n in enumerate(names):
        v = variants[n]
        for j, s in enumerate(sets):
            if rel_err.name(set=s) in v.final:
                med = _quantiles_over_seeds(v.final[rel_err.name(set=s)], v.diverged, 50)
                grid[i, j] = np.nan if med is None else med
    logs = np.log10(np.clip(grid, 1e-300, None))
    fig = Figure(figsize=(0.55 * len(sets) + 3, 0.32 * len(names) + 1.6))
    ax = fig.subplots()
    im = ax.imshow(logs, aspect="auto", cmap="viridis")
    ax.set_xticks(range(len(sets)), sets, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(names)), names, fontsize=7)
    for i, j in np.ndindex(*logs.shape):
        if np.isfinite(logs[i, j]):
            ax.text(j, i, f"{np.round(logs[i, j]) + 0:.0f}", ha="center", va="center",
                    fontsize=5, color="w")
    fig.colorbar(im, ax=ax, label=f"log10 median {_axis_label(rel_err)}")
    ax.set_title("Generalisation by evaluation family x (model kind, symmetry, activation)",
                 fontsize=9)
    return save_figure(fig, path)


def _axis_label(info) -> str:
    """A metric's axis label, with its unit unless dimensionless."""
    return info.label if info.unit == "1" else f"{info.label} [{info.unit}]"


def sweep_figures(workdir, variants: dict[str, VariantRecord]) -> list[str]:
    """Writes both sweep figures under ``workdir/figures``.

    Args:
      workdir: the run directory.
      variants: as :func:`learning_curves`.

    Returns:
      The paths of ``learning_curves.png`` and ``ood_by_family.png``.

    Raises:
      ValueError, OSError: as :func:`save_figure`.
    """
    out = os.path.join(str(workdir), "figures")
    return [learning_curves(variants, os.path.join(out, "learning_curves.png")),
            ood_by_family(variants, os.path.join(out, "ood_by_family.png"))]
