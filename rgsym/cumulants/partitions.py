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
"""
from __future__ import annotations

import functools
import itertools
import math
from collections import Counter
from typing import NamedTuple

__all__ = ["PartitionClass", "connected_partitions"]


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
