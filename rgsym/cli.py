"""Command-line entry points: the ``rgsym-sweep`` console script (``experiments/sweep.py``
runs the same ``sweep``) and what every script of the repository shares.

    rgsym-sweep --config=experiments/configs/test.py --workdir=runs/mine \\
        --config.model.width=32 --config.num_seeds=64

A config error (an override naming no field, a value the schema refuses, a config file
that cannot be loaded, a workdir holding another config's run) prints one line naming the
field and exits with status 1 before anything is compiled.
"""
from __future__ import annotations

import logging
import os
import re
import sys
import traceback

from absl import app, flags
from ml_collections import config_flags

__all__ = ["sweep", "run", "quiet_missing_backends"]

FLAGS = flags.FLAGS


class _MissingBackendFilter(logging.Filter):
    """Drops JAX's INFO record for a backend that the machine lacks."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno <= logging.INFO
                    and record.getMessage().startswith("Unable to initialize backend"))


def quiet_missing_backends() -> None:
    """Silences the line JAX logs at INFO for every platform plugin it cannot start
    ("Unable to initialize backend 'tpu'") once absl turns INFO logging on; a backend that
    was asked for explicitly (JAX_PLATFORMS) still fails loudly, as an exception.
    Idempotent: the filter is added to JAX's logger once."""
    logger = logging.getLogger("jax._src.xla_bridge")
    if not any(isinstance(f, _MissingBackendFilter) for f in logger.filters):
        logger.addFilter(_MissingBackendFilter())


def _one_line(error: BaseException) -> str:
    """An exception's message on one line; ml_collections nests the text of a KeyError."""
    msg = error
    while isinstance(msg, BaseException):
        msg = msg.args[0] if msg.args else str(msg)
    return " ".join(str(msg).split())


def _parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parsing, with config-file and override errors reported in one line."""
    try:
        return FLAGS(argv)
    except flags.Error as e:
        sys.exit(f"error: {_one_line(e)} (--helpfull lists the flags)")
    except (AttributeError, KeyError) as e:  # ml_collections: an override names no field
        # its message: "'<key>'\nDid you mean ...?" (the hint only where a key is close); a
        # config file that sets an unknown field: 'Key "<key>" does not exist and cannot be
        # added since the config is locked. Other fields present: ...\nDid you mean ...?'
        msg = _one_line(e).replace("\\'", "'")
        locked = re.search(r'Key "([^"]+)" does not exist and cannot be added', msg)
        if locked:
            key, hint = locked.group(1), msg.partition("Did you mean")[2]
            hint = f"Did you mean{hint}".rstrip("'") if hint else ""
        else:
            key, _, hint = msg.partition("' ")
            key = key.strip("'")
        overrides = [a.split("=")[0] for a in argv[1:] if a.startswith("--config.")]
        arg = next((o for o in overrides if key in o.split(".")), None)
        config_file = next((a for a in argv[1:] if a.startswith("--config=")), None)
        arg = arg or (config_file if locked and config_file else "--config.<...>")
        field = arg[len("--config."):] if arg.startswith("--config.") else key
        from rgsym import config as config_lib  # (a field renamed since: name the new one)
        new = config_lib.renamed_to(field)
        if new:
            hint = f"renamed to {new} (rgsym.config.RENAMED)"
        sys.exit(f"error: {arg}: {key!r} is not a config field" + (f"; {hint}" if hint else ""))


def _loaded_config():
    """FLAGS.config; a config file that failed to load (the flag loads it lazily) exits with
    the reason in one line."""
    try:
        cfg = FLAGS.config
        cfg.get("name")
    except OSError as e:
        while e.__cause__ is not None:
            e = e.__cause__
        reason = str(e).strip().splitlines()[-1].strip()
        sys.exit(f"error: --config={FLAGS['config'].config_filename}: cannot be loaded: "
                 f"{reason}")
    return cfg


def run(main) -> None:
    """``absl.app.run(main)`` with one-line config errors and no missing-backend log line.

    Args:
      main: ``main(argv)``, called after the flags (sys.argv) are parsed.

    Raises:
      SystemExit: always, as ``absl.app.run`` (status 1 with a one-line ``error: ...``
        for an unknown flag, an override naming no config field, or a config file that
        cannot be loaded).
    """
    quiet_missing_backends()
    app.run(main, flags_parser=_parse_flags)


def _define_sweep_flags() -> None:
    config_flags.DEFINE_config_file(
        "config", None, "Sweep config file (experiments/configs/*.py); override any field "
        "with --config.<section>.<field>=<value> (rgsym-config FILE lists every field with "
        "its doc).", lock_config=True)
    flags.DEFINE_string("workdir", None, "Run directory (created, or resumed when it exists).")
    flags.DEFINE_bool("progress", True, "Show a progress bar with ETA over variants and chunks.")
    flags.DEFINE_bool("allow_version_change", False, "Resume a run directory written under "
                      "other rgsym / jax / jaxlib versions (recorded in environment.json).")
    flags.DEFINE_integer("cpu_devices", 0, "Without an accelerator, split the host CPU into "
                         "this many XLA devices that run seeds in parallel (0: four per core; "
                         "1: off).")
    flags.DEFINE_string("coordinator_address", None, "With --config.multihost: host:port of "
                        "process 0's coordinator (default: detected from Slurm, Open MPI or "
                        "a TPU pod).")
    flags.DEFINE_integer("num_processes", None, "With --config.multihost: how many processes "
                         "(default: detected).")
    flags.DEFINE_integer("process_id", None, "With --config.multihost: this process's index, "
                         "0 .. num_processes - 1 (default: detected).")
    flags.mark_flags_as_required(["config", "workdir"])
    for name in ("config", "workdir", "progress", "cpu_devices"):  # listed by --helpshort
        FLAGS.register_key_flag_for_module(sys.argv[0], FLAGS[name])


def _sweep_main(argv) -> None:
    del argv
    import jax

    from rgsym import config, results
    from rgsym import sweep as sweep_lib

    cfg = _loaded_config()
    overridden = [a[len("--config."):].split("=")[0] for a in sys.argv[1:]
                  if a.startswith("--config.")]
    for field in config.shadowed_fields(cfg, overridden):
        sys.exit(f"error: --config.{field}: every variant of this config sets its own "
                 f"'{field.split('.')[-1]}', so the override would reach none of them; change "
                 "the variants in the config file instead")
    sweep_lib.split_host_cpu(FLAGS.cpu_devices)
    if cfg.multihost:
        # CPU processes exchange the gathered results through gloo (accelerators: their own)
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(  # before any other JAX call touches the devices
            FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
    if cfg.dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    try:
        results.check(cfg, FLAGS.workdir, allow_version_change=FLAGS.allow_version_change)
    except ValueError as e:
        sys.exit(f"error: {_one_line(e)}")
    try:
        results.run(cfg, FLAGS.workdir, progress=FLAGS.progress,
                    allow_version_change=FLAGS.allow_version_change)
    except BaseException:
        if jax.process_count() == 1:
            raise
        # Many processes: an error in one (a full disk on process 0) leaves the others in a
        # collective; a normal exit would then wait in jax.distributed's shutdown barrier
        # for them (5 minutes) before aborting.  Leaving at once ends them in seconds.
        traceback.print_exc()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)
    if jax.process_index() == 0:
        print(f"results, figures and full summary tables under {FLAGS.workdir}")


def sweep() -> None:
    """Runs (or resumes) a sweep of model variants x seeds and prints the summary table
    (the ``rgsym-sweep`` console script; see :func:`rgsym.results.run`).  Reads its
    arguments from sys.argv: --config, --workdir (required), --progress, --cpu_devices,
    --allow_version_change and the multihost flags.

    Raises:
      SystemExit: always (status 0 on success); status 1 with a one-line ``error: ...``
        for a config error, an override that every variant shadows, or a workdir holding
        another config's run.  Call it once per process: it defines absl flags.
    """
    _define_sweep_flags()
    run(_sweep_main)
