"""Leonov-Shiryaev connected partitions, enumerated once in Python at trace time.

The joint cumulant of products ``kappa(X_1, ..., X_n)`` with ``X_i = prod of q_i legs`` is
the sum over set partitions of all legs that are *connected* with respect to the grouping of
legs into factors, each block contributing the joint cumulant of its legs.  Here every leg
of factor ``i`` is the same variable ``delta_{a_i}`` (a centred unit), so a partition only
matters through its *count matrix*: for each block B, how many legs it takes from each
factor (``v_B[i]``).  We enumerate multisets of such count vectors directly (far fewer than
set partitions: (2,2,2,2) has 4140 set partitions but a few dozen classes) with the number
of set partitions in each class,

    mult = prod_i q_i! / (prod_B prod_i v_B[i]!  *  prod_{distinct v} (#copies of v)!) .

Centred legs have zero mean, so blocks of size 1 never appear; blocks larger than the
available cumulant order are dropped (the truncation closure).

The polynomial rule needs, for output order n, every arrangement q in {1..degree}^n and
every class of q.  Its result is a symmetric tensor, so it equals the symmetrisation of any
sum in which each class is first relabelled by a permutation of its factors.
:func:`class_groups` uses that freedom: it relabels each class into a canonical form,
merges classes that become identical (their weights add) and groups the rest by which
factor touches which block (the einsum signature), so that a whole group is contracted by
one batched einsum with the leg counts as data.  The program then grows with the number of
signatures rather than of classes (``len(class_groups(2, 4, 8))`` against the classes of
every q in {1, 2}^4).
"""
from __future__ import annotations

import functools
import itertools
import math
from collections import Counter
from typing import NamedTuple

import numpy as np

__all__ = ["PartitionClass", "ClassGroup", "connected_partitions", "class_groups",
           "wick_groups", "MAX_LEGS", "WICK_MAX_LEGS", "WICK_MAX_ORDER"]

#: Largest number of legs (degree x order) whose classes are enumerated: 12 legs already
#: give 24078 classes for a quadratic activation (n = 6) and enumeration time grows faster
#: than exponentially beyond (minutes at trace time, and a program to match).
MAX_LEGS = 12


class PartitionClass(NamedTuple):
    """blocks: tuple of count vectors (one per block, length n); multiplicity: int."""
    blocks: tuple[tuple[int, ...], ...]
    multiplicity: int


def _connected(blocks, n: int) -> bool:
    """Whether the factors 0..n-1 are linked through shared blocks (union-find)."""
    parent = list(range(n))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for v in blocks:
        touched = [i for i, c in enumerate(v) if c]
        for i in touched[1:]:
            parent[find(i)] = find(touched[0])
    return len({find(i) for i in range(n)}) == 1


@functools.lru_cache(maxsize=None)
def connected_partitions(q: tuple[int, ...], max_block: int,
                         min_block: int = 2) -> tuple[PartitionClass, ...]:
    """Classes of connected partitions of the legs ``q`` (q[i] legs in factor i).

    Args:
      q: legs per factor, each >= 0 (a factor with 0 legs is a constant: only n = 1 allowed).
      max_block: largest block size kept (available cumulant order; larger = closure).
      min_block: smallest block size (2 for centred variables).
    Returns: tuple of PartitionClass, deterministic order.
    """
    n = len(q)
    if n > 1 and min(q) == 0:
        return ()  # a constant factor has no joint cumulant with anything
    candidates = [v for v in itertools.product(*(range(qi + 1) for qi in q))
                  if min_block <= sum(v) <= max_block]
    out = []

    def rec(remaining, fitting, chosen):
        # fitting: the candidates (in order, from the last one chosen) that fit in
        # ``remaining``; a child keeps those of them that fit in what it leaves, so deep in
        # the recursion few are scanned (q = (2,) * 6, 12 legs: 39 s -> 2.3 s, the same
        # classes in the same order; benchmarks/RESULTS.md)
        if not any(remaining):
            if _connected(chosen, n):
                out.append(tuple(chosen))
            return
        for k, v in enumerate(fitting):
            left = tuple(r - c for r, c in zip(remaining, v))
            chosen.append(v)
            rec(left, [u for u in fitting[k:] if all(c <= r for c, r in zip(u, left))],
                chosen)
            chosen.pop()

    rec(tuple(q), candidates, [])
    classes = []
    for blocks in out:
        denom = math.prod(math.factorial(c) for v in blocks for c in v)
        denom *= math.prod(math.factorial(m) for m in Counter(blocks).values())
        mult = math.prod(math.factorial(qi) for qi in q) // denom
        classes.append(PartitionClass(blocks, mult))
    return tuple(classes)


class ClassGroup(NamedTuple):
    """Classes sharing one einsum signature, in canonical labelling (K classes, m blocks).

    incidence: [m][n] bools, block j touches factor i; q: [K, n] legs per factor (the
    activation's power); legs: [K, m, n] legs of factor i in block j (0 where no incidence);
    weight: [K] float, multiplicity x number of arrangements of q, merged over classes that
    became identical.  Blocks are sorted by incidence row.
    """
    incidence: tuple
    q: np.ndarray
    legs: np.ndarray
    weight: np.ndarray


def _relabel(blocks, perm):
    """Blocks with factor perm[i] moved to position i, sorted by (incidence, legs)."""
    moved = [tuple(v[p] for p in perm) for v in blocks]
    return tuple(sorted(moved, key=lambda v: (tuple(bool(c) for c in v), v)))


def _canonical(blocks, n: int):
    """A deterministic relabelling of ``blocks``: the least over all permutations of the
    factors for n <= 5; above, factors ordered by a local signature (any relabelling is
    valid, a finer one only merges more classes)."""
    if n <= 5:
        perms = itertools.permutations(range(n))
    else:
        key = [(sum(v[i] for v in blocks),
                sorted((sum(v), v[i]) for v in blocks if v[i])) for i in range(n)]
        perms = [sorted(range(n), key=lambda i: key[i])]
    forms = [_relabel(blocks, p) for p in perms]
    return min(forms, key=lambda f: (tuple(tuple(bool(c) for c in v) for v in f), f))


def check_legs(degree: int, n: int, surrogate: str | None = None) -> None:
    """ValueError when the joint cumulant of n factors of a degree-``degree`` polynomial has
    more than :data:`MAX_LEGS` legs (classes too many to enumerate).  surrogate: the
    activation, where the polynomial is mode 'hermite''s surrogate of that degree (the
    message then names ``degree``)."""
    if degree * n > MAX_LEGS:
        what = ("" if surrogate is None else
                f" (mode='hermite''s surrogate of activation={surrogate!r}, degree={degree})")
        fix = "" if surrogate is None else f"degree (<= {MAX_LEGS // n} at order {n}), "
        raise ValueError(
            f"order {n} through a degree-{degree} polynomial{what} needs the connected "
            f"partitions of {degree * n} legs, beyond MAX_LEGS={MAX_LEGS} (24078 classes at 12 "
            "legs for a quadratic activation, growing faster than exponentially): lower "
            f"{fix}order or internal_order (the truncation closure then drops the missing "
            "cumulants)")


@functools.lru_cache(maxsize=None)
def class_groups(degree: int, n: int, max_block: int) -> tuple[ClassGroup, ...]:
    """Every class of the order-n polynomial rule, relabelled and grouped by signature.

    The symmetrisation over the n output axes of
    ``sum_groups sum_k weight[k] * term(group, k)`` is the sum over all arrangements
    q in {1..degree}^n and all their classes (blocks up to ``max_block`` legs).
    Raises ValueError beyond :data:`MAX_LEGS` legs (see :func:`check_legs`).
    """
    check_legs(degree, n)
    merged: dict = {}
    for q in itertools.combinations_with_replacement(range(1, degree + 1), n):
        arrangements = math.factorial(n) // math.prod(
            math.factorial(c) for c in Counter(q).values())
        for cls in connected_partitions(q, max_block):
            form = _canonical(cls.blocks, n)
            merged[form] = merged.get(form, 0) + arrangements * cls.multiplicity
    return _grouped(merged, n)


def _grouped(merged: dict, n: int) -> tuple[ClassGroup, ...]:
    """Canonical forms -> weight, grouped by incidence (one einsum signature each)."""
    groups: dict = {}
    for form, weight in merged.items():
        inc = tuple(tuple(bool(c) for c in v) for v in form)
        groups.setdefault(inc, []).append((form, weight))
    out = []
    for inc, members in sorted(groups.items()):
        legs = np.array([form for form, _ in members], dtype=np.int64).reshape(
            len(members), len(inc), n)
        out.append(ClassGroup(inc, legs.sum(1), legs,
                              np.array([float(w) for _, w in members])))
    return tuple(out)


#: Largest number of legs (degree x order) :func:`wick_groups` enumerates: 16 legs (a
#: degree-4 polynomial at order 4) give 19238 classes in a few seconds; 20 legs would give
#: several hundred thousand.
WICK_MAX_LEGS = 16


#: Largest order :func:`wick_groups` enumerates (its canonical relabelling tries all n!
#: permutations of the factors).
WICK_MAX_ORDER = 5


def check_wick_legs(degree: int, n: int) -> None:
    """ValueError when order n of a degree-``degree`` polynomial of the input sites needs
    more than :data:`WICK_MAX_LEGS` legs or :data:`WICK_MAX_ORDER` factors."""
    if degree * n > WICK_MAX_LEGS or n > WICK_MAX_ORDER:
        raise ValueError(
            f"order {n} of a degree-{degree} polynomial of the input sites needs the "
            f"connected partitions of {degree * n} legs in {n} factors, beyond "
            f"WICK_MAX_LEGS={WICK_MAX_LEGS} or WICK_MAX_ORDER={WICK_MAX_ORDER} (19238 classes "
            "at 16 legs in 4 factors, several hundred thousand beyond): lower the order, or "
            "leave internal_order at its default (the truncation closure)")


def _wick_partitions(q: tuple[int, ...]):
    """Multisets of count vectors summing to ``q``, each touching at least two factors,
    connected: every multiset once, its blocks chosen in order of their first factor, then
    non-increasing (so no candidate scan over all vectors and no duplicates)."""
    n, out = len(q), []

    def rec(remaining, prev, chosen):
        i0 = next((i for i, r in enumerate(remaining) if r), None)
        if i0 is None:
            if _connected(chosen, n):
                out.append(tuple(chosen))
            return
        ranges = [range(0, 1)] * i0 + [range(remaining[i0], 0, -1)] + [
            range(remaining[i], -1, -1) for i in range(i0 + 1, n)]
        for v in itertools.product(*ranges):
            if not any(v[i0 + 1:]):
                continue  # a block inside one factor: absent from Wick products
            if prev is not None and prev[i0] and v > prev:
                continue  # blocks of the same first factor in non-increasing order
            chosen.append(v)
            rec(tuple(r - c for r, c in zip(remaining, v)), v, chosen)
            chosen.pop()

    rec(tuple(q), None, [])
    return out


def _canonical_batch(forms: list, n: int, degree: int) -> list:
    """A canonical relabelling of each form (tuple of count vectors) under the n! factor
    permutations, vectorised over forms: each block becomes one integer (incidence bits,
    then legs), a relabelled form the sorted row of its blocks' integers, and the
    lexicographically least row over the permutations is kept."""
    m = max(len(f) for f in forms)
    legs = np.zeros((len(forms), m, n), np.int64)
    for k, f in enumerate(forms):
        legs[k, :len(f)] = f
    perms = np.array(list(itertools.permutations(range(n))))              # [P, n]
    moved = legs[:, :, perms].transpose(0, 2, 1, 3)                        # [K, P, m, n]
    key = np.zeros(moved.shape[:3], np.int64)
    for i in range(n):
        key = key * 2 + (moved[..., i] > 0)
    for i in range(n):
        key = key * (degree + 1) + moved[..., i]
    key = np.where(moved.any(-1), key, np.iinfo(np.int64).max)            # padding last
    order = np.argsort(key, axis=2)
    rows = np.take_along_axis(key, order, 2)                               # [K, P, m]
    # compare every block's incidence before any block's legs: fewer distinct incidences
    # (einsum signatures) survive
    split = (degree + 1) ** n
    rows = np.concatenate([rows // split, rows % split], 2)
    alive = np.ones(rows.shape[:2], bool)
    for col in range(rows.shape[2]):  # lexicographic argmin over P, one column at a time
        vals = np.where(alive, rows[:, :, col], np.iinfo(np.int64).max)
        alive &= vals == vals.min(1, keepdims=True)
    best = alive.argmax(1)
    k = np.arange(len(forms))
    blocks = np.take_along_axis(moved[k, best], order[k, best][:, :, None], 1)  # [K, m, n]
    return [tuple(tuple(int(c) for c in v) for v in f if v.any()) for f in blocks]


@functools.lru_cache(maxsize=None)
def wick_groups(degree: int, n: int) -> tuple[ClassGroup, ...]:
    """The classes of order n (>= 2) for factors that are Wick products of the input sites.

    For factors ``:x^{(i)}:`` (Wick-ordered products of q_i centred site legs), the joint
    cumulant is the sum over connected partitions of the legs in which no block lies
    inside a single factor: the diagram formula for Wick products, which holds for any
    random variables with moments, Gaussian or not (Giraitis & Surgailis 1986, Z. Wahrsch.
    verw. Gebiete 71; Peccati & Taqqu 2011, "Wiener Chaos: Moments, Cumulants and
    Diagrams").  ``tests/test_site_polynomials.py`` checks it against brute force.  So blocks touch at least two factors, which removes about
    half the classes of :func:`class_groups` and every block of one factor.  q ranges over
    {1..degree}^n (sorted, weighted by its arrangements, as in :func:`class_groups`); a
    block of |B| legs reads the site cumulant kappa_|B| (no truncation).  Grouped by
    incidence after a canonical relabelling.  Raises ValueError beyond
    :data:`WICK_MAX_LEGS` legs.
    """
    check_wick_legs(degree, n)
    forms, weights = [], []
    for q in itertools.combinations_with_replacement(range(1, degree + 1), n):
        arrangements = math.factorial(n) // math.prod(
            math.factorial(c) for c in Counter(q).values())
        for blocks in _wick_partitions(q):
            denom = math.prod(math.factorial(c) for v in blocks for c in v)
            denom *= math.prod(math.factorial(k) for k in Counter(blocks).values())
            forms.append(blocks)
            weights.append(arrangements * (math.prod(math.factorial(x) for x in q) // denom))
    merged: dict = {}
    canonical = [c for i in range(0, len(forms), 8192)  # chunks bound the [K, n!, m, n] array
                 for c in _canonical_batch(forms[i:i + 8192], n, degree)]
    for form, weight in zip(canonical, weights):
        merged[form] = merged.get(form, 0) + weight
    return _grouped(merged, n)
