"""Rényi DP of the Poisson-subsampled Gaussian mechanism, vectorised over orders.

The formulas are dp_accounting's (Mironov, Talwar, Zhang 2019, arXiv:1908.10530, Sec.
3.3), evaluated with numpy over all orders at once instead of one Python loop per order:
dp_accounting takes ~50 ms per new (q, sigma) at its 156 default orders, this ~1 ms, which
is what keeps a ledger round under the 50 ms goal when sigma or q change every round.
``tests/dp/test_rdp.py`` checks the two agree.

Conversions from RDP to (epsilon, delta):

* ``improved`` (default): Canonne, Kamath, Steinke 2020 / Asoodeh et al. 2020,
  eps = rdp + log1p(-1/a) - log(delta * a) / (a - 1), plus the KL bound; what
  dp_accounting and Opacus use today.
* ``classic``: Mironov 2017 Prop. 3, eps = rdp - log(delta) / (a - 1); what the moments
  accountant of Abadi et al. 2016 and TF-Privacy before 2020 reported. Larger.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from scipy import special

FloatArray = NDArray[np.float64]

# dp_accounting's DEFAULT_RDP_ORDERS (fractional orders near 1 matter for small epsilon,
# large ones for large epsilon).
DEFAULT_ORDERS: tuple[float, ...] = tuple(
    [1.0 + x / 10.0 for x in range(1, 100)]
    + [float(x) for x in range(11, 64)]
    + [128.0, 256.0, 512.0, 1024.0]
)

_FRAC_MAX_TERMS = 1000


def _log_comb(n: FloatArray, k: FloatArray) -> FloatArray:
    out: FloatArray = special.gammaln(n + 1) - special.gammaln(k + 1) - special.gammaln(n - k + 1)
    return out


def _log_a_int(q: float, sigma: float, alphas: FloatArray) -> FloatArray:
    """log A_alpha for integer orders (binomial expansion), all orders in one flat pass."""
    counts = alphas.astype(np.int64) + 1
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    a = np.repeat(alphas.astype(np.int64), counts)
    i = np.arange(a.size) - np.repeat(starts, counts)
    table = _log_factorials(int(alphas.max()))
    fi = i.astype(np.float64)
    terms = (
        table[a]
        - table[i]
        - table[a - i]
        + fi * math.log(q)
        + (a - i) * math.log1p(-q)
        + (fi * fi - fi) / (2.0 * sigma**2)
    )
    peak = np.maximum.reduceat(terms, starts)
    out: FloatArray = peak + np.log(
        np.add.reduceat(np.exp(terms - np.repeat(peak, counts)), starts)
    )
    return out


@lru_cache(maxsize=8)
def _log_factorials(top: int) -> FloatArray:
    out: FloatArray = special.gammaln(np.arange(top + 1, dtype=np.float64) + 1.0)
    return out


def _log_a_frac(q: float, sigma: float, alphas: FloatArray) -> FloatArray:
    """log A_alpha for fractional orders: the two-sided series of arXiv:1908.10530.

    Summed up to the first term where both halves fall and are 30 nats below the running
    total, as dp_accounting does, so the two agree to rounding; inf where no such term
    comes within 1000 terms (dp_accounting then drops the order too).
    """
    z0 = sigma**2 * math.log(1.0 / q - 1.0) + 0.5
    out: FloatArray = np.full(alphas.shape, np.inf)
    pending = np.ones(alphas.shape, dtype=bool)
    n_terms = 64
    while pending.any():
        a = alphas[pending][:, None]
        i = np.arange(n_terms, dtype=np.float64)[None, :]
        j = a - i
        log_coef = _log_comb(a, i)
        log_t0 = log_coef + i * math.log(q) + j * math.log1p(-q)
        log_t1 = log_coef + j * math.log(q) + i * math.log1p(-q)
        log_e0 = math.log(0.5) + _log_erfc((i - z0) / (math.sqrt(2.0) * sigma))
        log_e1 = math.log(0.5) + _log_erfc((z0 - j) / (math.sqrt(2.0) * sigma))
        log_s0 = log_t0 + (i * i - i) / (2.0 * sigma**2) + log_e0
        log_s1 = log_t1 + (j * j - j) / (2.0 * sigma**2) + log_e1
        total = np.logaddexp(
            np.logaddexp.accumulate(log_s0, axis=1), np.logaddexp.accumulate(log_s1, axis=1)
        )
        stop = np.zeros_like(total, dtype=bool)
        stop[:, 1:] = (
            (log_s0[:, 1:] < log_s0[:, :-1])
            & (log_s1[:, 1:] < log_s1[:, :-1])
            & (np.maximum(log_s0[:, 1:], log_s1[:, 1:]) < total[:, 1:] - 30.0)
        )
        found = stop.any(axis=1)
        first = np.argmax(stop, axis=1)
        rows = np.flatnonzero(pending)
        out[rows[found]] = total[np.flatnonzero(found), first[found]]
        pending[rows[found]] = False
        if n_terms >= _FRAC_MAX_TERMS:
            break
        n_terms = min(4 * n_terms, _FRAC_MAX_TERMS)
    return out


def _log_erfc(x: FloatArray) -> FloatArray:
    out: FloatArray = math.log(2.0) + special.log_ndtr(-x * math.sqrt(2.0))
    return out


@lru_cache(maxsize=4096)
def _rdp_cached(q: float, sigma: float, orders: tuple[float, ...]) -> FloatArray:
    alphas = np.asarray(orders, dtype=np.float64)
    if q == 1.0:
        out: FloatArray = alphas / (2.0 * sigma**2)
    else:
        is_int = np.equal(np.floor(alphas), alphas)
        log_a = np.empty_like(alphas)
        if is_int.any():
            log_a[is_int] = _log_a_int(q, sigma, alphas[is_int])
        if (~is_int).any():
            log_a[~is_int] = _log_a_frac(q, sigma, alphas[~is_int])
        out = log_a / (alphas - 1.0)
    out.setflags(write=False)
    return out


def rdp_per_step(
    *, sample_rate: float, noise_multiplier: float, orders: tuple[float, ...] = DEFAULT_ORDERS
) -> FloatArray:
    """RDP at each order of one step of the Poisson-subsampled Gaussian (read-only array).

    Arguments are assumed validated (see :mod:`dp.validation`); results are cached per
    (q, sigma, orders) since a history usually repeats its parameters.
    """
    return _rdp_cached(float(sample_rate), float(noise_multiplier), tuple(orders))


def epsilon_from_rdp(
    orders: tuple[float, ...] | FloatArray,
    rdp: FloatArray,
    delta: float,
    *,
    conversion: Literal["improved", "classic"] = "improved",
) -> tuple[float, float]:
    """(epsilon, best order) at ``delta`` from an RDP curve; see the module docstring."""
    alphas = np.asarray(orders, dtype=np.float64)
    rdp = np.asarray(rdp, dtype=np.float64)
    if conversion == "classic":
        eps = rdp - math.log(delta) / (alphas - 1.0)
    elif conversion == "improved":
        with np.errstate(divide="ignore", invalid="ignore"):
            eps = rdp + np.log1p(-1.0 / alphas) - np.log(delta * alphas) / (alphas - 1.0)
        eps = np.where(alphas > 1.01, eps, np.inf)
        # KL bound: delta <= sqrt(1 - exp(-rdp)) gives epsilon = 0 outright.
        kl_zero = delta**2 + np.expm1(-rdp) > 0
        eps = np.where(kl_zero, 0.0, eps)
    else:  # pragma: no cover - guarded by the Literal type
        raise ValueError(f"unknown conversion {conversion!r}")
    eps = np.where(np.isnan(eps), np.inf, eps)
    best = int(np.argmin(eps))
    return max(0.0, float(eps[best])), float(alphas[best])
