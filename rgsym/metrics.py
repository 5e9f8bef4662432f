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

Every metric is declared once, as a :class:`Metric` in :data:`REGISTRY` (its name or name
pattern, meaning, which way is better, the statistic over seeds the tables show, unit, the
companion metric holding its evaluation-set standard error); :func:`metric_info` resolves a
concrete name such as ``rel_err/laplace`` to its declaration.

Noise.  Each final relative error comes with its evaluation-set standard error
(``rel_err_se/<set>``, ``test_rel_err_se``: the spread of each sample's squared error), and
each final k-statistic error (``cum_err/...``, ``fixed_point/...``) with the
standard error of that k-statistic on the evaluation set (``cum_err_se/...``,
``fixed_point_se/...``): the influence-function (delta-method) standard error with the
evaluation samples as the independent units (the coarse sites of one sample may be
correlated through the model; samples are independent), computed in-graph, see
:func:`sample_contributions`.  Over seeds, :func:`aggregate` gives the bootstrap standard
error of the median (``median_se``) and :func:`summarise` combines it in quadrature with
the median evaluation-set SE where the metric has one (``se``): the evaluation sets are
shared by every seed, so their noise does not average out over seeds.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import re
from typing import Callable, Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import numpy.typing as npt

from rgsym import clt, data, distributions
from rgsym.config import RunSpec
from rgsym.cumulants.estimators import _influence, k_statistics
from rgsym.models import Model

__all__ = ["EvalSets", "Evaluator", "eval_sets", "make_evaluator", "unpack", "aggregate",
           "summarise", "default_families", "Metric", "REGISTRY", "metric_info", "lookup",
           "with_derived", "sample_contributions", "contribution_se"]

ORDERS = 4
_DATA_CACHE: dict = {}


def default_families() -> list[str]:
    """Every registered family whose cumulants up to kappa_4 exist (used standardised).

    Returns:
      Family names, sorted (``distributions.finite_order_names(4)``).
    """
    return distributions.finite_order_names(ORDERS)


# ------------------------------------------------------------------------------------------
# The metrics, declared once.

# What each <field> of a name pattern stands for, and what it matches.
_FIELDS = {"set": r"[^/]+",     # an evaluation set: a family, or scale_<s>
           "s": r"[^/]+",       # a scale of the training family
           "n": f"[1-{ORDERS}]",  # a cumulant order
           "j": r"[0-9]+",      # a number of RG steps
           "name": r"[^/]+"}    # a symmetry diagnostic of the model


@dataclasses.dataclass(frozen=True)
class Metric:
    """One metric, or one family of metrics named by a pattern, declared once.

    pattern: the name, or a name pattern whose fields ``<set>`` (an evaluation set),
      ``<s>`` (a scale), ``<n>`` (a cumulant order), ``<j>`` (RG steps), ``<name>`` (a
      symmetry diagnostic) are filled in by :meth:`name`.
    meaning: what it measures, in one sentence.
    better: 'lower', 'higher', or 'zero' (a signed error: nearer 0 is better).
    aggregate: the statistic over seeds the tables show, a key of :func:`aggregate`
      ('median'); its standard error over seeds is ``<aggregate>_se``: for the median the
      standard deviation of 1000 bootstrap medians (seeds resampled with numpy's
      ``default_rng(0)``), for the mean the sample standard deviation / sqrt(seeds).
    unit: of its values ('1': dimensionless; 'x^p': the p-th power of the input's unit).
    label: axis label of a figure.
    se: the pattern of the companion metric holding its evaluation-set standard error
      (same fields), or None where none is computed (the seed spread alone is reported).
    short: header in the printed end-of-run table ('' for metrics not printed there).
    max_of: a derived metric: the maximum over the metrics matching this pattern.
    """
    pattern: str
    meaning: str
    better: str = "lower"
    aggregate: str = "median"
    unit: str = "1"
    label: str = ""
    se: str | None = None
    short: str = ""
    max_of: str | None = None

    def __post_init__(self):
        if self.better not in ("lower", "higher", "zero"):
            raise ValueError(f"Metric {self.pattern!r}: better={self.better!r} is not "
                             "'lower', 'higher' or 'zero'")
        if self.aggregate not in ("median", "mean"):
            raise ValueError(f"Metric {self.pattern!r}: aggregate={self.aggregate!r} is not "
                             "'median' or 'mean'")

    @functools.cached_property
    def fields(self) -> tuple:
        """The pattern's fields, in order (() for a plain name)."""
        return tuple(re.findall(r"<(\w+)>", self.pattern))

    @functools.cached_property
    def _regex(self):
        parts = re.split(r"<(\w+)>", self.pattern)  # literal, field, literal, ...
        return re.compile("".join(re.escape(p) if i % 2 == 0 else f"(?P<{p}>{_FIELDS[p]})"
                                  for i, p in enumerate(parts)))

    def name(self, **fields) -> str:
        """The concrete name: ``REL_ERR.name(set='laplace') == 'rel_err/laplace'``.

        Args:
          **fields: a value for each ``<field>`` of the pattern (none for a plain metric).

        Returns:
          The pattern with every field filled in.

        Raises:
          ValueError: fields missing or not in the pattern (the pattern's are named).
        """
        if set(fields) != set(self.fields):
            raise ValueError(f"metric {self.pattern!r} takes the fields {list(self.fields)}, "
                             f"got {sorted(fields)}")
        out = self.pattern
        for k, v in fields.items():
            out = out.replace(f"<{k}>", str(v))
        return out

    def match(self, name: str) -> dict | None:
        """Parses a concrete metric name against this metric's pattern.

        Args:
          name: e.g. ``'rel_err/laplace'``.

        Returns:
          ``{field: value}`` (``{'set': 'laplace'}``; {} for a plain metric) when ``name`` is
          one of this metric's names, else None.
        """
        m = self._regex.fullmatch(name)
        return None if m is None else m.groupdict()

    def matches(self, name: str) -> bool:
        """Whether ``name`` is one of this metric's names.

        Args:
          name: a concrete metric name.

        Returns:
          ``self.match(name) is not None``.
        """
        return self.match(name) is not None

    def se_name(self, name: str) -> str | None:
        """The name of the companion metric holding ``name``'s evaluation-set SE.

        Args:
          name: one of this metric's concrete names.

        Returns:
          e.g. ``'cum_err_se/laplace/k3'`` for ``'cum_err/laplace/k3'``; None for a metric
          without an SE.

        Raises:
          TypeError: ``name`` is not one of this metric's names (and the metric has an SE).
        """
        if self.se is None:
            return None
        return Metric(self.se, "").name(**self.match(name))


TRAIN_LOSS = Metric("train_loss", "training MSE against the exact block map, averaged over "
                    "the steps of the last evaluation period", unit="x^2",
                    label="training MSE", short="train")
REL_ERR = Metric("rel_err/<set>", "MSE against the exact block map on an evaluation set, "
                 "divided by the exact Var(RG(x)) of that set", label="relative error",
                 se="rel_err_se/<set>")
REL_ERR_SE = Metric("rel_err_se/<set>", "standard error of rel_err from the evaluation set's "
                    "sampling (final only): the spread of the per-sample squared error, "
                    "samples as units", label="SE of the relative error")
MSE = Metric("mse/<set>", "MSE against the exact block map on an evaluation set (final "
             "only)", unit="x^2", label="MSE")
TEST_REL_ERR = Metric("test_rel_err", "rel_err of the training family (in-distribution)",
                      label="test relative error", short="test", se="test_rel_err_se")
TEST_REL_ERR_SE = Metric("test_rel_err_se", "rel_err_se of the training family",
                         label="SE of the test relative error")
TEST_MSE = Metric("test_mse", "mse of the training family (in-distribution)", unit="x^2",
                  label="test MSE")
OOD_REL_ERR_MEDIAN = Metric("ood_rel_err_median", "median of rel_err over the OOD families",
                            label="median OOD relative error", short="ood_med")
OOD_REL_ERR_MAX = Metric("ood_rel_err_max", "largest rel_err over the OOD families",
                         label="max OOD relative error", short="ood_max")
SCALE_REL_ERR_MAX = Metric("scale_rel_err_max", "largest rel_err over the training family "
                           "at other scales", label="max relative error over scales",
                           short="scale_max", max_of="rel_err/scale_<s>")
CUM_ERR = Metric("cum_err/<set>/k<n>", "|k-statistic kappa_n of the model's output - the "
                 "exact kappa_n of RG(x)| on an evaluation set", unit="x^n",
                 label="cumulant error", se="cum_err_se/<set>/k<n>")
CUM_ERR_TRAIN = Metric("cum_err/k<n>", "cum_err of the training family", unit="x^n",
                       label="cumulant error", se="cum_err_se/k<n>")
CUM_ERR_SE = Metric("cum_err_se/<set>/k<n>", "standard error of the output's k-statistic "
                    "kappa_n from the evaluation set's sampling (influence function, samples "
                    "as units)", unit="x^n", label="SE of the cumulant error")
CUM_ERR_SE_TRAIN = Metric("cum_err_se/k<n>", "cum_err_se of the training family", unit="x^n",
                          label="SE of the cumulant error")
FIXED_POINT = Metric("fixed_point/k<n>", "k-statistic kappa_n (n = 3, 4) of the output minus "
                     "that of RG(x) on the same Gaussian inputs (exactly 0 for the RG)",
                     better="zero", unit="x^n", label="fixed-point violation",
                     se="fixed_point_se/k<n>")
FIXED_POINT_SE = Metric("fixed_point_se/k<n>", "standard error of fixed_point/k<n> from the "
                        "Gaussian evaluation set's sampling (paired difference)", unit="x^n",
                        label="SE of the fixed-point violation")
FIXED_POINT_VIOLATION = Metric("fixed_point_violation", "hypot(fixed_point/k3, "
                               "fixed_point/k4)", label="fixed-point violation",
                               se="fixed_point_violation_se")
FIXED_POINT_VIOLATION_SE = Metric("fixed_point_violation_se", "standard error of "
                                  "fixed_point_violation from the Gaussian evaluation set's "
                                  "sampling (delta method)",
                                  label="SE of the fixed-point violation")
FLOW_REL_ERR = Metric("flow_rel_err/k<j>", "MSE of the model iterated j times against RG^j "
                      "on the training family, divided by its Var(RG(x))",
                      label="iterated-flow relative error")
FLOW_REL_ERR_MAX = Metric("flow_rel_err_max", "largest flow_rel_err over the steps",
                          label="max iterated-flow relative error", short="flow_max",
                          max_of="flow_rel_err/k<j>")
SYM = Metric("sym/<name>", "distance of the parameters from a symmetric subspace (a model's "
             "symmetry diagnostic)", unit="parameters", label="distance from the symmetry")
RG_EIG_ERR = Metric("rg_eig_err", "distance of the learned map's cumulant eigenvalues from "
                    "the RG's B^(1 - n/2) (exact polynomial activations only; else NaN)",
                    label="RG eigenvalue error")

#: Every metric, in the order the tables and docs list them.
REGISTRY = (TRAIN_LOSS, TEST_REL_ERR, TEST_MSE, OOD_REL_ERR_MEDIAN, OOD_REL_ERR_MAX,
            SCALE_REL_ERR_MAX, FLOW_REL_ERR_MAX, REL_ERR, REL_ERR_SE, TEST_REL_ERR_SE, MSE,
            FLOW_REL_ERR, CUM_ERR,
            CUM_ERR_TRAIN, CUM_ERR_SE, CUM_ERR_SE_TRAIN, FIXED_POINT, FIXED_POINT_SE,
            FIXED_POINT_VIOLATION, FIXED_POINT_VIOLATION_SE, SYM, RG_EIG_ERR)


def lookup(name: str) -> Metric | None:
    """The declaration of a concrete metric name, or None for an undeclared one.

    Args:
      name: a concrete metric name, e.g. ``'rel_err/laplace'``.

    Returns:
      The matching :class:`Metric`, or None.

    Raises:
      AssertionError: two declarations match (a bug in :data:`REGISTRY`).
    """
    found = [m for m in REGISTRY if m.matches(name)]
    if len(found) > 1:  # a declaration error, not the caller's
        raise AssertionError(f"metric {name!r} matches {[m.pattern for m in found]}")
    return found[0] if found else None


def metric_info(name: str) -> Metric:
    """The declaration of a concrete metric name (``'rel_err/laplace'`` -> :data:`REL_ERR`).

    Args:
      name: a concrete metric name.

    Returns:
      Its :class:`Metric`.

    Raises:
      ValueError: a name no declaration matches, listing the known names and patterns.
    """
    info = lookup(name) if isinstance(name, str) else None
    if info is None:
        raise ValueError(f"metric name {name!r} is not known; known names and patterns: "
                         + ", ".join(m.pattern for m in REGISTRY))
    return info


def with_derived(final: Mapping[str, np.ndarray]) -> dict:
    """``final`` plus the derived maxima (:attr:`Metric.max_of`) whose inputs it holds.

    Args:
      final: ``{metric: [S]}`` final metrics of a variant's seeds.

    Returns:
      A new dict: ``final``'s entries and each derived ``{name: [S]}`` maximum.
    """
    out = dict(final)
    for m in REGISTRY:
        if m.max_of:
            of = Metric(m.max_of, "")
            cols = [v for k, v in final.items() if of.matches(k)]
            if cols:
                out[m.name()] = np.max(np.stack(cols), axis=0)
    return out


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


def eval_sets(spec: RunSpec) -> EvalSets:
    """The evaluation stack of a run.

    Args:
      spec: the run (``rgsym.config.resolve(cfg)``); its ``eval.families`` () default to
        :func:`default_families`.

    Returns:
      The :class:`EvalSets` (exact cumulants [F, 4] of RG(x) per set).

    Raises:
      TypeError: ``spec`` is not a RunSpec (a ConfigDict is resolved first, never here).
    """
    _require_spec(spec)
    train = spec.data.family
    families = list(spec.eval.families) or default_families()
    names = list(dict.fromkeys([train] + families + ["gaussian"]))
    dists = [distributions.get(n, standardised=True) for n in names]
    base = dists[0]
    for s in spec.eval.scales:
        names.append(f"scale_{s:g}")
        dists.append(base.affine(float(s)))
    lat = spec.lattice
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


def unpack(names: Sequence[str], vector: jax.typing.ArrayLike) -> dict:
    """``{name: vector[..., i]}``: the named metrics of a metric vector.

    Args:
      names: the M metric names, in vector order.
      vector: [..., M], numpy on the host or traced.

    Returns:
      ``{name: [...]}``.

    Raises:
      ValueError: ``vector.shape[-1] != len(names)``.
    """
    if vector.shape[-1] != len(names):
        raise ValueError(f"a metric vector of shape {vector.shape} does not hold the "
                         f"{len(names)} metrics {list(names)[:3]}...")
    return {n: vector[..., i] for i, n in enumerate(names)}


def make_evaluator(spec: RunSpec, model: Model) -> Evaluator:
    """Evaluation functions of one model (jit/vmap-able over params and hyper-parameters).

    Args:
      spec: the run (``rgsym.config.resolve(cfg)``): lattice, dtype, training family and
        the ``eval`` section.
      model: an ``rgsym.models.Model`` for the run's lattice.

    Returns:
      The :class:`Evaluator` (shapes there).

    Raises:
      TypeError: ``spec`` is not a RunSpec.
    """
    sets = eval_sets(spec)
    lat = spec.lattice
    dtype = jnp.dtype(spec.dtype)
    shape = data.lattice_shape(lat.sites, lat.dim)
    iterable = bool(model.describe().get("iterable", False))
    # Names only (traced, nothing compiled): which diagnostics this model reports.
    params_shape = jax.eval_shape(lambda k: model.init(k, jnp.zeros((1,) + shape, dtype)),
                                  jax.random.key(0))
    sym_names = tuple(SYM.name(name=k) for k in jax.eval_shape(model.symmetry_diagnostics,
                                                               params_shape))
    per_set_names = lambda m: tuple(m.name(set=n) for n in sets.names)  # noqa: E731
    per_order_names = lambda m, **f: tuple(m.name(n=j + 1, **f)  # noqa: E731
                                           for j in range(ORDERS))
    ood_names = (OOD_REL_ERR_MEDIAN.name(), OOD_REL_ERR_MAX.name()) if len(sets.ood) else ()
    error_names = (per_set_names(REL_ERR) + (TEST_REL_ERR.name(), TEST_MSE.name())
                   + ood_names)
    flow_names = tuple(FLOW_REL_ERR.name(j=j) for j in range(2, spec.eval.flow_steps + 1)
                       ) if iterable else ()
    fixed_point = lambda m: (m.name(n=3), m.name(n=4))  # noqa: E731
    final_names = (error_names + per_set_names(MSE)
                   + sum((per_order_names(CUM_ERR, set=n) for n in sets.names), ())
                   + per_order_names(CUM_ERR_TRAIN)
                   + fixed_point(FIXED_POINT) + (FIXED_POINT_VIOLATION.name(),)
                   # evaluation-set standard errors, in the order of their metrics above
                   + sum((per_order_names(CUM_ERR_SE, set=n) for n in sets.names), ())
                   + per_order_names(CUM_ERR_SE_TRAIN)
                   + fixed_point(FIXED_POINT_SE) + (FIXED_POINT_VIOLATION_SE.name(),)
                   + per_set_names(REL_ERR_SE) + (TEST_REL_ERR_SE.name(),)
                   + flow_names)

    def sample(key):
        keys = jax.random.split(key, len(sets.dists))
        x = jnp.stack([d.sample(k, (spec.eval.batch,) + shape, dtype)
                       for d, k in zip(sets.dists, keys)])
        return x, clt.block_map(x, lat.b, lat.dim)

    def fixed_data():
        # Depends on no seed: sampled once per process and evaluation setup, so a sweep
        # does not compile a dozen samplers into every variant.
        # Distributions compare by their origin too, so a family re-registered under the
        # same name and parameters gets new data; the RNG stream depends on the flag and the
        # PRNG implementation.
        key = (tuple(sets.names), spec.eval.batch, spec.eval.seed, tuple(shape), lat.b,
               str(dtype), tuple(sets.dists), jax.config.jax_threefry_partitionable,
               str(jax.config.jax_default_prng_impl))
        if key not in _DATA_CACHE:
            with jax.ensure_compile_time_eval():  # concrete even when called while tracing
                k = jax.random.key(spec.eval.seed)
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
        mse = jnp.mean((pred - y) ** 2)
        if not with_kstats:
            return mse, None
        # The samples (not their correlated coarse sites) are the independent units.
        per_sample = jnp.mean(((pred - y) ** 2).reshape(len(x), -1), axis=1)
        mse_se = jnp.std(per_sample, ddof=1) / jnp.sqrt(len(x))
        both = jnp.stack([pred.reshape(-1), y.reshape(-1)])
        kstats = k_statistics(both, axis=1, order=ORDERS)
        # Evaluation-set SEs [ORDERS + 3]: of the output's kappa_1..4, of its kappa_3, kappa_4
        # minus those of RG(x) (paired), and of their hypot (the fixed-point violation).
        c = sample_contributions(both.reshape(2, len(x), -1))   # [2, ORDERS, B]
        diff = c[0, 2:] - c[1, 2:]
        k = kstats[0, 2:] - kstats[1, 2:]
        hypot = jnp.sqrt(jnp.sum(k ** 2))
        grad = jnp.where(hypot > 0, k / jnp.where(hypot > 0, hypot, 1), 0)
        se = contribution_se(jnp.concatenate([c[0], diff, (grad @ diff)[None]]))
        return mse, (kstats, jnp.concatenate([se, mse_se[None]]))

    def evaluate(params, hp, x, y, with_kstats=True):
        # lax.map runs the sets one after another: memory is one set's activations.
        # kstats [F, 2, 4]: k-statistics of the model's output and of RG(x), same inputs;
        # only the final evaluation needs them, not the curves inside the training scan.
        # Returns the vector of error_names, kstats and mse [F].
        mse, kstats = jax.lax.map(lambda xy: per_set(params, hp, xy, with_kstats), (x, y))
        # (kstats: None, or ([F, 2, 4] k-statistics, [F, ORDERS + 4] SEs: of the
        # k-statistics, the fixed-point differences and their hypot, then of the MSE))
        rel = mse / jnp.asarray(sets.target_var, mse.dtype)
        parts = [rel, jnp.stack([rel[sets.train], mse[sets.train]])]
        if len(sets.ood):
            parts.append(jnp.stack([jnp.median(rel[sets.ood]), jnp.max(rel[sets.ood])]))
        return jnp.concatenate(parts), kstats, mse

    def curve(params, hp, xy):
        x, y = xy
        b = spec.eval.curve_batch
        errors = evaluate(params, hp, x[:, :b], y[:, :b], with_kstats=False)[0]
        sym = model.symmetry_diagnostics(params)  # {} for a model with none (a shared GNN)
        return jnp.concatenate([errors] + [sym[n[4:]].astype(errors.dtype)[None]
                                           for n in sym_names])

    def final(params, hp, xy):
        x, y = xy
        errors, (kstats, se), mse = evaluate(params, hp, x, y)
        err = jnp.abs(kstats[:, 0] - jnp.asarray(sets.exact_cumulants, kstats.dtype))
        # Paired with RG(x) on the same Gaussian inputs, so the sampling noise cancels.
        k3, k4 = (kstats[sets.gaussian, 0, 2:] - kstats[sets.gaussian, 1, 2:])
        parts = [errors, mse, err.reshape(-1), err[sets.train],
                 jnp.stack([k3, k4, jnp.sqrt(k3 ** 2 + k4 ** 2)]),
                 se[:, :ORDERS].reshape(-1), se[sets.train, :ORDERS],
                 se[sets.gaussian, ORDERS:-1]]
        rel_se = se[:, -1] / jnp.asarray(sets.target_var, se.dtype)
        parts += [rel_se, rel_se[sets.train][None]]
        if flow_names:
            parts.append(flow_errors(params, hp, x[sets.train]))
        return jnp.concatenate(parts)

    def flow_errors(params, hp, x):
        """Relative errors [flow_steps - 1] of the model iterated j = 2..flow_steps times
        vs RG^j.  A Python loop: each step acts on a coarser lattice (another shape)."""
        targets = clt.flow(x, lat.b, spec.eval.flow_steps, lat.dim)
        out, pred = [], x
        for j in range(1, spec.eval.flow_steps + 1):
            pred = model.apply(params, pred, alpha=hp.alpha)
            if j > 1:
                out.append(jnp.mean((pred - targets[j]) ** 2))
        return jnp.stack(out) / jnp.asarray(sets.target_var[sets.train], pred.dtype)

    return Evaluator(sample, fixed_data, curve, final, sets, error_names + sym_names,
                     final_names)


def sample_contributions(v: jax.typing.ArrayLike, order: int = ORDERS) -> jnp.ndarray:
    """Each sample's share of the sampling error of the pooled k-statistics; jit-able.

    Args:
      v: [..., B, m]: B independent samples of m values each (an evaluation set's outputs:
        the m coarse sites of one sample may be correlated); the k-statistics are those of
        all n = B m values pooled, as the evaluator computes them.

    Returns:
      c [..., order, B]: ``k_p - kappa_p ~= sum_i c[..., p - 1, i]`` to first order, with
      ``c_i = (1/n) sum over sample i's values of the influence function of kappa_p``
      (``rgsym.cumulants.estimators``); :func:`contribution_se` of it is the standard error.
      The samples, not the values, are the independent units: with m = 1 the standard error
      is ``estimators.k_statistics_with_se``'s.
    """
    n = v.shape[-2] * v.shape[-1]
    d = v - v.mean((-2, -1), keepdims=True)
    m = {p: (d ** p).mean((-2, -1), keepdims=True) for p in range(2, order + 1)}
    return jnp.stack([sum(c * d ** k for k, c in enumerate(f)).sum(-1) / n
                      for f in _influence(m, order)], -2)


def contribution_se(c: jax.typing.ArrayLike) -> jax.Array:
    """Standard error of ``sum_i c[..., i]`` over B independent samples' contributions.

    ``sqrt(B / (B - 1) * sum_i (c_i - mean c)^2)`` (the jackknife-style variance of a sum
    of independent terms).

    Args:
      c: [..., B] contributions (:func:`sample_contributions`).

    Returns:
      [...].
    """
    b = c.shape[-1]
    return jnp.sqrt(b / (b - 1) * jnp.sum((c - c.mean(-1, keepdims=True)) ** 2, -1))


def _require_spec(spec) -> None:
    # Builders take resolved runs only: a ConfigDict here would skip its validation.
    if not isinstance(spec, RunSpec):
        raise TypeError(f"got a {type(spec).__name__}: pass the RunSpec of "
                        "rgsym.config.resolve(cfg)")


# ------------------------------------------------------------------------------------------
# Aggregates over seeds (host side, numpy).

def aggregate(values: npt.ArrayLike, n_boot: int = 1000, level: float = 0.95,
              seed: int = 0) -> dict:
    """Seed statistics of one metric over the finite entries of ``values``.

    Args:
      values: [S], one value per seed; non-finite entries are left out.
      n_boot: bootstrap resamples; level: the CI's coverage; seed: of
        ``numpy.random.default_rng``.

    Returns:
      ``{name: float}``: mean, median, q25, q75, iqr, a percentile-bootstrap CI of the
      median, and the standard errors of the median (the standard deviation of the
      bootstrap medians) and of the mean (sample sd / sqrt(n)); NaN everywhere when no
      entry is finite, and NaN standard errors from fewer than 2 (one seed says nothing
      of the spread).
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    keys = ("mean", "median", "q25", "q75", "iqr", "ci_lo", "ci_hi", "median_se", "mean_se")
    if v.size == 0:
        return dict.fromkeys(keys, math.nan) | {"n": 0}
    q25, med, q75 = np.percentile(v, [25, 50, 75])
    rng = np.random.default_rng(seed)
    boot = np.median(v[rng.integers(0, v.size, (n_boot, v.size))], axis=1)
    lo, hi = np.percentile(boot, [50 * (1 - level), 50 * (1 + level)])
    many = v.size > 1
    return dict(mean=float(v.mean()), median=float(med), q25=float(q25), q75=float(q75),
                iqr=float(q75 - q25), ci_lo=float(lo), ci_hi=float(hi), n=int(v.size),
                median_se=float(boot.std(ddof=1)) if many else math.nan,
                mean_se=float(v.std(ddof=1) / math.sqrt(v.size)) if many else math.nan)


def summarise(final: Mapping[str, np.ndarray], diverged: np.ndarray) -> dict:
    """``{metric: aggregate}`` over the seeds that did not diverge, plus counts.

    Each declared metric's aggregate also holds ``se``: the standard error of the statistic
    the tables show (:attr:`Metric.aggregate`) over seeds, combined in quadrature with
    ``eval_se``, the median over seeds of its evaluation-set SE where it has one
    (:attr:`Metric.se`; shared by every seed, that noise does not average out over seeds).

    Args:
      final: ``{metric: [S]}`` final metrics; diverged: [S] bools.

    Returns:
      ``{metric: aggregate dict}`` plus ``num_seeds`` and ``num_diverged`` (ints).
    """
    diverged = np.asarray(diverged, bool)
    keep = ~diverged
    out = {name: aggregate(np.asarray(v)[keep]) for name, v in final.items()}
    for name, a in out.items():
        info = lookup(name)
        if info is None:
            continue
        se = a[f"{info.aggregate}_se"]
        companion = info.se_name(name)
        if companion in final:
            a["eval_se"] = out[companion]["median"]
            se = math.hypot(se, a["eval_se"])
        a["se"] = se
    out["num_seeds"] = int(diverged.size)
    out["num_diverged"] = int(diverged.sum())
    return out
