"""Where one training step of the reference config spends its time (the bare step, no metrics).

    python benchmarks/step_breakdown.py [--ratio_seeds=64] [--cpu_devices=4] [--trace]

Uses sweep_throughput.py's reference config and flags.  Times jit(vmap(lax.scan(step)))
over --ratio_seeds seeds, the seed axis sharded over the local devices (--cpu_devices
splits a CPU host), for ablations of the step: as it is (in-graph data, MSE, Adam); with
one fixed batch instead of in-graph sampling; the forward pass and loss alone (no
gradients); plain SGD instead of Adam.  --trace adds XLA's per-op times of one run of the
full step, from the JAX profiler, with each op's line of the compiled program (a dot's
contracting dimensions tell the forward product from the weight gradient).  Best of
--repeats runs each.  Not a test: nothing here asserts.
"""
import collections
import glob
import gzip
import json
import os
import tempfile

from absl import flags
import jax
import jax.numpy as jnp
import optax

import sweep_throughput as bench  # (a sibling script: defines the flags)
from rgsym import cli, data, distributions, sweep

FLAGS = bench.FLAGS
flags.DEFINE_bool("trace", False, "Also print XLA's per-op times of the full step.")
flags.DEFINE_integer("top_ops", 15, "Ops listed by --trace.")

ABLATIONS = {
    "full step (in-graph data, MSE, Adam)": "full",
    "  one fixed batch (no in-graph sampling)": "fixed_data",
    "  forward pass and loss only (no gradients)": "forward_only",
    "  SGD instead of Adam": "sgd",
}


def _step(variant: str):
    """``(model, step, init_state)`` of one ablation, as sweep_throughput.bare_run takes."""
    model, adam, full = bench._bare_step()
    if variant == "full":
        return model, full, lambda p, _: adam.init(p)
    sgd = optax.sgd(bench.LR)
    uniform = distributions.get("uniform", standardised=True)
    sample = lambda k: data.sample_pairs(k, uniform, bench.BATCH, bench.N, bench.B)  # noqa

    def step(params, state, key):
        state, fixed = state
        x, y = fixed if variant == "fixed_data" else sample(key)
        loss = lambda p: jnp.mean((model.apply(p, x) - y) ** 2)  # noqa: E731
        if variant == "forward_only":  # the loss feeds the carry, so it is not removed
            return jax.tree.map(lambda p: p + 1e-9 * loss(params), params), (state, fixed)
        updates, state = sgd.update(jax.grad(loss)(params), state, params)
        return optax.apply_updates(params, updates), (state, fixed)

    # The fixed batch is the seed's own (drawn once from its data key), held in the state.
    return model, step, lambda p, k: (sgd.init(p), sample(k))


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
    split = sweep.split_host_cpu(FLAGS.cpu_devices)
    s = FLAGS.ratio_seeds
    print(f"{jax.devices()[0].device_kind}  devices: {jax.device_count()} (cpu devices set: "
          f"{split})  jax {jax.__version__}  S={s}  best of {FLAGS.repeats} runs")
    mesh = jax.make_mesh((min(s, jax.device_count()),), ("seeds",),
                         (jax.sharding.AxisType.Auto,))
    for name, variant in ABLATIONS.items():
        run, compiled = bench.scan_rate(bench.bare_run(*_step(variant)), s, mesh)
        if variant == "full":
            full = compiled  # (fn, keys) of the full step, for --trace
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
    cli.run(main)
