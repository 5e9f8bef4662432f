"""In-graph training data: pairs (x, RG^k(x)) sampled from a base family on a lattice."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from rgsym import clt, validation
from rgsym.distributions import Distribution

__all__ = ["lattice_shape", "sample_pairs", "epoch_rows"]


def lattice_shape(sites: int, dim: int) -> tuple[int, ...]:
    """``(sites,)`` for a chain, ``(sites, sites)`` for a square lattice.

    Args:
      sites: sites per side (>= 1); dim: 1 or 2.

    Returns:
      The lattice shape, (N,) or (L, L).

    Raises:
      ValueError: sites < 1 or dim not 1 or 2.
    """
    dim = clt.validate_dim(dim)
    return (validation.integer("sites", sites, 1),) * dim


def sample_pairs(key: jax.Array, dist: Distribution, batch: int, sites: int, b: int,
                 dim: int = 1, steps: int = 1,
                 dtype=jax.numpy.float32) -> tuple[jax.Array, jax.Array]:
    """A batch of inputs and RG targets; consumes ``key``.

    Pure and jit/vmap-able: use it inside a scanned training step.

    Args:
      key: PRNG key (consumed); dist: the site law; batch: B lattices.
      sites: sites per side; b: block size; dim: 1 or 2; steps: RG steps of the target.
      dtype: a floating dtype the law can be sampled in.

    Returns:
      ``(x, y)``: x [B, N] (or [B, L, L]) of i.i.d. sites from ``dist`` and
      ``y = RG^steps(x)`` [B, N/b**steps] (or [B, L/b**steps, L/b**steps]).

    Raises:
      ValueError: batch < 1, a lattice not divisible by b**steps, or a dtype the law
        cannot be sampled in (``Distribution.sample``).
    """
    validation.integer("batch", batch, 1)
    shape = lattice_shape(sites, dim)
    # Threefry is pinned to its non-partitionable form: one hash per two 32-bit words,
    # where the partitionable form (JAX's default since 0.5) hashes once per word and
    # XORs the halves.  A float32 batch costs half the hashing (float64 uses both words
    # either way); sampling was a quarter of a vmapped training step on a 2-core CPU
    # (benchmarks/RESULTS.md).  No batch is sharded (seeds are the sharded axis), so
    # nothing is lost, and the training stream no longer depends on the global flag.
    with jax.threefry_partitionable(False):
        x = dist.sample(key, (int(batch),) + shape, dtype)
    return x, clt.flow(x, b, steps, dim)[-1]


def epoch_rows(key: jax.Array, n: int, batch: int, start: jax.typing.ArrayLike,
               count: int) -> jax.Array:
    """Row indices into a training set of ``n`` rows for the steps ``start`` ..
    ``start + count - 1``; pure and jit/vmap-able (``start`` may be traced).

    Epoch ``e`` shuffles the set (a permutation of the key ``fold_in(key, e)``) and cuts it
    into ``n // batch`` batches, one per step; the ``n % batch`` rows left over sit out that
    epoch.  So the rows of a batch are distinct, and every row is seen at most once an epoch.

    Args:
      key: the seed's data key (not consumed: folded in per epoch).
      n: rows in the set; batch: rows per step (<= n); start: the first step (int scalar);
      count: steps wanted.

    Returns:
      [count, batch] int row indices.

    Raises:
      ValueError: n, batch or count < 1, or batch > n.
    """
    n, batch, count = (validation.integer(k, v, 1) for k, v in
                       (("n", n), ("batch", batch), ("count", count)))
    if batch > n:
        raise ValueError(f"batch={batch} is not valid: it must be <= n={n}")
    per_epoch = n // batch
    first = start // per_epoch
    # count consecutive steps touch at most this many epochs: only their permutations are
    # made (a permutation per step, as jax.random.choice(replace=False) does, sorts all n
    # rows every step).
    epochs = min(count, (count - 1) // per_epoch + 2)

    def permutation(e):
        with jax.threefry_partitionable(False):  # the sampler's stream, whatever the flag
            return jax.random.permutation(jax.random.fold_in(key, e), n)

    perms = jax.vmap(permutation)(first + jnp.arange(epochs))
    batches = perms[:, : per_epoch * batch].reshape(epochs, per_epoch, batch)
    t = start + jnp.arange(count)
    return batches[t // per_epoch - first, t % per_epoch]
