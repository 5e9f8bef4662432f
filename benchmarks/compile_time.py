"""Where a sweep's compile time goes, and what a user waits for (issue 12).

    python benchmarks/compile_time.py                        # every section
    python benchmarks/compile_time.py --sections=breakdown --variant=mlp-none-tanh
    python benchmarks/compile_time.py --sections=variants,make_run,propagation
    python benchmarks/compile_time.py --sections=variants,make_run,targets   # the targets

Sections (each prints its own table; ratios side by side where there is a before/after):

- breakdown: one variant of the default config (experiments/configs/default.py), its parts
  lowered and compiled on their own over the variant's 8 seeds: the in-graph sampler, one
  training step, the learning-curve evaluation, the final evaluation over the evaluation
  sets, the k-statistics, the symmetry diagnostics, the evaluation-data sampler that
  make_sweep runs eagerly, and the whole sweep program on one device and sharded over the
  split host CPU.  Per part: ``jit(f).lower()`` and ``.compile()`` seconds, the StableHLO
  text size and its op count, and the optimised HLO's instruction count; plus make_sweep's
  eager set-up (seconds and the number of programs XLA compiled, from jax.monitoring).
- variants: every variant of the default config in one process (as `make run` runs them):
  make_sweep seconds, trace + lower + XLA compile seconds of the first chunk (from
  jax.monitoring's duration events), the first chunk's wall time and a second chunk's
  (the run alone).
- make_run: experiments/sweep.py on the default config into a fresh workdir, a fresh process
  each, without the persistent compilation cache, with a cold one and with it warm.
- propagation: ``rgsym.cumulants.propagate`` through a quadratic MLP (public API only),
  orders 1-5, depths 1-2, every_layer True and False: first call and repeated call, each in
  a subprocess with a time limit (--propagation_timeout) so a slow one is reported, not
  waited for.
- targets (last): issue 12's CPU targets beside the figures of this run (the sweep's from
  the variants and make_run sections, when run) and two propagation calls measured here,
  each in a fresh process: order 4 through a quadratic MLP with one hidden layer of width 64
  over 16 sites, the default call; depth 2 exact at order 4.

The machine is part of every figure: the header prints the CPU model, core count, jax
version and load averages.  Not a test: nothing here asserts.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
CONFIG = os.path.join(ROOT, "experiments", "configs", "default.py")


def machine() -> str:
    import jax
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        cpu = "unknown CPU"
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"machine: {cpu}, {os.cpu_count()} cores; jax {jax.__version__}; "
            f"{jax.device_count()} {jax.default_backend()} devices; load average {load}")


def default_variants():
    import importlib.util

    from rgsym import config
    spec = importlib.util.spec_from_file_location("default_config", CONFIG)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return config.variant_configs(module.get_config())


class CompileEvents:
    """Sums of JAX's compile-phase durations (jax.monitoring) and the number of XLA compiles."""
    PHASES = {"trace": "jaxpr_trace_duration", "lower": "jaxpr_to_mlir_module_duration",
              "compile": "backend_compile_duration"}

    def __init__(self):
        import jax
        self.seconds = dict.fromkeys(self.PHASES, 0.0)
        self.programs = 0
        jax.monitoring.register_event_duration_secs_listener(self._listen)

    def _listen(self, name, secs, **kwargs):
        for phase, tail in self.PHASES.items():
            if name.endswith(tail):
                self.seconds[phase] += secs
                self.programs += phase == "compile"

    def snapshot(self):
        return dict(self.seconds, programs=self.programs)

    @staticmethod
    def since(before, after):
        return {k: after[k] - before[k] for k in after}


def staged(fn, *args, compiler_options=None, **jit_kwargs):
    """(lower s, compile s, compile CPU s, StableHLO chars, StableHLO ops, optimised HLO
    instructions).  CPU seconds (all threads of this process) move less than wall seconds
    with the load other jobs put on a shared machine."""
    import jax
    t = time.perf_counter()
    lowered = jax.jit(fn, **jit_kwargs).lower(*args)
    text = lowered.as_text()
    t_lower = time.perf_counter() - t
    t, cpu = time.perf_counter(), time.process_time()
    compiled = lowered.compile(compiler_options)
    t_compile, cpu = time.perf_counter() - t, time.process_time() - cpu
    ops = len(re.findall(r"^\s*(?:%\S+ = )?\"?[a-z_]+\.[a-z_]+", text, re.M))
    hlo = compiled.as_text() or ""
    instructions = len(re.findall(r"^\s*(?:ROOT )?%?\S+ = ", hlo, re.M))
    return t_lower, t_compile, cpu, len(text), ops, instructions


# ------------------------------------------------------------------------------------------

def breakdown(variant: str, seeds: int = 8):
    import jax
    import jax.numpy as jnp
    import numpy as np
    from jax.sharding import NamedSharding, PartitionSpec as P

    from rgsym import data, distributions, sweep, train
    from rgsym.cumulants.estimators import k_statistics

    variants = dict(default_variants())
    if variant not in variants:
        raise SystemExit(f"--variant={variant!r} is not a variant of the default config; "
                         f"known: {', '.join(variants)}")
    cfg = variants[variant]
    events = CompileEvents()
    before = events.snapshot()
    t = time.perf_counter()
    sw = sweep.make_sweep(cfg)
    setup = time.perf_counter() - t
    setup_events = CompileEvents.since(before, events.snapshot())
    trainer, lat = sw.trainer, cfg.lattice
    dtype = jnp.dtype(cfg.dtype)
    model, ev = trainer.model, trainer.evaluator
    dist = distributions.get(cfg.data.family, standardised=True)
    keys = jax.random.split(jax.random.key(0), seeds)
    example = jnp.zeros((1,) + data.lattice_shape(lat.sites, lat.dim), dtype)
    params = jax.vmap(lambda k: model.init(k, example))(keys)
    hp = jax.vmap(lambda _: trainer.hparams())(jnp.arange(seeds))
    eval_data = ev.fixed_data()
    tx = train._optimizer(sw.trainer.config.optim)
    opt_state = jax.vmap(tx.init)(params)

    def sampler(keys):
        return jax.vmap(lambda k: data.sample_pairs(k, dist, cfg.data.batch, lat.sites, lat.b,
                                                    lat.dim, dtype=dtype))(keys)

    def step(params, opt_state, keys):
        def one(p, s, k):
            x, y = data.sample_pairs(k, dist, cfg.data.batch, lat.sites, lat.b, lat.dim,
                                     dtype=dtype)
            g = jax.grad(lambda q: jnp.mean((model.apply(q, x) - y) ** 2))(p)
            d, s = tx.update(g, s, p)
            return jax.tree.map(lambda a, b: a - 1e-3 * b, p, d), s
        return jax.vmap(one)(params, opt_state, keys)

    curve = jax.vmap(ev.curve, (0, 0, None))
    final = jax.vmap(ev.final, (0, 0, None))
    n_out = int(np.prod(eval_data[1].shape[1:]))

    def kstats(pred, y):  # [S, F, B * coarse] model outputs against the targets [F, ...]
        return jax.vmap(lambda p: jax.vmap(lambda a, b: k_statistics(jnp.stack([a, b]), 1))(
            p, y))(pred)

    pred = jnp.zeros((seeds, eval_data[1].shape[0], n_out), dtype)
    targets = jnp.asarray(eval_data[1]).reshape(eval_data[1].shape[0], -1)
    sym = jax.vmap(model.symmetry_diagnostics)

    def whole(seeds_, hp_, data_):
        run = getattr(trainer, "train_packed", trainer.train)  # (also measures the code before)
        return jax.vmap(lambda s, h: run(jax.random.key(s), h, data_))(seeds_, hp_)

    ids = jnp.arange(seeds, dtype=jnp.int32)
    one = jax.sharding.Mesh(np.array(jax.devices()[:1]), ("seeds",))
    shard1 = NamedSharding(one, P("seeds"))
    parts = [
        ("in-graph sampler (one batch)", sampler, (keys,), {}),
        ("training step (sample, grad, Adam)", step, (params, opt_state, keys), {}),
        ("learning-curve evaluation", curve, (params, hp, eval_data), {}),
        ("final evaluation (all sets, k-stats, flow)", final, (params, hp, eval_data), {}),
        ("  k-statistics alone", kstats, (pred, targets), {}),
        ("  symmetry diagnostics alone", sym, (params,), {}),
        ("evaluation-data sampler (make_sweep, eager)", ev.sample, (jax.random.key(1),), {}),
        ("whole sweep program, 1 device", whole, (ids, hp, eval_data),
         dict(in_shardings=(shard1, shard1, NamedSharding(one, P())), out_shardings=shard1)),
        (f"whole sweep program, {sw.mesh.size} split devices", whole, (ids, hp, eval_data),
         dict(in_shardings=(NamedSharding(sw.mesh, P("seeds")),) * 2
              + (NamedSharding(sw.mesh, P()),), out_shardings=NamedSharding(sw.mesh, P("seeds")))),
    ]
    # As make_sweep compiles them, where it sets XLA's backend optimisation level.
    options = sweep.compiler_options(sw.trainer.config, list(sw.mesh.devices.flat))
    if options:
        level = options["xla_backend_optimization_level"]
        parts.append((f"  the same at backend opt level {level} (as run)",
                      *parts[-1][1:3], dict(parts[-1][3], compiler_options=options)))
        parts.append(("evaluation-data sampler at backend opt level 0", ev.sample,
                      (jax.random.key(1),), dict(compiler_options={
                          "xla_backend_optimization_level": 0})))
    print(f"\n## breakdown: {variant}, {seeds} seeds, {cfg.optim.steps} steps, "
          f"{len(ev.sets.names)} evaluation sets\n{machine()}")
    print(f"make_sweep (eager set-up): {setup:.2f} s, {setup_events['programs']} XLA programs "
          f"compiled ({setup_events['compile']:.2f} s of XLA compile)")
    print(f"{'part (XLA default options unless named)':<46} {'lower s':>8} {'compile s':>10} "
          f"{'(CPU s)':>8} {'StableHLO kB':>13} {'ops':>6} {'HLO instr':>10}")
    rows = {}
    for name, fn, args, kw in parts:
        jax.clear_caches()
        with jax.default_matmul_precision(cfg.matmul_precision):
            r = staged(fn, *args, **kw)
        rows[name] = r
        print(f"{name:<46} {r[0]:8.2f} {r[1]:10.2f} {r[2]:8.2f} {r[3] / 1e3:13.1f} {r[4]:6d} "
              f"{r[5]:10d}", flush=True)
    return dict(variant=variant, make_sweep_s=setup, make_sweep_events=setup_events,
                parts=rows)


def variants_section(chunks: int = 2):
    import jax
    import numpy as np

    from rgsym import sweep
    events = CompileEvents()
    print(f"\n## every variant of the default config, one process\n{machine()}")
    print(f"{'variant':<52} {'setup s':>8} {'trace s':>8} {'lower s':>8} {'XLA s':>7} "
          f"{'1st chunk s':>12} {'next chunk s':>13} {'CPU s: setup+1st':>17} {'next':>6}")
    out = {}
    t_all = time.perf_counter()
    for name, cfg in default_variants():
        a = events.snapshot()
        t, cpu = time.perf_counter(), time.process_time()
        sw = sweep.make_sweep(cfg)
        setup = time.perf_counter() - t
        b = events.snapshot()
        t = time.perf_counter()
        sw.run_chunk(np.arange(cfg.num_seeds))
        first, cpu_first = time.perf_counter() - t, time.process_time() - cpu
        c = CompileEvents.since(b, events.snapshot())
        t, cpu = time.perf_counter(), time.process_time()
        sw.run_chunk(np.arange(cfg.num_seeds, 2 * cfg.num_seeds))
        second, cpu_second = time.perf_counter() - t, time.process_time() - cpu
        out[name] = dict(setup=setup, first=first, second=second, cpu_setup_first=cpu_first,
                         cpu_second=cpu_second, setup_events=CompileEvents.since(a, b), **c)
        print(f"{name:<52} {setup:8.2f} {c['trace']:8.2f} {c['lower']:8.2f} {c['compile']:7.2f} "
              f"{first:12.2f} {second:13.2f} {cpu_first:17.2f} {cpu_second:6.2f}", flush=True)
    total = time.perf_counter() - t_all
    print(f"all {len(out)} variants: {total:.1f} s; compile per variant (first chunk - next "
          f"chunk + setup): median "
          f"{np.median([v['first'] - v['second'] + v['setup'] for v in out.values()]):.2f} s, "
          f"max {max(v['first'] - v['second'] + v['setup'] for v in out.values()):.2f} s; "
          f"in CPU seconds (setup+1st - next): median "
          f"{np.median([v['cpu_setup_first'] - v['cpu_second'] for v in out.values()]):.2f} s")
    del jax
    return dict(variants=out, total=total)


def make_run_section(config: str = CONFIG):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from compile_cache import timed_sweep  # benchmarks/compile_cache.py

    with tempfile.TemporaryDirectory() as tmp:
        cache = os.path.join(tmp, "cache")
        rows = []
        for i, (label, setting) in enumerate([("no cache", ""), ("cold cache", cache),
                                               ("warm cache", cache)]):
            rows.append((label, timed_sweep(config, os.path.join(tmp, f"run{i}"), setting)))
    print(f"\n## make run (experiments/sweep.py, {os.path.relpath(config, ROOT)}), fresh "
          f"process and workdir each\n{machine()}")
    for label, s in rows:
        print(f"{label:<12} {s:8.1f} s  {s / rows[0][1]:5.2f}x")
    return dict(rows)


_PROPAGATE = r"""
import json, sys, time
import jax
jax.config.update("jax_enable_x64", True)
import numpy as np
from rgsym import cumulants, distributions, models
order, depth, every_layer, width, sites, exact = json.loads(sys.argv[1])
# exact at depth 2: internal_order = order x 2, so the net runs as polynomials of the sites
internal = order * 2 ** (depth - 1) if exact and depth > 1 else None
model = models.build(dict(kind="mlp", symmetry="none", activation="quadratic", width=width,
                          depth=depth, sites=sites, b=2, dim=1, dtype="float64"))
params = model.init(jax.random.key(0), np.zeros((1, sites)))
dist = distributions.get("exponential", standardised=True)
times = []
for _ in range(3):
    t = time.perf_counter()
    # every_layer None: the default call, as the README shows it
    kwargs = {} if every_layer is None else dict(every_layer=every_layer)
    jax.block_until_ready(cumulants.propagate(model, params, dist, order=order,
                                              internal_order=internal, **kwargs))
    times.append(time.perf_counter() - t)
print(json.dumps(dict(first=times[0], repeat=min(times[1:]))))
"""


def _propagate_times(order, depth, every_layer, width, sites, exact, timeout) -> dict:
    """``{first, repeat}`` seconds of one propagate call in a fresh process, or ``{error}``."""
    args = json.dumps([order, depth, every_layer, width, sites, exact])
    try:
        run = subprocess.run([sys.executable, "-c", _PROPAGATE, args], cwd=ROOT,
                             capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return dict(error=f"over {timeout:g} s: stopped")
    if run.returncode:
        return dict(error=(run.stderr.strip().splitlines() or ["?"])[-1][:150])
    return json.loads(run.stdout.strip().splitlines()[-1])


def propagation_section(orders, depths, width: int, sites: int, timeout: float):
    print(f"\n## rgsym.cumulants.propagate, quadratic MLP width {width}, {sites} sites, "
          f"exponential inputs, float64; fresh process per cell, limit {timeout:g} s\n"
          f"{machine()}")
    print(f"{'order':>5} {'depth':>5} {'path':>8} {'every_layer':>11} {'first s':>10} "
          f"{'repeat s':>10} {'first/repeat':>13}")
    out = {}
    for depth, exact in [(d, e) for d in depths for e in ((False, True) if d > 1 else (False,))]:
        for order in orders:
            for every in (True, False):
                res = _propagate_times(order, depth, every, width, sites, exact, timeout)
                path = "exact" if exact else "closure" if depth > 1 else "exact"
                out[f"order={order},depth={depth},path={path},every_layer={every}"] = res
                cells = (f"{res['first']:10.2f} {res['repeat']:10.4f} "
                         f"{res['first'] / res['repeat']:12.0f}x" if "first" in res else
                         f"  {res['error']}")
                print(f"{order:5d} {depth:5d} {path:>8} {str(every):>11} {cells}", flush=True)
    return out


def targets_section(report: dict, timeout: float):
    """Issue 12's CPU targets beside what this run measured: the sweep's from the variants
    and make_run sections (when run), propagation's measured here, each in a fresh process.
    Throughput and the test suite's time are measured elsewhere (sweep_throughput.py,
    ``time make test``)."""
    import numpy as np
    rows = []  # (target, limit s, measured s or None, how)

    variants = report.get("variants", {}).get("variants")
    if variants:
        per = [v["first"] - v["second"] + v["setup"] for v in variants.values()]
        rows.append(("default sweep: compile per variant, median", 3.0, float(np.median(per)),
                     "variants"))
        rows.append(("default sweep: compile per variant, max", 3.0, max(per), "variants"))
    make_run = report.get("make_run")
    if make_run:
        rows.append(("make run, fresh workdir, cache cold", 90.0, make_run["cold cache"],
                     "make_run"))
        rows.append(("make run, fresh workdir, cache warm", 30.0, make_run["warm cache"],
                     "make_run"))
    # The case: quadratic MLP, one hidden layer of width 64 over 16 sites, order 4,
    # the default call; and depth 2 exact at order 4 (internal_order 8).
    one = _propagate_times(4, 1, None, 64, 16, False, timeout)
    two = _propagate_times(4, 2, None, 16, 8, True, timeout)
    for label, res, key, limit in [
            ("propagate order 4, width 64, 16 sites, default call: first", one, "first", 1.5),
            ("propagate order 4, width 64, 16 sites, default call: repeat", one, "repeat",
             0.05),
            ("propagate depth 2 exact (width 16, 8 sites), order 4: first", two, "first", 60.0)]:
        rows.append((label, limit, res.get(key), res.get("error", "fresh process")))

    print(f"\n## issue 12's targets on this machine\n{machine()}")
    print(f"{'target':<64} {'limit s':>8} {'measured s':>11} {'met':>4}  from")
    for label, limit, got, how in rows:
        cell = f"{got:11.3f} {'yes' if got <= limit else 'NO':>4}" if got is not None else \
            f"{'-':>11} {'-':>4}"
        print(f"{label:<64} {limit:8.2f} {cell}  {how}")
    if not variants or not make_run:
        print("(the sweep's rows come from --sections=variants,make_run in the same run)")
    print("throughput: benchmarks/sweep_throughput.py; the test suite: time make test")
    return [dict(target=r[0], limit=r[1], measured=r[2], source=r[3]) for r in rows]


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sections", default="breakdown,variants,make_run,propagation,targets",
                   help="comma-separated, of (run in this order): breakdown, variants, make_run, "
                        "propagation, targets (default: all)")
    p.add_argument("--variant", default="mlp-none-tanh",
                   help="the default config's variant the breakdown section takes apart")
    p.add_argument("--cpu_devices", type=int, default=0,
                   help="XLA devices the host CPU is split into, as rgsym-sweep's flag "
                        "(0: four per core; 1: off)")
    p.add_argument("--orders", default="1,2,3,4,5", help="propagation: cumulant orders")
    p.add_argument("--depths", default="1,2", help="propagation: hidden layers (1 or 2)")
    p.add_argument("--width", type=int, default=16, help="propagation: hidden units")
    p.add_argument("--sites", type=int, default=8, help="propagation: input lattice sites")
    p.add_argument("--propagation_timeout", type=float, default=120.0,
                   help="seconds a propagation cell may take before it is stopped and "
                        "reported as such")
    p.add_argument("--json_out", default=None, help="also write every figure to this file")
    args = p.parse_args()
    sections = args.sections.split(",")
    unknown = set(sections) - {"breakdown", "variants", "make_run", "propagation", "targets"}
    if unknown:
        p.error(f"--sections: unknown {sorted(unknown)}")
    from rgsym import sweep
    sweep.split_host_cpu(args.cpu_devices)  # as experiments/sweep.py does
    report = {}
    if "breakdown" in sections:
        report["breakdown"] = breakdown(args.variant)
    if "variants" in sections:
        report["variants"] = variants_section()
    if "make_run" in sections:
        report["make_run"] = make_run_section()
    if "propagation" in sections:
        report["propagation"] = propagation_section(
            [int(o) for o in args.orders.split(",")], [int(d) for d in args.depths.split(",")],
            args.width, args.sites, args.propagation_timeout)
    if "targets" in sections:
        report["targets"] = targets_section(report, args.propagation_timeout)
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(report, f, indent=1, default=float)


if __name__ == "__main__":
    main()
