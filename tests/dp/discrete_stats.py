"""Goodness-of-fit helpers for the integer samplers (tests only).

The samplers read the OS CSPRNG, so these tests cannot be seeded: every check is a
hypothesis test at level ``ALPHA`` (1e-6), so an honest sampler fails one about once in
a million runs while a wrong law at these sample sizes fails at once.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import stats

ALPHA = 1e-6


def binned_chi_square(
    samples: np.ndarray, pmf: Callable[[np.ndarray], np.ndarray], *, lo: int, hi: int
) -> tuple[float, int]:
    """Chi-square p-value of integer ``samples`` against ``pmf`` (a vectorised law on
    [lo, hi], whose mass outside must be negligible): one bin per integer, the tails
    (everything <= a low cut and >= a high cut) pooled into the end bins, and bins
    merged until each expects at least 5 draws. Returns (p-value, number of bins)."""
    support = np.arange(lo, hi + 1)
    probs = pmf(support)
    probs = probs / probs.sum()
    counts = np.bincount(np.clip(samples, lo, hi) - lo, minlength=support.size).astype(float)
    n = samples.size
    edges_p, edges_c = [], []
    acc_p = acc_c = 0.0
    for p, c in zip(probs, counts, strict=True):
        acc_p += p
        acc_c += c
        if acc_p * n >= 5.0:
            edges_p.append(acc_p)
            edges_c.append(acc_c)
            acc_p = acc_c = 0.0
    if acc_p or acc_c:  # the upper tail joins the last bin
        edges_p[-1] += acc_p
        edges_c[-1] += acc_c
    expected = np.array(edges_p) * n
    observed = np.array(edges_c)
    result = stats.chisquare(observed, expected * observed.sum() / expected.sum())
    return float(result.pvalue), len(edges_p)


def discrete_gaussian_pmf(sigma2: float) -> Callable[[np.ndarray], np.ndarray]:
    """exp(-k^2 / (2 sigma2)), unnormalised (the chi-square helper normalises)."""
    return lambda k: np.exp(-(k.astype(float) ** 2) / (2.0 * sigma2))
