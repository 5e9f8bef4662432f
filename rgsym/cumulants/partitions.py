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
           "MAX_LEGS"]

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

    def rec(remaining, start, chosen):
        if not any(remaining):
            if _connected(chosen, n):
                out.append(tuple(chosen))
            return
        for j in range(start, len(candidates)):
            v = candidates[j]
            if all(c <= r for c, r in zip(v, remaining)):
                chosen.append(v)
                rec(tuple(r - c for r, c in zip(remaining, v)), j, chosen)
                chosen.pop()

    rec(tuple(q), 0, [])
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
