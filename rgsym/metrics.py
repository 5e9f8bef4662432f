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

__all__ = ["EvalSets", "Evaluator", "eval_sets", "make_evaluator", "unpack", "aggregate",
           "summarise", "default_families"]

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
    # One small program for all sets (op by op, each jnp op would compile one of its own).
    exact = np.asarray(jax.jit(clt.cumulant_recursion, static_argnums=(1, 2, 3))(
        np.stack([d.cumulants(ORDERS) for d in dists]), lat.b, 1, lat.dim))
    ood = np.array([names.index(f) for f in dict.fromkeys(families) if f != train], dtype=int)
    return EvalSets(names, dists, exact[:, 1].copy(), exact, ood, 0, names.index("gaussian"))


class Evaluator(NamedTuple):
    """sample: ``key -> (x [F, B, *lattice], y [F, B, *coarse])``; consumes ``key``.
    fixed_data: ``() -> sample(key(eval.seed))`` as host arrays, computed once.
    curve: ``(params, hp, data) -> [Mc]`` metrics named by ``curve_names``, on the first
      ``eval.curve_batch`` samples (symmetry diagnostics included).
    final: ``(params, hp, data) -> [Mf]`` metrics named by ``final_names``, on all
      ``eval.batch`` samples, plus flow errors; no symmetry diagnostics (they depend on the
      parameters alone: the last curve point has them).
    Metrics travel as one vector rather than a dict of scalars: each named scalar taken
    out of an array in the program is a kernel XLA compiles (about half of a sweep
    program's kernels were such slices, benchmarks/RESULTS.md); :func:`unpack` names them.
    """
    sample: Callable
    fixed_data: Callable
    curve: Callable
    final: Callable
    sets: EvalSets
    curve_names: tuple
    final_names: tuple


def unpack(names, vector) -> dict:
    """``{name: vector[..., i]}``: the named metrics of a metric vector [..., M] (numpy on
    the host, or traced)."""
    if vector.shape[-1] != len(names):
        raise ValueError(f"a metric vector of shape {vector.shape} does not hold the "
                         f"{len(names)} metrics {list(names)[:3]}...")
    return {n: vector[..., i] for i, n in enumerate(names)}


def make_evaluator(cfg, model) -> Evaluator:
    """Evaluation functions of one model (jit/vmap-able over params and hyper-parameters)."""
    sets = eval_sets(cfg)
    lat = cfg.lattice
    dtype = jnp.dtype(cfg.dtype)
    shape = data.lattice_shape(lat.sites, lat.dim)
    iterable = bool(model.describe().get("iterable", False))
    # Names only (traced, nothing compiled): which diagnostics this model reports.
    params_shape = jax.eval_shape(lambda k: model.init(k, jnp.zeros((1,) + shape, dtype)),
                                  jax.random.key(0))
    sym_names = tuple(f"sym/{k}" for k in jax.eval_shape(model.symmetry_diagnostics,
                                                         params_shape))
    rel_names = tuple(f"rel_err/{n}" for n in sets.names)
    ood_names = ("ood_rel_err_median", "ood_rel_err_max") if len(sets.ood) else ()
    error_names = rel_names + ("test_rel_err", "test_mse") + ood_names
    flow_names = tuple(f"flow_rel_err/k{j}" for j in range(2, cfg.eval.flow_steps + 1)
                       ) if iterable else ()
    final_names = (error_names + tuple(f"mse/{n}" for n in sets.names)
                   + tuple(f"cum_err/{n}/k{j + 1}" for n in sets.names for j in range(ORDERS))
                   + tuple(f"cum_err/k{j + 1}" for j in range(ORDERS))
                   + ("fixed_point/k3", "fixed_point/k4", "fixed_point_violation") + flow_names)

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
                k = jax.random.key(cfg.eval.seed)
            # Lowered outside compile-time evaluation, which would run (and compile) its
            # constant parts op by op.  Compiled for one call: at XLA's backend optimisation
            # level 0 it compiles twice as fast (the gamma-based samplers are large
            # programs) and runs in milliseconds all the same (benchmarks/RESULTS.md).
            run = jax.jit(sample).lower(k).compile({"xla_backend_optimization_level": 0})
            with jax.ensure_compile_time_eval():
                _DATA_CACHE[key] = jax.device_get(run(k))
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
        # Returns the vector of error_names, kstats and mse [F].
        mse, kstats = jax.lax.map(lambda xy: per_set(params, hp, xy, with_kstats), (x, y))
        rel = mse / jnp.asarray(sets.target_var, mse.dtype)
        parts = [rel, jnp.stack([rel[sets.train], mse[sets.train]])]
        if len(sets.ood):
            parts.append(jnp.stack([jnp.median(rel[sets.ood]), jnp.max(rel[sets.ood])]))
        return jnp.concatenate(parts), kstats, mse

    def curve(params, hp, xy):
        x, y = xy
        b = cfg.eval.curve_batch
        errors = evaluate(params, hp, x[:, :b], y[:, :b], with_kstats=False)[0]
        sym = model.symmetry_diagnostics(params)  # {} for a model with none (a shared GNN)
        return jnp.concatenate([errors] + [sym[n[4:]].astype(errors.dtype)[None]
                                           for n in sym_names])

    def final(params, hp, xy):
        x, y = xy
        errors, kstats, mse = evaluate(params, hp, x, y)
        err = jnp.abs(kstats[:, 0] - jnp.asarray(sets.exact_cumulants, kstats.dtype))
        # Paired with RG(x) on the same Gaussian inputs, so the sampling noise cancels.
        k3, k4 = (kstats[sets.gaussian, 0, 2:] - kstats[sets.gaussian, 1, 2:])
        parts = [errors, mse, err.reshape(-1), err[sets.train],
                 jnp.stack([k3, k4, jnp.sqrt(k3 ** 2 + k4 ** 2)])]
        if flow_names:
            parts.append(flow_errors(params, hp, x[sets.train]))
        return jnp.concatenate(parts)

    def flow_errors(params, hp, x):
        """Relative errors [flow_steps - 1] of the model iterated j = 2..flow_steps times
        vs RG^j.  A Python loop: each step acts on a coarser lattice (another shape)."""
        targets = clt.flow(x, lat.b, cfg.eval.flow_steps, lat.dim)
        out, pred = [], x
        for j in range(1, cfg.eval.flow_steps + 1):
            pred = model.apply(params, pred, alpha=hp.alpha)
            if j > 1:
                out.append(jnp.mean((pred - targets[j]) ** 2))
        return jnp.stack(out) / jnp.asarray(sets.target_var[sets.train], pred.dtype)

    return Evaluator(sample, fixed_data, curve, final, sets, error_names + sym_names,
                     final_names)


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
