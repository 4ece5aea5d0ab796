"""Statistical checks of DP noise, each with a stated confidence.

``assert_noise(residual, sigma)`` treats ``residual`` (released minus the exact,
un-noised value, per coordinate) as n independent draws of N(0, sigma^2): then
sum(r^2) / sigma^2 follows chi^2 with n degrees of freedom, and the mean follows
N(0, sigma^2 / n). The check fails when either falls outside its two-sided interval at
``CONFIDENCE``, so an honest mechanism fails it with probability at most 2e-6 per call.
Power: at n = 10 000 coordinates the chi^2 interval is about +-7% of the variance, so a
noise std 20% too small (or absent) fails with certainty.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

CONFIDENCE = 1.0 - 1e-6


def chi2_interval(n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The two-sided interval of a chi^2 variable with ``n`` degrees of freedom."""
    alpha = 1.0 - confidence
    lo, hi = stats.chi2.ppf([alpha / 2, 1 - alpha / 2], n)
    return float(lo), float(hi)


def assert_noise(residual: object, sigma: float, confidence: float = CONFIDENCE) -> None:
    """``residual`` is N(0, sigma^2) per coordinate (chi^2 and mean tests, see above)."""
    r = np.asarray(residual, dtype=np.float64).ravel()
    n = r.size
    lo, hi = chi2_interval(n, confidence)
    q = float(np.sum(r * r)) / sigma**2
    assert lo <= q <= hi, (
        f"sum(r^2)/sigma^2 = {q:.1f} outside the {confidence} chi^2({n}) interval "
        f"[{lo:.1f}, {hi:.1f}]: empirical variance {q / n * sigma**2:.4g}, accounted {sigma**2:.4g}"
    )
    z = float(stats.norm.ppf(1 - (1.0 - confidence) / 2))
    assert abs(float(r.mean())) <= z * sigma / math.sqrt(n), f"mean {r.mean():.3g} is not 0"


def assert_centred_along(
    residual: object, direction: object, sigma: float, confidence: float = CONFIDENCE
) -> None:
    """The component of ``residual`` along ``direction`` is N(0, sigma^2): a release
    scaled wrongly along its signal (a wrong clip, a wrong denominator) fails, with far
    more power than the chi^2 test (the whole shift lands in one coordinate)."""
    r = np.asarray(residual, dtype=np.float64).ravel()
    u = np.asarray(direction, dtype=np.float64).ravel()
    z = float(r @ u) / float(np.linalg.norm(u)) / sigma
    bound = float(stats.norm.ppf(1 - (1.0 - confidence) / 2))
    assert abs(z) <= bound, f"residual along the signal is {z:.2f} sigma (bound {bound:.2f})"
