"""Where rgsym's sweep spends the time the bare training loop does not.

    python benchmarks/sweep_overhead.py --ratio_seeds=8192   # uses sweep_throughput's flags

At S = --ratio_seeds on the reference config of sweep_throughput.py, times rgsym's sweep as
it is, with the divergence guard's finiteness test of the moved parameters replaced by True
(the tests of the loss and the learning rate stay), with evaluation on the training family
and the Gaussian alone (no other families or scales; flow_steps 1, which changes nothing for
the reference MLP, not iterable), with both, with the learning curve evaluated once instead
of every 100 steps (eval.every = steps: the in-scan evaluations' share), and the
bare jit(vmap(lax.scan)) loop.
Best of --repeats runs each.  Not a test: nothing here asserts.
"""
import jax
import jax.numpy as jnp
import numpy as np

import sweep_throughput as bench  # (a sibling script: defines the flags)
from rgsym import cli, sweep, train

FLAGS = bench.FLAGS


def timed_sweep(seeds: int, guard: bool, all_sets: bool, curve_once: bool = False):
    cfg = bench.reference_config(seeds, few_eval_sets=not all_sets)
    if curve_once:
        cfg.eval.every = cfg.optim.steps
    real = train._all_finite
    if not guard:
        train._all_finite = lambda tree: jnp.asarray(True)
    try:
        sw = sweep.make_sweep(cfg)
        ids = np.arange(seeds)
        sw.run_chunk(ids)  # compile (traced with the guard as chosen)
    finally:
        train._all_finite = real
    return bench._rate(lambda: sw.run_chunk(ids), seeds * FLAGS.steps)


def main(argv):
    del argv
    sweep.split_host_cpu(FLAGS.cpu_devices)
    s = FLAGS.ratio_seeds
    print(f"{jax.devices()[0].device_kind}  jax {jax.__version__}  S={s}  "
          f"best of {FLAGS.repeats} runs")
    rows = {"rgsym sweep as it is": timed_sweep(s, True, True),
            "  without the parameter finiteness test": timed_sweep(s, False, True),
            "  evaluating the training family and the Gaussian only":
                timed_sweep(s, True, False),
            "  both": timed_sweep(s, False, False),
            "  learning curve evaluated once, at the end": timed_sweep(s, True, True, True),
            "bare jit(vmap(lax.scan)) loop": bench.jax_bare_scan(s)}
    for name, run in rows.items():
        print(f"{name:<54} {max(run() for _ in range(FLAGS.repeats)):>12,.0f} seed-steps/s",
              flush=True)


if __name__ == "__main__":
    cli.run(main)
