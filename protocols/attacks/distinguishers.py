"""Distinguishers on the server's view of masked inputs.

A masked vector should be uniform on Z_(2^b) and independent of the input. Each test
here is a concrete adversary that wins against a known weak masking scheme, so that its
failure against the real protocol means something:

* :func:`uniformity_pvalue`: chi-square on the top and bottom bytes (catches missing or
  low-entropy masks, e.g. an encoded input with no mask at all);
* :func:`difference_hits`: two views masked with the same mask differ by a small
  plaintext difference (catches masks reused across rounds, sessions or clients);
* :func:`seed_search`: tries every seed of a small seed space and reports seeds that
  unmask the view to a plausible input (catches low-entropy seeds);
* :func:`ind_advantage`: the left-or-right game: the challenger masks x_0 or x_1, the
  adversary guesses which; advantage = |2 * accuracy - 1| (0 = indistinguishable).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import stats

RingArray = npt.NDArray[np.unsignedinteger[Any]]


def _signed(v: npt.NDArray[Any], bits: int) -> npt.NDArray[np.int64]:
    x = np.asarray(v).astype(np.int64) & ((1 << bits) - 1)
    return np.where(x >= 1 << (bits - 1), x - (1 << bits), x)


def uniformity_pvalue(v: RingArray, bits: int) -> float:
    """Smallest chi-square p-value of the top and bottom bytes (Bonferroni, x2)."""
    x = np.asarray(v).astype(np.int64) & ((1 << bits) - 1)
    ps = []
    for byte in (x >> (bits - 8), x & 0xFF):
        ps.append(float(stats.chisquare(np.bincount(byte, minlength=256)).pvalue))
    return min(1.0, 2 * min(ps))


def difference_hits(a: RingArray, b: RingArray, bits: int, max_abs: int) -> float:
    """Fraction of coordinates where a - b (mod 2^bits) is within +-2 * max_abs.

    Under fresh uniform masks the expected fraction is about 4 * max_abs / 2^bits; with
    one mask reused it is 1 (the difference is a difference of two clipped inputs).
    """
    diff = _signed(np.asarray(a).astype(np.int64) - np.asarray(b).astype(np.int64), bits)
    return float(np.mean(np.abs(diff) <= 2 * max_abs))


def seed_search(
    view: RingArray,
    expand: Callable[[int], RingArray],
    seeds: Iterable[int],
    bits: int,
    max_abs: int,
) -> list[int]:
    """Seeds whose mask, subtracted from ``view``, leaves a plausible (in-range) input."""
    v = np.asarray(view).astype(np.int64)
    return [
        s
        for s in seeds
        if np.all(np.abs(_signed(v - np.asarray(expand(s)).astype(np.int64), bits)) <= max_abs)
    ]


def ind_advantage(play: Callable[[int, int], tuple[int, int]], trials: int) -> float:
    """Advantage in ``trials`` rounds of the left-or-right game.

    ``play(trial, b)`` runs the challenger on secret bit ``b`` and the adversary on its
    view, returning ``(b, guess)``; the secret bits alternate so both sides are tried.
    """
    correct = 0
    for t in range(trials):
        b, guess = play(t, t % 2)
        correct += int(b == guess)
    return abs(2.0 * correct / trials - 1.0)
