"""Runs (or resumes) a sweep of model variants x seeds and prints the summary table.

    python experiments/sweep.py --config=experiments/configs/default.py --workdir=runs/default
    python experiments/sweep.py --config=experiments/configs/test.py --workdir=/tmp/t \
        --config.model.width=128 --config.num_seeds=16

The run directory holds the resolved config, the environment, per-variant metrics (JSONL,
CSV), final parameters of every seed, summary.txt/.csv/.json and figures; rerunning with the
same --workdir skips finished variants and seed chunks (see rgsym.results).
"""
import os
import sys

from absl import app, flags
from ml_collections import config_flags
import jax

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from rgsym import results, train  # noqa: E402

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Sweep config file (experiments/configs/*.py).",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Run directory (created, or resumed when it exists).")
flags.DEFINE_bool("progress", True, "Show a progress bar with ETA over variants and chunks.")
flags.DEFINE_integer("cpu_devices", 0, "Without an accelerator, split the host CPU into this "
                     "many XLA devices that run seeds in parallel (0: four per core; 1: off).")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    del argv
    cfg = FLAGS.config
    train.split_host_cpu(FLAGS.cpu_devices)
    if cfg.multihost:
        jax.distributed.initialize()  # before any other JAX call touches the devices
    if cfg.dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    results.run(cfg, FLAGS.workdir, progress=FLAGS.progress)
    if jax.process_index() == 0:
        print(f"results, figures and summary under {FLAGS.workdir}")


if __name__ == "__main__":
    app.run(main)
