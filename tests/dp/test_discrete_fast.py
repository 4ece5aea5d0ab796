"""The vectorised table samplers (dp.fast_samplers) against the exact laws: the law a
table samples is within its stated ``tv_bound`` of the exact pmf (computed here
independently, in 60-digit decimal arithmetic), draws fit it (chi-square, tails
pooled), they agree with the exact rational samplers, and the large-sigma decomposition
has the right variance, shape and uniform low bits."""

from __future__ import annotations

import decimal
import itertools
import math
from fractions import Fraction

import numpy as np
import pytest
from scipy import special, stats

from dp.errors import SamplerParameterError
from dp.fast_samplers import (
    TABLE_MAX_SIGMA,
    FastDiscreteGaussian,
    FastSkellam,
    delta_slack,
    discrete_gaussian_sampler,
    discrete_gaussian_table,
    sample_discrete_gaussian,
    sample_skellam,
    skellam_table,
    smoothing_error,
)
from dp.samplers import discrete_gaussian
from tests.dp.discrete_stats import ALPHA, binned_chi_square, discrete_gaussian_pmf

CTX = decimal.Context(prec=60)


def _exact_gaussian_magnitudes(sigma2: Fraction, top: int) -> list[decimal.Decimal]:
    """P(|X| = j), j <= top, for N_Z(0, sigma2), each weight from its own exp()."""
    with decimal.localcontext(CTX):
        var = decimal.Decimal(sigma2.numerator) / decimal.Decimal(sigma2.denominator)
        w = [(decimal.Decimal(-j * j) / (2 * var)).exp() for j in range(top + 200)]
        total = w[0] + 2 * sum(w[1:])
        return [w[0] / total] + [2 * x / total for x in w[1 : top + 1]]


def _exact_skellam_magnitudes(lam: Fraction, top: int) -> list[decimal.Decimal]:
    """P(|X| = j) for Poisson(lam) - Poisson(lam): e^-2lam sum_m lam^(2m+j)/(m!(m+j)!)."""
    with decimal.localcontext(CTX):
        x = decimal.Decimal(lam.numerator) / decimal.Decimal(lam.denominator)
        pre = (-2 * x).exp()
        out = []
        for j in range(top + 1):
            term = x**j / math.factorial(j)
            total, m = decimal.Decimal(0), 0
            while term > decimal.Decimal(10) ** -70 * total or m < 5:
                total += term
                m += 1
                term = term * x * x / (m * (m + j))
            out.append(pre * total * (1 if j == 0 else 2))
        return out


def _distance(table_law: list[Fraction], exact: list[decimal.Decimal]) -> decimal.Decimal:
    """Total variation between the table's |X| law and the exact one (tail included)."""
    with decimal.localcontext(CTX):
        q = [decimal.Decimal(f.numerator) / decimal.Decimal(f.denominator) for f in table_law]
        body = sum(abs(a - b) for a, b in zip(q, exact, strict=False))
        tail = 1 - sum(exact[: len(q)])
        return (body + abs(tail)) / 2


@pytest.mark.parametrize("sigma", [Fraction(1, 2), Fraction(3, 2), Fraction(7), Fraction(40)])
def test_gaussian_table_is_within_its_stated_distance(sigma: Fraction) -> None:
    table = discrete_gaussian_table(sigma * sigma)
    exact = _exact_gaussian_magnitudes(sigma * sigma, table.support + 30)
    tv = _distance(table.magnitude_law(), exact)
    assert tv <= decimal.Decimal(table.tv_bound)
    assert table.tv_bound <= 2.0**-100
    assert sum(table.magnitude_law()) == 1  # the law is exactly a probability law


@pytest.mark.parametrize("lam", [Fraction(1, 4), Fraction(5, 2), Fraction(20)])
def test_skellam_table_is_within_its_stated_distance(lam: Fraction) -> None:
    table = skellam_table(lam)
    exact = _exact_skellam_magnitudes(lam, table.support + 20)
    assert _distance(table.magnitude_law(), exact) <= decimal.Decimal(table.tv_bound)


def test_large_skellam_table_matches_scipy() -> None:
    table = skellam_table(Fraction(50_000))
    law = np.array([float(f) for f in table.magnitude_law()])
    k = np.arange(table.support + 1)
    ref = stats.skellam.pmf(k, 50_000, 50_000) * np.where(k == 0, 1.0, 2.0)
    np.testing.assert_allclose(law, ref, rtol=1e-9, atol=2.0**-120)  # float64 reference


@pytest.mark.parametrize("sigma", [0.8, 3.0, 55.5, 3000.0])
def test_fast_gaussian_draws_fit_the_exact_law(sigma: float) -> None:
    draws = sample_discrete_gaussian(400_000, sigma)
    radius = int(14 * sigma) + 5
    p, _ = binned_chi_square(draws, discrete_gaussian_pmf(sigma * sigma), lo=-radius, hi=radius)
    assert p > ALPHA


def test_the_fit_rejects_a_wrong_law() -> None:
    draws = sample_discrete_gaussian(400_000, 3.0)
    p, _ = binned_chi_square(draws, discrete_gaussian_pmf(3.05**2), lo=-50, hi=50)
    assert p < ALPHA  # a 1.7% error in sigma is caught at this size


@pytest.mark.parametrize("variance", [0.5, 10.0, 4096.0, 2.0**29])
def test_fast_skellam_draws_fit(variance: float) -> None:
    sampler = FastSkellam(Fraction(variance))
    assert sampler.shares == (2 if variance > TABLE_MAX_SIGMA**2 else 1)
    draws = sampler.sample(300_000)
    lam = variance / 2.0
    radius = int(14 * math.sqrt(variance)) + 20
    p, _ = binned_chi_square(
        draws, lambda k: special.ive(np.abs(k), 2.0 * lam), lo=-radius, hi=radius
    )
    assert p > ALPHA


def test_fast_and_exact_samplers_agree() -> None:
    exact = np.array([discrete_gaussian(Fraction(9)) for _ in range(4000)])
    fast = sample_discrete_gaussian(200_000, 3.0)
    edges = np.array([-100, -6, -4, -3, -2, -1, 0, 1, 2, 3, 4, 6, 100])
    table = np.vstack([np.histogram(exact, edges)[0], np.histogram(fast, edges)[0]])
    assert stats.chi2_contingency(table).pvalue > ALPHA


def test_lookup_matches_a_brute_force_search() -> None:
    table = discrete_gaussian_table(Fraction(25))
    rng = np.random.default_rng(1)  # test inputs only: the words to map, not noise
    words = rng.integers(0, 2**64, 50_000, dtype=np.uint64, endpoint=False)
    bounds = table.hi[:-1]  # the top words of the thresholds
    near = np.concatenate([bounds - np.uint64(1), bounds + np.uint64(1)])  # next to them
    near = near[~np.isin(near, table.hi)]  # (equal ones are ties: the next test)
    words = np.concatenate([words, near, near | np.uint64(1 << 63)])
    top = words & np.uint64((1 << 63) - 1)
    magnitude = np.searchsorted(table.hi, top, side="right")
    want = np.where(words >> np.uint64(63) == 1, -magnitude, magnitude)
    np.testing.assert_array_equal(table.lookup(words), want)


def test_ties_read_fresh_low_words() -> None:
    table = discrete_gaussian_table(Fraction(4))
    j = 2
    tied = np.full(40_000, table.hi[j], dtype=np.uint64)
    got = table.lookup(tied)
    assert set(np.unique(got)) <= {j, j + 1}
    # |X| = j + 1 exactly when the fresh low word is >= lo_j
    want = 1.0 - float(table.lo[j]) / 2.0**64
    assert stats.binomtest(int((got == j + 1).sum()), got.size, want).pvalue > ALPHA


def test_decomposition_is_exact_in_variance_and_smooth() -> None:
    for sigma in (2.0**14 * 1.01, 2.0**25.3, 2.0**40, 2.0**40.7, 2.0**47):
        sampler = FastDiscreteGaussian(Fraction(sigma) ** 2)
        parts = [(t.parameter, m) for t, m in sampler.levels]
        assert sum(v * m * m for v, m in parts) == Fraction(sigma) ** 2
        mults = [m for _, m in parts]
        assert mults == sorted(mults) and all(b // a <= 2**11 for a, b in itertools.pairwise(mults))
        assert 16 <= parts[-1][0] < 120 and sampler.tv_bound < 2.0**-100
    assert smoothing_error(8.0) < 2.0**-220


def test_large_sigma_draws_have_gaussian_shape_and_uniform_low_bits() -> None:
    sigma = 2.0**40 * 1.37
    draws = discrete_gaussian_sampler(sigma).sample(200_000)
    z = draws / sigma
    assert stats.kstest(z, "norm").pvalue > ALPHA
    assert stats.chisquare(np.bincount(draws & 1023, minlength=1024)).pvalue > ALPHA
    assert stats.chisquare(np.bincount((draws >> 30) & 255, minlength=256)).pvalue > ALPHA


def test_ranges_and_slack() -> None:
    with pytest.raises(SamplerParameterError):
        discrete_gaussian_table(Fraction(TABLE_MAX_SIGMA + 1) ** 2)
    with pytest.raises(SamplerParameterError):
        FastSkellam(Fraction(2.0**40))  # would need over 256 shares
    with pytest.raises(SamplerParameterError):
        sample_skellam(-1, 4.0)
    assert sample_skellam((3, 4), 4.0).shape == (3, 4)
    assert delta_slack(1e-30, 10**6, 1.0) == pytest.approx((1 + math.e) * 1e-24)
