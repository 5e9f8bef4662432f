"""The run config: one schema with a one-line doc per field, its validation, variants and grids.

    from rgsym.config import base_config, grid
    c = base_config()                                  # every field, with its default
    c.optim.steps = 2000
    c.variants = grid(symmetry=("none", "tied_hidden"), activation=("quadratic", "tanh"))
    validate_config(c)                                 # ValueError naming the field
    specs = resolve_variants(c)                        # validates, then [(name, RunSpec)]

``python -m rgsym.config [config_file]`` (or ``rgsym-config``) lists every field with its
value and doc.  A sweep's variants are dicts of overrides: a plain key names a model field
(``width``), a dotted key any field (``optim.lr``).  :func:`grid` (Cartesian product) and
:func:`zipped` (axes varied together) build them; :func:`product` combines such lists, in the
style of flax's hyper-parameter sweeps.

:func:`resolve` validates a config of one variant once and returns a :class:`RunSpec`, the
frozen, typed form the builders (``rgsym.train``, ``rgsym.sweep``, ``rgsym.metrics``) take;
they never validate again.  A RunSpec mirrors the config's layout (``spec.optim.lr`` is
``cfg.optim.lr``), with ``spec.model`` a :class:`rgsym.models.ModelSpec` built from the
config's model section and lattice: run defaults live in :data:`SCHEMA` alone.
"""
from __future__ import annotations

import dataclasses
import itertools
import json
import sys
import typing
from typing import Any, Iterable, Mapping, Sequence

import ml_collections
import numpy as np

from rgsym import compile_cache, distributions, models, validation

__all__ = ["base_config", "describe", "validate_config", "resolve", "resolve_variants",
           "RunSpec", "LatticeSpec", "DataSpec", "OptimSpec", "EvalSpec", "variant_configs",
           "variant_name",
           "model_config", "shadowed_fields", "grid", "zipped", "product", "fail", "upgrade",
           "renamed_to", "RENAMED", "OPTIMIZERS", "SCHEDULES", "PRECISIONS", "OPT_LEVELS"]

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine", "warmup_cosine")
PRECISIONS = ("default", "highest")
OPT_LEVELS = ("auto", "xla", "0", "1", "2", "3")
# Model-zoo fields that other sections own (one source of truth).
_OWNED = models.spec.RUN_CONFIG_FIELDS
_ORDERS = 4  # k-statistics to kappa_4 (rgsym.metrics.ORDERS) need more samples than this

_PLACEHOLDER_STR = ml_collections.config_dict.placeholder(str)

# (dotted field, default, doc): the schema.  base_config builds the ConfigDict from it and
# describe() prints it, so a field's default and its doc live on one line.
SCHEMA: tuple[tuple[str, Any, str], ...] = (
    ("name", "sweep", "run name, shown in figure titles and records"),
    ("seed", 0, "first seed; the seeds are seed .. seed + num_seeds - 1"),
    ("num_seeds", 8, "seeds per variant (a larger value extends a finished run)"),
    ("chunk_size", 0, "seeds per compiled call (bounds memory); 0 = all at once"),
    ("num_devices", 0, "devices the seed axis is sharded over; 0 = all local ones"),
    ("multihost", False, "call jax.distributed.initialize() and shard seeds over processes"),
    ("dtype", "float32", "parameter and compute dtype: float32 or float64 (needs x64)"),
    ("matmul_precision", "default", "'highest' avoids TF32 on GPUs (exact-map science)"),
    ("compile_cache", "auto", "JAX persistent compilation cache dir; 'auto' = "
     "$JAX_COMPILATION_CACHE_DIR if set, else $XDG_CACHE_HOME/rgsym/jax or "
     "~/.cache/rgsym/jax; '' = off (execution only: results never depend on it)"),
    ("backend_opt_level", "auto", "XLA backend (LLVM) optimisation level: 'auto' = 1 on "
     "CPUs (faster compiles, same speed), XLA's default elsewhere; 'xla'; or '0'..'3'"),
    ("lattice.dim", 1, "lattice dimension: 1 or 2"),
    ("lattice.sites", 16, "sites per side of the fine lattice (a multiple of lattice.b)"),
    ("lattice.b", 2, "block size per side: the RG sums b**dim sites into one"),
    ("data.family", "uniform", "training input family (standardised: mean 0, variance 1)"),
    ("data.batch", 256, "training samples per step"),
    ("data.train_size", 0, "training pairs per seed, drawn once and reused (finite data: "
     "over-fitting shows in the test error); 0 = fresh pairs every step; else >= data.batch"),
    ("model.kind", "mlp", "network kind: mlp or gnn (was model.family until 2026-11-30)"),
    ("model.symmetry", "none", "weight symmetry (mlp: none, block_local, block_permutation, "
     "tied_hidden, odd, nonnegative, symmetric_weights; gnn: shared, separate, edge_typed, "
     "directional)"),
    ("model.activation", "tanh", "hidden activation (identity, quadratic, cubic, tanh, "
     "relu, ...)"),
    ("model.width", 64, "hidden units per layer (mlp) or features per node (gnn)"),
    ("model.depth", 2, "hidden layers (mlp) or message-passing layers (gnn)"),
    ("model.alpha", 0.1, "activation parameter (quadratic z + alpha z^2, cubic "
     "z + alpha z^3)"),
    ("model.init_scale", 1.0, "weights start with std init_scale / sqrt(fan_in)"),
    ("model.soft_symmetry", _PLACEHOLDER_STR, "an MLP symmetry imposed as a penalty on a "
     "free ('none') MLP; None = no penalty"),
    ("model.symmetry_strength", 0.0, "weight of the soft-symmetry penalty (0 = free)"),
    ("model.pooling", "sum", "gnn: per-block pooling: sum, mean or learned"),
    ("model.boundary", "periodic", "gnn: lattice graph boundary: periodic or open"),
    ("model.block_edges", False, "gnn: also connect every pair of sites in a block"),
    ("model.use_bias", True, "biases in every affine map"),
    ("optim.optimizer", "adam", "adam, adamw or sgd"),
    ("optim.lr", 1e-3, "learning rate"),
    ("optim.schedule", "constant", "learning-rate multiplier: constant, cosine, "
     "warmup_cosine"),
    ("optim.warmup_steps", 0, "warmup steps of warmup_cosine"),
    ("optim.steps", 500, "training steps"),
    ("optim.weight_decay", 0.0, "adamw's decoupled weight decay"),
    ("optim.momentum", 0.0, "sgd momentum"),
    ("optim.grad_clip", 0.0, "clip gradients to this global norm; 0 = off"),
    ("eval.every", 100, "steps between in-scan evaluations (must divide optim.steps)"),
    ("eval.batch", 1024, "samples per evaluation set at the end of training"),
    ("eval.curve_batch", 256, "samples per evaluation set during training"),
    ("eval.families", (), "OOD families (standardised); () = all with finite kappa_4"),
    ("eval.scales", (0.5, 2.0), "the training family at these other scales"),
    ("eval.flow_steps", 2, "k-step iterated-flow error of iterable models"),
    ("eval.seed", 12345, "key of the evaluation sets, common to every seed and variant"),
    ("variants", (), "the sweep's variants: dicts of overrides (see grid); () = the base "
     "config alone"),
)
_DOCS = {field: doc for field, _, doc in SCHEMA}


def base_config() -> ml_collections.ConfigDict:
    """Every config field with its default (:data:`SCHEMA`); config files start from this.

    The dict is locked: assigning a field the schema lacks (a typo such as ``c.modle``)
    raises AttributeError naming it, instead of adding a field nothing reads.

    Returns:
      A fresh, locked ``ml_collections.ConfigDict`` (sections ``lattice``, ``model``,
      ``data``, ``optim``, ``eval`` and the run-level fields), ``variants`` = ().

    Example:
      >>> from rgsym import config
      >>> c = config.base_config()
      >>> c.model.width, c.lattice.sites
      (64, 16)
      >>> c.modle = 1
      Traceback (most recent call last):
      ...
      AttributeError: ...
    """
    c = ml_collections.ConfigDict()
    for field, default, _ in SCHEMA:
        *path, leaf = field.split(".")
        section = c
        for part in path:
            if part not in section:
                section[part] = ml_collections.ConfigDict()
            section = section[part]
        # A FieldReference is one value shared by every dict holding it: each config gets
        # its own, or setting the field on one config would set it on every later one.
        if isinstance(default, ml_collections.FieldReference):
            default = ml_collections.config_dict.placeholder(default.get_type())
        section[leaf] = default
    c.lock()
    return c


# Fields renamed since run directories were first written: (old dotted field, new dotted
# field, date, why).  upgrade() reads saved configs under the new names; a config that still
# sets an old name is refused with a hint naming the new one (renamed_to).
RENAMED: tuple[tuple[str, str, str, str], ...] = (
    ("model.family", "model.kind", "2026-11-30",
     "'family' also named the input distribution (data.family, eval.families, the "
     "rel_err/<family> metrics); the network kind (mlp or gnn) got its own word"),
)


def renamed_to(field: str) -> str | None:
    """The field that an old field is called now (:data:`RENAMED`).

    Args:
      field: a dotted field (``model.family``) or a plain variant key naming a model field
        (``family``).

    Returns:
      The new dotted field (``model.kind``); None for a field never renamed.
    """
    for old, new, _, _ in RENAMED:
        if field == old or (old.startswith("model.") and field == old[len("model."):]):
            return new
    return None


def _renamed_hint(field: str) -> str:
    new = renamed_to(field)
    return f" (renamed to {new}; see rgsym.config.RENAMED)" if new else ""


def upgrade(saved: Mapping) -> dict:
    """A saved run config (a run directory's ``config.json``, the whole run's or a
    variant's, as a dict) with the fields renamed since it was written (:data:`RENAMED`)
    under their new names; the input is not modified.

    2026-11-30: ``model.family`` became ``model.kind`` (and a variant's override key
    ``family`` became ``kind``): "family" is kept for the input distribution alone.  Runs
    written before hold the old name, so everything that reads a saved config (resuming
    in ``rgsym.results``, ``load_run``, ``load_variant``, ``models.spec_from_config`` of a
    run config) upgrades it first.  A config that already uses the new names is returned
    as an equal copy.

    Args:
      saved: the saved config as plain JSON data (nested dicts and lists).

    Returns:
      A deep copy with every renamed field (and variant override key) under its new name;
      where both names are present the new one is kept and the old left as it is.
    """
    out = _copy_json(saved)
    for old, new, _, _ in RENAMED:
        *old_path, old_leaf = old.split(".")
        *new_path, new_leaf = new.split(".")
        section = _section(out, old_path)
        if section is not None and old_leaf in section and new_leaf not in section:
            target = _section(out, new_path)
            if target is section:  # (the key keeps its position)
                _replace(section, _rename_key(section, old_leaf, new_leaf))
            elif target is not None:
                target[new_leaf] = section.pop(old_leaf)
        variants = out.get("variants")
        if isinstance(variants, (list, tuple)):  # override keys: dotted, or a model field
            plain = old[len("model."):] if old.startswith("model.") else None
            new_plain = new[len("model."):] if new.startswith("model.") else new
            out["variants"] = type(variants)(
                _rename_key(_rename_key(v, plain, new_plain) if plain else v, old, new)
                if isinstance(v, dict) else v for v in variants)
    return out


def _copy_json(d):
    if isinstance(d, Mapping):
        return {k: _copy_json(v) for k, v in d.items()}
    if isinstance(d, (list, tuple)):
        return type(d)(_copy_json(v) for v in d)
    return d


def _section(d: dict, path: Sequence[str]):
    for part in path:
        d = d.get(part) if isinstance(d, dict) else None
    return d if isinstance(d, dict) else None


def _rename_key(d: dict, old: str, new: str) -> dict:
    """``d`` with key ``old`` renamed ``new`` in place of it (unchanged if ``new`` is there)."""
    if old not in d or new in d:
        return d
    return {new if k == old else k: v for k, v in d.items()}


def _replace(d: dict, items: dict) -> None:
    d.clear()
    d.update(items)


def describe(cfg=None) -> str:
    """Every field as ``field = value  # doc``, one per line (``cfg`` default: the defaults).

    Args:
      cfg: a run config (a ``base_config()`` with overrides); None: the defaults.

    Returns:
      One line per schema field, in schema order, values aligned.

    Raises:
      ValueError: ``cfg`` holds a field the schema does not know.

    Example:
      >>> from rgsym import config
      >>> print(next(l for l in config.describe().splitlines() if l.startswith("optim.lr ")))
      optim.lr = 0.001 # learning rate
    """
    cfg = base_config() if cfg is None else cfg
    _check_keys(cfg, base_config())
    rows = [(f, repr(_get(cfg, f))) for f, _, _ in SCHEMA]
    width = max(len(f) + len(v) for f, v in rows) + 3
    return "\n".join(f"{f + ' = ' + v:<{width}}  # {_DOCS[f]}" for f, v in rows)


# ------------------------------------------------------------------------------------------
# Variants and grids.

def grid(**axes: Sequence) -> list[dict]:
    """The Cartesian product of ``axes`` as a list of override dicts (first axis slowest).

    ``grid(symmetry=('none', 'odd'), width=(8, 32))`` gives 4 variants; dotted fields go in
    as ``grid(**{'optim.lr': (1e-3, 1e-2)})``.

    numpy scalars in an axis become Python values (config.json records them).

    Args:
      **axes: field name (a model field, or a dotted path to any field) -> its values.

    Returns:
      ``prod(len(values))`` override dicts, ``{field: value}`` for every axis.

    Raises:
      ValueError: an axis that is not a non-empty list or tuple of values.

    Example:
      >>> from rgsym import config
      >>> config.grid(symmetry=("none", "odd"), width=(8, 32))
      [{'symmetry': 'none', 'width': 8}, {'symmetry': 'none', 'width': 32},
       {'symmetry': 'odd', 'width': 8}, {'symmetry': 'odd', 'width': 32}]
    """
    return product(*([{name: v} for v in _axis(name, values)] for name, values in axes.items()))


def zipped(**axes: Sequence) -> list[dict]:
    """Axes varied together: the i-th variant takes the i-th value of every axis.

    Args:
      **axes: field name -> its values; every axis the same length L.

    Returns:
      L override dicts.

    Raises:
      ValueError: axes of different lengths (the lengths are named), or a bad axis.
    """
    axes = {name: _axis(name, values) for name, values in axes.items()}
    lengths = {name: len(values) for name, values in axes.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"zipped axes must have equal lengths, got {lengths}")
    return [dict(zip(axes, values)) for values in zip(*axes.values())]


def product(*factors: Iterable[Mapping]) -> list[dict]:
    """Every combination of one override dict from each factor (lists of dicts), merged.

    ``product(grid(activation=('tanh', 'relu')), zipped(width=(8, 32), depth=(1, 2)))``.

    Args:
      *factors: lists of override dicts (from :func:`grid`, :func:`zipped` or by hand).

    Returns:
      ``prod(len(f))`` merged override dicts, the first factor varying slowest.

    Raises:
      ValueError: two factors that set the same field (the field is named).
    """
    out = []
    for combo in itertools.product(*(list(f) for f in factors)):
        merged: dict = {}
        for part in combo:
            clash = merged.keys() & dict(part).keys()
            if clash:
                raise ValueError(f"product: field {sorted(clash)[0]!r} is set by two factors")
            merged.update(part)
        out.append(merged)
    return out


def _axis(name: str, values) -> Sequence:
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
        raise ValueError(f"axis {name}={values!r} is not valid: give a non-empty list or "
                         "tuple of values")
    # numpy scalars (2 ** np.arange(3, 6)) as Python values: config.json records them
    return type(values)(v.item() if isinstance(v, np.generic) else v for v in values)


# ------------------------------------------------------------------------------------------
# Validation: every check runs before anything is traced and names the offending field.

def fail(field: str, value, why: str):
    """Raises the config error of ``field``; never returns.

    Args:
      field: the dotted field (or ``variants[i].key``) at fault.
      value: the offending value (shown by its repr).
      why: what is wrong, or what would be valid.

    Raises:
      ValueError: always: ``config field '<field>'=<value> is not valid: <why>``.
    """
    raise ValueError(f"config field '{field}'={value!r} is not valid: {why}")


def _check_keys(cfg, schema, prefix=""):
    for k in cfg.keys():
        if k not in schema:
            raise ValueError(f"config field '{prefix}{k}' is unknown"
                             f"{_renamed_hint(prefix + k)}; known fields here: "
                             f"{', '.join(sorted(schema.keys()))}")
        if isinstance(schema[k], ml_collections.ConfigDict):
            if not isinstance(cfg[k], (ml_collections.ConfigDict, Mapping)):
                fail(prefix + k, cfg[k], "it must be a section (a dict of fields)")
            _check_keys(cfg[k], schema[k], f"{prefix}{k}.")


def _int(cfg, field, low):
    return validation.integer(f"config field '{field}'", _get(cfg, field), low)


def _real(cfg, field, positive=False):
    return validation.real(f"config field '{field}'", _get(cfg, field), positive=positive,
                           low=None if positive else 0.0)


def _choice(cfg, field, options):
    return validation.choice(f"config field '{field}'", _get(cfg, field), options)


def _get(cfg, field):
    for part in field.split("."):
        cfg = cfg[part]
    return cfg


def validate_config(cfg) -> None:
    """Checks a (variant-free or full) config, section by section, before anything is traced.

    Args:
      cfg: a run config (``base_config()`` with overrides), variants included.

    Raises:
      ValueError: naming the field, its value and what is valid: unknown keys, negative
        steps or seeds, lattices or batches that do not fit, unknown families, a model
        that does not build, and the same for every variant (named).
    """
    _check_keys(cfg, base_config())
    _check_run(cfg)
    _check_lattice(cfg)
    _check_data(cfg)
    _check_optim(cfg)
    _check_eval(cfg)
    if not isinstance(cfg.variants, (tuple, list)):
        fail("variants", cfg.variants, "it must be a list of dicts of overrides")
    for i, v in enumerate(cfg.variants):
        if not isinstance(v, Mapping):
            fail(f"variants[{i}]", v, "each variant is a dict of overrides")
        for key, value in v.items():
            try:
                json.dumps(value)
            except (TypeError, ValueError):
                fail(f"variants[{i}].{key}", value, "a run records its variants in config.json:"
                     " give a plain Python value (int, float, str, bool, None, a list or tuple)")
    if not cfg.variants:
        try:
            models.build(model_config(cfg))
        except ValueError as e:
            raise ValueError(f"config section 'model': {e}") from None
    for name, vcfg in variant_configs(cfg) if cfg.variants else ():
        try:
            validate_config(vcfg)
        except ValueError as e:
            raise ValueError(f"variant {name!r}: {e}") from None


def _check_run(cfg) -> None:
    import jax  # (a config is described and gridded without JAX's backends)
    _int(cfg, "seed", 0)
    _int(cfg, "num_seeds", 1)
    _int(cfg, "chunk_size", 0)
    if _int(cfg, "num_devices", 0):  # (only then are the devices looked up)
        available = len(jax.devices() if cfg.multihost else jax.local_devices())
        if cfg.num_devices > available:
            fail("num_devices", cfg.num_devices, f"only {available} devices are available")
    _choice(cfg, "dtype", models.spec.DTYPES)
    _choice(cfg, "matmul_precision", PRECISIONS)
    try:
        compile_cache.resolve(cfg.compile_cache)
    except ValueError as e:
        fail("compile_cache", cfg.compile_cache, str(e).split(": ", 1)[1])
    _choice(cfg, "backend_opt_level", OPT_LEVELS)
    if cfg.dtype == "float64" and not jax.config.jax_enable_x64:
        fail("dtype", cfg.dtype, "float64 needs jax_enable_x64 (rgsym-sweep sets it)")


def _check_lattice(cfg) -> None:
    _choice(cfg, "lattice.dim", (1, 2))
    b = _int(cfg, "lattice.b", 2)
    sites = _int(cfg, "lattice.sites", 1)
    if sites % b:
        fail("lattice.sites", sites, f"a lattice side must be a multiple of lattice.b={b}")


def _check_data(cfg) -> None:
    _int(cfg, "data.batch", 1)
    if 0 < _int(cfg, "data.train_size", 0) < cfg.data.batch:
        fail("data.train_size", cfg.data.train_size, "a finite training set must hold at least "
             f"data.batch={cfg.data.batch} pairs (0 = unlimited)")
    fam = _choice(cfg, "data.family", distributions.names())
    if distributions.get(fam).max_order < 2:
        fail("data.family", fam, "training needs a family with finite variance")


def _check_optim(cfg) -> None:
    _choice(cfg, "optim.optimizer", OPTIMIZERS)
    _choice(cfg, "optim.schedule", SCHEDULES)
    steps = _int(cfg, "optim.steps", 1)
    _int(cfg, "optim.warmup_steps", 0)
    if cfg.optim.warmup_steps > steps:
        fail("optim.warmup_steps", cfg.optim.warmup_steps, f"it exceeds optim.steps={steps}")
    _real(cfg, "optim.lr", positive=True)
    for f in ("weight_decay", "momentum", "grad_clip"):
        _real(cfg, "optim." + f)


def _check_eval(cfg) -> None:
    steps = cfg.optim.steps
    every = _int(cfg, "eval.every", 1)
    if steps % every:
        fail("eval.every", every, f"it must divide optim.steps={steps}")
    batch = _int(cfg, "eval.batch", _ORDERS + 1)
    curve = _int(cfg, "eval.curve_batch", _ORDERS + 1)
    if curve > batch:
        fail("eval.curve_batch", curve, f"curves use a slice of eval.batch={batch} samples")
    _int(cfg, "eval.seed", 0)
    finite = distributions.finite_order_names(_ORDERS)
    for f in cfg.eval.families:
        if f not in distributions.names():
            fail("eval.families", f, f"unknown family; known: {', '.join(distributions.names())}")
        if f not in finite:
            fail("eval.families", f, f"its kappa_{_ORDERS} diverges, so cumulant errors do "
                                     "not exist")
    for s in cfg.eval.scales:
        validation.real("config field 'eval.scales' entry", s, positive=True)
    if len(set(cfg.eval.scales)) != len(cfg.eval.scales):
        fail("eval.scales", cfg.eval.scales, "a scale listed twice would name two metrics alike")
    k = _int(cfg, "eval.flow_steps", 1)
    sites, b = cfg.lattice.sites, cfg.lattice.b
    if sites % b ** k:
        fail("eval.flow_steps", k, f"lattice.sites={sites} must be a multiple of "
                                   f"lattice.b**flow_steps={b ** k}")


def variant_configs(cfg) -> list[tuple[str, ml_collections.ConfigDict]]:
    """``[(name, resolved config)]`` for every variant (overrides applied, variants cleared).

    Unchecked: :func:`validate_config` checks every variant of a whole config.

    Args:
      cfg: a run config; with no variants it yields one, named after its model.

    Returns:
      ``[(name, config)]`` in the order of ``cfg.variants``: each config a fresh, unlocked
      copy of ``cfg`` with that variant's overrides set and ``variants`` = (); the name as
      :func:`variant_name`.

    Raises:
      ValueError: an override naming no field or a whole section, a value of another type
        than its field's, or two variants with the same name.
    """
    out = []
    for i, overrides in enumerate(cfg.variants or ({},)):
        v = ml_collections.ConfigDict(cfg.to_dict())
        v.variants = ()
        for key, value in dict(overrides).items():
            field = _field_of(key)
            *path, leaf = field.split(".")
            try:
                section = _get(v, ".".join(path)) if path else v
                if leaf not in section:
                    raise KeyError(leaf)
            except KeyError:
                raise ValueError(f"config field 'variants[{i}].{key}' is unknown: '{field}' is "
                                 f"not a config field{_renamed_hint(key)}") from None
            if isinstance(section[leaf], ml_collections.ConfigDict):
                fail(f"variants[{i}].{key}", value, f"'{field}' is a section: a variant sets "
                     f"its fields one by one, e.g. '{field}.{next(iter(section[leaf]))}'")
            try:
                section[leaf] = value
            except TypeError as e:  # ml_collections: a value of another type than the field's
                fail(f"variants[{i}].{key}", value, f"'{field}' holds a "
                     f"{type(section[leaf]).__name__}, not a {type(value).__name__} "
                     f"({' '.join(str(e).split())})")
        out.append((variant_name(v, overrides), v))
    names = [n for n, _ in out]
    if len(set(names)) != len(names):
        fail("variants", names, "two variants resolve to the same name")
    return out


def _field_of(key: str) -> str:
    """The dotted field a variant key sets: a plain key names a model field if there is one."""
    return key if "." in key or f"model.{key}" not in _DOCS else f"model.{key}"


def shadowed_fields(cfg, fields: Iterable[str]) -> list[str]:
    """The dotted ``fields`` that every variant of ``cfg`` sets itself: a value given to
    them on the base config (a command-line override) would reach no variant.

    Args:
      cfg: a run config.
      fields: dotted field names, e.g. the ``--config.<field>`` overrides.

    Returns:
      Those of ``fields`` (in their order) that every variant overrides; [] for a config
      without variants.
    """
    if not cfg.variants:
        return []
    sets = [{_field_of(k) for k in dict(v)} for v in cfg.variants]
    return [f for f in fields if all(f in s for s in sets)]


_NAMED = ("model.kind", "model.symmetry", "model.activation")  # always in a variant's name


def _label(field: str) -> str:
    """A field's name in a variant's name: its last part where no other field shares it
    ('lr'), else the dotted path ('data.batch' beside 'eval.batch')."""
    leaf = field.split(".")[-1]
    return leaf if sum(f.split(".")[-1] == leaf for f, _, _ in SCHEMA) == 1 else field


def variant_name(cfg, overrides: Mapping = ()) -> str:
    """A variant's name: ``kind-symmetry-activation`` plus every other override as
    ``label=value``, filesystem-safe ('/' becomes '_', spaces are dropped).

    Args:
      cfg: the variant's config (overrides already applied), read for the model's kind,
        symmetry and activation.
      overrides: the variant's override dict; 'kind' and 'model.kind' name the same field.
        A label is the field's last part unless another field shares it ('lr', but
        'data.batch' beside 'eval.batch').

    Returns:
      e.g. ``mlp-tied_hidden-quadratic-lr=0.01``.
    """
    m = cfg.model
    parts = [m.kind, m.symmetry, m.activation]
    for k, v in dict(overrides).items():
        field = _field_of(k)
        if field not in _NAMED:
            parts.append(f"{_label(field)}={v}")
    return "-".join(str(p).replace("/", "_").replace(" ", "") for p in parts)


def model_config(cfg) -> dict:
    """The model zoo's config: the model section plus the lattice fields and dtype.

    Args:
      cfg: a variant-free run config.

    Returns:
      A plain dict for :func:`rgsym.models.build` / :func:`rgsym.models.spec_from_config`.
    """
    out = dict(cfg.model.to_dict())
    out.update({k: _get(cfg, field) for k, field in _OWNED.items()})
    return out


# ------------------------------------------------------------------------------------------
# Resolved specs: the frozen, typed form of a validated one-variant config.

@dataclasses.dataclass(frozen=True)
class LatticeSpec:
    """The ``lattice`` section (see :data:`SCHEMA` for each field's meaning)."""
    dim: int
    sites: int
    b: int


@dataclasses.dataclass(frozen=True)
class DataSpec:
    """The ``data`` section."""
    family: str
    batch: int
    train_size: int


@dataclasses.dataclass(frozen=True)
class OptimSpec:
    """The ``optim`` section."""
    optimizer: str
    lr: float
    schedule: str
    warmup_steps: int
    steps: int
    weight_decay: float
    momentum: float
    grad_clip: float


@dataclasses.dataclass(frozen=True)
class EvalSpec:
    """The ``eval`` section (``families`` () still means every family with finite kappa_4)."""
    every: int
    batch: int
    curve_batch: int
    families: tuple[str, ...]
    scales: tuple[float, ...]
    flow_steps: int
    seed: int


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """One validated variant of a run config, frozen and typed: what builders take.

    Made by :func:`resolve` (or :func:`resolve_variants`) only, so a RunSpec has passed
    :func:`validate_config`.  Its layout is the config's: the run-level (execution) fields
    at the top, then one small frozen section per config section, so ``spec.optim.lr`` is
    ``cfg.optim.lr``; ``model`` is the :class:`rgsym.models.ModelSpec` of the config's model
    section plus ``lattice`` and ``dtype`` (whose ``dim``, ``sites``, ``b`` and ``dtype``
    repeat those fields).  There is no ``variants`` field: a RunSpec is one variant.
    Hashable; ``dataclasses.replace`` makes an edited copy, unchecked.
    """
    name: str
    seed: int
    num_seeds: int
    chunk_size: int
    num_devices: int
    multihost: bool
    dtype: str
    matmul_precision: str
    compile_cache: str
    backend_opt_level: str
    lattice: LatticeSpec
    data: DataSpec
    optim: OptimSpec
    eval: EvalSpec
    model: models.ModelSpec


_SECTIONS = {"lattice": LatticeSpec, "data": DataSpec, "optim": OptimSpec, "eval": EvalSpec}


def resolve(cfg) -> RunSpec:
    """The :class:`RunSpec` of a run config of one variant, validated once.

    Args:
      cfg: a run config (``base_config()`` with overrides) whose ``variants`` is () or
        holds exactly one variant, which is then applied (its name is not kept: a RunSpec
        is the run itself); or a RunSpec, returned as it is.

    Returns:
      The frozen RunSpec: sequences become tuples, real fields floats.

    Raises:
      ValueError: as :func:`validate_config`, naming the field; or a config of several
        variants (resolve each of :func:`variant_configs`, or all with
        :func:`resolve_variants`).

    Example:
      >>> from rgsym import config
      >>> c = config.base_config()
      >>> c.model.width = 8
      >>> spec = config.resolve(c)
      >>> spec.model.width, spec.eval.scales
      (8, (0.5, 2.0))
      >>> c.optim.lr = -1.0
      >>> config.resolve(c)
      Traceback (most recent call last):
      ...
      ValueError: config field 'optim.lr'=-1.0 is not valid: ...
    """
    if isinstance(cfg, RunSpec):
        return cfg
    validate_config(cfg)
    variants = variant_configs(cfg)
    if len(variants) > 1:
        fail("variants", [n for n, _ in variants], f"a run is one variant and this config "
             f"holds {len(variants)}: resolve each of rgsym.config.variant_configs(cfg), or "
             "all at once with rgsym.config.resolve_variants(cfg)")
    return _spec(variants[0][1])


def resolve_variants(cfg) -> list[tuple[str, RunSpec]]:
    """``[(name, RunSpec)]`` of every variant of a whole run config, validated once.

    Args:
      cfg: a run config, with any number of variants (none: one, named after its model).

    Returns:
      ``[(name, RunSpec)]`` in the order of :func:`variant_configs`.

    Raises:
      ValueError: as :func:`validate_config` (a variant's error names the variant).
    """
    validate_config(cfg)
    return [(name, _spec(v)) for name, v in variant_configs(cfg)]


def _spec(cfg) -> RunSpec:
    """The RunSpec of a validated variant-free config.  Strict: a field of the schema that
    the specs lack (or the reverse) raises here, so the two cannot drift apart unseen."""
    top = {k: cfg[k] for k in cfg.keys() if k not in _SECTIONS and k not in ("model", "variants")}
    sections = {k: _typed(cls, cfg[k]) for k, cls in _SECTIONS.items()}
    return _typed(RunSpec, top, **sections,
                  model=models.spec_from_config(model_config(cfg)))


def _typed(cls, values: Mapping, **built):
    """``cls`` from ``values`` converted to its annotated types (float, tuple[...])."""
    hints = typing.get_type_hints(cls)
    return cls(**{k: _as(hints[k], v) for k, v in values.items()}, **built)


def _as(kind, value):
    if kind is float or kind is int:
        return kind(value)
    if typing.get_origin(kind) is tuple:
        return tuple(_as(typing.get_args(kind)[0], v) for v in value)
    return value


def main(argv: Sequence[str] | None = None) -> None:
    """``rgsym-config [config_file]``: every field with its value and doc."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if len(argv) > 1 or (argv and argv[0].startswith("-")):
        sys.exit("usage: rgsym-config [config_file.py]  (lists every field with its doc)")
    cfg = None
    if argv:
        import importlib.util
        try:
            spec = importlib.util.spec_from_file_location("rgsym_user_config", argv[0])
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            cfg = module.get_config()
        except Exception as e:  # (any failure of the user's file, told in one line)
            sys.exit(f"error: {argv[0]}: cannot be loaded: {e}")
    print(describe(cfg))


if __name__ == "__main__":
    main()
