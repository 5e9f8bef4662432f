"""JAX's persistent compilation cache: compiled programs reused across processes.

A sweep compiles one program per variant and the cumulant solver one per network shape;
compilation is most of what a user waits for.  With the cache on, a second process that
needs the same programs (the same config in a fresh workdir, a restarted notebook, the
test suite run again) reads them from disk.

It cannot serve a program for another config: JAX keys each entry by a hash of the whole
lowered program together with the compile options, the device kind and the jax/jaxlib
versions.  A config that differs in a static field (a width, a symmetry, a step count)
lowers to another program and so to another key; values that differ between variants of
the same shapes (learning rates, alpha, seeds) are traced arguments, never baked into a
program.  Usage::

    compile_cache.enable()          # 'auto': ~/.cache/rgsym/jax (see default_dir)
    compile_cache.enable("")        # off

A plain script or notebook that calls the cumulant solver gets the cache only after such a
call; ``rgsym.results.run`` (the sweeps) makes it for the config's ``compile_cache``.
"""
from __future__ import annotations

import errno
import gc
import logging
import os
import tempfile

import jax
from jax.experimental.compilation_cache import compilation_cache as _jax_cache

from rgsym import validation

__all__ = ["AUTO", "OFF", "MIN_COMPILE_SECONDS", "default_dir", "resolve", "prepare", "enable",
           "memory_mappings", "release_if_crowded"]

AUTO = "auto"
OFF = ("", "off", "none")
#: Programs that compile faster than this are not written.  0: every program, the eager
#: operations' tiny ones too (thousands in the test suite, a few KB each): with them kept,
#: eager-heavy test files ran in 42% less wall time (benchmarks/RESULTS.md, eighth session).
MIN_COMPILE_SECONDS = 0.0


def default_dir() -> str:
    """The cache directory of setting 'auto' (not created here).

    Returns:
      ``$JAX_COMPILATION_CACHE_DIR`` where it is set (the directory JAX was told to use),
      else ``$XDG_CACHE_HOME/rgsym/jax`` where that is an absolute path (the XDG rule: a
      relative one is ignored), else ``~/.cache/rgsym/jax``.
    """
    if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return os.path.abspath(os.path.expanduser(os.environ["JAX_COMPILATION_CACHE_DIR"]))
    base = os.environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(base):
        base = os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "rgsym", "jax")


def resolve(setting: str | os.PathLike) -> str | None:
    """The cache directory a setting names (nothing is created).

    Args:
      setting: 'auto'; '', 'off' or 'none' (these words in any case, surrounding spaces
        ignored); or a path (str or path-like).

    Returns:
      :func:`default_dir` for 'auto', None (off) for '' / 'off' / 'none', else the path
      with ``~`` expanded, made absolute.

    Raises:
      ValueError: ``setting`` is neither a string nor a path.
    """
    if isinstance(setting, os.PathLike):
        setting = os.fspath(setting)
    if not isinstance(setting, str):
        raise ValueError(f"compile_cache={setting!r} is not valid: it must be a directory, "
                         f"'{AUTO}' ({default_dir()}) or '' (off)")
    if _word(setting) in OFF:
        return None
    if _word(setting) == AUTO:
        return default_dir()
    return os.path.abspath(os.path.expanduser(setting))


def _word(setting) -> str | None:
    """A string setting as the words 'auto' / 'off' / 'none' compare (any case, surrounding
    spaces ignored); None for a path-like."""
    return setting.strip().lower() if isinstance(setting, str) else None


def prepare(setting: str | os.PathLike = AUTO) -> str | None:
    """The directory of ``setting``, created if missing and proven writable (a file is
    created in it and removed), so that a bad setting is refused before any work rather
    than by a warning from every program JAX fails to write.  JAX writes entries from
    process 0 alone: in a multi-process run (``jax.distributed``) the other processes only
    read, and nothing is checked or created there.

    Args:
      setting: as :func:`resolve`.

    Returns:
      The cache directory, or None when the cache is off.

    Raises:
      ValueError: as :func:`resolve`, or the directory cannot be created or written (the
        setting, the directory, where 'auto' took it from, and the system's reason named).
    """
    path = resolve(setting)
    if path is None or (jax.distributed.is_initialized() and jax.process_index() != 0):
        return path
    try:
        if os.path.exists(path) and not os.path.isdir(path):
            raise NotADirectoryError(errno.ENOTDIR, "not a directory")
        os.makedirs(path, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as e:
        auto = _word(setting) == AUTO
        origin = (" (from JAX_COMPILATION_CACHE_DIR)"
                  if auto and os.environ.get("JAX_COMPILATION_CACHE_DIR") else "")
        fix = ("a writable directory or '' (off)" if auto else
               f"a writable directory, '{AUTO}' ({default_dir()}) or '' (off)")
        raise ValueError(f"compile_cache={setting!r} is not valid: the directory {path}{origin} "
                         f"cannot be created or written ({e.strerror or e}); give {fix}"
                         ) from None
    return path


def enable(setting: str | os.PathLike = AUTO) -> str | None:
    """Points JAX's persistent compilation cache at ``prepare(setting)`` (None: off) for the
    whole process and returns that directory.  Takes effect for programs compiled from now
    on, also when an earlier call chose another directory.

    Args:
      setting: as :func:`resolve`; the directory is created if missing.

    Returns:
      The cache directory, or None when the cache is off.

    Raises:
      ValueError: as :func:`prepare` (a bad setting, or a directory that cannot be created
        or written).
    """
    path = prepare(setting)
    # set every time: JAX_COMPILATION_CACHE_DIR may have chosen the directory already, with
    # JAX's own threshold (1 s)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS)
    if jax.config.jax_compilation_cache_dir != path:
        jax.config.update("jax_compilation_cache_dir", path)
        # JAX reads the directory once: make it read it again (without its INFO line)
        log = logging.getLogger("jax._src.compilation_cache")
        level = log.level
        log.setLevel(logging.WARNING)
        try:
            _jax_cache.reset_cache()
        finally:
            log.setLevel(level)
    return path


def memory_mappings() -> tuple[int, int] | None:
    """The memory mappings this process holds and the kernel's limit on them (Linux's
    ``/proc/self/maps`` and ``vm.max_map_count``); None where they cannot be read.

    Every compiled XLA:CPU kernel keeps its machine code in mappings of its own (about three
    per kernel) for as long as JAX keeps the program, and JAX's jit caches keep every program
    a process compiles: a process past the limit dies inside XLA (a segfault or an abort
    while compiling or loading a program).  The exact depth-2 propagation at order 4 alone
    compiles thousands of kernels.

    Returns:
      ``(held, limit)``: the lines of ``/proc/self/maps`` and ``vm.max_map_count`` (counts
      of mappings, not bytes), or None where either cannot be read (not Linux).
    """
    try:
        with open("/proc/self/maps") as f:
            held = sum(1 for _ in f)
        with open("/proc/sys/vm/max_map_count") as f:
            return held, int(f.read())
    except (OSError, ValueError):
        return None


#: Mappings the process held right after its last release (see ``min_growth``).
_held_after_release = 0


def release_if_crowded(above: int | None = None, min_growth: int | None = None) -> bool:
    """Drops every compiled program of this process (``jax.clear_caches``) when it holds more
    than ``above`` memory mappings (default: half the kernel's limit, see
    :func:`memory_mappings`) and at least ``min_growth`` more than right after its last
    release.  Only speed is at stake: a program needed again is compiled again, or read
    back from the persistent cache when that is on.

    Args:
      above: mappings; None for half of ``vm.max_map_count``.
      min_growth: mappings; None for an eighth of ``vm.max_map_count``.  Mappings that
        clearing cannot give back (another library's, programs the caller still holds)
        must not make every later call drop and recompile everything.

    Returns:
      Whether the programs were dropped (never where the mappings cannot be read).

    Raises:
      ValueError: ``above`` or ``min_growth`` is not None or an integer >= 0 (checked
        first, also where the mappings cannot be read).
    """
    global _held_after_release
    if above is not None:
        above = validation.integer("above", above, 0)
    if min_growth is not None:
        min_growth = validation.integer("min_growth", min_growth, 0)
    counts = memory_mappings()
    if counts is None:
        return False
    held, limit = counts
    if held <= (limit // 2 if above is None else above) or (
            held - _held_after_release < (limit // 8 if min_growth is None else min_growth)):
        return False
    jax.clear_caches()
    gc.collect()  # the executables go when their last Python reference does
    _held_after_release = memory_mappings()[0]
    logging.getLogger(__name__).info(
        "released compiled programs: %d memory mappings held, %d after (limit %d)",
        held, _held_after_release, limit)
    return True
