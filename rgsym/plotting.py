"""Figures (matplotlib, headless).  Every function writes one file atomically and returns its path."""
from __future__ import annotations

import os
import tempfile

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

__all__ = ["save_figure", "flow_histograms"]


def save_figure(fig, path: str) -> str:
    """Saves ``fig`` to ``path`` via a temporary file and an atomic rename; closes it."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    suffix = os.path.splitext(path)[1] or ".png"
    fd, tmp = tempfile.mkstemp(dir=directory, suffix=suffix)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def flow_histograms(levels_by_family: dict[str, list[np.ndarray]], path: str) -> str:
    """Grid of histograms: one row per family, one column per RG step, each standardised by
    its own sample mean and sd and overlaid with the unit Gaussian (the fixed point)."""
    families = list(levels_by_family)
    steps = len(next(iter(levels_by_family.values())))
    fig, axes = plt.subplots(len(families), steps, figsize=(1.9 * steps, 1.3 * len(families)),
                             squeeze=False, sharex=True)
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
