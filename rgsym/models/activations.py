"""Elementwise activations, with the polynomial ones exposed as coefficients.

The polynomial activations (identity, quadratic, square, cubic) are what the analytic
cumulant propagation treats exactly, so their ascending coefficients are part of the API.
``alpha`` may be a traced scalar (it is vmapped over in sweeps).
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from rgsym import validation

__all__ = ["ACTIVATIONS", "ODD_ACTIVATIONS", "KINKS", "activation_fn", "polynomial_coefficients",
           "validate_activation"]

ACTIVATIONS: tuple[str, ...] = ("identity", "quadratic", "square", "cubic", "tanh", "relu",
                                "gelu", "silu", "sigmoid", "softplus")
# phi(-z) = -phi(z) for every alpha: with zero biases these make any plain MLP odd.
ODD_ACTIVATIONS: tuple[str, ...] = ("identity", "cubic", "tanh")
# Where each non-smooth activation has no second derivative: local expansions fail there.
KINKS: dict[str, tuple[float, ...]] = {"relu": (0.0,)}


def validate_activation(name) -> str:
    return validation.choice("activation", name, ACTIVATIONS)


def polynomial_coefficients(name: str, alpha: jax.typing.ArrayLike = 0.1) -> tuple | None:
    """Ascending coefficients ``(c0, c1, ...)`` of a polynomial activation, else ``None``.

    identity: z -> (0, 1); quadratic: z + alpha z^2 -> (0, 1, alpha); square: z^2 ->
    (0, 0, 1); cubic: z + alpha z^3 -> (0, 1, 0, alpha).

    Args:
      name: one of ACTIVATIONS; alpha: the activation parameter (may be traced).

    Returns:
      The coefficients, or None for a non-polynomial activation.

    Raises:
      ValueError: an unknown name.
    """
    validate_activation(name)
    return {"identity": (0.0, 1.0),
            "quadratic": (0.0, 1.0, alpha),
            "square": (0.0, 0.0, 1.0),
            "cubic": (0.0, 1.0, 0.0, alpha)}.get(name)


def activation_fn(name: str, alpha: jax.typing.ArrayLike = 0.1
                  ) -> Callable[[jax.Array], jax.Array]:
    """The elementwise function ``phi`` named ``name``.

    Args:
      name: one of ACTIVATIONS; alpha: the parameter of quadratic / cubic (may be traced).

    Returns:
      ``phi``: any shape in, the same shape out.

    Raises:
      ValueError: an unknown name.
    """
    validate_activation(name)
    coeffs = polynomial_coefficients(name, alpha)
    if coeffs is not None:
        # Horner form (zero coefficients are multiplied through, not skipped); identity and
        # square bypass it below so they stay exact rewrites.
        def poly(z):
            out = jnp.zeros_like(z) + coeffs[-1]
            for c in coeffs[-2::-1]:
                out = out * z + c
            return out
        return {"identity": lambda z: z, "square": jnp.square}.get(name, poly)
    return {"tanh": jnp.tanh, "relu": jax.nn.relu, "gelu": jax.nn.gelu, "silu": jax.nn.silu,
            "sigmoid": jax.nn.sigmoid, "softplus": jax.nn.softplus}[name]
