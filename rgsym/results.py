"""Runs on disk: a resumable sweep over model variants and seed chunks.

Layout of a run directory::

    config.json             resolved config (a rerun must match it to resume)
    environment.json        jax/jaxlib versions, devices, git revision, matmul precision
    variants/<name>/
        config.json         the variant's resolved config
        chunks/00000.msgpack  seeds, metrics and final params of one chunk (the unit of
                            resume): one pytree in flax.serialization's msgpack format
        metrics.jsonl       one record per seed: final metrics and curves
        metrics.csv         one row per seed: final metrics
        curves.csv          one row per seed and evaluation step
        summary.json        aggregates over seeds (metrics.summarise)
        DONE                written last: the variant is finished
    summary.json, summary.csv, summary.txt   the table over variants
    figures/learning_curves.png, figures/ood_by_family.png

Every file is written atomically (a temporary file in the same folder, then os.replace), so
a SIGKILL loses at most the chunk in flight; rerunning with the same directory skips
finished variants and chunks.  Rerunning with a larger ``num_seeds`` (and nothing else
changed) extends a run: only the new seeds are trained, in new chunks.
:func:`load_variant` and :func:`load_params` read a variant back (parameters as the model's
own pytree, stacked over seeds).  Directories written
before chunks became msgpack (``chunks/*.npz`` with parameters flattened under their key
paths, and a ``params.npz``) are still read and resumed.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import platform
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import serialization

from rgsym import compile_cache, models
from rgsym.atomic import (KILL_AT_ENV, atomic_savez, atomic_write_bytes,  # noqa: F401
                          atomic_write_json, atomic_write_text, kill_point, load_npz)
from rgsym import metrics as metrics_lib
from rgsym import config as config_lib
from rgsym import sweep as sweep_lib

__all__ = ["KILL_AT_ENV", "kill_point", "versions", "RESUME_VERSION_KEYS", "atomic_write_bytes", "atomic_write_text",
           "atomic_write_json", "atomic_savez", "load_npz", "environment", "run", "load_run",
           "load_variant", "load_params", "RunRecord", "VariantRecord", "check", "summary_table", "printed_table",
           "summary_legend", "SUMMARY_COLUMNS", "PRINTED_COLUMNS"]

# Columns of summary.txt (those a variant lacks are shown as '-'), declared in rgsym.metrics.
SUMMARY_COLUMNS = tuple(m.name() for m in (
    metrics_lib.TRAIN_LOSS, metrics_lib.TEST_REL_ERR, metrics_lib.OOD_REL_ERR_MEDIAN,
    metrics_lib.OOD_REL_ERR_MAX, metrics_lib.SCALE_REL_ERR_MAX, metrics_lib.FLOW_REL_ERR_MAX,
    metrics_lib.FIXED_POINT_VIOLATION)) + (metrics_lib.CUM_ERR_TRAIN.name(n=4),
                                           metrics_lib.RG_EIG_ERR.name())
# The key columns printed at the end of a run, (metric, short header): the metrics declared
# with a short header, medians at 2 significant digits, so the table fits a terminal;
# summary.txt/.csv/.json hold the rest, with standard errors.
PRINTED_COLUMNS = tuple((m.name(), m.short) for m in metrics_lib.REGISTRY if m.short)


# Fault injection (rgsym.atomic.kill_point, RGSYM_KILL_AT=<point>: the process SIGKILLs
# itself there).  Points of :func:`run`, one per phase: 'compile:<variant>' (before its
# program is built), 'trained:<variant>:<index>' (a chunk trained, not yet written),
# 'replace:<file name>' (inside every atomic write: the temporary file written and synced,
# not yet renamed), 'chunk:<variant>:<index>' (after the chunk file), 'finalise:<variant>'
# (per-seed records written, not summary.json and DONE), 'summary' (the run's summary
# tables written, not the figures), 'figures' (all written, the table not yet printed).


def _finite_or_none(x):
    x = float(x)
    return x if math.isfinite(x) else None


# ------------------------------------------------------------------------------------------
# Environment and config records.

#: Versions whose change alters what a run computes (JAX's RNG streams and numerics, our
#: code): resuming a run under others is refused unless allowed (see :func:`check`).
RESUME_VERSION_KEYS = ("rgsym", "jax", "jaxlib")


def versions() -> dict:
    """The versions a resumed run is compared on (:data:`RESUME_VERSION_KEYS`).

    Returns:
      ``{'rgsym': str, 'jax': str, 'jaxlib': str | None}`` of this process (None: jaxlib's
      version cannot be found).
    """
    import rgsym
    return dict(rgsym=rgsym.__version__, jax=jax.__version__,
                jaxlib=getattr(jax.lib, "__version__", None) or _version("jaxlib"))


def environment(cfg) -> dict:
    """What produced a run (``environment.json``); initialises JAX's backends.

    Args:
      cfg: the run config (its ``matmul_precision`` and ``dtype`` are recorded).

    Returns:
      A JSON-ready dict: :func:`versions`, backend, devices, local_device_count,
      process_count, git_revision and git_dirty of the source tree ('' / False outside a
      git checkout), matmul_precision, dtype, jax_enable_x64, python, numpy, platform,
      cpu_count, argv and started_utc (ISO 8601).
    """
    repo = Path(__file__).resolve().parent.parent

    def git(*args):
        try:
            return subprocess.run(["git", "-C", str(repo), *args], capture_output=True,
                                  text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    return dict(
        **versions(), backend=jax.default_backend(), devices=[str(d) for d in jax.devices()],
        local_device_count=jax.local_device_count(), process_count=jax.process_count(),
        git_revision=git("rev-parse", "HEAD"), git_dirty=bool(git("status", "--porcelain")),
        matmul_precision=cfg.matmul_precision, dtype=cfg.dtype,
        jax_enable_x64=bool(jax.config.jax_enable_x64), python=sys.version.split()[0],
        numpy=np.__version__, platform=platform.platform(), cpu_count=os.cpu_count(),
        argv=sys.argv, started_utc=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))


def _version(pkg):
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version(pkg)
    except PackageNotFoundError:
        return None


def _read_json(path: Path):
    """A JSON file of a run directory; one that does not parse is named."""
    try:
        return json.loads(Path(path).read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not valid JSON ({e}): it was cut or damaged outside "
                         "rgsym's atomic writes (a disk error, a copy); restore it or use a "
                         "new --workdir") from None


def _config_json(cfg) -> dict:
    return json.loads(cfg.to_json(sort_keys=True))


# Config fields that choose how a run executes, never what it computes: a run may be
# resumed with other values (a sweep started on one machine may be resumed on many: the
# seeds' results do not depend on the processes they ran in).
EXECUTION_FIELDS = ("compile_cache", "multihost")


def _check_resume(path: Path, cfg) -> None:
    if not path.exists():
        return
    # (a run written before a field was renamed resumes under the new name)
    old, new = config_lib.upgrade(_read_json(path)), _config_json(cfg)
    for field in EXECUTION_FIELDS:
        old.pop(field, None)
        new.pop(field, None)
    had, wants = old.pop("num_seeds", None), new.pop("num_seeds")
    if had is not None and wants < had:
        raise ValueError(f"config field 'num_seeds'={wants} is fewer than the {had} seeds of "
                         f"the run in {path.parent}: a run can be extended with more seeds, "
                         f"not cut; use num_seeds >= {had} or a new --workdir")
    # A field added to the schema after the run was written is absent from its config.json;
    # at its default it computes what the older code did (a test pins this for each field).
    old, new = _flat(old), _flat(new)
    defaults = _flat(_config_json(config_lib.base_config()))
    for field in new.keys() - old.keys():
        if field in defaults and new[field] == defaults[field]:
            del new[field]
    if old != new:
        diff = sorted(old.items() ^ new.items())
        fields = sorted({k for k, _ in diff})
        raise ValueError(f"{path.parent} holds a run of a different config (fields differ: "
                         f"{', '.join(fields)}); use a new --workdir or the same config")


def _flat(d, prefix=""):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = json.dumps(v, sort_keys=True)
    return out


# ------------------------------------------------------------------------------------------
# Chunks: one msgpack pytree per chunk of seeds; variants read back as typed records.

CHUNK_SUFFIX = ".msgpack"
_LEGACY_SUFFIX = ".npz"  # chunks written before parameters kept their tree


def _chunk_bytes(params, metrics, seeds) -> bytes:
    """A chunk as flax.serialization's msgpack: parameters keep the model's tree."""
    return serialization.msgpack_serialize(dict(
        seeds=np.asarray(seeds), diverged=np.asarray(metrics["diverged"]),
        diverged_step=np.asarray(metrics["diverged_step"]), final=dict(metrics["final"]),
        curves=dict(metrics["curves"]), params=serialization.to_state_dict(params)))


def _chunk_files(vdir: Path) -> list[Path]:
    """The chunk files of a variant folder in seed order (msgpack, or legacy npz)."""
    files = [p for p in (vdir / "chunks").glob("*")
             if p.suffix in (CHUNK_SUFFIX, _LEGACY_SUFFIX) and not p.name.startswith(".")]
    return sorted(files, key=lambda p: p.stem)


def _params_template(cfg: Mapping):
    """Shapes and dtypes of one seed's parameters of the model a variant config builds."""
    model = models.build(cfg)
    x = jnp.zeros(model.spec.lattice_shape, model.spec.dtype)
    return jax.eval_shape(lambda k: model.init(k, x), jax.random.key(0))


def _read_chunk(path: Path, template) -> dict:
    """One chunk as ``{seeds, diverged, diverged_step, final, curves, params}``, parameters
    restored into the model's pytree (``template``) with a leading seed axis."""
    if path.suffix == CHUNK_SUFFIX:
        chunk = _restore_chunk(path)
        state = chunk["params"]
    else:  # legacy: flat arrays, parameters under 'params/' + jax.tree_util.keystr(path)
        flat = _restore_chunk(path)
        chunk = dict(seeds=flat["seeds"], diverged=flat["diverged"],
                     diverged_step=flat["diverged_step"], final=_group(flat, "final"),
                     curves=_group(flat, "curves"))
        stored = _group(flat, "params")
        leaves = jax.tree_util.tree_flatten_with_path(template)[0]
        missing = [jax.tree_util.keystr(p) for p, _ in leaves
                   if jax.tree_util.keystr(p) not in stored]
        if missing or len(stored) != len(leaves):
            raise ValueError(f"{path} holds parameters {sorted(stored)}, but the model built "
                             f"from its variant's config.json has {len(leaves)} leaves "
                             f"(missing: {missing}); the run directory does not match its "
                             "config")
        state = serialization.to_state_dict(jax.tree_util.tree_unflatten(
            jax.tree_util.tree_structure(template),
            [stored[jax.tree_util.keystr(p)] for p, _ in leaves]))
    try:
        params = serialization.from_state_dict(template, state)
        if len(jax.tree.leaves(state)) != len(jax.tree.leaves(template)):  # (extra keys pass)
            raise ValueError(f"{len(jax.tree.leaves(state))} stored leaves, "
                             f"{len(jax.tree.leaves(template))} in the model")
    except (KeyError, ValueError, TypeError) as e:
        raise ValueError(f"{path}: its parameters do not have the tree of the model built from "
                         f"its variant's config.json ({e})") from None
    n = len(chunk["seeds"])
    for (p, want), got in zip(jax.tree_util.tree_flatten_with_path(template)[0],
                              jax.tree.leaves(params)):
        if np.shape(got) != (n, *want.shape):
            raise ValueError(f"{path}: parameter {jax.tree_util.keystr(p)} has shape "
                             f"{np.shape(got)}, but {n} seeds of the model built from its "
                             f"variant's config.json need {(n, *want.shape)}")
    chunk["params"] = jax.tree.map(np.asarray, params)
    return chunk


def _restore_chunk(path: Path) -> dict:
    """A chunk file's contents (msgpack pytree, or legacy npz arrays); one that does not
    decode (cut or damaged outside rgsym's atomic writes) is named, with the way out."""
    try:
        if path.suffix == CHUNK_SUFFIX:
            chunk = serialization.msgpack_restore(path.read_bytes())
        else:
            chunk = load_npz(path)
        if not isinstance(chunk, Mapping) or not {"seeds", "diverged"} <= set(chunk):
            raise ValueError("no seeds or diverged")
        if path.suffix == CHUNK_SUFFIX and not {"final", "curves", "params"} <= set(chunk):
            raise ValueError("no final, curves or params")
    except (ValueError, TypeError, KeyError, EOFError, zipfile.BadZipFile) as e:
        raise ValueError(
            f"{path} is not a readable chunk ({type(e).__name__}: {e}): it was cut or damaged "
            "outside rgsym's atomic writes (a disk error, a copy); delete it, and the "
            "variant's DONE if there is one, then rerun: its seeds are trained again") from None
    return chunk


def _group(arrays: Mapping[str, np.ndarray], kind: str) -> dict[str, np.ndarray]:
    return {k[len(kind) + 1:]: v for k, v in arrays.items() if k.startswith(kind + "/")}


@dataclasses.dataclass(frozen=True, repr=False)
class VariantRecord:
    """One variant of a run directory, every array stacked over its S seeds (run order).

    Attributes:
      name: the variant's name (its folder under ``variants/``).
      config: its resolved run config (the saved ``config.json``, a dict);
        ``rgsym.models.build(config)`` builds its model.
      seeds: [S] integer seeds.
      diverged: [S] bool; diverged_step: [S] the step a seed diverged at (-1: never).
      final: ``{metric: [S]}`` metrics at the end of training.
      curves: ``{metric: [S, E]}`` metrics at the E evaluation ``steps`` [E].
      params: the model's own parameter pytree, every leaf [S, ...] (numpy);
        ``jax.tree.map(lambda a: a[i], params)`` is seed ``seeds[i]``'s, for ``model.apply``.
    """
    name: str
    config: dict
    seeds: np.ndarray
    diverged: np.ndarray
    diverged_step: np.ndarray
    final: dict
    curves: dict
    steps: np.ndarray
    params: Any

    def __repr__(self) -> str:
        leaves = jax.tree.leaves(self.params)
        per_seed = sum(int(np.prod(np.shape(a)[1:])) for a in leaves)
        return (f"VariantRecord({self.name!r}, seeds={_seed_span(self.seeds)}, "
                f"diverged={int(np.sum(self.diverged))}, final=<{len(self.final)} metrics>, "
                f"curves=<{len(self.curves)} metrics x {len(self.steps)} steps>, "
                f"params=<{len(leaves)} leaves, {per_seed} values per seed>)")


def _seed_span(seeds) -> str:
    seeds = np.asarray(seeds)
    if len(seeds) and np.array_equal(seeds, np.arange(seeds[0], seeds[0] + len(seeds))):
        return f"{seeds[0]}..{seeds[-1]}" if len(seeds) > 1 else str(seeds[0])
    return np.array2string(seeds, threshold=8, separator=",")


def load_variant(vdir) -> VariantRecord:
    """Reads one variant folder of a run directory (finished or not) back.

    Args:
      vdir: ``<run_dir>/variants/<name>``.

    Returns:
      A :class:`VariantRecord` of every seed whose chunk is on disk.

    Raises:
      ValueError: no config.json or no chunk in ``vdir``, or parameters that do not fit the
        model its config builds.
    """
    vdir = Path(vdir)
    if not (vdir / "config.json").exists():
        raise ValueError(f"vdir={str(vdir)!r} is not a variant of a run directory: it has no "
                         "config.json")
    files = _chunk_files(vdir)
    if not files:
        raise ValueError(f"vdir={str(vdir)!r} holds no finished chunk of seeds yet")
    cfg = config_lib.upgrade(_read_json(vdir / "config.json"))
    template = _params_template(cfg)
    chunks = [_read_chunk(p, template) for p in files]
    cat = lambda *a: np.concatenate(a)
    every, steps = cfg["eval"]["every"], cfg["optim"]["steps"]
    return VariantRecord(
        name=vdir.name, config=cfg, seeds=cat(*(c["seeds"] for c in chunks)),
        diverged=cat(*(c["diverged"] for c in chunks)).astype(bool),
        diverged_step=cat(*(c["diverged_step"] for c in chunks)),
        final=jax.tree.map(cat, *(c["final"] for c in chunks)),
        curves=jax.tree.map(cat, *(c["curves"] for c in chunks)),
        steps=np.arange(every, steps + 1, every),
        params=jax.tree.map(cat, *(c["params"] for c in chunks)))


@dataclasses.dataclass(frozen=True, repr=False)
class RunRecord:
    """A run directory's top level.

    Attributes:
      path: the run directory.
      config: the whole run config (``config.json``, a dict).
      environment: what produced it (``environment.json``: versions, devices, git revision).
      variants: the names of its variants, in the config's order.
      summaries: ``{variant: summary}`` of the finished variants (``metrics.summarise``).
    """
    path: Path
    config: dict
    environment: dict
    variants: tuple
    summaries: dict

    def __repr__(self) -> str:
        return (f"RunRecord({str(self.path)!r}, {len(self.variants)} variants, "
                f"{len(self.summaries)} finished, num_seeds={self.config.get('num_seeds')})")

    def variant(self, name: str) -> VariantRecord:
        """:func:`load_variant` of one of :attr:`variants`.

        Args:
          name: the variant's name.

        Returns:
          Its :class:`VariantRecord`.

        Raises:
          ValueError: ``name`` is not a variant of this run (the variants are listed); as
            :func:`load_variant` for an unfinished or damaged variant.
        """
        if name not in self.variants:
            raise ValueError(f"variant={name!r} is not in {self.path}: its variants are "
                             f"{', '.join(self.variants)}")
        return load_variant(self.path / "variants" / name)


def load_run(run_dir) -> RunRecord:
    """Reads a run directory's config, environment, variant names and finished summaries.

    Args:
      run_dir: a directory written by :func:`run` (finished or not).

    Returns:
      A :class:`RunRecord`; ``record.variant(name)`` loads one variant.

    Raises:
      ValueError: ``run_dir`` holds no run (no config.json).
    """
    path = Path(run_dir)
    if not (path / "config.json").exists():
        raise ValueError(f"run_dir={str(run_dir)!r} holds no run: it has no config.json")
    config = config_lib.upgrade(_read_json(path / "config.json"))
    names = _variant_names(path, config)
    summaries = {n: _read_json(path / "variants" / n / "summary.json")
                 for n in names if (path / "variants" / n / "DONE").exists()}
    env = path / "environment.json"
    return RunRecord(path, config, _read_json(env) if env.exists() else {},
                     names, summaries)


def _variant_names(path: Path, config: dict) -> tuple:
    """The run's variant names in config order: from variants.json, which the run writes
    (config.json sorts every dict's keys, and a variant's name follows its overrides'
    order).  Older runs: names computed from config.json, those not on disk replaced, in
    order, by the variant folders that no computed name matches."""
    if (path / "variants.json").exists():
        return tuple(_read_json(path / "variants.json"))
    names = [n for n, _ in config_lib.variant_configs(ml_collections.ConfigDict(config))]
    vdir = path / "variants"
    on_disk = sorted(p.name for p in vdir.iterdir()) if vdir.is_dir() else []
    spare = iter(n for n in on_disk if n not in names)
    return tuple(n if (vdir / n).exists() else next(spare, n) for n in names)


def load_params(run_dir: str | os.PathLike, variant: str,
                seeds: Sequence[int] | None = None) -> dict:
    """The trained parameters of one variant, as the model's own pytree stacked over seeds.

    Example (seed 3 of a finished run)::

        rec = results.load_variant(f"{run_dir}/variants/{name}")
        model = models.build(rec.config)
        params = results.load_params(run_dir, name, seeds=[3])        # leaves [1, ...]
        y = model.apply(jax.tree.map(lambda a: a[0], params), x)      # x [B, N] -> [B, N/b]
        prop = cumulants.propagate_many(model, params, family)        # states gain [1, ...]

    Args:
      run_dir: a run directory written by :func:`run`.
      variant: the variant's name (a folder of ``run_dir/variants``).
      seeds: the seeds wanted, in the order wanted; None: every seed on disk, in run order.

    Returns:
      The parameter pytree of ``models.build(config)``, every leaf [S, ...] numpy, S =
      ``len(seeds)``.

    Raises:
      ValueError: an unknown variant (the known ones are listed), a seed that is not on
        disk (the seeds held are named), or a directory whose parameters do not fit its
        config.

    Example (a tiny run written to a temporary directory, then read back):
      >>> import jax, tempfile
      >>> from rgsym import config, results
      >>> c = config.base_config()
      >>> c.lattice.sites, c.model.width, c.model.depth, c.num_seeds = 4, 4, 1, 2
      >>> c.optim.steps, c.eval.every, c.data.batch = 20, 10, 16
      >>> c.eval.batch, c.eval.curve_batch, c.eval.families = 64, 16, ("gaussian",)
      >>> c.compile_cache = jax.config.jax_compilation_cache_dir or ""   # leave it as it is
      >>> with tempfile.TemporaryDirectory() as run_dir:
      ...     summary = results.run(c, run_dir, progress=False, log=lambda line: None)
      ...     params = results.load_params(run_dir, "mlp-none-tanh", seeds=[1])
      >>> list(summary), params["params"]["layer_0"]["kernel"].shape   # leaves [S, ...]
      (['mlp-none-tanh'], (1, 4, 4))
    """
    rec = load_run(run_dir).variant(variant)
    if seeds is None:
        return rec.params
    wanted = np.asarray(seeds)
    if wanted.ndim != 1 or not np.issubdtype(wanted.dtype, np.integer):
        raise ValueError(f"seeds={seeds!r} is not valid: give a 1-D sequence of integer seeds "
                         "or None for all")
    where = {int(s): i for i, s in enumerate(rec.seeds)}
    missing = [int(s) for s in wanted if int(s) not in where]
    if missing:
        raise ValueError(f"seeds {missing} are not in variant {variant!r}: it holds seeds "
                         f"{_seed_span(rec.seeds)}")
    index = np.array([where[int(s)] for s in wanted], dtype=np.int64)
    return jax.tree.map(lambda a: a[index], rec.params)


def _rg_eig_err(config: dict, params) -> np.ndarray:
    """[S] ``cumulants.rg_eigenvalue_error`` of each seed's learned map: NaN where the exact
    rule does not apply; in float64 whatever the run's dtype (the solver's states are)."""
    from rgsym.cumulants import predict
    model = models.build(config)
    with jax.enable_x64(True):
        return predict.rg_eigenvalue_error(model, params)


def _finalise_variant(vdir: Path, name: str) -> dict:
    v = load_variant(vdir)
    final = dict(v.final, **{metrics_lib.RG_EIG_ERR.name(): _rg_eig_err(v.config, v.params)})
    lines, rows, curve_rows = [], [], []
    for i, s in enumerate(v.seeds):
        rec = dict(variant=name, seed=int(s), diverged=bool(v.diverged[i]),
                   diverged_step=int(v.diverged_step[i]))
        fin = {k: _finite_or_none(a[i]) for k, a in sorted(final.items())}
        curve = {k: [_finite_or_none(x) for x in a[i]] for k, a in sorted(v.curves.items())}
        lines.append(json.dumps(rec | dict(final=fin, curves=dict(step=v.steps.tolist(),
                                                                  **curve))))
        rows.append(rec | fin)
        for e, step in enumerate(v.steps):
            curve_rows.append(dict(variant=name, seed=int(s), step=int(step),
                                   **{k: float(a[i, e]) for k, a in sorted(v.curves.items())}))
    atomic_write_text(vdir / "metrics.jsonl", "\n".join(lines) + "\n")
    atomic_write_text(vdir / "metrics.csv", _csv(rows))
    atomic_write_text(vdir / "curves.csv", _csv(curve_rows))
    kill_point(f"finalise:{name}")
    summary = metrics_lib.summarise(_with_derived(final), v.diverged)
    atomic_write_json(vdir / "summary.json", summary)
    atomic_write_text(vdir / "DONE", "")
    return summary


def _with_derived(final: Mapping[str, np.ndarray]) -> dict:
    """Adds the maxima over scales and flow steps used by the summary table."""
    return metrics_lib.with_derived(final)


Plan = list[tuple[int, np.ndarray]]  # chunks still to train: (file index, seeds [C])


def _pending(vdir: Path, spec: config_lib.RunSpec) -> Plan:
    """The chunks of a variant still to train.

    A variant with no chunk on disk gets the config's seed chunks.  Otherwise the seeds
    not yet on disk (those of a chunk lost in flight, or the new seeds of a run extended
    with a larger num_seeds) are chunked by chunk_size (0: all at once) and numbered after
    the chunk files there.  A finished variant whose num_seeds did not grow has none.
    """
    files = _chunk_files(vdir)
    if not files:
        return list(enumerate(sweep_lib.seed_chunks(spec)))
    if ((vdir / "DONE").exists()
            and _read_json(vdir / "config.json")["num_seeds"] == spec.num_seeds):
        return []
    held = np.concatenate([_chunk_seeds(p) for p in files])
    wanted = sweep_lib.run_seeds(spec)
    rest = wanted[~np.isin(wanted, held)]
    size = spec.chunk_size or spec.num_seeds
    first = max(int(p.stem) for p in files) + 1
    return [(first + j, rest[s])
            for j, s in enumerate(sweep_lib.chunk_slices(len(rest), size))]


def _chunk_seeds(path: Path) -> np.ndarray:
    return np.asarray(_restore_chunk(path)["seeds"])


def _from_writer(plans: dict[str, Plan]) -> dict[str, Plan]:
    """Process 0's plans on every host (only it reads and writes the run directory, which
    need not be shared): flattened to [index, C, seeds...] per chunk and broadcast."""
    if jax.process_count() == 1:
        return plans
    from jax.experimental import multihost_utils
    flat = []
    for plan in plans.values():  # the same variants, in the same order, on every host
        flat.append(len(plan))
        for index, seeds in plan:
            flat += [index, len(seeds), *np.asarray(seeds).tolist()]
    n = int(multihost_utils.broadcast_one_to_all(np.int32(len(flat))))
    buf = np.zeros(n, np.int32)
    if jax.process_index() == 0:
        buf[:] = flat
    flat = np.asarray(multihost_utils.broadcast_one_to_all(buf)).tolist()
    out, i = {}, 0
    for name in plans:
        out[name], count, i = [], flat[i], i + 1
        for _ in range(count):
            index, size = flat[i], flat[i + 1]
            out[name].append((index, np.asarray(flat[i + 2: i + 2 + size], np.int64)))
            i += 2 + size
    return out


def _csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    fields = list(dict.fromkeys(k for r in rows for k in r))
    w = csv.DictWriter(buf, fieldnames=fields)
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


# ------------------------------------------------------------------------------------------
# The summary table.

def _statistic(metric: str) -> str:
    """The statistic over seeds a table shows for a metric (median for undeclared ones)."""
    info = metrics_lib.lookup(metric)
    return info.aggregate if info else "median"


def summary_table(summaries: Mapping[str, dict], columns=SUMMARY_COLUMNS) -> str:
    """Plain-text table: one row per variant, ``median ± se [q25, q75]`` per metric, then a
    legend.  ``se`` is ``metrics.summarise``'s: the seed spread's bootstrap SE of the median,
    combined in quadrature with the evaluation set's SE where the metric has one (summaries
    written before SEs were recorded show none).

    Args:
      summaries: ``{variant: metrics.summarise(...)}``, as :func:`run` returns.
      columns: metric names; a variant that lacks one, or has no finite value, shows '-'.

    Returns:
      The table (header, rule, one line per variant), newline-terminated; the legend is
      :func:`summary_legend`.
    """
    header = ["variant", "seeds", "diverged", *columns]
    rows = []
    for name, s in summaries.items():
        cells = [name, str(s["num_seeds"]), str(s["num_diverged"])]
        for c in columns:
            a = s.get(c)
            se = "" if a is None or "se" not in a else f" ± {a['se']:.1e}"
            cells.append("-" if a is None or not a["n"] else
                         f"{a[_statistic(c)]:.2e}{se} [{a['q25']:.1e}, {a['q75']:.1e}]")
        rows.append(cells)
    width = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    fmt = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, width)).rstrip()
    rule = "-" * len(fmt(header))
    return "\n".join([fmt(header), rule] + [fmt(r) for r in rows]) + "\n"


def summary_legend(columns=SUMMARY_COLUMNS, width: int = 100) -> str:
    """What the cells of :func:`summary_table` are, and how their standard errors are made
    (written under the table in summary.txt).

    Args:
      columns: the table's metrics; those with an evaluation-set SE are named.
      width: the widest line, in characters.

    Returns:
      The legend, wrapped, newline-terminated.
    """
    noisy = [c for c in columns if (info := metrics_lib.lookup(c)) and info.se]
    return "\n".join(textwrap.wrap(
        "median ± standard error [q25, q75] over the seeds that did not diverge. The SE is "
        "the standard deviation of 1000 bootstrap medians (seeds resampled, numpy seed 0)"
        + (f"; for {', '.join(noisy)} combined in quadrature with the median over seeds "
           "of the evaluation set's own sampling SE (eval_se in summary.csv/.json: the "
           "evaluation sets are shared by every seed, so their noise does not average out)"
           if noisy else "")
        + ". Differences within a few SEs are noise.", width)) + "\n"


def printed_table(summaries: Mapping[str, dict], columns=PRINTED_COLUMNS,
                  width: int = 100) -> str:
    """The summary a run prints: key columns, medians over seeds at 2 significant digits.

    Args:
      summaries: ``{variant: metrics.summarise(...)}``, as :func:`run` returns.
      columns: ``(metric, header)`` pairs; a header names its metric in the legend.
      width: the widest line; variant names that would exceed it are cut, ending in '~'.

    Returns:
      The table, then a legend and where the full table is, every line <= ``width``.
    """
    head = ["variant", "seeds", "div", *(h for _, h in columns)]
    rows = []
    for name, s in summaries.items():
        cells = [name, str(s["num_seeds"]), str(s["num_diverged"])]
        for metric, _ in columns:
            a = s.get(metric)
            cells.append("-" if a is None or not a["n"] else f"{a[_statistic(metric)]:.1e}")
        rows.append(cells)
    sizes = [max(len(r[i]) for r in [head] + rows) for i in range(len(head))]
    sizes[0] = max(len(head[0]), min(sizes[0], width - sum(sizes[1:]) - 2 * (len(head) - 1)))
    cut = lambda c, n: c if len(c) <= n else c[: n - 1] + "~"
    fmt = lambda r: "  ".join([cut(r[0], sizes[0]).ljust(sizes[0])] + [
        c.rjust(n) for c, n in zip(r[1:], sizes[1:])]).rstrip()
    legend = textwrap.wrap(
        "Medians over seeds; div: diverged seeds. " + ", ".join(
            f"{h}: {m}" for m, h in columns) + ". Standard errors, quartiles and every metric: "
        "summary.txt, summary.csv, summary.json.", width)
    return "\n".join([fmt(head), "-" * len(fmt(head))] + [fmt(r) for r in rows] + legend) + "\n"


def _summary_csv(summaries: Mapping[str, dict]) -> str:
    rows = []
    for name, s in summaries.items():
        for metric, a in s.items():
            if isinstance(a, dict):
                rows.append(dict(variant=name, metric=metric, num_seeds=s["num_seeds"],
                                 num_diverged=s["num_diverged"], **a))
    return _csv(rows)


# ------------------------------------------------------------------------------------------
# The resumable sweep.

def _sessions(path: Path) -> list[dict]:
    """Every environment that has written to a run, oldest first (environment.json holds
    the latest with the earlier ones under 'history'; older runs have no history)."""
    if not path.exists():
        return []
    latest = _read_json(path)
    return list(latest.pop("history", [])) + [latest]


def _check_versions(sessions: list[dict], allow_version_change: bool) -> None:
    now = versions()
    for past in sessions:
        # A key that a session lacks was not recorded then (rgsym's own version, in run
        # directories written before it was): no evidence of a change, not compared.
        differ = [f"{k} {past[k]} -> {now[k]}" for k in RESUME_VERSION_KEYS
                  if k in past and past[k] != now[k]]
        if differ and not allow_version_change:
            raise ValueError(
                f"the run was written under other versions ({'; '.join(differ)}): its chunks "
                "and new ones could differ in RNG streams or numerics; use a new --workdir, "
                "or pass allow_version_change=True (--allow_version_change) to resume anyway "
                "(recorded in environment.json)")


def check(cfg, workdir, *, allow_version_change: bool = False
          ) -> list[tuple[str, config_lib.RunSpec]]:
    """Everything that refuses a run before anything is compiled.

    Args:
      cfg: a whole run config (``rgsym.config.base_config`` with overrides and variants).
      workdir: the run directory; where it already holds a run, that run's config and the
        versions (:data:`RESUME_VERSION_KEYS`) of every session that wrote to it.
      allow_version_change: resume a run written under other versions anyway.

    Returns:
      ``[(variant name, RunSpec)]``: ``rgsym.config.resolve_variants(cfg)``, validated here
      once (what :func:`run` builds its sweeps from).

    Raises:
      ValueError: naming the field, for a config that ``rgsym.config.validate_config``
        refuses, a ``compile_cache`` directory that cannot be created or written
        (``rgsym.compile_cache.prepare``: the one thing created here), a ``workdir``
        holding a run of another config, or one written under other rgsym / jax / jaxlib
        versions (naming them) unless ``allow_version_change``.
        With many processes (``jax.process_count() > 1``) a collective: process 0 alone
        checks the run directory, and every process raises when any refuses or when its
        config is not process 0's.
    """
    # (one process: no JAX backend is started here, so split_host_cpu may still follow)
    many = jax.distributed.is_initialized() and jax.process_count() > 1
    error = None
    try:
        specs = config_lib.resolve_variants(cfg)
        compile_cache.prepare(cfg.compile_cache)  # (checked where JAX writes: process 0)
        if not many or jax.process_index() == 0:  # the writer alone needs the run directory
            _check_resume(Path(workdir) / "config.json", cfg)
            _check_versions(_sessions(Path(workdir) / "environment.json"),
                            allow_version_change)
    except ValueError as e:
        if not many:
            raise
        error = e
    if many:
        _agree(cfg, error)
    return specs


def _agree(cfg, error: ValueError | None) -> None:
    """Many processes: every one refuses the run together, in seconds, when any refuses it
    or when its config is not process 0's (one that went on alone would wait in a collective
    until JAX's heartbeat timeout, or with another config train its seeds silently wrong)."""
    from jax.experimental import multihost_utils
    mine = _config_json(cfg)
    for field in EXECUTION_FIELDS:
        mine.pop(field, None)
    text = np.frombuffer(json.dumps(mine, sort_keys=True).encode(), np.uint8).astype(np.int32)
    n = int(multihost_utils.broadcast_one_to_all(np.int32(len(text))))
    buf = np.zeros(n, np.int32)
    if jax.process_index() == 0:
        buf[:] = text
    writer = json.loads(bytes(np.asarray(multihost_utils.broadcast_one_to_all(buf))
                              .astype(np.uint8)).decode())
    if error is None and writer != mine:
        fields = sorted({k for k, _ in _flat(writer).items() ^ _flat(mine).items()})
        error = ValueError(f"process {jax.process_index()} was given another config than "
                           f"process 0 (fields differ: {', '.join(fields)}); every process "
                           "of a sweep must be given the same config and overrides")
    failed = np.asarray(multihost_utils.process_allgather(np.int32(error is not None)))
    if error is not None:
        raise error
    if failed.any():
        raise ValueError(f"process(es) {', '.join(map(str, np.flatnonzero(failed)))} refused "
                         "the run (see their error); every process stops")


def run(cfg, workdir, *, progress: bool = True, devices=None,
        log: Callable[[str], None] = print, allow_version_change: bool = False) -> dict:
    """Runs (or resumes, or extends) every variant x seed chunk of ``cfg`` under ``workdir``.

    Validates the whole config first (nothing is compiled before that, see :func:`check`),
    points the process's JAX persistent compilation cache at the config's
    ``compile_cache`` (``rgsym.compile_cache.enable``: it stays so after the call), skips
    finished variants and chunks (a ``num_seeds`` larger than the run's trains the new
    seeds only), writes per-variant records as each variant completes, then the summary
    tables and figures.

    Args:
      cfg: a whole run config (variants included).
      workdir: the run directory (created, resumed or extended).
      progress: a progress bar over the chunks left to train.
      devices: the devices the seed axis is sharded over (default: the config's).
      log: gets :func:`printed_table` (key columns, at most 100 characters wide).
      allow_version_change: resume a run written under other rgsym / jax / jaxlib versions
        (see :func:`check`); environment.json keeps every session under 'history'.

    Returns:
      ``{variant: summary}``: ``metrics.summarise`` of each variant over its seeds.

    Raises:
      ValueError: before any work, as :func:`check`.
    """
    from tqdm.auto import tqdm

    from rgsym import plotting

    specs = dict(check(cfg, workdir, allow_version_change=allow_version_change))
    cache_dir = compile_cache.enable(cfg.compile_cache)
    variants = config_lib.variant_configs(cfg)
    workdir = Path(workdir)
    writer = jax.process_index() == 0
    if writer:
        for stale in workdir.rglob(".tmp-*"):  # left by a write that a SIGKILL cut short
            stale.unlink()
        atomic_write_json(workdir / "config.json", _config_json(cfg))
        atomic_write_json(workdir / "variants.json", [name for name, _ in variants])
        atomic_write_json(workdir / "environment.json",
                          dict(environment(cfg), compile_cache_dir=cache_dir,
                               allow_version_change=allow_version_change,
                               history=_sessions(workdir / "environment.json")))

    pending = _from_writer({name: _pending(workdir / "variants" / name, specs[name])
                            if writer else [] for name, _ in variants})
    bar = tqdm(total=sum(map(len, pending.values())), unit="chunk", desc="sweep",
               disable=not progress, dynamic_ncols=True)
    summaries = {}
    for name, vcfg in variants:
        vdir = workdir / "variants" / name
        if pending[name]:
            bar.set_postfix_str(f"{name} (compiling)")
            kill_point(f"compile:{name}")
            compile_cache.release_if_crowded()  # a long grid keeps every variant's program
            sw = sweep_lib.make_sweep(specs[name], devices=devices)
            if writer:
                (vdir / "DONE").unlink(missing_ok=True)  # extended: to be finalised again
                atomic_write_json(vdir / "config.json", _config_json(vcfg))
            for i, seeds in pending[name]:
                params, metrics = sw.run_chunk(seeds)
                kill_point(f"trained:{name}:{i:05d}")
                if writer:
                    atomic_write_bytes(vdir / "chunks" / f"{i:05d}{CHUNK_SUFFIX}",
                                       _chunk_bytes(params, metrics, seeds))
                    kill_point(f"chunk:{name}:{i:05d}")
                bar.set_postfix_str(name)
                bar.update()
        if writer:
            if not (vdir / "DONE").exists():
                _finalise_variant(vdir, name)
            summaries[name] = _read_json(vdir / "summary.json")
    bar.close()
    if writer:
        table = summary_table(summaries) + "\n" + summary_legend()
        atomic_write_text(workdir / "summary.txt", table)
        atomic_write_text(workdir / "summary.csv", _summary_csv(summaries))
        atomic_write_json(workdir / "summary.json", summaries)
        kill_point("summary")
        plotting.sweep_figures(workdir, {n: load_variant(workdir / "variants" / n)
                                         for n, _ in variants})
        kill_point("figures")
        log(printed_table(summaries))
    return summaries
