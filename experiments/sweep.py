r"""Runs (or resumes) a sweep of model variants x seeds and prints the summary table.

    python experiments/sweep.py --config=experiments/configs/default.py --workdir=runs/default
    python experiments/sweep.py --config=experiments/configs/test.py --workdir=/tmp/t \
        --config.model.width=128 --config.num_seeds=16

The same as the ``rgsym-sweep`` console script (rgsym.cli.sweep).  The run directory holds
the resolved config, the environment, per-variant metrics (JSONL, CSV), final parameters of
every seed, summary.txt/.csv/.json and figures; rerunning with the same --workdir skips
finished variants and seed chunks (see rgsym.results).
"""
from rgsym.cli import sweep

if __name__ == "__main__":
    sweep()
