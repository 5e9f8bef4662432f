"""Seed sweeps: a run's pure training function vmapped over chunks of seeds, the seed axis
sharded over devices (and hosts).

    sw = make_sweep(cfg)                           # resolves, compiles once for every chunk
    params, metrics = sw.run_chunk(seeds)          # seeds [C] -> numpy with a leading [C] axis
    params, metrics = sweep(cfg)                   # every seed of the run, chunk by chunk

Seeds are chunked by :func:`chunk_slices` alone and per-seed hyper-parameters broadcast by
:func:`_per_seed` alone, so a sweep, a run directory (``rgsym.results``) and a test cut the
same chunks.  Without an accelerator, :func:`split_host_cpu` makes the host CPU several XLA
devices, so the seeds of a chunk run in parallel.
"""
from __future__ import annotations

import os
from typing import Callable, NamedTuple, Sequence

import jax
import ml_collections
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from rgsym import config as config_lib
from rgsym import validation
from rgsym.config import RunSpec
from rgsym.train import HParams, Trainer, make_train

__all__ = ["Sweep", "make_sweep", "sweep", "split_host_cpu", "run_seeds", "chunk_slices",
           "seed_chunks", "compiler_options"]


class Sweep(NamedTuple):
    """What :func:`make_sweep` returns.

    run_chunk: ``(seeds [C] ints, hparams=None) -> (params, metrics)`` as host numpy
      arrays with a leading [C] axis, 1 <= C <= chunk_size; pads C to ``chunk_size`` so one
      compilation serves every chunk.  ``hparams`` fields are scalars or [C].
    trainer: the :class:`rgsym.train.Trainer` vmapped (``trainer.config`` is the RunSpec).
    mesh: the 1-D device mesh (axis 'seeds') the seed axis is sharded over.
    chunk_size: seeds per compiled call, a multiple of the mesh's device count.
    """
    run_chunk: Callable
    trainer: Trainer
    mesh: jax.sharding.Mesh
    chunk_size: int


def split_host_cpu(devices: int = 0) -> int | None:
    """Exposes the host CPU as ``devices`` XLA devices, so that a sweep, which shards its
    seed axis over the local devices, runs its seeds in parallel on a machine without an
    accelerator (benchmarks/RESULTS.md measures the gain).  Accelerator backends are
    unaffected.  Call it right after ``import jax``, before any JAX computation.

    Args:
      devices: the CPU device count; 0: four per core.

    Returns:
      The count set, or None where XLA_FLAGS already sets one (as the tests do) or the
      backends are already running (then the default stays).

    Raises:
      ValueError: ``devices`` is not an integer >= 0.
    """
    devices = validation.integer("devices", devices, 0) or 4 * (os.cpu_count() or 1)
    if "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", ""):
        return None
    try:
        jax.config.update("jax_num_cpu_devices", devices)
    except RuntimeError:  # backends initialised: too late to change the CPU client
        return None
    return devices


def run_seeds(spec: RunSpec) -> np.ndarray:
    """The run's seeds: ``seed, seed + 1, ..., seed + num_seeds - 1``.

    Args:
      spec: the resolved run.

    Returns:
      [num_seeds] int numpy.
    """
    return spec.seed + np.arange(spec.num_seeds)


def chunk_slices(n: int, size: int) -> list[slice]:
    """Consecutive slices of ``size`` items covering ``range(n)`` (the last may be shorter).

    Args:
      n: items; size: items per slice (>= 1).

    Returns:
      ``ceil(n / size)`` slices.

    Raises:
      ValueError: ``size`` < 1.
    """
    size = validation.integer("size", size, 1)
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


def seed_chunks(spec: RunSpec) -> list[np.ndarray]:
    """The run's seeds (:func:`run_seeds`) in chunks.

    Args:
      spec: the resolved run; its ``chunk_size`` (0: all at once).

    Returns:
      [chunk_size] int arrays (the last may be shorter).
    """
    seeds = run_seeds(spec)
    return [seeds[s] for s in chunk_slices(len(seeds), spec.chunk_size or spec.num_seeds)]


def compiler_options(spec: RunSpec, devices: Sequence) -> dict:
    """XLA compile options of a sweep program on ``devices`` (see ``backend_opt_level``).

    Args:
      spec: the run; devices: the sweep's devices (the first one's platform decides 'auto').

    Returns:
      ``{}`` (XLA's defaults) or ``{'xla_backend_optimization_level': level}``.
    """
    level = spec.backend_opt_level
    if level == "auto":
        level = "1" if devices[0].platform == "cpu" else "xla"
    return {} if level == "xla" else {"xla_backend_optimization_level": int(level)}


def _devices(spec: RunSpec, devices, seeds_per_call: int) -> list:
    if devices is not None and not len(devices):
        raise ValueError("devices=[] is not valid: give at least one device, or None for all")
    if devices is None:
        devices = jax.devices() if spec.multihost else jax.local_devices()
        if spec.num_devices:
            devices = devices[: spec.num_devices]
        elif not spec.multihost:  # no device left idle (or fed only padding) by a small call
            devices = devices[:seeds_per_call]
    return list(devices)


def _per_seed(hp: HParams, n: int, dtype) -> HParams:
    """Every field broadcast to [n] seeds; a field of another shape is refused by name."""
    out = []
    for name, v in zip(HParams._fields, hp):
        v = np.asarray(v, dtype)
        if v.shape not in ((), (n,)):
            raise ValueError(f"hparams.{name} has shape {v.shape}: it must be a scalar or "
                             f"one value per seed, shape ({n},)")
        out.append(np.broadcast_to(v, (n,)))
    return HParams(*out)


def _checked_seeds(seeds) -> np.ndarray:
    """Seeds as a 1-D int32 array; refused where int32 would wrap or truncate them."""
    arr = np.asarray(seeds)
    if arr.ndim != 1 or (arr.size and (not np.issubdtype(arr.dtype, np.integer)
                                       or arr.min() < 0 or arr.max() > np.iinfo(np.int32).max)):
        raise ValueError(f"seeds={seeds!r} is not valid: it must be a 1-D sequence of integers "
                         f"in [0, {np.iinfo(np.int32).max}]")
    return arr.astype(np.int32)


def make_sweep(cfg: RunSpec | ml_collections.ConfigDict, devices: Sequence | None = None,
               chunk_size: int | None = None) -> Sweep:
    """A jitted, seed-sharded ``vmap(train)`` over chunks of seeds (one compilation).

    Args:
      cfg: a :class:`rgsym.config.RunSpec`, or a run config of one variant (resolved here).
      devices: the devices the seed axis is sharded over; default: the config's
        (``num_devices``, ``multihost``), at most one per seed of a chunk.
      chunk_size: seeds per call; default: the config's ``chunk_size`` (0: ``num_seeds``).
        Rounded up to a multiple of the device count.

    Returns:
      The :class:`Sweep`; nothing is compiled before its first ``run_chunk``.

    Raises:
      ValueError: a bad ``chunk_size`` or ``devices`` (named), or the config's error from
        ``rgsym.config.resolve``, before anything is compiled.
    """
    if chunk_size is not None:
        validation.integer("chunk_size", chunk_size, 1)
    spec = config_lib.resolve(cfg)
    size = chunk_size or spec.chunk_size or spec.num_seeds
    devices = _devices(spec, devices, size)  # (refused here, before the trainer is built)
    trainer = make_train(spec)
    # Auto axes: the seed axis is sharded by the jit shardings, not by array types.
    mesh = jax.make_mesh((len(devices),), ("seeds",), (jax.sharding.AxisType.Auto,),
                         devices=devices)
    shard = NamedSharding(mesh, P("seeds"))
    size = -(-size // len(devices)) * len(devices)  # every device gets the same share

    def run(seeds, hp, eval_data):
        train = lambda s, h: trainer.train_packed(jax.random.key(s), h, eval_data)
        return jax.vmap(train)(seeds, hp)

    jitted = jax.jit(run, in_shardings=(shard, shard, NamedSharding(mesh, P())),
                     out_shardings=shard, compiler_options=compiler_options(spec, devices))
    eval_data = trainer.evaluator.fixed_data()

    def to_global(host):
        host = np.asarray(host)
        return jax.make_array_from_callback(host.shape, shard, lambda idx: host[idx])

    def run_chunk(seeds, hparams: HParams | None = None):
        seeds = _checked_seeds(seeds)
        n = len(seeds)
        if not 0 < n <= size:
            raise ValueError(f"a chunk holds 1..{size} seeds, got {n}")
        pad = lambda a: np.concatenate([a, np.repeat(a[-1:], size - n, 0)])
        hp = trainer.hparams() if hparams is None else hparams
        hp = _per_seed(hp, n, spec.dtype)
        hp = HParams(*(to_global(pad(v)) for v in hp))
        args = (to_global(pad(seeds)), hp, eval_data)
        with jax.default_matmul_precision(spec.matmul_precision):
            out = jitted(*args)
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils
            out = multihost_utils.process_allgather(out, tiled=True)
        params, packed = jax.tree.map(lambda a: np.asarray(a)[:n], out)
        return params, trainer.unpack(packed)

    return Sweep(run_chunk, trainer, mesh, size)


def sweep(cfg: RunSpec | ml_collections.ConfigDict, seeds: Sequence[int] | None = None,
          hparams: HParams | None = None, devices: Sequence | None = None,
          chunk_size: int | None = None) -> tuple[dict, dict]:
    """Trains every seed of one run, chunk by chunk (see :func:`make_sweep`).

    Args:
      cfg: a :class:`rgsym.config.RunSpec`, or a run config of one variant (resolved here).
      seeds: [S] ints in [0, 2**31 - 1]; default: the run's (:func:`run_seeds`).
      hparams: an :class:`rgsym.train.HParams` whose fields are scalars or [S].
      devices, chunk_size: as :func:`make_sweep`.

    Returns:
      ``(params, metrics)`` as numpy, every leaf stacked over the seeds [S, ...].

    Raises:
      ValueError: bad seeds or hparams (named) or a bad config, before anything compiles.

    Example:
      >>> from rgsym import config, sweep
      >>> c = config.base_config()
      >>> c.lattice.sites, c.model.width, c.model.depth = 4, 4, 1
      >>> c.optim.steps, c.eval.every, c.data.batch = 20, 10, 16
      >>> c.eval.batch, c.eval.curve_batch, c.eval.families = 64, 16, ("gaussian",)
      >>> params, metrics = sweep.sweep(c, seeds=[0, 1])
      >>> params["params"]["layer_0"]["kernel"].shape     # [S, ...]
      (2, 4, 4)
      >>> metrics["curves"]["test_mse"].shape, metrics["diverged"].tolist()   # [S, E], [S]
      ((2, 2), [False, False])
    """
    spec = config_lib.resolve(cfg)
    seeds = run_seeds(spec) if seeds is None else _checked_seeds(seeds)
    if not len(seeds):
        raise ValueError("seeds=[] is not valid: give at least one seed")
    if hparams is not None:  # checked and broadcast once, before anything is built
        hparams = _per_seed(hparams, len(seeds), spec.dtype)
    sw = make_sweep(spec, devices, chunk_size)
    outs = []
    for s in chunk_slices(len(seeds), sw.chunk_size):
        hp = None if hparams is None else HParams(*(v[s] for v in hparams))
        outs.append(sw.run_chunk(seeds[s], hp))
    return jax.tree.map(lambda *a: np.concatenate(a), *outs)
