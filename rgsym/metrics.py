"""Generalisation and cumulant metrics: in-graph per seed, aggregated over seeds on the host.

An :class:`Evaluator` judges one model on a fixed stack of evaluation sets, all sampled
from one key and shared by every seed (common random numbers: seeds and variants are
compared on the same inputs):

- the training family (in-distribution test error), every OOD family (standardised), the
  Gaussian (fixed point) and the training family at other scales;
- per set: MSE against the exact block map, the relative error MSE / Var(target) (the
  exact target variance, kappa_2 of the input family, which the RG keeps), and the output
  k-statistics kappa_1..4 against the exact cumulant recursion;
- at the end also the k-step iterated-flow error of iterable models and the Gaussian
  fixed-point violation: output kappa_3, kappa_4 on Gaussian input (exactly 0 for the RG),
  measured as k-statistics of f(x) minus those of RG(x) on the same inputs so that the
  sampling noise of the evaluation set cancels (``cum_err/gaussian/k<n>`` holds the
  unpaired error against the exact 0);
- the model's symmetry diagnostics (distance from each symmetric subspace) along training.

Metric names: ``rel_err/<set>``, ``mse/<set>`` (final only), ``test_rel_err``, ``test_mse``,
``ood_rel_err_median``, ``ood_rel_err_max``, ``cum_err/<set>/k<n>``, ``cum_err/k<n>``
(training family), ``fixed_point/k3``, ``fixed_point/k4``, ``fixed_point_violation``,
``flow_rel_err/k<j>``, ``sym/<name>``.
"""
from __future__ import annotations

import math
from typing import Callable, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from rgsym import clt, data, distributions
from rgsym.cumulants.estimators import k_statistics

__all__ = ["EvalSets", "Evaluator", "eval_sets", "make_evaluator", "aggregate", "summarise",
           "default_families"]

ORDERS = 4
_DATA_CACHE: dict = {}


def default_families() -> list[str]:
    """Every registered family whose cumulants up to kappa_4 exist (used standardised)."""
    return distributions.finite_order_names(ORDERS)


class EvalSets(NamedTuple):
    """Host-side description of the evaluation stack (static at trace time).

    names: [F] set names; ``scale_<s>`` for the training family at scale s.
    dists: [F] Distributions the sets are drawn from.
    target_var: [F] exact Var(RG(x)) per coarse site.
    exact_cumulants: [F, 4] exact kappa_1..4 of RG(x) per coarse site.
    ood: indices of the OOD families (configured families other than the training one).
    train, gaussian: indices of the training family and of the Gaussian.
    """
    names: list
    dists: list
    target_var: np.ndarray
    exact_cumulants: np.ndarray
    ood: np.ndarray
    train: int
    gaussian: int


def eval_sets(cfg) -> EvalSets:
    """The evaluation stack of a config (families default to :func:`default_families`)."""
    train = cfg.data.family
    families = list(cfg.eval.families) or default_families()
    names = list(dict.fromkeys([train] + families + ["gaussian"]))
    dists = [distributions.get(n, standardised=True) for n in names]
    base = dists[0]
    for s in cfg.eval.scales:
        names.append(f"scale_{s:g}")
        dists.append(base.affine(float(s)))
    lat = cfg.lattice
    exact = np.stack([np.asarray(clt.cumulant_recursion(d.cumulants(ORDERS), lat.b, 1, lat.dim))
                      for d in dists])
    ood = np.array([names.index(f) for f in dict.fromkeys(families) if f != train], dtype=int)
    return EvalSets(names, dists, exact[:, 1].copy(), exact, ood, 0, names.index("gaussian"))


class Evaluator(NamedTuple):
    """sample: ``key -> (x [F, B, *lattice], y [F, B, *coarse])``; consumes ``key``.
    fixed_data: ``() -> sample(key(eval.seed))`` as host arrays, computed once.
    curve: ``(params, hp, data) -> {name: []}`` on the first ``eval.curve_batch`` samples.
    final: ``(params, hp, data) -> {name: []}`` on all ``eval.batch`` samples, plus flow.
    """
    sample: Callable
    fixed_data: Callable
    curve: Callable
    final: Callable
    sets: EvalSets


def make_evaluator(cfg, model) -> Evaluator:
    """Evaluation functions of one model (jit/vmap-able over params and hyper-parameters)."""
    sets = eval_sets(cfg)
    lat = cfg.lattice
    dtype = jnp.dtype(cfg.dtype)
    shape = data.lattice_shape(lat.sites, lat.dim)
    iterable = bool(model.describe().get("iterable", False))

    def sample(key):
        keys = jax.random.split(key, len(sets.dists))
        x = jnp.stack([d.sample(k, (cfg.eval.batch,) + shape, dtype)
                       for d, k in zip(sets.dists, keys)])
        return x, clt.block_map(x, lat.b, lat.dim)

    def fixed_data():
        # Depends on no seed: sampled once per process and evaluation setup, so a sweep
        # does not compile a dozen samplers into every variant.
        # Distributions compare by their origin too, so a family re-registered under the
        # same name and parameters gets new data; the RNG stream depends on the flag and the
        # PRNG implementation.
        key = (tuple(sets.names), cfg.eval.batch, cfg.eval.seed, tuple(shape), lat.b,
               str(dtype), tuple(sets.dists), jax.config.jax_threefry_partitionable,
               str(jax.config.jax_default_prng_impl))
        if key not in _DATA_CACHE:
            with jax.ensure_compile_time_eval():  # concrete even when called while tracing
                _DATA_CACHE[key] = jax.device_get(jax.jit(sample)(jax.random.key(cfg.eval.seed)))
        return _DATA_CACHE[key]

    def per_set(params, hp, xy, with_kstats):
        x, y = xy
        pred = model.apply(params, x, alpha=hp.alpha)
        kstats = (k_statistics(jnp.stack([pred.reshape(-1), y.reshape(-1)]), axis=1,
                               order=ORDERS) if with_kstats else None)
        return jnp.mean((pred - y) ** 2), kstats

    def evaluate(params, hp, x, y, with_kstats=True):
        # lax.map runs the sets one after another: memory is one set's activations.
        # kstats [F, 2, 4]: k-statistics of the model's output and of RG(x), same inputs;
        # only the final evaluation needs them, not the curves inside the training scan.
        mse, kstats = jax.lax.map(lambda xy: per_set(params, hp, xy, with_kstats), (x, y))
        rel = mse / jnp.asarray(sets.target_var, mse.dtype)
        out = {f"rel_err/{n}": rel[i] for i, n in enumerate(sets.names)}
        out["test_rel_err"] = rel[sets.train]
        out["test_mse"] = mse[sets.train]
        if len(sets.ood):
            out["ood_rel_err_median"] = jnp.median(rel[sets.ood])
            out["ood_rel_err_max"] = jnp.max(rel[sets.ood])
        out.update({f"sym/{k}": v for k, v in model.symmetry_diagnostics(params).items()})
        return out, kstats, mse

    def curve(params, hp, xy):
        x, y = xy
        b = cfg.eval.curve_batch
        return evaluate(params, hp, x[:, :b], y[:, :b], with_kstats=False)[0]

    def final(params, hp, xy):
        x, y = xy
        out, kstats, mse = evaluate(params, hp, x, y)
        out.update({f"mse/{n}": mse[i] for i, n in enumerate(sets.names)})
        err = jnp.abs(kstats[:, 0] - jnp.asarray(sets.exact_cumulants, kstats.dtype))
        for i, n in enumerate(sets.names):
            out.update({f"cum_err/{n}/k{j + 1}": err[i, j] for j in range(ORDERS)})
        out.update({f"cum_err/k{j + 1}": err[sets.train, j] for j in range(ORDERS)})
        # Paired with RG(x) on the same Gaussian inputs, so the sampling noise cancels.
        k3, k4 = (kstats[sets.gaussian, 0, 2:] - kstats[sets.gaussian, 1, 2:])
        out.update({"fixed_point/k3": k3, "fixed_point/k4": k4,
                    "fixed_point_violation": jnp.sqrt(k3 ** 2 + k4 ** 2)})
        if iterable:
            out.update(flow_errors(params, hp, x[sets.train]))
        return out

    def flow_errors(params, hp, x):
        """Relative error of the model iterated j = 2..flow_steps times vs RG^j."""
        targets = clt.flow(x, lat.b, cfg.eval.flow_steps, lat.dim)
        out, pred = {}, x
        for j in range(1, cfg.eval.flow_steps + 1):
            pred = model.apply(params, pred, alpha=hp.alpha)
            if j > 1:
                mse = jnp.mean((pred - targets[j]) ** 2)
                out[f"flow_rel_err/k{j}"] = mse / jnp.asarray(sets.target_var[sets.train],
                                                               mse.dtype)
        return out

    return Evaluator(sample, fixed_data, curve, final, sets)


# ------------------------------------------------------------------------------------------
# Aggregates over seeds (host side, numpy).

def aggregate(values, n_boot: int = 1000, level: float = 0.95, seed: int = 0) -> dict:
    """mean, median, q25, q75, iqr and a percentile-bootstrap CI of the median over the
    finite entries of ``values`` [S]; NaN everywhere when there are none."""
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    keys = ("mean", "median", "q25", "q75", "iqr", "ci_lo", "ci_hi")
    if v.size == 0:
        return dict.fromkeys(keys, math.nan) | {"n": 0}
    q25, med, q75 = np.percentile(v, [25, 50, 75])
    rng = np.random.default_rng(seed)
    boot = np.median(v[rng.integers(0, v.size, (n_boot, v.size))], axis=1)
    lo, hi = np.percentile(boot, [50 * (1 - level), 50 * (1 + level)])
    return dict(mean=float(v.mean()), median=float(med), q25=float(q25), q75=float(q75),
                iqr=float(q75 - q25), ci_lo=float(lo), ci_hi=float(hi), n=int(v.size))


def summarise(final: Mapping[str, np.ndarray], diverged: np.ndarray) -> dict:
    """``{metric: aggregate}`` over the seeds that did not diverge, plus counts."""
    diverged = np.asarray(diverged, bool)
    keep = ~diverged
    out = {name: aggregate(np.asarray(v)[keep]) for name, v in final.items()}
    out["num_seeds"] = int(diverged.size)
    out["num_diverged"] = int(diverged.sum())
    return out
