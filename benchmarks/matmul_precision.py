"""Does the matmul precision decide whether an exact map is learned?  (the precision note in benchmarks/RESULTS.md)

    python benchmarks/matmul_precision.py [--seeds=256] [--steps=2000]

Trains the two maps a network can represent exactly, at config ``matmul_precision``
'default' and 'highest', float32: an identity-activation MLP (16 sites, width 16, depth 1)
and the probe of docs/science.md (one block, a free quadratic MLP of width 16), Adam lr 1e-2, cosine
schedule, uniform inputs.  Prints, per precision, the median over seeds of the test and
worst out-of-distribution relative errors and the seed-steps/s of the sweep (compile
excluded).  On a GPU, 'default' may use TF32 (about 1e-3 relative error per product); on a
CPU both precisions are the same.  Not a test: nothing here asserts.
"""
import json
import time

from absl import flags
import jax
import numpy as np

from rgsym import cli, config, sweep

FLAGS = flags.FLAGS
flags.DEFINE_integer("seeds", 256, "Seeds per sweep.")
flags.DEFINE_integer("steps", 2000, "Training steps per seed.")
flags.DEFINE_string("json_out", None, "Also write every figure to this JSON file.")

PROBLEMS = {  # name: (model overrides, lattice sites)
    "identity MLP, 16 sites": (dict(activation="identity", width=16, depth=1), 16),
    "free quadratic MLP, one block": (dict(activation="quadratic", width=16, depth=1), 2),
}


def config(model: dict, sites: int, precision: str):
    c = config.base_config()
    c.num_seeds, c.matmul_precision = FLAGS.seeds, precision
    c.lattice.sites = sites
    c.eval.flow_steps = 1
    c.eval.every = FLAGS.steps
    c.model.update(model)
    c.optim.update(dict(lr=1e-2, schedule="cosine", steps=FLAGS.steps))
    return c


def main(argv):
    del argv
    sweep.split_host_cpu()
    print(f"devices: {jax.devices()} ({jax.devices()[0].device_kind})  jax {jax.__version__}  "
          f"S={FLAGS.seeds}  steps={FLAGS.steps}  float32")
    rows = []
    for name, (model, sites) in PROBLEMS.items():
        for precision in ("default", "highest"):
            sw = sweep.make_sweep(config(model, sites, precision))
            ids = np.arange(FLAGS.seeds)
            sw.run_chunk(ids)  # compile
            t = time.perf_counter()
            _, m = sw.run_chunk(ids)
            rate = FLAGS.seeds * FLAGS.steps / (time.perf_counter() - t)
            f = m["final"]
            rows.append(dict(problem=name, precision=precision, rate=rate,
                             test_rel_err=float(np.median(f["test_rel_err"])),
                             ood_rel_err_max=float(np.median(f["ood_rel_err_max"]))))
    print(f"\n{'problem':<32} {'precision':<9} {'test rel err':>13} {'OOD max':>10} "
          f"{'seed-steps/s':>13}")
    for r in rows:
        print(f"{r['problem']:<32} {r['precision']:<9} {r['test_rel_err']:>13.2e} "
              f"{r['ood_rel_err_max']:>10.2e} {r['rate']:>13,.0f}")
    if FLAGS.json_out:
        with open(FLAGS.json_out, "w") as f:
            json.dump(dict(device_kind=jax.devices()[0].device_kind, jax=jax.__version__,
                           seeds=FLAGS.seeds, steps=FLAGS.steps, rows=rows), f, indent=1)


if __name__ == "__main__":
    cli.run(main)
