"""The CSPRNG replacement of the central DP noise (dp.secure_noise, used by
dp.DPFedAvg.release and dp.AdaptiveClipping.step): its std and shape, its grid (every
output an exact grid point, the grid a function of the std only), the stated distance to
the rounded Gaussian, and that a numpy generator passed in no longer drives the noise."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy import stats

from dp.errors import SamplerParameterError, UpdateError
from dp.mechanisms import (
    AdaptiveClipping,
    DPFedAvg,
    conditional_stochastic_round,
    rounded_sensitivity,
    secure_unit_uniforms,
)
from dp.secure_noise import (
    GRID_BITS,
    add_secure_gaussian,
    grid_distance,
    noise_grid,
    rounding_inflation,
    secure_gaussian,
    secure_gaussian_scalar,
)
from tests.dp.discrete_stats import ALPHA


@pytest.mark.parametrize("std", [1e-4, 0.37, 1.0, 250.0])
def test_secure_gaussian_is_normal_with_the_std(std: float) -> None:
    noise = secure_gaussian(100_000, std)
    assert stats.kstest(noise / std, "norm").pvalue > ALPHA
    lo, hi = stats.chi2.ppf([ALPHA / 2, 1 - ALPHA / 2], noise.size)
    assert lo < float(np.sum((noise / std) ** 2)) < hi
    assert isinstance(secure_gaussian_scalar(std), float)


def test_grid_depends_on_the_std_only_and_is_a_power_of_two() -> None:
    for std in (1e-3, 0.7, 1.0, 3.0, 1e5):
        grid = noise_grid(std)
        assert math.frexp(grid)[0] == 0.5
        assert 2.0**GRID_BITS <= std / grid < 2.0 ** (GRID_BITS + 1)
        assert grid_distance(std, grid) < 2.0**-74


def test_outputs_are_exact_grid_points() -> None:
    std = 0.3
    grid = noise_grid(std)
    values = np.random.default_rng(0).uniform(-50, 50, 10_000)  # data, not noise
    out = add_secure_gaussian(values, std)
    steps = out / grid
    np.testing.assert_array_equal(steps, np.rint(steps))
    # the released value depends on the data only through the integer: two inputs in
    # the same grid cell give identically distributed outputs on the same lattice
    a = add_secure_gaussian(np.full(50_000, 1.0 + 0.1 * grid), std)
    b = add_secure_gaussian(np.full(50_000, 1.0 + 0.4 * grid), std)
    assert np.all(np.rint(a / grid) == a / grid) and np.all(np.rint(b / grid) == b / grid)
    assert stats.ks_2samp(a, b).pvalue > ALPHA


def test_values_on_the_grid_are_not_moved() -> None:
    counts = np.arange(-20, 21) * 0.5  # an adaptive-clipping count is on the grid
    grid = noise_grid(1.0)
    assert np.all(np.rint(counts / grid) * grid == counts)
    assert rounding_inflation(grid, 10_000) == pytest.approx(grid * 100)


def test_bad_values() -> None:
    with pytest.raises(UpdateError):
        add_secure_gaussian([1.0, math.nan], 1.0)
    with pytest.raises(SamplerParameterError):
        secure_gaussian(3, 0.0)
    with pytest.raises(SamplerParameterError):
        add_secure_gaussian([1.0], 1.0, grid=0.3)  # not a power of two
    with pytest.raises(SamplerParameterError):
        add_secure_gaussian([2.0**30], 1.0)  # beyond int64 on the grid


def test_release_ignores_a_seeded_generator_and_warns() -> None:
    mech = DPFedAvg(clip_norm=1.0, noise_multiplier=1.0, expected_clients=10, sample_rate=0.1)
    with pytest.warns(DeprecationWarning, match="ignored"):
        first = mech.release(np.zeros(1000), rng=np.random.default_rng(5))
    with pytest.warns(DeprecationWarning):
        second = mech.release(np.zeros(1000), rng=np.random.default_rng(5))
    assert not np.array_equal(first, second)  # the seed no longer determines the noise
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = mech.release(np.zeros(200_000))  # no rng: no warning
    grid = noise_grid(mech.noise_std)
    std = mech.noise_std + rounding_inflation(grid, 200_000)  # z (S + gamma sqrt(d))
    assert out.std() * 10 == pytest.approx(std, rel=0.01)


def test_adaptive_step_and_rounding_ignore_rng() -> None:
    ada = AdaptiveClipping(initial_clip=1.0, count_noise_std=2.0)
    with pytest.warns(DeprecationWarning):
        ada.step(10.0, 100.0, np.random.default_rng(0))
    ada.step(10.0, 100.0)
    bound = rounded_sensitivity(1.0, granularity=0.01, dim=100, conditional=True)
    x = np.full(100, 0.0999)
    with pytest.warns(DeprecationWarning):
        conditional_stochastic_round(x, granularity=0.01, bound=bound, rng=np.random.default_rng(0))
    rounded = np.array(
        [conditional_stochastic_round(x, granularity=0.01, bound=bound) for _ in range(300)]
    )
    assert rounded.mean() == pytest.approx(0.0999, abs=5e-4)  # unbiased up to the bound


def test_rounding_coins_are_uniform() -> None:
    u = secure_unit_uniforms(200_000)
    assert u.min() >= 0.0 and u.max() < 1.0
    assert stats.kstest(u, "uniform").pvalue > ALPHA
