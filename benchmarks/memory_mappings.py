"""Memory mappings a compiled program holds: cumulant propagation's programs, one call each.

    python benchmarks/memory_mappings.py

Every XLA:CPU kernel keeps its code in mappings of its own for as long as JAX keeps the
program; past Linux's vm.max_map_count a process dies inside XLA (rgsym.compile_cache.
release_if_crowded).  Quadratic MLP of width 16 over 8 sites, exponential inputs, float64,
persistent cache off, one process; each row is the mappings a first call added.  Linux only.
Not a test: nothing here asserts.
"""
import time

import jax
import jax.numpy as jnp

from rgsym import cli, compile_cache, config, distributions
from rgsym.cumulants import propagate
from rgsym.models import build

# (depth, order, internal_order): the closure at depth 1 and 2, exact depth 2 at order 3, 4
CASES = ((1, 4, None), (2, 4, None), (2, 3, 6), (2, 4, 8))


def main(argv):
    del argv
    jax.config.update("jax_enable_x64", True)
    compile_cache.enable("")
    held, limit = compile_cache.memory_mappings()
    print(f"jax {jax.__version__}; vm.max_map_count {limit:,}; mappings at start {held:,}")
    print(f"{'depth':>5} {'order':>5} {'internal_order':>14} {'first call s':>12} "
          f"{'mappings added':>15}")
    for depth, order, internal in CASES:
        c = config.base_config()
        c.lattice.sites = 8
        c.model.update(dict(kind="mlp", symmetry="none", activation="quadratic", width=16,
                            depth=depth))
        model = build(config.resolve(c).model)
        params = model.init(jax.random.key(0), jnp.zeros((1, 8)))
        before, t = compile_cache.memory_mappings()[0], time.perf_counter()
        jax.block_until_ready(propagate(model, params, distributions.get("exponential"),
                                        order=order, internal_order=internal).states)
        print(f"{depth:>5} {order:>5} {str(internal):>14} {time.perf_counter() - t:>12.1f} "
              f"{compile_cache.memory_mappings()[0] - before:>15,}", flush=True)


if __name__ == "__main__":
    cli.run(main)
