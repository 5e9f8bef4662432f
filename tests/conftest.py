"""Test-wide JAX settings: float64 available (code passes explicit dtypes), pinned RNG stream,
the persistent compilation cache (RGSYM_TEST_COMPILE_CACHE: a directory, or '' to turn it
off; default a tests-only directory beside the user's cache, so a rerun of the suite skips
most compilation and its x64, 8-device programs stay out of the user's), and compiled
programs released before their code mappings pile up.

Why the release: every compiled XLA:CPU program keeps its machine code in memory mappings
until JAX drops it, and JAX's jit caches keep every program a process ever compiled.  An
xdist worker running half the suite reached 62,000 mappings against Linux's default
vm.max_map_count of 65,530; past it, mmap fails inside XLA and the worker dies (seen as a
segfault or an abort while compiling, serialising or deserialising a program, in whichever
test came next).  Released whenever a test leaves more than RELEASE_AT_MAPPINGS (and half
that more than after the last release), a worker's mappings stay far from the limit."""
import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_enable_x64", True)
# The RNG stream changed with this flag's default in JAX 0.5: pin it for reproducible keys.
jax.config.update("jax_threefry_partitionable", True)

from rgsym import compile_cache  # noqa: E402

compile_cache.enable(os.environ.get("RGSYM_TEST_COMPILE_CACHE",
                                    compile_cache.default_dir() + "-tests"))

#: Compiled programs are released once a test leaves the process with more memory mappings
#: than this: 3/8 of the kernel's vm.max_map_count (24,573 of Linux's default 65,530, assumed
#: where the limit cannot be read and nothing is released anyway).  The largest test adds
#: about 13,000 (the depth-2 exact propagation), so a worker stays under about 5/8 of the
#: limit.  A release also drops every traced program, which the worker's later tests trace
#: again: at 10,000 the two workers released 11 times per suite, and the propagation-heavy
#: test files spent 11-13% more CPU time (about 5% for the whole suite; at 25,000, 3
#: releases; benchmarks/RESULTS.md, eighth session).
RELEASE_AT_MAPPINGS = (compile_cache.memory_mappings() or (0, 65_530))[1] * 3 // 8


@pytest.fixture(autouse=True)
def _release_compiled_programs():
    """Drops every compiled program (and its code mappings) after a test that leaves too many
    mappings; a program needed again is read back from the persistent cache."""
    yield
    # growth: half the threshold since the last release (mappings that clearing cannot give
    # back must not make every later test release again)
    compile_cache.release_if_crowded(RELEASE_AT_MAPPINGS, min_growth=RELEASE_AT_MAPPINGS // 2)


def pytest_addoption(parser):
    parser.addoption("--regen-golden", action="store_true", default=False,
                     help="rewrite tests/golden/*.json from the current code (test_golden.py)")
