"""Test-wide JAX settings: float64 available (code passes explicit dtypes), pinned RNG stream."""
import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)
# The RNG stream changed with this flag's default in JAX 0.5: pin it for reproducible keys.
jax.config.update("jax_threefry_partitionable", True)
