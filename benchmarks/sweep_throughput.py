"""Seed-steps per second of rgsym's sweep vs a Python loop of jitted steps and PyTorch.

    python benchmarks/sweep_throughput.py [--seeds=1,16,64,256,1024,8192] [--max_seconds=60]
    python benchmarks/sweep_throughput.py --matmul_precision=highest
    python benchmarks/sweep_throughput.py --seeds=1,64,1024,8192 --ratio_seeds=8192  # a GPU

Reference config: 1-D lattice N=16, b=2, MLP 2 x 64 tanh, batch 256, Adam
1e-3, 500 steps, float32.  rgsym runs its full sweep program (in-graph data, divergence
guard, evaluation every 100 steps on every family, final metrics) sharded over the local
devices, as `experiments/sweep.py` does: on a CPU-only machine the host is split into
--cpu_devices XLA devices (rgsym.sweep.split_host_cpu).  Each S is compiled once, then
timed; every figure is the best of --repeats runs.  Peers: (a) JAX, a Python loop over a
jitted step, one seed; (b) PyTorch, one seed at a time; (c) torch.func.vmap over
--torch_vmap_seeds seeds (PyTorch is the optional `bench` extra: `make bench-deps`), on the
GPU when torch sees one; (d) JAX, the bare jit(vmap(lax.scan)) training loop over
--ratio_seeds seeds, without rgsym's metrics or guard, sharded over the same devices as
rgsym's sweep of that size (the same mesh); (e) rgsym's sweep evaluated on the training family
and the Gaussian alone, so that rgsym over (e) is the other sets' share and (e) over (d) the
rest of rgsym's overhead (guard, two sets' curves and final metrics).  Sizes whose estimated
time exceeds --max_seconds are skipped.  The ratios at S = --ratio_seeds come from
--repeats interleaved rounds (each round times rgsym and every peer back to back, so a
shared machine's load hits them alike).  Not a test: nothing here asserts.
"""
import json
import os
import time

from absl import flags
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding, PartitionSpec as P

from rgsym import cli, config, data, distributions, models, sweep

FLAGS = flags.FLAGS
flags.DEFINE_list("seeds", ["1", "16", "64", "256", "1024", "8192"], "Sweep sizes S.")
flags.DEFINE_integer("steps", 500, "Training steps per seed.")
flags.DEFINE_float("max_seconds", 60.0, "Skip a size whose estimated run exceeds this.")
flags.DEFINE_integer("torch_vmap_seeds", 64, "S for the torch.func.vmap peer.")
flags.DEFINE_enum("matmul_precision", "default", ["default", "highest"], "rgsym precision.")
flags.DEFINE_integer("ratio_seeds", 64, "S of the rgsym sweep the peers are compared with.")
flags.DEFINE_integer("cpu_devices", 0, "XLA devices the host CPU is split into when there is no "
                     "accelerator (0: four per core; 1: one device).")
flags.DEFINE_bool("peers", True, "Time the peers too (off: rgsym's sweep alone).")
flags.DEFINE_string("json_out", None, "Also write every figure to this JSON file.")
flags.DEFINE_integer("repeats", 3, "Timed runs per measurement; the best is reported (the "
                     "machine may be shared, and load only ever slows a run down).")

N, B, WIDTH, DEPTH, BATCH, LR = 16, 2, 64, 2, 256, 1e-3


def reference_config(seeds: int, few_eval_sets: bool = False):
    """The reference run; ``few_eval_sets``: evaluated on the training family and the
    Gaussian alone (the fewest the evaluator takes: no other families, scales or iterated
    flow), so the evaluation's share of the sweep shows."""
    c = config.base_config()
    c.num_seeds = seeds
    c.lattice.sites, c.lattice.b = N, B
    c.data.batch = BATCH
    c.model.update(dict(kind="mlp", symmetry="none", activation="tanh", width=WIDTH,
                        depth=DEPTH))
    c.optim.update(dict(optimizer="adam", lr=LR, steps=FLAGS.steps))
    c.eval.every = 100 if FLAGS.steps % 100 == 0 else FLAGS.steps
    c.matmul_precision = FLAGS.matmul_precision
    if few_eval_sets:
        c.eval.families, c.eval.scales, c.eval.flow_steps = (c.data.family,), (), 1
    return c


# Every runner is ``() -> seed-steps/s`` of one timed run (compiled / warmed up already).

def _rate(fn, seed_steps: int):
    def run():
        t = time.perf_counter()
        fn()
        return seed_steps / (time.perf_counter() - t)
    return run


def rgsym_sweep(seeds: int, few_eval_sets: bool = False):
    """make_sweep(...).run_chunk over the local devices: the whole sweep program."""
    sw = sweep.make_sweep(reference_config(seeds, few_eval_sets))
    ids = np.arange(seeds)
    sw.run_chunk(ids)  # compile
    return _rate(lambda: sw.run_chunk(ids), seeds * FLAGS.steps)


def _bare_step():
    """The reference training step alone: in-graph data, MSE, Adam; no metrics or guard."""
    model = models.build(config.model_config(reference_config(1)))
    dist = distributions.get("uniform", standardised=True)
    tx = optax.adam(LR)

    def step(params, opt_state, key):
        x, y = data.sample_pairs(key, dist, BATCH, N, B)
        grads = jax.grad(lambda p: jnp.mean((model.apply(p, x) - y) ** 2))(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    return model, tx, step


def bare_run(model, step, init_state):
    """``key -> params``: ``model``'s init, then FLAGS.steps of ``step(params, state,
    key_t)`` in one lax.scan (``init_state``: (params, the seed's data key) -> the step's
    initial state)."""
    def run(key):
        k_init, k_data = jax.random.split(key)
        params = model.init(k_init, jnp.zeros((1, N)))
        body = lambda c, t: (step(*c, jax.random.fold_in(k_data, t)), None)  # noqa: E731
        (params, _), _ = jax.lax.scan(body, (params, init_state(params, k_data)),
                                      jnp.arange(FLAGS.steps))
        return params

    return run


def scan_rate(run, seeds: int, mesh=None):
    """Seed-steps/s runner of jit(vmap(run)) over ``seeds`` keys (sharded over ``mesh``),
    compiled at --matmul_precision and warmed up; also returns (compiled fn, keys)."""
    keys = jax.random.split(jax.random.key(0), seeds)
    if mesh is not None:
        keys = jax.device_put(keys, NamedSharding(mesh, P(mesh.axis_names[0])))
    with jax.default_matmul_precision(FLAGS.matmul_precision):
        fn = jax.jit(jax.vmap(run)).lower(keys).compile()
    jax.block_until_ready(fn(keys))
    return _rate(lambda: jax.block_until_ready(fn(keys)), seeds * FLAGS.steps), (fn, keys)


def jax_bare_scan(seeds: int):
    """(d) the floor of rgsym's own sweep: jit(vmap(lax.scan(step))) with nothing else, its
    seed axis sharded over the devices rgsym's sweep of ``seeds`` uses (the same mesh), so
    what rgsym adds (evaluation, divergence guard, final metrics) shows as the difference."""
    model, tx, step = _bare_step()
    mesh = sweep.make_sweep(reference_config(seeds)).mesh
    return scan_rate(bare_run(model, step, lambda p, _: tx.init(p)), seeds, mesh)[0]


def jax_python_loop():
    """(a) one seed, a Python loop over a jitted step (data sampled inside the step)."""
    model, tx, step = _bare_step()
    step = jax.jit(step)
    params = model.init(jax.random.key(0), jnp.zeros((1, N)))
    state = tx.init(params)
    keys = jax.random.split(jax.random.key(1), FLAGS.steps)
    jax.block_until_ready(step(params, state, keys[0]))

    def loop():
        p, s = params, state
        for k in keys:
            p, s = step(p, s, k)
        jax.block_until_ready(p)

    return _rate(loop, FLAGS.steps)


def torch_peers(vmap_seeds: int):
    """(b) PyTorch one seed at a time and (c) torch.func.vmap over seeds, on the GPU when
    torch sees one; (None, None) if torch is absent."""
    try:
        import torch
        from torch.func import functional_call, vmap
    except ImportError:
        return None, None
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    half = 3.0 ** 0.5

    def net():
        layers, fan = [], N
        for _ in range(DEPTH):
            layers += [torch.nn.Linear(fan, WIDTH), torch.nn.Tanh()]
            fan = WIDTH
        return torch.nn.Sequential(*layers, torch.nn.Linear(fan, N // B)).to(dev)

    def batch(shape):
        x = (torch.rand(*shape, N, device=dev) * 2 - 1) * half
        return x, x.reshape(*shape, N // B, B).sum(-1) / B ** 0.5

    def one_seed():
        model = net()
        opt = torch.optim.Adam(model.parameters(), lr=LR)
        for _ in range(FLAGS.steps):
            x, y = batch((BATCH,))
            loss = ((model(x) - y) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        sync()

    # Built once, outside the timing: S independent inits stacked on a leading seed axis.
    # Adam is elementwise, so Adam on the stacked [S, ...] parameters is per-seed Adam.
    base = net()
    inits = [net().state_dict() for _ in range(vmap_seeds)]
    stacked = {k: torch.nn.Parameter(torch.stack([d[k] for d in inits])) for k in inits[0]}
    del inits
    opt = torch.optim.Adam(stacked.values(), lr=LR)
    forward = vmap(lambda p, x: functional_call(base, p, (x,)))

    def vmapped():
        for _ in range(FLAGS.steps):
            x, y = batch((vmap_seeds, BATCH))
            loss = ((forward(stacked, x) - y) ** 2).mean((1, 2)).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
        sync()

    torch.manual_seed(0)
    return (_rate(one_seed, FLAGS.steps), _rate(vmapped, vmap_seeds * FLAGS.steps))


def main(argv):
    del argv
    split = sweep.split_host_cpu(FLAGS.cpu_devices)
    gpu = jax.default_backend() != "cpu"
    print(f"devices: {jax.devices()} ({jax.devices()[0].device_kind})  host cores: "
          f"{os.cpu_count()}  cpu devices set: {split}  jax {jax.__version__}  "
          f"matmul_precision={FLAGS.matmul_precision}  best of {FLAGS.repeats} runs")
    best = lambda run: max(run() for _ in range(FLAGS.repeats))
    rows, runners, rate = [], {}, None
    for s in map(int, FLAGS.seeds):
        name = f"rgsym sweep (vmap of lax.scan, metrics on), S={s}"
        if rate and s * FLAGS.steps / rate > FLAGS.max_seconds:
            rows.append((name, None))
            continue
        runners[s] = rgsym_sweep(s)
        rate = best(runners[s])
        rows.append((name, rate))
        print(f"  S={s}: {rate:,.0f} seed-steps/s", flush=True)
    peers = {}
    if FLAGS.peers:
        peers[f"JAX, bare vmap of lax.scan, no metrics (S={FLAGS.ratio_seeds})"] = \
            jax_bare_scan(FLAGS.ratio_seeds)
        peers["JAX, Python loop of jitted steps (1 seed)"] = jax_python_loop()
        # rgsym over this row: what evaluating the other families, scales and flow costs
        peers[f"rgsym sweep, 2 eval sets (train, gaussian) (S={FLAGS.ratio_seeds})"] = \
            rgsym_sweep(FLAGS.ratio_seeds, few_eval_sets=True)
    one, vm = torch_peers(FLAGS.torch_vmap_seeds) if FLAGS.peers else (None, None)
    if one:
        peers["PyTorch, one seed at a time"] = one
        peers[f"torch.func vmap over seeds (S={FLAGS.torch_vmap_seeds})"] = vm
    rows += [(name, best(run)) for name, run in peers.items()]
    print(f"\n{'how the sweep is written':<58} {'seed-steps/s':>14}")
    for name, r in rows:
        print(f"{name:<58} {'skipped (too slow here)' if r is None else f'{r:,.0f}':>14}")
    report = dict(devices=[str(d) for d in jax.devices()], device_kind=jax.devices()[0].device_kind,
                  jax=jax.__version__, cpu_devices=split, precision=FLAGS.matmul_precision,
                  rates=dict(rows))
    s = FLAGS.ratio_seeds
    if s in runners and peers:
        # Ratios from interleaved rounds: each round times every contender back to back, so
        # they share the machine's load of the moment (it may be shared with other jobs).
        ratios = {name: [] for name in peers}
        for _ in range(FLAGS.repeats):
            ours = runners[s]()
            for name, run in peers.items():
                ratios[name].append(ours / run())
        # The time-to-result issue's targets: CPU at S = 64, GPU at S = 8192.
        targets = {f"torch.func vmap over seeds (S={FLAGS.torch_vmap_seeds})": 2.0 if gpu else 1.5,
                   f"JAX, bare vmap of lax.scan, no metrics (S={FLAGS.ratio_seeds})":
                       0.9 if gpu else 0.95}
        if not gpu:
            targets["PyTorch, one seed at a time"] = 25.0
        print(f"\nrgsym S={s} over each peer, median [min, max] of {FLAGS.repeats} interleaved "
              "rounds")
        for name, r in ratios.items():
            target = f"   (target >= {targets[name]:g}x)" if name in targets else ""
            print(f"  / {name:<52} {np.median(r):6.2f}x [{min(r):.2f}, {max(r):.2f}]{target}")
        report["ratios"] = {name: dict(median=float(np.median(r)), min=min(r), max=max(r))
                            for name, r in ratios.items()}
    if FLAGS.peers and not one:
        print("PyTorch not installed: `make bench-deps` for the torch peers")
    if FLAGS.json_out:
        with open(FLAGS.json_out, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    cli.run(main)
