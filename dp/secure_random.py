"""The one source of randomness for every noise draw in ``dp``: the operating system's
CSPRNG (``os.urandom`` / ``secrets``), never a seeded PRNG.

A seeded generator (numpy's PCG64, Python's Mersenne Twister) is predictable from its
state, and its state is small; DP noise drawn from it protects nothing against whoever
learns or guesses the seed. Everything here reads fresh kernel randomness: scalars
through :mod:`secrets` (exact integers, no floating point), vectors as raw 64-bit words
through :func:`os.urandom` read by numpy without conversion.
"""

from __future__ import annotations

import os
import secrets
from fractions import Fraction

import numpy as np
from numpy.typing import NDArray

U64 = NDArray[np.uint64]


def random_words(count: int) -> U64:
    """``count`` independent uniform 64-bit words from the OS CSPRNG, one read, no copy
    (the array is a read-only view of the bytes)."""
    if count <= 0:
        return np.zeros(0, dtype=np.uint64)
    return np.frombuffer(os.urandom(8 * count), dtype=np.uint64)


def random_below(bound: int) -> int:
    """A uniform integer in ``[0, bound)`` (exact: rejection inside :mod:`secrets`)."""
    return secrets.randbelow(bound)


def bernoulli(p: Fraction) -> bool:
    """True with probability exactly ``p`` (a rational in [0, 1])."""
    if p <= 0:
        return False
    if p >= 1:
        return True
    return secrets.randbelow(p.denominator) < p.numerator


def random_bit() -> int:
    """One uniform bit."""
    return secrets.randbits(1)


def geometric_half() -> int:
    """K >= 0 with P(K = k) = 2^-(k+1): the number of zero bits before the first one."""
    k = 0
    while True:
        word = secrets.randbits(64)
        if word:
            return k + ((word & -word).bit_length() - 1)
        k += 64
