"""Empirical privacy audit of DP-SGD with white-box gradient canaries.

Three directions: the audit has power (a non-private run gets a large lower bound), the
accounting holds (the DP run's bound stays below the accounted epsilon), and a
mechanism that applies 0.1 sigma while reporting sigma is caught (bound above it).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from protocols.attacks.audit import (
    clopper_pearson_audit,
    clopper_pearson_upper,
    one_run_audit,
    one_run_epsilon,
    one_run_p_value,
)

GUARANTEES = ("D6",)

SIGMA, STEPS, K = 4.0, 4, 250  # accounted eps ~ 2.17 at delta 1e-5 (RDP)


def test_one_run_bound_matches_the_closed_form_when_every_guess_is_right() -> None:
    # delta = 0, r = v: P[Bin(r, q) >= r] = q^r = 0.05  =>  eps = log(q / (1 - q))
    q = 0.05 ** (1 / 100)
    assert one_run_epsilon(100, 100, 100, 0.0) == pytest.approx(math.log(q / (1 - q)), abs=1e-6)
    # chance-level guessing proves nothing; the delta term only loosens the bound
    assert one_run_epsilon(1000, 200, 100, 1e-5) == 0.0
    assert one_run_epsilon(1000, 200, 180, 1e-5) < one_run_epsilon(1000, 200, 180, 0.0)
    ps = [one_run_p_value(1000, 200, 150, e, 1e-5) for e in (0.0, 0.5, 1.0, 2.0)]
    assert ps == sorted(ps)


def test_clopper_pearson_upper_bound() -> None:
    assert clopper_pearson_upper(0, 100, 0.05) == pytest.approx(1 - 0.05 ** (1 / 100))
    assert clopper_pearson_upper(100, 100, 0.05) == 1.0
    rng = np.random.default_rng(0)
    same = clopper_pearson_audit(rng.normal(size=500), rng.normal(size=500), delta=1e-5)
    assert same.epsilon_lower_bound < 0.3
    apart = clopper_pearson_audit(rng.normal(6, 1, 500), rng.normal(size=500), delta=1e-5)
    assert apart.epsilon_lower_bound > 3.0


@pytest.fixture(scope="module")
def runs() -> dict[str, object]:
    pytest.importorskip("torch")
    pytest.importorskip("sklearn")
    from protocols.attacks.canaries import dpsgd_with_canaries

    return {
        "non_private": dpsgd_with_canaries(noise_multiplier=0.0, steps=STEPS),
        "dp": dpsgd_with_canaries(noise_multiplier=SIGMA, steps=STEPS),
        "broken": dpsgd_with_canaries(noise_multiplier=SIGMA, steps=STEPS, noise_scale=0.1),
    }


def _audit(run: object) -> float:
    res = one_run_audit(run.scores, run.included, k_pos=K, k_neg=K, delta=run.delta)  # type: ignore[attr-defined]
    return res.epsilon_lower_bound


def test_one_run_audit_has_power_on_a_non_private_run(runs: dict[str, object]) -> None:
    assert _audit(runs["non_private"]) > 4.0


def test_one_run_audit_stays_below_the_accounted_epsilon(runs: dict[str, object]) -> None:
    run = runs["dp"]
    assert 1.5 < run.accounted_epsilon < 3.0  # type: ignore[attr-defined]
    assert _audit(run) < run.accounted_epsilon  # type: ignore[attr-defined]


def test_one_run_audit_flags_noise_below_the_logged_sigma(runs: dict[str, object]) -> None:
    run = runs["broken"]
    assert run.noise_multiplier == SIGMA  # type: ignore[attr-defined]  # what the ledger sees
    assert _audit(run) > run.accounted_epsilon + 1.0  # type: ignore[attr-defined]


@pytest.mark.slow
def test_multi_run_clopper_pearson_audit() -> None:
    """200 runs in and 200 out per mechanism; about a minute on one core."""
    pytest.importorskip("torch")
    from protocols.attacks.canaries import dpsgd_with_canaries, multi_run_scores

    accounted = dpsgd_with_canaries(
        noise_multiplier=SIGMA, steps=STEPS, canaries=1
    ).accounted_epsilon
    ins, outs = multi_run_scores(noise_multiplier=SIGMA, steps=STEPS, runs=200)
    dp = clopper_pearson_audit(ins, outs, delta=1e-5)
    ins, outs = multi_run_scores(noise_multiplier=SIGMA, steps=STEPS, runs=200, noise_scale=0.1)
    broken = clopper_pearson_audit(ins, outs, delta=1e-5)
    print(accounted, dp, broken)
    assert dp.epsilon_lower_bound < accounted
    assert broken.epsilon_lower_bound > accounted
