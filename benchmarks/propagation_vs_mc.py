"""Analytic cumulant propagation vs Monte Carlo at equal accuracy (not a test).

Model: a trained "2-layer" MLP (two weight layers: lattice N=16 -> 64 hidden units with the
quadratic activation z + 0.1 z^2 -> 8 coarse sites; Adam on uniform inputs), evaluated on
exponential inputs (non-zero kappa_3, kappa_4 everywhere).  Its output cumulants are exact
analytically (float64).  Monte Carlo (the leanest form: output only, streamed power sums,
one jitted lax.scan) needs n samples until the standard error of kappa_3 and kappa_4 is 1%
of their value at every output site; n is found from a pilot run (SE ~ n^-1/2) and the MC
run at that n is timed (or extrapolated from its measured throughput when above --max_mc).

Also: how the analytic cost grows with width (order 4) and with order (width 64), and the
depth-2 (two hidden layers of 16, truncation closure) variant against Monte Carlo.

    .venv/bin/python benchmarks/propagation_vs_mc.py [--max_mc 30000000]
"""
from __future__ import annotations

import argparse
import math
import os
import platform
import time

import jax

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from rgsym import clt, distributions  # noqa: E402
from rgsym.cumulants import iid_lattice, marginals, propagate  # noqa: E402
from rgsym.cumulants.estimators import (PowerSums, k_statistics_from_power_sums,  # noqa: E402
                                        power_sums)
from rgsym.models import build  # noqa: E402

SITES, ORDER = 16, 4


def trained_model(width=64, depth=1, steps=300, activation="quadratic"):
    model = build(dict(kind="mlp", symmetry="none", activation=activation, width=width,
                       depth=depth, sites=SITES, b=2, alpha=0.1, dtype="float64"))
    params = model.init(jax.random.key(0), jnp.zeros(SITES))
    opt, fam = optax.adam(1e-3), distributions.get("uniform")

    def step(carry, key):
        p, s = carry
        x = fam.sample(key, (256, SITES), jnp.float64)
        g = jax.grad(lambda p: ((model.apply(p, x) - clt.block_map(x, 2)) ** 2).mean())(p)
        u, s = opt.update(g, s, p)
        return (optax.apply_updates(p, u), s), None

    (params, _), _ = jax.jit(lambda p: jax.lax.scan(
        step, (p, opt.init(p)), jax.random.split(jax.random.key(1), steps)))(params)
    return model, params


def timed(fn, *args, repeats=5):
    """(first call incl. compile, best steady-state call) in seconds."""
    t = time.perf_counter()
    jax.block_until_ready(fn(*args))
    first = time.perf_counter() - t
    best = math.inf
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - t)
    return first, best


def analytic(model, params, order=ORDER):
    """jitted output cumulants [O, order]; the input state is an argument (compiled once)."""
    fn = jax.jit(lambda p, st: marginals(
        propagate(model, p, st, order=order, every_layer=False).output, order))
    return fn


def mc_runner(model, fam, n, batch=2 ** 15):
    chunks = max(1, -(-n // batch))

    def run(params, key):
        def out(k):
            return model.apply(params, fam.sample(k, (batch, SITES), jnp.float64))

        shift = out(jax.random.fold_in(key, 1)).mean(0)

        def step(s, k):
            return s + power_sums(out(k), shift, ORDER).sums, None

        sums, _ = jax.lax.scan(step, jnp.zeros((SITES // 2, 2 * ORDER)),
                               jax.random.split(key, chunks))
        return k_statistics_from_power_sums(
            PowerSums(sums, shift, jnp.asarray(chunks * batch, jnp.float64)), ORDER)

    return jax.jit(run), chunks * batch


def main(max_mc: int):
    fam = distributions.get("exponential")
    lines = []

    def report(s=""):
        print(s, flush=True)
        lines.append(s)

    report(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, "
           f"jax {jax.__version__} ({jax.default_backend()}), float64")
    model, params = trained_model()
    state = iid_lattice(fam, SITES, 2 * ORDER)
    fn = analytic(model, params)
    first, best = timed(fn, params, state)
    exact = np.asarray(fn(params, state))
    report("\n### Trained 2-layer MLP (16 -> 64 quadratic -> 8), exponential inputs\n")
    report(f"analytic kappa_1..4 of all 8 outputs: {best * 1e3:.2f} ms per call "
           f"(first call incl. compile {first:.1f} s)")

    pilot_n = 2 ** 18
    run, n0 = mc_runner(model, fam, pilot_n)
    ks = run(params, jax.random.key(2))
    rel_se = np.asarray(ks.se[:, 2:]) / np.abs(exact[:, 2:])
    need = int(math.ceil(n0 * (rel_se.max() / 0.01) ** 2))
    report(f"MC pilot (n={n0}): max relative SE of kappa_3, kappa_4 = {rel_se.max():.3g} "
           f"-> n = {need:.3g} samples for 1%")
    n_run = min(need, max_mc)
    run, n_run = mc_runner(model, fam, n_run)
    mc_first, mc_best = timed(run, params, jax.random.key(3), repeats=1)
    mc_time = mc_best * need / n_run
    ks = run(params, jax.random.key(3))
    z = np.abs(np.asarray(ks.value) - exact) / np.asarray(ks.se)
    how = ("measured" if n_run >= need else
           f"extrapolated linearly from a timed run at n={n_run:.3g} ({mc_best:.2f} s)")
    report(f"MC at 1% on kappa_3, kappa_4: {mc_time:.2f} s ({how}; "
           f"{n_run / mc_best:.3g} samples/s); max |analytic - MC| / SE = {z.max():.2f}")
    report(f"**speed-up at equal accuracy: {mc_time / best:.3g}x** (analytic exact in float64; "
           f"incl. its compile: {mc_time / (first):.3g}x)")

    report("\n### Analytic cost vs width (order 4, one hidden layer)\n")
    report("| width | per call (ms) | first call incl. compile (s) |")
    report("|---:|---:|---:|")
    for width in (16, 32, 64, 128, 256):
        m = build(dict(kind="mlp", symmetry="none", activation="quadratic", width=width,
                       depth=1, sites=SITES, b=2, alpha=0.1, dtype="float64"))
        p = m.init(jax.random.key(0), jnp.zeros(SITES))
        f, b = timed(analytic(m, p), p, state)
        report(f"| {width} | {b * 1e3:.2f} | {f:.1f} |")

    report("\n### Analytic cost vs order (width 64, one hidden layer)\n")
    report("| order K | input orders | per call (ms) | first call incl. compile (s) |")
    report("|---:|---:|---:|---:|")
    for order in (1, 2, 3, 4, 5):
        st = iid_lattice(fam, SITES, 2 * order)
        f, b = timed(analytic(model, params, order), params, st)
        report(f"| {order} | {2 * order} | {b * 1e3:.2f} | {f:.1f} |")

    report("\n### Depth 2 (16 -> 16 -> 16 -> 8, quadratic): second layer by the closure\n")
    m2, p2 = trained_model(width=16, depth=2)
    f, b = timed(analytic(m2, p2), p2, state, repeats=2)
    out2 = np.asarray(analytic(m2, p2)(p2, state))
    run2, n2 = mc_runner(m2, fam, 2 ** 21)
    ks2 = run2(p2, jax.random.key(4))
    z2 = np.abs(np.asarray(ks2.value) - out2) / np.asarray(ks2.se)
    report(f"analytic (label closure): {b:.2f} s per call, first {f:.1f} s; vs MC n={n2}: "
           f"max |analytic - MC| / SE per order = {np.round(z2.max(0), 2).tolist()}")
    approx_errors(report)
    return lines


def _random_biases(params, key, scale=0.5):
    """Biases drawn N(0, scale^2) (fresh inits have zero biases: relu would sit on its kink)."""
    leaves = jax.tree_util.tree_leaves_with_path(params)
    keys = iter(jax.random.split(key, len(leaves)))
    return jax.tree_util.tree_map_with_path(
        lambda path, a: scale * jax.random.normal(next(keys), a.shape, a.dtype)
        if "bias" in jax.tree_util.keystr(path) else a, params)


def _approx_model(kind, act, scale):
    if kind == "mlp":
        m = build(dict(kind="mlp", symmetry="none", activation=act, width=16, depth=1,
                       sites=SITES, b=2, dtype="float64", init_scale=scale))
    else:  # GNN: 16 nodes x 2 features, one message-passing layer, sum pooling
        m = build(dict(kind="gnn", symmetry=kind.split(":")[1], activation=act, width=2,
                       depth=1, sites=SITES, b=2, dtype="float64", init_scale=scale))
    return m, _random_biases(m.init(jax.random.key(0), jnp.zeros(SITES)), jax.random.key(9))


def approx_errors(report, n=2 ** 21, kinds=("mlp", "gnn:separate", "gnn:directional"),
                  activations=("tanh", "relu"), scales=(0.1, 0.3, 1.0),
                  modes=("quadratic", "gaussian_closure", "hermite")):
    """Approximate modes against Monte Carlo as the weights grow, with each mode's stated
    error bound and its time against Monte Carlo's at the same accuracy."""
    report("\n### Approximate modes vs Monte Carlo (16 lattice sites -> 8, uniform inputs)\n")
    report("Error of the output cumulants in standard units, max over output sites of "
           "|analytic - MC| / kappa_2(MC)^(n/2); the mode's own error bound (``errors``) in "
           f"the same units in brackets (MC standard error: n = {n:.3g}).  Biases N(0, 0.5^2); "
           "s = largest pre-activation sd.  MLP: 16 -> 16 -> 8; GNN: 16 nodes x 2 features.  "
           "t_an: analytic per call (compile excluded); t_MC: Monte Carlo time for a standard "
           "error (standard units, worst order) equal to the analytic's worst error.\n")
    report("| model | act. | init | s | mode | kappa_1 | kappa_2 | kappa_3 | kappa_4 | "
           "MC SE (k3, k4) | t_an (ms) | t_MC (s) | MC / an |")
    report("|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    fam = distributions.get("uniform")
    state = iid_lattice(fam, SITES, 2 * ORDER)  # 'hermite' degree 2 and 'quadratic' need 8
    units = np.arange(1, ORDER + 1) / 2
    for kind in kinds:
        for act in activations:
            for scale in scales:
                m, p = _approx_model(kind, act, scale)
                run, n_run = mc_runner(m, fam, n)
                _, mc_time = timed(run, p, jax.random.key(5), repeats=1)
                ks = run(p, jax.random.key(5))
                value, se = np.asarray(ks.value), np.asarray(ks.se)
                if np.any(value[:, 1] <= 0):  # relu with every unit dead: constant output
                    report(f"| {kind} | {act} | {scale} | | all | constant output (MC "
                           "kappa_2 = 0): no standard units |||||||")
                    continue
                unit = value[:, 1:2] ** units
                pre = propagate(m, p, state, order=2, mode="gaussian_closure").states[1]
                s = float(np.sqrt(np.asarray(marginals(pre, 2))[:, 1]).max())
                for name in modes:  # 'hermite3': mode 'hermite' with degree 3
                    mode, degree = (name[:7], int(name[7:] or 2)) if name.startswith(
                        "hermite") else (name, 2)
                    st_in = iid_lattice(fam, SITES, degree * ORDER)
                    fn = jax.jit(lambda p, st, mode=mode, degree=degree: (lambda o: (
                        marginals(o.output, ORDER), o.errors[-1]))(
                        propagate(m, p, st, order=ORDER, mode=mode, every_layer=False,
                                  degree=degree)))
                    try:
                        _, t_an = timed(fn, p, st_in)
                    except ValueError as e:
                        report(f"| {kind} | {act} | {scale} | {s:.2f} | {name} | refused: "
                               f"{str(e).split(',')[0]} |||||||")
                        continue
                    got, bound = (np.asarray(a) for a in fn(p, st_in))
                    if not np.all(np.isfinite(got)):  # traced: a kink refusal comes as NaN
                        report(f"| {kind} | {act} | {scale} | {s:.2f} | {name} | refused "
                               "(NaN: a unit within 6 spreads of the kink) |||||||")
                        continue
                    err = (np.abs(got - value) / unit).max(0)
                    stated = (bound / unit).max(0)
                    noise = (se / unit).max(0)
                    # MC's SE falls as n^-1/2: samples for a worst SE equal to the worst error
                    t_mc = mc_time * (noise.max() / max(err.max(), 1e-12)) ** 2
                    cells = " | ".join(f"{e:.2g} ({b:.2g})" for e, b in zip(err, stated))
                    report(f"| {kind} | {act} | {scale} | {s:.2f} | {name} | {cells} | "
                           f"{noise[2]:.1g}, {noise[3]:.1g} | {t_an * 1e3:.2f} | {t_mc:.3g} | "
                           f"{t_mc / t_an:.3g}x |")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--max_mc", type=int, default=30_000_000)
    ap.add_argument("--only_approx", action="store_true")
    # network kinds (mlp, gnn:<symmetry>); --families is the name RESULTS.md's older runs used
    ap.add_argument("--kinds", "--families", dest="kinds",
                    default="mlp,gnn:separate,gnn:directional")
    ap.add_argument("--activations", default="tanh,relu")
    ap.add_argument("--scales", default="0.1,0.3,1.0")
    ap.add_argument("--modes", default="quadratic,gaussian_closure,hermite,hermite3")
    args = ap.parse_args()
    if args.only_approx:
        approx_errors(print, kinds=args.kinds.split(","),
                      activations=args.activations.split(","),
                      scales=[float(x) for x in args.scales.split(",")],
                      modes=args.modes.split(","))
    else:
        main(args.max_mc)
