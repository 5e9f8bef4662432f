"""Base families of the lattice variables: jit/vmap-able samplers and EXACT cumulants.

Every family is a :class:`Distribution` holding a sampler ``sample(key, shape, dtype)`` and
closed-form cumulants to any order.  Where only the moments have a closed form, they are
converted to cumulants in exact rational arithmetic (``fractions.Fraction``), so the result is
the exact cumulant of the float-parametrised family, rounded once.

    >>> import jax
    >>> d = get("exponential", rate=2.0)
    >>> d.cumulants(4)            # (n-1)! / rate**n
    array([0.5  , 0.25 , 0.25 , 0.375])
    >>> d.sample(jax.random.key(0), (1024, 16)).shape   # consumes the key
    (1024, 16)

A cumulant that does not exist (Student-t with n >= df) raises; it is never returned as
inf or nan.

Accepted domains.  Every family checks its parameters when it is built, and refuses with a
ValueError that names them:

=================  ==========================================  =============================
family             parameters (as accepted by ``get``)         notes
=================  ==========================================  =============================
gaussian           loc real, scale > 0
uniform            low < high
exponential        rate > 0
gamma              shape > 0, rate > 0
laplace            loc real, scale > 0
rademacher         (none)                                      +-1 spins
bernoulli          0 <= p <= 1                                 p in {0, 1} is a constant:
                                                               ``standardised`` refuses it
beta               a > 0, b > 0
student_t          df > 0                                      kappa_n exists for n < df
gaussian_mixture   0 <= weight <= 1, locs real, scales > 0
poisson            rate > 0                                    sampled up to
                                                               ``POISSON_MAX_SAMPLED_RATE``
lognormal          sigma > 0                                   up to where kappa_8 overflows
=================  ==========================================  =============================

On top of these, one rule for every family (including hand-built and derived ones): the
cumulants up to order ``RANGE_ORDER`` = 8 must be finite float64 numbers and the spread
sqrt(kappa_2) must lie in ``SPREAD_RANGE`` = [tiny**(1/8), max**(1/8)] of float64, so
that kappa_1..kappa_8 neither overflow nor underflow (a variance that underflows to 0
would otherwise come back as an exact-looking zero).

Sampling (``Distribution.sample``, :func:`check_sampling_dtype`) refuses, before anything
is traced: a non-floating dtype; float64 while ``jax_enable_x64`` is off (JAX would return
float32); parameters outside ``[2**8 tiny, max / 2**8]`` of the sampling dtype (the sampler
computes with them); laws whose samples would overflow it (``|kappa_1| + 2**8 spread``
above its largest value); and laws whose spread is below ``MEAN_MARGIN`` = 2**12 times
the dtype's resolution at their mean, where rounding would change their cumulants.  In
float32 that last rule means ``|mean| / spread <= 2**11`` (e.g. N(1e4, 1) must be sampled
in float64).  Half-precision dtypes are refused.  Bernoulli (and the mixture's component
choice) are drawn exactly to 2**-64 in every dtype.
"""
from __future__ import annotations

import dataclasses
import math
from fractions import Fraction
from typing import Callable, Protocol, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from rgsym import validation

__all__ = [
    "Distribution",
    "Sampler",
    "get",
    "names",
    "register",
    "finite_order_names",
    "moments_to_cumulants",
    "cumulants_to_moments",
    "CumulantDoesNotExist",
]


class CumulantDoesNotExist(ValueError):
    """Raised when a requested cumulant order diverges for the family."""


class Sampler(Protocol):
    def __call__(self, key: jax.Array, shape: tuple[int, ...], dtype) -> jax.Array:
        """Draws i.i.d. samples of ``shape``; consumes ``key``."""


class _Origin:
    """What made a Distribution: ``tag`` (the registered factory and how the law was derived
    from it) decides equality; the sampler and cumulant function it was made with are kept
    so that replacing either (``dataclasses.replace``) is noticed and breaks the equality."""
    __slots__ = ("tag", "sampler", "cumulant_fn")

    def __init__(self, tag, sampler, cumulant_fn):
        self.tag, self.sampler, self.cumulant_fn = tag, sampler, cumulant_fn

    def __eq__(self, other):
        return isinstance(other, _Origin) and self.tag == other.tag

    def __hash__(self):
        return hash(self.tag)


@dataclasses.dataclass(frozen=True)
class Distribution:
    """A base family with fixed parameters.

    Attributes:
      name: registry name (``'uniform'``) or a derived name (``'uniform[standardised]'``).
      params: the parameters as a sorted tuple of ``(name, value)``.
      sampler: ``(key, shape, dtype) -> array``; pure, jit- and vmap-able.
      cumulant_fn: ``n -> [kappa_1..kappa_n]`` (float64 numpy); called only with
        ``n <= max_order``.
      max_order: highest order whose cumulant exists (``math.inf`` for all orders).
      discrete: whether samples take discrete values.
      degenerate: whether the law is a constant (variance 0, e.g. Bernoulli with p = 0).
      origin: what made the law (the registered factory, or the sampler and cumulant
        function of a hand-built one): part of equality, so caches keyed by a Distribution
        (compiled samplers, evaluation data) never serve a law registered under the same
        name and parameters after ``register(..., overwrite=True)``.
      sample_check: ``dtype -> None``, raising a ValueError that names the parameter when the
        family's own sampler cannot serve these parameters in ``dtype`` (e.g. large Poisson
        rates); the range check of :func:`check_sampling_dtype` applies to every family.
    """

    name: str
    params: tuple[tuple[str, float], ...]
    sampler: Callable = dataclasses.field(repr=False, compare=False)
    cumulant_fn: Callable[[int], np.ndarray] = dataclasses.field(repr=False, compare=False)
    max_order: float = math.inf
    discrete: bool = False
    degenerate: bool = False
    sample_check: Callable | None = dataclasses.field(default=None, repr=False, compare=False)
    origin: object = dataclasses.field(default=None, repr=False)

    def __post_init__(self):
        origin = self.origin
        if isinstance(origin, _Origin):
            if origin.sampler is not self.sampler or origin.cumulant_fn is not self.cumulant_fn:
                origin = None  # sampler or cumulants replaced: no longer what made it
        if not isinstance(origin, _Origin):
            # a tag passed in (get() passes the factory), else built by hand: equal only to
            # its copies
            tag = (self.sampler, self.cumulant_fn) if origin is None else origin
            object.__setattr__(self, "origin", _Origin(tag, self.sampler, self.cumulant_fn))
        _check_float64_range(self)

    def _derived(self, name: str, params, tag, sampler, cumulant_fn) -> "Distribution":
        """A law computed from this one, equal to every other derived the same way."""
        return dataclasses.replace(self, name=name, params=params, sampler=sampler,
                                   cumulant_fn=cumulant_fn,
                                   origin=_Origin((self.origin, tag), sampler, cumulant_fn))

    def sample(self, key: jax.Array, shape: Sequence[int], dtype=jnp.float32) -> jax.Array:
        """i.i.d. samples of ``shape`` in ``dtype``; consumes ``key``.

        Args:
          key: a PRNG key; shape: e.g. [B, N]; dtype: a floating dtype.

        Returns:
          ``shape`` array of ``dtype``.

        Raises:
          ValueError: before anything is traced, when ``dtype`` is not a floating type, is
            float64 while ``jax_enable_x64`` is off (JAX would silently return float32), or
            cannot hold this law's samples faithfully (see :func:`check_sampling_dtype`);
            a ``shape`` that is not a tuple of integers >= 0.
        """
        dtype = check_sampling_dtype(self, dtype)
        if not isinstance(shape, (tuple, list)):
            raise ValueError(f"shape={shape!r} is not valid: it must be a tuple of integers")
        shape = tuple(validation.integer("shape entry", s, 0) for s in shape)
        return self.sampler(key, shape, dtype)

    def cumulants(self, n: int) -> np.ndarray:
        """Exact ``[kappa_1, ..., kappa_n]`` as float64.

        Closed forms per family (each factory below); where only the moments have
        one, :func:`moments_to_cumulants` in exact rational arithmetic, rounded once.

        Args:
          n: highest order (>= 1).

        Returns:
          [n] float64 numpy.

        Raises:
          CumulantDoesNotExist: n > ``max_order`` (the moments diverge).
          ValueError: n < 1, or a cumulant leaves the float64 range.

        Example:
          >>> from rgsym import distributions
          >>> distributions.get("uniform", standardised=True).cumulants(4).round(6).tolist()
          [0.0, 1.0, 0.0, -1.2]
          >>> distributions.get("student_t", df=5.0).cumulants(6)
          Traceback (most recent call last):
          ...
          rgsym.distributions.CumulantDoesNotExist: cumulant kappa_6 of ...
        """
        _check_order(n, "n")
        if n > self.max_order:
            raise CumulantDoesNotExist(
                f"cumulant kappa_{n} of {self} does not exist (moments diverge); valid orders "
                f"are n <= {int(self.max_order)}")
        try:
            out = np.asarray(self.cumulant_fn(n), dtype=np.float64)
        except (OverflowError, ZeroDivisionError) as e:  # Python floats raise, never inf
            raise ValueError(f"{self}: kappa_1..kappa_{n} leave the float64 range ({e}); "
                             "choose parameters with a smaller or larger spread") from None
        assert out.shape == (n,), out.shape
        if not np.all(np.isfinite(out)):
            bad = int(np.argmin(np.isfinite(out))) + 1
            raise ValueError(f"{self}: kappa_{bad} overflows float64; choose parameters with a "
                             "smaller spread or ask for fewer orders")
        return out

    def moments(self, n: int) -> np.ndarray:
        """Exact raw moments ``[E x, ..., E x**n]``.

        Args:
          n: highest order (>= 1).

        Returns:
          [n] float64 numpy.

        Raises:
          CumulantDoesNotExist: n > ``max_order``.
          ValueError: a moment overflows float64.
        """
        with np.errstate(over="ignore", invalid="ignore"):
            out = np.asarray(cumulants_to_moments(self.cumulants(n)), dtype=np.float64)
        if not np.all(np.isfinite(out)):
            raise ValueError(f"{self}: the raw moment of order {int(np.argmin(np.isfinite(out))) + 1}"
                             " overflows float64; use cumulants, or centre the law")
        return out

    @property
    def mean(self) -> float:
        return float(self.cumulants(1)[0])

    @property
    def variance(self) -> float:
        return float(self.cumulants(2)[1])

    def affine(self, scale: float, shift: float = 0.0) -> "Distribution":
        """The family of ``scale * x + shift``.

        Args:
          scale: finite, non-zero (negative flips the law); shift: finite.

        Returns:
          A new Distribution, named ``<name>[affine]``, with exact cumulants and sampler.

        Raises:
          ValueError: ``scale`` zero or not finite, or ``shift`` not finite.
        """
        scale = validation.real("scale", scale)
        shift = validation.real("shift", shift)
        if scale == 0:
            raise ValueError("scale=0.0 is not valid: it must be non-zero (finite)")
        return self._transformed(0.0, scale, shift, f"{self.name}[affine]",
                                 self.params + (("affine_scale", scale), ("affine_shift", shift)))

    def standardised(self) -> "Distribution":
        """The family rescaled to mean 0 and variance 1, ``(x - mean) / sd``: centred
        before it is scaled, so kappa_1 is exactly 0.

        Returns:
          A new Distribution, named ``<name>[standardised]``.

        Raises:
          CumulantDoesNotExist: the law has no finite variance.
          ValueError: a constant law (variance 0).
        """
        if self.max_order < 2:
            raise CumulantDoesNotExist(f"{self} has no finite variance and cannot be standardised")
        mu, var = self.cumulants(2)
        if self.degenerate or var <= 0:
            raise ValueError(f"{self} has variance 0 (a constant): a zero-variance law cannot "
                             "be standardised; choose parameters with a positive variance")
        return self._transformed(-mu, 1.0 / math.sqrt(var), 0.0,
                                 f"{self.name}[standardised]", self.params)

    def _transformed(self, centre: float, scale: float, shift: float, name: str,
                     params) -> "Distribution":
        """The law of ``(x + centre) * scale + shift``."""
        base = self

        def sampler(key, shape, dtype):
            check_sampling_dtype(base, dtype)  # the base law is what is rounded first
            x = base.sampler(key, shape, dtype)
            if centre:
                x = x + centre
            return (x * scale + shift).astype(dtype)

        def cumulant_fn(n):
            k = base.cumulant_fn(n).astype(np.float64)
            with np.errstate(over="ignore"):  # overflow is refused by cumulants()
                k[0] = (k[0] + centre) * scale + shift
                k[1:] = k[1:] * scale ** np.arange(2, n + 1, dtype=np.float64)
            return k

        return self._derived(name, params, (centre, scale, shift), sampler, cumulant_fn)

    def __str__(self) -> str:
        args = ", ".join(f"{k}={v:g}" for k, v in self.params)
        return f"{self.name}({args})"


# ----------------------------------------------------------------------------------------
# Exact moment <-> cumulant conversion (works on Fractions or floats).

def moments_to_cumulants(moments: Sequence) -> list:
    """Raw moments ``[m_1..m_n]`` -> cumulants ``[k_1..k_n]``.

    kappa_n = m_n - sum_{k=1}^{n-1} C(n-1, k-1) kappa_k m_{n-k} (the standard recursion,
    e.g. Kendall & Stuart, The Advanced Theory of Statistics, vol. 1).

    Args:
      moments: ``[m_1..m_n]``: Fractions for exact arithmetic, or floats.

    Returns:
      ``[k_1..k_n]`` of the same number type.
    """
    m = [1] + list(moments)
    k = [0] * len(m)
    for n in range(1, len(m)):
        k[n] = m[n] - sum(math.comb(n - 1, j - 1) * k[j] * m[n - j] for j in range(1, n))
    return k[1:]


def cumulants_to_moments(cumulants: Sequence) -> list:
    """Cumulants ``[k_1..k_n]`` -> raw moments ``[m_1..m_n]`` (inverse of the above).

    m_n = sum_{j=1}^{n} C(n-1, j-1) kappa_j m_{n-j}.

    Args:
      cumulants: ``[k_1..k_n]``, Fractions or floats.

    Returns:
      ``[m_1..m_n]`` of the same number type.
    """
    k = [0] + list(cumulants)
    m = [1] + [0] * (len(k) - 1)
    for n in range(1, len(k)):
        m[n] = sum(math.comb(n - 1, j - 1) * k[j] * m[n - j] for j in range(1, n + 1))
    return m[1:]


def _from_moments(moment_fn: Callable[[int], Fraction]) -> Callable[[int], np.ndarray]:
    def cumulant_fn(n):
        ms = [moment_fn(j) for j in range(1, n + 1)]
        return np.array([float(c) for c in moments_to_cumulants(ms)], dtype=np.float64)
    return cumulant_fn


def _bernoulli_numbers(n: int) -> list[Fraction]:
    """B_0..B_n (with B_1 = -1/2), exact."""
    out = [Fraction(0)] * (n + 1)
    for m in range(n + 1):
        out[m] = Fraction(1) if m == 0 else -sum(
            math.comb(m + 1, j) * out[j] for j in range(m)) / (m + 1)
    return out


def _gaussian_moment(j: int, loc: Fraction, scale: Fraction) -> Fraction:
    """E[(loc + scale Z)**j], Z standard normal."""
    total = Fraction(0)
    for k in range(0, j + 1, 2):
        double_fact = math.prod(range(k - 1, 0, -2)) if k else 1
        total += math.comb(j, k) * loc ** (j - k) * scale ** k * double_fact
    return total


# ----------------------------------------------------------------------------------------
# The float ranges a law must fit: checked once, when the Distribution is built (float64
# cumulants) and when it is sampled (the sampling dtype).

#: Orders whose float64 values every law keeps normal: the standard errors of k-statistics
#: up to order 4 need the cumulants up to order 8.
RANGE_ORDER = 8
_F64 = np.finfo(np.float64)
#: The spread sqrt(kappa_2) a law may have: spread**n stays a normal float64 for n <= 8.
SPREAD_RANGE = (float(_F64.tiny) ** (1 / RANGE_ORDER), float(_F64.max) ** (1 / RANGE_ORDER))
#: Sampling needs ``|kappa_1| + SAMPLING_MARGIN * spread <= finfo(dtype).max`` (no overflow),
#: ``spread >= SAMPLING_MARGIN * finfo.tiny`` and ``spread >= MEAN_MARGIN * finfo.eps *
#: |kappa_1|``: rounding the mean (a parameter, or where samples cluster) to the dtype then
#: moves the sampled mean by at most 2**-13 spreads, below 5 standard errors up to ~1e9
#: samples, and each sample's rounding its variance by less than 2**-24 of itself.
SAMPLING_MARGIN = 2.0 ** 8
MEAN_MARGIN = 2.0 ** 12
#: Largest Poisson rate sampled: measured faithful to kappa_4 with 2 x 16M samples.
POISSON_MAX_SAMPLED_RATE = 1e4


def _check_float64_range(dist: "Distribution") -> None:
    """Refuses (ValueError naming the parameters) a law whose cumulants up to order 8
    overflow, or whose spread makes them underflow, in float64."""
    if dist.degenerate or dist.max_order < 2:
        return
    k = dist.cumulants(int(min(dist.max_order, RANGE_ORDER)))  # raises on overflow
    spread = math.sqrt(k[1]) if k[1] > 0 else 0.0
    lo, hi = SPREAD_RANGE
    subnormal = np.flatnonzero((k != 0) & (np.abs(k) < _F64.tiny))
    if not lo <= spread <= hi:
        raise ValueError(
            f"{dist}: the spread sqrt(kappa_2)={spread:.3g} is not valid: it must lie in "
            f"[{lo:.3g}, {hi:.3g}] so that kappa_1..kappa_{RANGE_ORDER} stay normal float64 "
            "numbers; rescale the parameters")
    if subnormal.size:
        raise ValueError(f"{dist}: kappa_{subnormal[0] + 1} underflows float64 (below "
                         f"{_F64.tiny:.3g}); rescale the parameters")


def check_sampling_dtype(dist: "Distribution", dtype) -> np.dtype:
    """``dtype`` as a numpy dtype if ``dist`` can be sampled in it faithfully.

    Raises ValueError naming ``dtype`` when it is not floating, or is float64 with
    ``jax_enable_x64`` off; and naming the law's parameters when one of them is not a normal
    number of the dtype (the sampler computes with it), when the samples would overflow the
    dtype, or be rounded so coarsely that their cumulants change (see MEAN_MARGIN):
    e.g. float32 holds laws with ``|mean| / spread`` up to 2**11.
    """
    dtype = validation.float_dtype("dtype", dtype)
    fi = jnp.finfo(dtype)
    if fi.nmant < 23:
        raise ValueError(f"dtype={dtype} is not valid for sampling: half precision rounds the "
                         "samples so coarsely that their cumulants change; sample in float32 or "
                         "float64 and cast")
    if dist.sample_check is not None:
        dist.sample_check(dtype)
    # the sampler computes with the parameters in dtype: keep them SAMPLING_MARGIN inside
    # its normal numbers (jax.random.beta at a = b = finfo.tiny returns some NaN)
    lo, hi = SAMPLING_MARGIN * float(fi.tiny), float(fi.max) / SAMPLING_MARGIN
    for name, value in dist.params:
        if value and not lo <= abs(value) <= hi:
            raise ValueError(
                f"{dist}: {name}={value:g} cannot be sampled in dtype={dtype}: parameters "
                f"must lie in [{lo:.3g}, {hi:.3g}] in magnitude (or be 0); sample in float64")
    if dist.degenerate or dist.max_order < 2:
        return dtype
    mean, var = dist.cumulants(2)
    spread = math.sqrt(var)
    top = abs(mean) + SAMPLING_MARGIN * spread
    if top > float(fi.max):
        raise ValueError(
            f"{dist} cannot be sampled in dtype={dtype}: |kappa_1| + {SAMPLING_MARGIN:g} * "
            f"spread = {top:.3g} exceeds its largest value {float(fi.max):.3g}; rescale the "
            "parameters or sample in float64")
    floor = max(SAMPLING_MARGIN * float(fi.tiny), MEAN_MARGIN * float(fi.eps) * abs(mean))
    if spread < floor:
        raise ValueError(
            f"{dist} cannot be sampled in dtype={dtype}: its spread {spread:.3g} is below "
            f"{floor:.3g}, {MEAN_MARGIN:g} times the dtype's resolution at |kappa_1| = "
            f"{abs(mean):.3g}, so rounding would change its cumulants; sample in float64 or "
            "centre the law (e.g. standardised=True)")
    return dtype


# ----------------------------------------------------------------------------------------
# Parameter validation with errors that name the argument.

def _real(family: str, name: str, value, **bounds) -> float:
    return validation.real(f"{family}: {name}", value, **bounds)


def _make(name, params, sampler, cumulant_fn, max_order=math.inf, **flags):
    return Distribution(name=name, params=tuple(sorted(params.items())), sampler=sampler,
                        cumulant_fn=cumulant_fn, max_order=max_order, **flags)


def _bernoulli_draw(key, p: float, shape) -> jax.Array:
    """Bool samples that are 1 with probability ``p``, exact to 2**-64 in every dtype.

    jax.random.bernoulli compares one uniform of the default float with p, so it resolves
    p only to 2**-23 without x64 (p = 1e-9 would come out 119 times too often); it is kept
    where that is exact (p a multiple of 2**-23, e.g. 1/2), to keep those streams.  Else
    two 32-bit words form a 64-bit uniform integer compared with round(p * 2**64).
    """
    if (p * 2 ** 23).is_integer():
        return jax.random.bernoulli(key, p, shape)
    flip = p > 0.5
    t = round(Fraction(1 - p if flip else p) * 2 ** 64)  # 1 - p is exact for p > 1/2
    hi, lo = jnp.uint32(t >> 32), jnp.uint32(t & 0xFFFFFFFF)
    words = jax.random.bits(key, (2,) + tuple(shape), jnp.uint32)
    below = (words[0] < hi) | ((words[0] == hi) & (words[1] < lo))
    return ~below if flip else below


# ----------------------------------------------------------------------------------------
# The families.

def gaussian(loc: float = 0.0, scale: float = 1.0) -> Distribution:
    loc = _real("gaussian", "loc", loc)
    scale = _real("gaussian", "scale", scale, positive=True)

    def cumulant_fn(n):
        k = np.zeros(n)
        k[0] = loc
        if n > 1:
            k[1] = scale ** 2
        return k

    return _make("gaussian", dict(loc=loc, scale=scale),
                 lambda key, shape, dtype: loc + scale * jax.random.normal(key, shape, dtype),
                 cumulant_fn)


def uniform(low: float = -math.sqrt(3.0), high: float = math.sqrt(3.0)) -> Distribution:
    low = _real("uniform", "low", low)
    high = _real("uniform", "high", high)
    if high <= low:
        raise ValueError(f"uniform: high={high!r} is not valid: it must exceed low={low!r}")

    def cumulant_fn(n):
        bern = _bernoulli_numbers(n)
        width = Fraction(high) - Fraction(low)
        k = [(Fraction(low) + Fraction(high)) / 2] + [bern[j] * width ** j / j
                                                       for j in range(2, n + 1)]
        return np.array([float(v) for v in k])

    return _make("uniform", dict(low=low, high=high),
                 lambda key, shape, dtype: jax.random.uniform(key, shape, dtype, low, high),
                 cumulant_fn)


def exponential(rate: float = 1.0) -> Distribution:
    rate = _real("exponential", "rate", rate, positive=True)
    return _make("exponential", dict(rate=rate),
                 lambda key, shape, dtype: jax.random.exponential(key, shape, dtype) / rate,
                 lambda n: _gamma_cumulants(1.0, rate, n))


def gamma(shape: float = 2.0, rate: float = 1.0) -> Distribution:
    a = _real("gamma", "shape", shape, positive=True)
    rate = _real("gamma", "rate", rate, positive=True)
    return _make("gamma", dict(shape=a, rate=rate),
                 lambda key, shp, dtype: jax.random.gamma(key, a, shp, dtype) / rate,
                 lambda n: _gamma_cumulants(a, rate, n))


def _gamma_cumulants(shape: float, rate: float, n: int) -> np.ndarray:
    """kappa_j = shape (j-1)! / rate^j, in exact arithmetic rounded once (rate^j alone may
    leave float64 where kappa_j does not, e.g. shape = 1e100, rate = 1e50)."""
    a, r = Fraction(shape), Fraction(rate)
    return np.array([float(a * math.factorial(j - 1) / r ** j) for j in range(1, n + 1)])


def laplace(loc: float = 0.0, scale: float = 1.0) -> Distribution:
    loc = _real("laplace", "loc", loc)
    scale = _real("laplace", "scale", scale, positive=True)

    def cumulant_fn(n):
        k = np.array([0.0 if j % 2 else 2.0 * math.factorial(j - 1) * scale ** j
                      for j in range(1, n + 1)])
        k[0] = loc
        return k

    return _make("laplace", dict(loc=loc, scale=scale),
                 lambda key, shape, dtype: loc + scale * jax.random.laplace(key, shape, dtype),
                 cumulant_fn)


def rademacher() -> Distribution:
    """+-1 Ising spins with equal probability: cumulant generating function log cosh t."""
    def cumulant_fn(n):
        bern = _bernoulli_numbers(n)
        # kappa_{2m} = 2^{2m} (2^{2m} - 1) B_{2m} / (2m); odd orders vanish.
        return np.array([0.0 if j % 2 else float(2 ** j * (2 ** j - 1) * bern[j] / j)
                         for j in range(1, n + 1)])

    return _make("rademacher", {},
                 lambda key, shape, dtype: jax.random.rademacher(key, shape, jnp.int8).astype(dtype),
                 cumulant_fn, discrete=True)


def bernoulli(p: float = 0.5) -> Distribution:
    """1 with probability p, else 0; p in {0, 1} is a constant (refused by standardised)."""
    p = _real("bernoulli", "p", p, low=0.0, high=1.0)
    fp = Fraction(p)
    return _make("bernoulli", dict(p=p),
                 lambda key, shape, dtype: _bernoulli_draw(key, p, shape).astype(dtype),
                 _from_moments(lambda j: fp), discrete=True, degenerate=p in (0.0, 1.0))


def beta(a: float = 2.0, b: float = 2.0) -> Distribution:
    a = _real("beta", "a", a, positive=True)
    b = _real("beta", "b", b, positive=True)
    fa, fb = Fraction(a), Fraction(b)

    def sample_check(dtype):
        # jax.random.beta works in log space: its mean drifts by several SE (2M samples)
        # at a + b ~ 2e8 in float32; measured clean up to 1e6 ~ 1 / (8 eps)
        largest = 1.0 / (8 * float(jnp.finfo(dtype).eps))
        if a + b > largest:
            raise ValueError(f"beta: a={a:g}, b={b:g} are not valid for sampling in {dtype}: "
                             f"a + b must be <= {largest:.3g}; sample in float64")

    return _make("beta", dict(a=a, b=b),
                 lambda key, shape, dtype: jax.random.beta(key, a, b, shape, dtype),
                 _from_moments(lambda j: math.prod((fa + r) / (fa + fb + r) for r in range(j))),
                 sample_check=sample_check)


def student_t(df: float = 5.0) -> Distribution:
    """Student-t; kappa_n exists only for n < df (df = 1 is the Cauchy law, with none)."""
    df = _real("student_t", "df", df, positive=True)
    fdf = Fraction(df)

    def moment(j):
        if j % 2:
            return Fraction(0)
        m = j // 2
        return fdf ** m * math.prod(Fraction(2 * i - 1) / (fdf - 2 * i) for i in range(1, m + 1))

    def sample_check(dtype):
        # t = Z / sqrt(G / df), G ~ 2 Gamma(df / 2): P(G < finfo.tiny) ~ tiny^(df/2) is the
        # rate of inf samples; keep it below 1e-12
        smallest = 2 * math.log(1e12) / -math.log(float(jnp.finfo(dtype).tiny))
        if df < smallest:
            raise ValueError(f"student_t: df={df:g} is not valid for sampling in {dtype}: the "
                             f"sampler returns inf below df={smallest:.3g}; sample in float64 "
                             "or raise df")

    # largest integer n with n < df
    max_order = int(math.ceil(df)) - 1
    return _make("student_t", dict(df=df),
                 lambda key, shape, dtype: jax.random.t(key, df, shape, dtype),
                 _from_moments(moment), max_order=max_order, sample_check=sample_check)


def gaussian_mixture(weight: float = 0.5, loc1: float = -1.0, scale1: float = 0.5,
                     loc2: float = 1.0, scale2: float = 0.5) -> Distribution:
    """``weight * N(loc1, scale1^2) + (1 - weight) * N(loc2, scale2^2)``."""
    fam = "gaussian_mixture"
    w = _real(fam, "weight", weight, low=0.0, high=1.0)
    l1, l2 = _real(fam, "loc1", loc1), _real(fam, "loc2", loc2)
    s1 = _real(fam, "scale1", scale1, positive=True)
    s2 = _real(fam, "scale2", scale2, positive=True)
    fw = Fraction(w)

    def moment(j):
        return (fw * _gaussian_moment(j, Fraction(l1), Fraction(s1))
                + (1 - fw) * _gaussian_moment(j, Fraction(l2), Fraction(s2)))

    def sampler(key, shape, dtype):
        kc, kz = jax.random.split(key)
        first = _bernoulli_draw(kc, w, shape)
        z = jax.random.normal(kz, shape, dtype)
        return jnp.where(first, l1 + s1 * z, l2 + s2 * z).astype(dtype)

    return _make(fam, dict(weight=w, loc1=l1, scale1=s1, loc2=l2, scale2=s2), sampler,
                 _from_moments(moment))


def poisson(rate: float = 1.0) -> Distribution:
    """Poisson counts: every cumulant equals the rate.

    Sampling is refused above ``POISSON_MAX_SAMPLED_RATE`` in every dtype: jax.random.poisson
    computes in float32, and its sampled kappa_2 and kappa_4 drift away from the rate by
    several standard errors (4M samples) from rates of about 3e4 on.
    """
    rate = _real("poisson", "rate", rate, positive=True)

    def sample_check(dtype):
        if rate > POISSON_MAX_SAMPLED_RATE:
            raise ValueError(
                f"poisson: rate={rate:g} is not valid for sampling in {dtype}: the largest rate "
                f"its sampler supports is {POISSON_MAX_SAMPLED_RATE:g} (in every dtype); the "
                "exact cumulants need no sampling")

    def sampler(key, shape, dtype):
        counts = jnp.int64 if jax.config.jax_enable_x64 else jnp.int32
        return jax.random.poisson(key, rate, shape, counts).astype(dtype)

    return _make("poisson", dict(rate=rate), sampler, lambda n: np.full(n, rate),
                 discrete=True, sample_check=sample_check)


def _lognormal_tree_polynomials(n: int) -> list[list[int]]:
    """Integer coefficients (ascending in q) of R_1..R_n with, for q = exp(sigma^2),
    kappa_j = exp(j sigma^2 / 2) (q - 1)^(j-1) R_j(q).

    The moments are exp(j sigma^2 / 2) q^(j(j-1)/2); the factor exp(j sigma^2 / 2) is common
    to every term of kappa_j, so the moment-cumulant recursion runs on integer polynomials
    in q, and kappa_j vanishes to order j - 1 at q = 1 (sigma -> 0), which is divided out
    exactly.  R_j has non-negative coefficients (it counts labelled trees by inversions,
    R_j(1) = j^(j-2)), so evaluating it loses no digits to cancellation: converting float
    moments instead loses all of them at small sigma.
    """
    def shift(poly, k):
        return [0] * k + poly

    def add(a, b):
        out = [0] * max(len(a), len(b))
        for i, c in enumerate(a):
            out[i] += c
        for i, c in enumerate(b):
            out[i] += c
        return out

    kappa = []
    for j in range(1, n + 1):
        k = shift([1], j * (j - 1) // 2)
        for i in range(1, j):
            term = [-math.comb(j - 1, i - 1) * c for c in shift(kappa[i - 1], (j - i) * (j - i - 1) // 2)]
            k = add(k, term)
        kappa.append(k)
    out = []
    for j, k in enumerate(kappa, 1):
        r = k
        for _ in range(j - 1):  # synthetic division by (q - 1), highest power first
            quotient, carry = [], 0
            for c in reversed(r):
                carry += c
                quotient.append(carry)
            if quotient.pop() != 0:
                raise AssertionError(f"kappa_{j} of the lognormal is not divisible by (q - 1)")
            r = quotient[::-1]
        while len(r) > 1 and r[-1] == 0:
            r.pop()
        assert min(r) >= 0, r
        out.append(r)
    return out


def lognormal(sigma: float = 0.5) -> Distribution:
    """exp(sigma Z), Z standard normal; sigma > 0 up to where kappa_8 overflows float64.

    kappa_j = exp(j sigma^2 / 2) expm1(sigma^2)^(j-1) R_j(exp(sigma^2)) with the integer
    polynomials of :func:`_lognormal_tree_polynomials`: accurate to a few ulps at every sigma
    (kappa_j ~ j^(j-2) sigma^(2j-2) as sigma -> 0).
    """
    sigma = _real("lognormal", "sigma", sigma, positive=True)
    # kappa_n ~ n^(n-2) sigma^(2n-2) grows faster than spread^n: check the top order itself
    if ((2 * RANGE_ORDER - 2) * math.log(sigma) + (RANGE_ORDER - 2) * math.log(RANGE_ORDER)
            < math.log(_F64.tiny)):
        raise ValueError(f"lognormal: sigma={sigma!r} is not valid: kappa_{RANGE_ORDER} ~ "
                         f"{RANGE_ORDER}^{RANGE_ORDER - 2} sigma^{2 * RANGE_ORDER - 2} would "
                         "underflow float64; sigma must be larger")

    def cumulant_fn(n):
        s2 = sigma * sigma
        q, qm1 = math.exp(s2), math.expm1(s2)
        out = []
        for j, r in enumerate(_lognormal_tree_polynomials(n), 1):
            horner = 0.0
            for c in reversed(r):
                horner = horner * q + c
            out.append(math.exp(0.5 * j * s2) * qm1 ** (j - 1) * horner)
        return np.array(out)

    return _make("lognormal", dict(sigma=sigma),
                 lambda key, shape, dtype: jax.random.lognormal(key, sigma, shape, dtype),
                 cumulant_fn)


# ----------------------------------------------------------------------------------------
# Registry.

_REGISTRY: dict[str, Callable[..., Distribution]] = {
    "gaussian": gaussian,
    "uniform": uniform,
    "exponential": exponential,
    "gamma": gamma,
    "laplace": laplace,
    "rademacher": rademacher,
    "bernoulli": bernoulli,
    "beta": beta,
    "student_t": student_t,
    "gaussian_mixture": gaussian_mixture,
    "poisson": poisson,
    "lognormal": lognormal,
}


def names() -> list[str]:
    """Names of every registered family, sorted.

    Returns:
      The names, for :func:`get`.
    """
    return sorted(_REGISTRY)


def register(name: str, factory: Callable[..., Distribution], *, overwrite: bool = False) -> None:
    """Adds a family: ``factory(**params) -> Distribution``.

    Build the Distribution from your sampler and cumulant function, e.g.
    ``Distribution(name, params=(), sampler=f, cumulant_fn=g)``.

    Args:
      name: a Python identifier; factory: ``(**params) -> Distribution``;
      overwrite: replace a family already registered under ``name``.

    Raises:
      ValueError: a name that is not an identifier, or already registered without
        ``overwrite``, or a factory that is not callable.
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"name={name!r} is not valid: it must be a Python identifier")
    if name in _REGISTRY and not overwrite:
        raise ValueError(f"name={name!r} is already registered; pass overwrite=True to replace it")
    if not callable(factory):
        raise ValueError(f"factory={factory!r} is not callable: it must map params to a Distribution")
    _REGISTRY[name] = factory


def get(name: str, *, standardised: bool = False, **params) -> Distribution:
    """The family ``name`` with ``params``; ``standardised=True`` rescales to mean 0, variance 1.

    Args:
      name: a registered family (:func:`names`); standardised: apply
        :meth:`Distribution.standardised`; **params: the family's parameters (the module's
        table), defaults where left out.

    Returns:
      The :class:`Distribution`.

    Raises:
      ValueError: an unknown name (the known ones are listed) or invalid parameters (named).
      CumulantDoesNotExist: ``standardised=True`` for a law without a finite variance.

    Example:
      >>> from rgsym import distributions
      >>> d = distributions.get("gaussian", scale=2.0)
      >>> d.cumulants(4).tolist(), d.variance
      ([0.0, 4.0, 0.0, 0.0], 4.0)
    """
    if name not in _REGISTRY:
        raise ValueError(f"unknown family name={name!r}; known families: {', '.join(names())}")
    factory = _REGISTRY[name]
    try:
        dist = factory(**params)
    except TypeError as e:
        raise ValueError(f"invalid parameters {params!r} for family {name!r}: {e}") from None
    # stamp the factory as the law's origin (only equality changes: no second range check)
    object.__setattr__(dist, "origin", _Origin(factory, dist.sampler, dist.cumulant_fn))
    return dist.standardised() if standardised else dist


def finite_order_names(order: int = 4) -> list[str]:
    """Registered families (default parameters) whose cumulants up to ``order`` all exist.

    Args:
      order: the highest cumulant order needed.

    Returns:
      Family names, sorted.
    """
    return [n for n in names() if get(n).max_order >= order]


def _check_order(n, name: str) -> None:
    validation.integer(name, n, 1)
