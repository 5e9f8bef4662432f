"""The block-sum renormalisation-group map and its exact cumulant theory.

One RG step groups a lattice into blocks of ``b`` sites per axis (``B = b**dim`` sites per
block) and replaces each block by its rescaled sum ``B**-0.5 * sum(x_i)``.  For i.i.d.
sites the cumulants obey ``kappa_n' = B**(1 - n/2) * kappa_n``: the mean is relevant, the
variance marginal and every higher order irrelevant, so the Gaussian is the fixed point.
"""
from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from rgsym import validation

__all__ = [
    "validate_b",
    "validate_dim",
    "validate_lattice",
    "block_map",
    "flow",
    "rg_matrix",
    "cumulant_recursion",
    "scaling_eigenvalues",
    "classify_orders",
    "gaussian_fixed_point",
]


def validate_b(b: int) -> int:
    """The block size ``b`` as an int.

    Args:
      b: sites per block along each axis.

    Returns:
      ``int(b)``.

    Raises:
      ValueError: ``b`` is not an integer >= 2.
    """
    return validation.integer("b", b, 2)


def validate_dim(dim: int) -> int:
    """The lattice dimension ``dim`` as an int.

    Args:
      dim: 1 or 2.

    Returns:
      ``int(dim)``.

    Raises:
      ValueError: ``dim`` is not 1 (chain) or 2 (square lattice).
    """
    if isinstance(dim, bool) or dim not in (1, 2):
        raise ValueError(f"dim={dim!r} is not supported: dim must be 1 (chain) or 2 (square lattice)")
    return int(dim)


def validate_lattice(shape: Sequence[int], b: int, dim: int, name: str = "x") -> tuple[int, ...]:
    """Checks that the last ``dim`` axes of ``shape`` form a lattice divisible by ``b``.

    Args:
      shape: an array shape [..., N] (dim=1) or [..., L1, L2] (dim=2).
      b: block size per axis; dim: 1 or 2; name: the array's name in error messages.

    Returns:
      The lattice sides ``shape[-dim:]`` as ints.

    Raises:
      ValueError: fewer than ``dim`` axes, or a side that is not a positive multiple of b.
    """
    b, dim = validate_b(b), validate_dim(dim)
    shape = tuple(int(s) for s in shape)
    if len(shape) < dim:
        raise ValueError(
            f"{name} has shape {shape}: a dim={dim} lattice needs at least {dim} trailing axes "
            f"({'[..., N]' if dim == 1 else '[..., L, L]'})")
    sites = shape[len(shape) - dim:]
    for s in sites:
        if s < b or s % b:
            raise ValueError(
                f"{name} has lattice shape {sites}: every lattice side must be a positive "
                f"multiple of b={b}")
    return sites


def block_map(x: jax.typing.ArrayLike, b: int, dim: int = 1) -> jax.Array:
    """One RG step: each block of ``B = b**dim`` sites -> ``B**-0.5 * sum(block)``.

    Any leading batch axes; jit- and vmap-able (``b`` and ``dim`` are static).

    Args:
      x: [..., N] (dim=1) or [..., L1, L2] (dim=2) floating lattice values.
      b: block size per axis (>= 2); dim: 1 or 2.

    Returns:
      [..., N/b] or [..., L1/b, L2/b], in x's dtype.

    Raises:
      ValueError: a non-floating ``x`` or a lattice side not divisible by ``b``.
    """
    b, dim = validate_b(b), validate_dim(dim)
    x = validation.float_array("x", x)
    validate_lattice(x.shape, b, dim)
    lead = x.shape[: x.ndim - dim]
    if dim == 1:
        n = x.shape[-1]
        return x.reshape(*lead, n // b, b).sum(-1) / np.sqrt(b).astype(x.dtype)
    l1, l2 = x.shape[-2:]
    return x.reshape(*lead, l1 // b, b, l2 // b, b).sum((-3, -1)) / jnp.asarray(b, x.dtype)


def flow(x: jax.typing.ArrayLike, b: int, steps: int, dim: int = 1) -> list[jax.Array]:
    """Iterates :func:`block_map`; returns ``[x, RG(x), ..., RG^steps(x)]`` (shapes shrink).

    Args:
      x: [..., N] or [..., L1, L2]; b, dim: as :func:`block_map`; steps: >= 0.

    Returns:
      ``steps + 1`` arrays, the k-th [..., N / b**k] (each side / b**k for dim=2).

    Raises:
      ValueError: as :func:`block_map`, or a side not divisible by ``b**steps``.
    """
    validation.integer("steps", steps, 0)
    b, dim = validate_b(b), validate_dim(dim)
    x = validation.float_array("x", x)
    sites = validate_lattice(x.shape, b, dim)
    need = b ** steps
    if any(s % need for s in sites):
        raise ValueError(
            f"x has lattice shape {sites}: {steps} steps with b={b} need every side to be a "
            f"multiple of b**steps={need}")
    out = [x]
    for _ in range(steps):
        out.append(block_map(out[-1], b, dim))
    return out


def rg_matrix(lattice_shape: Sequence[int], b: int, dim: int, steps: int = 1,
              dtype=None) -> jax.Array:
    """The flattened block-sum map RG^steps as a matrix (row-major sites).

    Args:
      lattice_shape: (N,) or (L1, L2); b, dim, steps: as :func:`flow`.
      dtype: a floating dtype (default: JAX's default float, float64 under x64).

    Returns:
      [N / B**steps, N] with N = prod(lattice_shape), B = b**dim.

    Raises:
      ValueError: as :func:`flow`; float64 without x64 (rather than float32 silently).
    """
    dtype = validation.float_dtype("dtype", jnp.result_type(float) if dtype is None else dtype)
    n = int(np.prod(lattice_shape))
    basis = jnp.eye(n, dtype=dtype).reshape((n,) + tuple(lattice_shape))
    return flow(basis, b, steps, dim)[-1].reshape(n, -1).T


def scaling_eigenvalues(order: int, b: int, dim: int = 1) -> np.ndarray:
    """``[B**(1 - n/2) for n in 1..order]``: the RG eigenvalue of each cumulant order.

    Args:
      order: highest cumulant order (>= 1); b, dim: block size and dimension, B = b**dim.

    Returns:
      [order] float64 numpy.

    Raises:
      ValueError: order < 1, or a bad ``b`` / ``dim``.
    """
    _check_order(order)
    b, dim = validate_b(b), validate_dim(dim)
    n = np.arange(1, order + 1, dtype=np.float64)
    return float(b ** dim) ** (1.0 - n / 2.0)


def classify_orders(order: int) -> list[str]:
    """'relevant' (n=1), 'marginal' (n=2) or 'irrelevant' (n>=3) for each order 1..order.

    Args:
      order: highest cumulant order (>= 1).

    Returns:
      ``order`` strings.

    Raises:
      ValueError: order < 1.
    """
    _check_order(order)
    return ["relevant" if n == 1 else "marginal" if n == 2 else "irrelevant"
            for n in range(1, order + 1)]


def cumulant_recursion(kappas: jax.typing.ArrayLike, b: int, steps: jax.typing.ArrayLike = 1,
                       dim: int = 1) -> jax.Array:
    """Exact cumulants after ``steps`` RG steps for i.i.d. sites.

    ``kappa_n' = B**(1 - n/2) * kappa_n`` per step, B = b**dim: cumulants add over the B
    independent sites of a block and the sum is scaled by ``B**-0.5`` (kappa_n is
    homogeneous of degree n).  jit- and vmap-able.

    Args:
      kappas: [..., K] floating, kappa_1..kappa_K of one site.
      b: block size per axis; dim: 1 or 2.
      steps: integer(s) >= 0: a scalar (possibly traced) or an array broadcasting against
        ``kappas[..., 0]``.

    Returns:
      [..., K]: ``kappa_n * B**(steps * (1 - n/2))``, in kappas' dtype.

    Raises:
      ValueError: kappas of shape () or [..., 0], or concrete steps that are not integers
        >= 0.

    Example:
      >>> import numpy as np
      >>> from rgsym import clt
      >>> k = np.array([0.0, 1.0, 0.0, -1.2])       # standardised uniform
      >>> print(np.asarray(clt.cumulant_recursion(k, b=2, steps=2)).round(4))  # kappa_4 / B**2
      [ 0.   1.   0.  -0.3]
    """
    b, dim = validate_b(b), validate_dim(dim)
    kappas = validation.float_array("kappas", kappas)
    if kappas.ndim == 0 or kappas.shape[-1] < 1:
        raise ValueError(f"kappas has shape {kappas.shape}: expected [..., K] with K >= 1")
    if not isinstance(steps, jax.core.Tracer):  # concrete steps (scalars or arrays) checked
        s = np.asarray(steps)
        if s.dtype == bool or not np.issubdtype(s.dtype, np.number) or np.any(s < 0) or np.any(
                s != np.floor(s)):
            raise ValueError(f"steps={steps!r} is not valid: steps must be integers >= 0")
    n = jnp.arange(1, kappas.shape[-1] + 1, dtype=kappas.dtype)
    steps = jnp.asarray(steps, kappas.dtype)[..., None]
    log_b = jnp.log(jnp.asarray(float(b ** dim), kappas.dtype))
    return kappas * jnp.exp(steps * (1.0 - n / 2.0) * log_b)


def gaussian_fixed_point(variance: float, order: int = 4) -> np.ndarray:
    """Cumulants ``[0, variance, 0, ...]`` of the centred Gaussian fixed point.

    Args:
      variance: > 0; order: number of cumulants (>= 1).

    Returns:
      [order] float64 numpy.

    Raises:
      ValueError: variance <= 0 or order < 1.
    """
    _check_order(order)
    variance = validation.real("variance", variance, positive=True)
    out = np.zeros(order)
    if order >= 2:
        out[1] = variance
    return out


def _check_order(order) -> None:
    validation.integer("order", order, 1)
