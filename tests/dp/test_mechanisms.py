"""DP-FedAvg: clipping, noise on the sum, fixed denominator, adaptive clipping,
quantisation sensitivity; every bad value a named error."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dp.errors import (
    ClipNormError,
    NoiseLocationError,
    NoiseMultiplierError,
    SampleRateError,
    UpdateError,
)
from dp.ledger import PrivacyLedger
from dp.mechanisms import (
    AdaptiveClipping,
    DPFedAvg,
    NoiseLocation,
    clip_l2,
    conditional_stochastic_round,
    rounded_sensitivity,
)
from tests.dp.stats import assert_centred_along, assert_noise, chi2_interval


def _mech(**kw: object) -> DPFedAvg:
    args: dict[str, object] = {
        "clip_norm": 1.0,
        "noise_multiplier": 1.0,
        "expected_clients": 10,
        "sample_rate": 0.1,
    }
    args.update(kw)
    return DPFedAvg(**args)  # type: ignore[arg-type]


@settings(max_examples=40)
@given(
    vec=st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=50),
    clip=st.floats(1e-3, 1e3),
)
def test_clip_bounds_norm(vec: list[float], clip: float) -> None:
    out, norm = clip_l2(np.array(vec), clip)
    assert np.linalg.norm(out) <= clip * (1 + 1e-12)
    if norm <= clip:
        np.testing.assert_array_equal(out, np.array(vec))


def test_release_uses_fixed_denominator_and_noise_std() -> None:
    mech = _mech(noise_multiplier=2.0, expected_clients=50)
    rng = np.random.default_rng(0)
    total = np.zeros(200_000)
    out = mech.release(total, rng=rng)
    assert mech.noise_std == 2.0
    assert out.std() == pytest.approx(2.0 / 50, rel=0.01)
    assert_noise(out, mech.noise_std / 50)  # chi^2 at confidence 1 - 1e-6
    # the number of participants is not an input: only the sum and the public m
    signal = mech.release(np.full(10, 50.0), rng=np.random.default_rng(1))
    assert np.all(np.abs(signal - 1.0) < 0.3)
    assert_centred_along(signal - 1.0, np.ones(10), mech.noise_std / 50)


def test_round_cost_accounts_inflated_sensitivity() -> None:
    sens = rounded_sensitivity(1.0, granularity=1e-3, dim=10_000)
    assert sens == pytest.approx(1.0 + 1e-3 * 100)
    mech = _mech(sensitivity=sens)
    assert mech.noise_std == pytest.approx(sens)
    cost = mech.round_cost()
    assert cost.params.sensitivity == pytest.approx(sens)
    assert cost.params.noise_multiplier == 1.0
    assert cost.noise_location == "central"
    ledger = PrivacyLedger.in_memory(delta=1e-5)
    entry = ledger.commit(ledger.begin_round(0, cost))
    assert entry.params.extra["expected_clients"] == 10.0
    # the noise released is the noise accounted: z * S on the sum, over m
    p = entry.params
    noise = mech.release(np.zeros(50_000), rng=np.random.default_rng(4))
    assert_noise(noise, p.noise_multiplier * p.sensitivity / float(p.extra["expected_clients"]))


def test_conditional_rounding_meets_its_bound() -> None:
    rng = np.random.default_rng(3)
    dim, gamma = 1000, 0.01
    tight = rounded_sensitivity(1.0, granularity=gamma, dim=dim, conditional=True)
    assert 1.0 < tight < rounded_sensitivity(1.0, granularity=gamma, dim=dim)
    for _ in range(20):
        x, _ = clip_l2(rng.normal(size=dim), 1.0)
        r = conditional_stochastic_round(x, granularity=gamma, bound=tight, rng=rng)
        assert np.linalg.norm(r) <= tight
        assert np.allclose(r / gamma, np.round(r / gamma))


def test_adaptive_clipping_noise_split_and_update() -> None:
    ada = AdaptiveClipping(
        initial_clip=1.0, target_quantile=0.5, learning_rate=0.2, count_noise_std=5.0
    )
    z_upd = ada.update_noise_multiplier(1.0)
    # Andrew et al. Thm 1: the two noises together are one Gaussian at the total z
    assert (z_upd**-2 + (2 * 5.0) ** -2) ** -0.5 == pytest.approx(1.0)
    assert z_upd > 1.0
    with pytest.raises(NoiseMultiplierError):
        ada.update_noise_multiplier(10.0)
    mech = _mech(adaptive=ada, expected_clients=100)
    assert mech.round_cost().params.noise_multiplier == 1.0
    # all clients clipped -> clip grows; none clipped -> clip shrinks
    rng = np.random.default_rng(0)
    bits = sum(mech.clip(np.full(4, 10.0)).indicator or 0.0 for _ in range(100))
    mech.release(np.zeros(4), rng=rng, indicator_sum=bits)
    assert mech.clip_norm > 1.0
    small = sum(mech.clip(np.full(4, 1e-3)).indicator or 0.0 for _ in range(100))
    before = mech.clip_norm
    mech.release(np.zeros(4), rng=rng, indicator_sum=small)
    assert mech.clip_norm < before
    with pytest.raises(UpdateError):
        mech.release(np.zeros(4), rng=rng)


def test_distributed_noise_interface_reserved() -> None:
    assert NoiseLocation.DISTRIBUTED.value == "distributed"
    with pytest.raises(NoiseLocationError):
        _mech(noise_location=NoiseLocation.DISTRIBUTED)


@pytest.mark.parametrize(
    ("kw", "error"),
    [
        ({"noise_multiplier": -1.0}, NoiseMultiplierError),
        ({"noise_multiplier": math.nan}, NoiseMultiplierError),
        ({"noise_multiplier": 0.0}, NoiseMultiplierError),
        ({"clip_norm": 0.0}, ClipNormError),
        ({"clip_norm": -2.0}, ClipNormError),
        ({"sample_rate": 0.0}, SampleRateError),
        ({"sample_rate": 1.5}, SampleRateError),
        ({"sample_rate": math.nan}, SampleRateError),
        ({"sensitivity": 0.5}, ClipNormError),
    ],
)
def test_bad_parameters_are_named_errors(kw: dict[str, object], error: type[Exception]) -> None:
    with pytest.raises(error):
        _mech(**kw)
    assert issubclass(error, ValueError)


def test_bad_updates() -> None:
    mech = _mech()
    with pytest.raises(UpdateError):
        mech.clip(np.array([1.0, math.nan]))
    with pytest.raises(UpdateError):
        mech.clip(np.ones((2, 2)))
    with pytest.raises(UpdateError):
        mech.release(np.array([math.inf]), rng=np.random.default_rng(0))


def test_adaptive_clipping_adds_both_accounted_noises() -> None:
    """The update noise is z_update * C on the sum (what the ledger's ``noise_std``
    says), and the count noise on the bits is ``count_noise_std``: recovered from each
    clip step, log(C'/C) = -lr (noisy_bits / m + 1/2 - target), over 2 000 rounds."""
    ada = AdaptiveClipping(
        initial_clip=1.0, target_quantile=0.5, learning_rate=0.01, count_noise_std=5.0
    )
    m = 100.0
    mech = _mech(adaptive=ada, expected_clients=m)
    extra = mech.round_cost().params.extra
    rng = np.random.default_rng(7)
    before = mech.clip_norm
    noise = mech.release(np.zeros(50_000), rng=rng, indicator_sum=0.0)
    assert extra["noise_std"] == pytest.approx(mech.update_noise_multiplier * before)
    assert_noise(noise * m, float(extra["noise_std"]))
    counts = []
    for _ in range(2000):
        old = mech.clip_norm
        mech.release(np.zeros(1), rng=rng, indicator_sum=0.0)
        step = -math.log(mech.clip_norm / old) / ada.learning_rate
        counts.append(m * (step - 0.5 + ada.target_quantile))  # noisy bits, true sum 0
    assert_noise(np.array(counts), ada.count_noise_std)


def test_the_noise_checks_reject_missing_short_or_shifted_noise() -> None:
    """Controls for tests/dp/stats.py: honest Gaussian noise passes; no noise, noise
    20% short or 20% long, and a release shifted by 20% of its clip along the signal
    fail."""
    rng = np.random.default_rng(11)
    sigma, d = 0.3, 10_000
    honest = rng.normal(0.0, sigma, d)
    assert_noise(honest, sigma)
    lo, hi = chi2_interval(d)
    assert 0.9 * d < lo < d < hi < 1.1 * d  # the interval the docstring states
    for bad in (np.zeros(d), 0.8 * honest, 1.2 * honest):
        with pytest.raises(AssertionError, match="chi"):
            assert_noise(bad, sigma)
    signal = rng.uniform(-1.0, 1.0, d)
    signal *= 50 * sigma / np.linalg.norm(signal)  # a clipped sum of norm 50 sigma
    assert_centred_along(honest, signal, sigma)
    with pytest.raises(AssertionError, match="along the signal"):
        assert_centred_along(honest + 0.2 * signal, signal, sigma)
