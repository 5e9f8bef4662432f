"""Exact versus sampled cumulant flow of the block map, family by family.

For each base family, kappa_1..kappa_4 after k = 0..steps RG steps from the exact recursion
beside the k-statistics (with standard errors) of sampled lattices pushed through the map.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from rgsym import clt
from rgsym import distributions as D
from rgsym.cumulants import k_statistics_with_se

__all__ = ["FlowRow", "flow_rows", "format_table"]

ORDER = 4


@dataclasses.dataclass(frozen=True)
class FlowRow:
    """One family at one RG step; ``exact`` is None for an order whose cumulant diverges."""
    family: str
    step: int
    exact: tuple[float | None, ...]
    sampled: tuple[float, ...]
    se: tuple[float, ...]
    se_valid: tuple[bool, ...]  # the SE of k_n needs kappa_2n; false where that diverges

    @property
    def z(self) -> tuple[float | None, ...]:
        """|sampled - exact| / se per order (None where the exact value or the SE is undefined)."""
        return tuple(None if e is None or not ok else abs(s - e) / max(se, 1e-300)
                     for e, s, se, ok in zip(self.exact, self.sampled, self.se, self.se_valid))


def flow_rows(dist: D.Distribution, key: jax.Array, *, b: int = 2, dim: int = 1,
              steps: int = 5, n_final: int = 100_000, family: str | None = None):
    """Exact and sampled kappa_1..kappa_4 of ``dist`` after k = 0..steps block-map steps.

    ``n_final`` lattices of side b**steps are sampled in float64 (needs ``jax_enable_x64``),
    so the last step still has ``n_final`` samples; consumes ``key``.

    Args:
      dist: the base family of the sites.
      key: a PRNG key.
      b: block size; dim: lattice dimension (1 or 2); steps: RG steps, >= 0.
      n_final: lattices sampled (samples left after the last step).
      family: the rows' family label (default ``dist.name``).

    Returns:
      ``(rows, levels)``: ``steps + 1`` :class:`FlowRow`, and ``levels[k]`` the sampled
      sites after k steps, flattened [n_final * (side / b**k)**dim] (for histograms).

    Raises:
      ValueError: an invalid ``b``, ``dim`` or ``steps`` (as :func:`rgsym.clt.flow`), or a
        dtype the sampler refuses (float64 with x64 off; see
        :meth:`rgsym.distributions.Distribution.sample`).
    """
    side = b ** steps
    x = dist.sample(key, (n_final,) + (side,) * dim, jnp.float64)
    exact_order = int(min(ORDER, dist.max_order))
    exact0 = dist.cumulants(exact_order) if exact_order >= 1 else np.zeros(0)
    rows, levels = [], []
    for k, level in enumerate(clt.flow(x, b, steps, dim)):
        flat = level.reshape(-1)
        ks = k_statistics_with_se(flat)
        exact = (np.asarray(clt.cumulant_recursion(exact0, b, k, dim)).tolist()
                 if exact_order else [])
        exact += [None] * (ORDER - exact_order)
        rows.append(FlowRow(family or dist.name, k, tuple(exact), tuple(np.asarray(ks.value).tolist()),
                            tuple(np.asarray(ks.se).tolist()),
                            tuple(2 * n <= dist.max_order for n in range(1, ORDER + 1))))
        levels.append(np.asarray(flat))
    return rows, levels


def format_table(rows: list[FlowRow]) -> str:
    """A Markdown table: exact and sampled (+- SE) kappa_1..kappa_4 per family and step.

    Args:
      rows: from :func:`flow_rows`, one or several families.

    Returns:
      The table, one line per row, and a footnote where a standard error is not valid
      (marked ``*``: it needs a kappa_2n that diverges).
    """
    head = ["family", "k"]
    for n in range(1, ORDER + 1):
        head += [f"kappa_{n} exact", f"kappa_{n} sampled +- se"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r.family, str(r.step)]
        for e, s, se, ok in zip(r.exact, r.sampled, r.se, r.se_valid):
            cells += ["diverges" if e is None else f"{e:+.4f}",
                      f"{s:+.4f} +- {se:.4f}{'' if ok else '*'}"]
        lines.append("| " + " | ".join(cells) + " |")
    if not all(ok for r in rows for ok in r.se_valid):
        lines.append("\n\\* standard error not valid: it needs kappa_2n, which diverges for this "
                     "family (heavy tails); the sampled value is shown for reference only.")
    return "\n".join(lines)
