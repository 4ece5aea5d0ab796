"""The exact samplers of dp.samplers (Canonne, Kamath & Steinke 2020, Algorithms 1-3;
exact Poisson and Skellam) against their exact laws: chi-square over the whole support,
tails pooled into the end bins. See tests/dp/discrete_stats.py for the test level."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from scipy import stats

from dp.errors import SamplerParameterError
from dp.samplers import (
    as_fraction,
    bernoulli_exp,
    discrete_gaussian,
    discrete_laplace,
    poisson,
    skellam,
)
from dp.secure_random import bernoulli, geometric_half
from tests.dp.discrete_stats import ALPHA, binned_chi_square, discrete_gaussian_pmf


def _draw(fn: object, n: int) -> np.ndarray:
    return np.array([fn() for _ in range(n)], dtype=np.int64)  # type: ignore[operator]


@pytest.mark.parametrize("gamma", [Fraction(0), Fraction(1, 3), Fraction(1), Fraction(17, 7)])
def test_bernoulli_exp_rate(gamma: Fraction) -> None:
    n = 20_000
    hits = sum(bernoulli_exp(gamma) for _ in range(n))
    assert stats.binomtest(hits, n, math.exp(-float(gamma))).pvalue > ALPHA


def test_bernoulli_and_geometric() -> None:
    n = 20_000
    assert (
        stats.binomtest(sum(bernoulli(Fraction(2, 7)) for _ in range(n)), n, 2 / 7).pvalue > ALPHA
    )
    assert not bernoulli(Fraction(0)) and bernoulli(Fraction(1))
    geo = _draw(geometric_half, n)
    p, _ = binned_chi_square(geo, lambda k: 0.5 ** (k + 1.0), lo=0, hi=60)
    assert p > ALPHA


@pytest.mark.parametrize("sigma2", [Fraction(49, 100), Fraction(9), Fraction(101, 4)])
def test_discrete_gaussian_fits(sigma2: Fraction) -> None:
    samples = _draw(lambda: discrete_gaussian(sigma2), 6_000)
    radius = int(12 * math.sqrt(sigma2)) + 5
    p, bins = binned_chi_square(
        samples, discrete_gaussian_pmf(float(sigma2)), lo=-radius, hi=radius
    )
    assert p > ALPHA and bins >= 5


def test_discrete_laplace_fits() -> None:
    scale = Fraction(5, 2)
    samples = _draw(lambda: discrete_laplace(scale), 8_000)
    p, _ = binned_chi_square(samples, lambda k: np.exp(-np.abs(k) / 2.5), lo=-80, hi=80)
    assert p > ALPHA


@pytest.mark.parametrize("lam", [Fraction(3, 10), Fraction(1), Fraction(37, 10)])
def test_poisson_fits(lam: Fraction) -> None:
    samples = _draw(lambda: poisson(lam), 8_000)
    p, _ = binned_chi_square(samples, lambda k: stats.poisson.pmf(k, float(lam)), lo=0, hi=60)
    assert p > ALPHA


def test_skellam_fits() -> None:
    lam = Fraction(5, 2)
    samples = _draw(lambda: skellam(lam), 6_000)
    law = stats.skellam(float(lam), float(lam))
    p, _ = binned_chi_square(samples, law.pmf, lo=-60, hi=60)
    assert p > ALPHA
    assert samples.var() == pytest.approx(5.0, rel=0.1)


@pytest.mark.parametrize("bad", [0, -1.5, math.nan, math.inf, True, "2", None])
def test_bad_parameters_are_named(bad: object) -> None:
    with pytest.raises(SamplerParameterError):
        as_fraction(bad, "sigma2")
    with pytest.raises(SamplerParameterError):
        discrete_gaussian(bad)  # type: ignore[arg-type]


def test_parameters_convert_exactly() -> None:
    assert as_fraction(0.1, "x") == Fraction(0.1)  # the float's exact value, not 1/10
    assert as_fraction(np.float64(2.5), "x") == Fraction(5, 2)
    assert as_fraction(np.int64(3), "x") == 3
    with pytest.raises(SamplerParameterError):
        bernoulli_exp(Fraction(-1))
