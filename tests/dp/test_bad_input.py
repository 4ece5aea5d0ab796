"""Bad privacy parameters are named errors (and ValueErrors) everywhere."""

from __future__ import annotations

import math

import pytest

from dp import accounting
from dp.accountants import MechanismStep, RDPAccountant
from dp.errors import (
    DeltaError,
    DPError,
    EpsilonError,
    NoiseMultiplierError,
    SampleRateError,
    StepsError,
)
from dp.validation import check_delta


@pytest.mark.parametrize("sigma", [-1.0, math.nan, math.inf, 0.0, "1", True])
def test_noise_multiplier(sigma: object) -> None:
    with pytest.raises(NoiseMultiplierError):
        accounting.epsilon(sample_rate=0.1, noise_multiplier=sigma, steps=1, delta=1e-5)  # type: ignore[arg-type]
    with pytest.raises(NoiseMultiplierError):
        RDPAccountant().step(noise_multiplier=sigma, sample_rate=0.1)  # type: ignore[arg-type]


@pytest.mark.parametrize("q", [0.0, -0.1, 1.0000001, math.nan, math.inf])
def test_sample_rate(q: float) -> None:
    with pytest.raises(SampleRateError):
        MechanismStep(q, 1.0, 1)


@pytest.mark.parametrize("steps", [-1, 1.5, "3", True])
def test_steps(steps: object) -> None:
    with pytest.raises(StepsError):
        MechanismStep(0.1, 1.0, steps)  # type: ignore[arg-type]


@pytest.mark.parametrize("delta", [0.0, 1.0, -1e-5, math.nan, 2.0])
def test_delta_range(delta: float) -> None:
    with pytest.raises(DeltaError):
        accounting.epsilon(sample_rate=0.1, noise_multiplier=1.0, steps=1, delta=delta)


def test_delta_not_below_one_over_n() -> None:
    with pytest.raises(DeltaError, match="1/n"):
        check_delta(1e-3, population=1000)
    assert check_delta(1e-4, population=1000) == 1e-4


@pytest.mark.parametrize("eps", [0.0, -1.0, math.nan, math.inf])
def test_target_epsilon(eps: float) -> None:
    with pytest.raises(EpsilonError):
        accounting.noise_multiplier(target_epsilon=eps, delta=1e-5, sample_rate=0.1, steps=10)


def test_hierarchy() -> None:
    for err in (NoiseMultiplierError, SampleRateError, DeltaError, EpsilonError, StepsError):
        assert issubclass(err, DPError) and issubclass(err, ValueError)
