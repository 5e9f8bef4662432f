"""Test-wide JAX settings: float64 available (code passes explicit dtypes), pinned RNG stream,
and the persistent compilation cache (RGSYM_TEST_COMPILE_CACHE: a directory, or '' to turn
it off; default a tests-only directory beside the user's cache, so a rerun of the suite skips
most compilation).  The tests' in-process programs (8 host devices, x64) are kept apart from
the cache the scripts they launch write: with one shared directory, a warm rerun of the suite
crashed in JAX's cache read (a segfault deserialising an executable in an xdist worker,
reproduced three times in a row; a fresh directory passed)."""
import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)
# The RNG stream changed with this flag's default in JAX 0.5: pin it for reproducible keys.
jax.config.update("jax_threefry_partitionable", True)

from rgsym import compile_cache  # noqa: E402

compile_cache.enable(os.environ.get("RGSYM_TEST_COMPILE_CACHE",
                                    compile_cache.default_dir() + "-tests"))


def pytest_addoption(parser):
    parser.addoption("--regen-golden", action="store_true", default=False,
                     help="rewrite tests/golden/*.json from the current code (test_golden.py)")
