"""Where one training step of the reference config spends its time (the bare step, no metrics).

    python benchmarks/step_breakdown.py [--ratio_seeds=64] [--cpu_devices=4] [--trace]

Uses sweep_throughput.py's reference config and flags.  Times jit(vmap(lax.scan(step)))
over --ratio_seeds seeds, the seed axis sharded over the local devices (--cpu_devices
splits a CPU host), for ablations of the step: as it is (in-graph data, MSE, Adam); with
one fixed batch instead of in-graph sampling; the forward pass and loss alone (no
gradients); plain SGD instead of Adam.  --trace adds XLA's per-op times of one run of the
full step, from the JAX profiler, with each op's line of the compiled program (a dot's
contracting dimensions tell the forward product from the weight gradient).  Best of --repeats runs each.  Not a test: nothing here asserts.
"""
import collections
import glob
import gzip
import json
import os
import sys
import tempfile

from absl import app, flags
import jax
import jax.numpy as jnp
import optax
from jax.sharding import NamedSharding, PartitionSpec as P

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sweep_throughput as bench  # noqa: E402  (defines the flags)
from rgsym import data, distributions, train  # noqa: E402

FLAGS = bench.FLAGS
flags.DEFINE_bool("trace", False, "Also print XLA's per-op times of the full step.")
flags.DEFINE_integer("top_ops", 15, "Ops listed by --trace.")

ABLATIONS = {
    "full step (in-graph data, MSE, Adam)": "full",
    "  one fixed batch (no in-graph sampling)": "fixed_data",
    "  forward pass and loss only (no gradients)": "forward_only",
    "  SGD instead of Adam": "sgd",
}


def _run_fn(variant: str):
    model, tx, step = bench._bare_step()
    sgd = optax.sgd(bench.LR)
    uniform = distributions.get("uniform", standardised=True)

    def run(key):
        k_init, k_data = jax.random.split(key)
        params = model.init(k_init, jnp.zeros((1, bench.N)))
        sample = lambda k: data.sample_pairs(k, uniform, bench.BATCH, bench.N, bench.B)  # noqa
        fixed = sample(k_data)

        def body(carry, t):
            params, state = carry
            k = jax.random.fold_in(k_data, t)
            if variant == "full":
                return step(params, state, k), None
            if variant == "fixed_data":
                x, y = fixed
            else:
                x, y = sample(k)
            loss = lambda p: jnp.mean((model.apply(p, x) - y) ** 2)  # noqa: E731
            if variant == "forward_only":  # the loss feeds the carry, so it is not removed
                return (jax.tree.map(lambda p: p + 1e-9 * loss(params), params), state), None
            updates, state = sgd.update(jax.grad(loss)(params), state, params)
            return (optax.apply_updates(params, updates), state), None

        init = (params, (sgd if variant in ("sgd", "forward_only") else tx).init(params))
        (params, _), _ = jax.lax.scan(body, init, jnp.arange(FLAGS.steps))
        return params

    return run


def _timed(variant: str, seeds: int):
    mesh = jax.make_mesh((min(seeds, jax.device_count()),), ("seeds",),
                         (jax.sharding.AxisType.Auto,))
    keys = jax.device_put(jax.random.split(jax.random.key(0), seeds),
                          NamedSharding(mesh, P("seeds")))
    with jax.default_matmul_precision(FLAGS.matmul_precision):  # as the sweep's own
        fn = jax.jit(jax.vmap(_run_fn(variant))).lower(keys).compile()
    jax.block_until_ready(fn(keys))
    return fn, keys


def _trace(fn, keys) -> list:
    """[(op name, total ms, % of all ops' time, calls)] of one run, from the profiler's
    perfetto trace."""
    with tempfile.TemporaryDirectory() as d:
        jax.profiler.start_trace(d, create_perfetto_trace=True)
        jax.block_until_ready(fn(keys))
        jax.profiler.stop_trace()
        path = glob.glob(os.path.join(d, "**", "*.trace.json.gz"), recursive=True)[0]
        with gzip.open(path) as f:
            events = json.load(f)["traceEvents"]
    total, calls = collections.Counter(), collections.Counter()
    for e in events:  # leaf XLA ops only: no executor, wait or Python frames
        name = e.get("name", "")
        if e.get("ph") == "X" and not any(s in name for s in ("Execute", "$", "Await")):
            total[name] += e["dur"] / 1e3
            calls[name] += 1
    every = sum(total.values())
    return [(n, ms, 100 * ms / every, calls[n]) for n, ms in total.most_common(FLAGS.top_ops)]


def main(argv):
    del argv
    split = train.split_host_cpu(FLAGS.cpu_devices)
    s = FLAGS.ratio_seeds
    print(f"{jax.devices()[0].device_kind}  devices: {jax.device_count()} (cpu devices set: "
          f"{split})  jax {jax.__version__}  S={s}  best of {FLAGS.repeats} runs")
    full = None
    for name, variant in ABLATIONS.items():
        fn, keys = _timed(variant, s)
        full = full or (fn, keys)
        run = bench._rate(lambda: jax.block_until_ready(fn(keys)), s * FLAGS.steps)
        print(f"{name:<46} {max(run() for _ in range(FLAGS.repeats)):>10,.0f} seed-steps/s",
              flush=True)
    if FLAGS.trace:
        ops = _trace(*full)
        print(f"\nXLA ops of one full run ({s * FLAGS.steps:,} seed-steps), by total time "
              "(% of all ops' time)")
        for name, ms, pct, n in ops:
            print(f"  {name[:40]:<40} {ms:9.1f} ms {pct:5.1f}%  {n:6d} calls")
        print("\nthe ops above, from the compiled program:")
        text = full[0].as_text().splitlines()
        for name, *_ in ops:
            line = next((ln.strip() for ln in text if ln.strip().startswith(f"%{name} = ")), "")
            print(f"  {line[:150]}")


if __name__ == "__main__":
    app.run(main)
