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
#: than this (a sixth of Linux's default vm.max_map_count).
RELEASE_AT_MAPPINGS = 10_000


@pytest.fixture(autouse=True)
def _release_compiled_programs():
    """Drops every compiled program (and its code mappings) after a test that leaves too many
    mappings; a program needed again is read back from the persistent cache."""
    yield
    # growth: half the threshold since the last release (the default, an eighth of the
    # kernel's limit, would let a worker sit near 10,000 + 8,191 before releasing)
    compile_cache.release_if_crowded(RELEASE_AT_MAPPINGS, min_growth=RELEASE_AT_MAPPINGS // 2)


def pytest_addoption(parser):
    parser.addoption("--regen-golden", action="store_true", default=False,
                     help="rewrite tests/golden/*.json from the current code (test_golden.py)")
