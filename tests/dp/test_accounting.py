"""The accounting API, the incremental accountants, and their cross-checks against the
libraries' from-scratch results."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dp import accounting
from dp.accountants import MechanismStep, PLDAccountant, PRVAccountant, RDPAccountant
from dp.errors import NoiseCalibrationError, UnknownAccountantError


def _varied(rounds: int, seed: int) -> list[MechanismStep]:
    rng = np.random.default_rng(seed)
    return [
        MechanismStep(float(rng.uniform(0.005, 0.05)), float(rng.uniform(0.8, 1.6)), 1)
        for _ in range(rounds)
    ]


def test_api_is_keyword_only() -> None:
    with pytest.raises(TypeError):
        accounting.epsilon(0.01, 1.0, 10, 1e-5)  # type: ignore[misc]
    with pytest.raises(TypeError):
        accounting.noise_multiplier(1.0, 1e-5, 0.01, 10)  # type: ignore[misc]


@pytest.mark.parametrize("name", ["rdp", "pld"])
def test_noise_multiplier_meets_target(name: str) -> None:
    kw = {"delta": 1e-5, "sample_rate": 0.01, "steps": 500}
    sigma = accounting.noise_multiplier(target_epsilon=2.0, accountant=name, **kw)  # type: ignore[arg-type]
    eps = accounting.epsilon(noise_multiplier=sigma, accountant=name, **kw)  # type: ignore[arg-type]
    assert eps <= 2.0
    looser = accounting.epsilon(noise_multiplier=sigma * 0.99, accountant=name, **kw)  # type: ignore[arg-type]
    assert looser > 2.0 * 0.98


def test_noise_multiplier_pld_needs_less_noise_than_rdp() -> None:
    kw = {"target_epsilon": 1.0, "delta": 1e-5, "sample_rate": 0.02, "steps": 200}
    assert accounting.noise_multiplier(**kw, accountant="pld") < accounting.noise_multiplier(  # type: ignore[arg-type]
        **kw,
        accountant="rdp",  # type: ignore[arg-type]
    )


def test_noise_multiplier_unreachable() -> None:
    with pytest.raises(NoiseCalibrationError):
        accounting.noise_multiplier(target_epsilon=1e-9, delta=1e-5, sample_rate=1.0, steps=10**6)


def test_unknown_accountant() -> None:
    with pytest.raises(UnknownAccountantError):
        accounting.epsilon(
            sample_rate=0.1,
            noise_multiplier=1.0,
            steps=1,
            delta=1e-5,
            accountant="gdp",  # type: ignore[arg-type]
        )


def test_history_form_and_each_accountant() -> None:
    history = [MechanismStep(0.01, 1.0, 100), MechanismStep(0.02, 1.5, 50)]
    both = accounting.epsilons_for_history(history, delta=1e-5)
    assert set(both) == {"rdp", "pld"}
    assert both["pld"] < both["rdp"]
    assert both["rdp"] == accounting.epsilon_for_history(history, delta=1e-5)


def test_empty_history_is_zero() -> None:
    for acc in (RDPAccountant(), PLDAccountant(), PRVAccountant()):
        assert acc.get_epsilon(1e-5) == 0.0


def test_prv_on_request_matches_pld() -> None:
    history = _varied(5, seed=3)
    prv, pld = PRVAccountant(), PLDAccountant()
    for step in history:
        prv.compose(step)
        pld.compose(step)
    # both are upper bounds within their error (PRV eps_error 0.01, PLD grid 1e-3)
    assert prv.get_epsilon(1e-5) == pytest.approx(pld.get_epsilon(1e-5), abs=0.05)


def _from_scratch_dp_accounting(history: list[MechanismStep], delta: float, kind: str) -> float:
    """The library's own accountant, fed the whole history as one composed event."""
    import dp_accounting

    from dp.accountants import PLD_DISCRETIZATION

    acc = (
        dp_accounting.rdp.RdpAccountant()
        if kind == "rdp"
        else dp_accounting.pld.PLDAccountant(value_discretization_interval=PLD_DISCRETIZATION)
    )
    acc.compose(
        dp_accounting.ComposedDpEvent(
            [
                dp_accounting.SelfComposedDpEvent(
                    dp_accounting.PoissonSampledDpEvent(
                        s.sample_rate, dp_accounting.GaussianDpEvent(s.noise_multiplier)
                    ),
                    s.steps,
                )
                for s in history
            ]
        )
    )
    return float(acc.get_epsilon(delta))


def _rdp_from_scratch_dp_accounting(history: list[MechanismStep], delta: float) -> float:
    return _from_scratch_dp_accounting(history, delta, "rdp")


def _pld_from_scratch_dp_accounting(history: list[MechanismStep], delta: float) -> float:
    return _from_scratch_dp_accounting(history, delta, "pld")


def _cross_check(history: list[MechanismStep]) -> None:
    delta = 1e-5
    rdp, pld = RDPAccountant(), PLDAccountant()
    for step in history:  # incremental: one round at a time, querying as a ledger does
        rdp.compose(step)
        pld.compose(step)
        rdp.get_epsilon(delta)
    eps_rdp, eps_pld = rdp.get_epsilon(delta), pld.get_epsilon(delta)
    assert eps_rdp == pytest.approx(_rdp_from_scratch_dp_accounting(history, delta), rel=1e-9)
    # same PLDs composed in the same order; the library's event traversal rounds the
    # truncated tails slightly differently (measured 7e-9 relative at 1000 rounds)
    assert eps_pld == pytest.approx(_pld_from_scratch_dp_accounting(history, delta), rel=1e-6)
    from opacus.accountants import RDPAccountant as OpacusRDP

    opacus_acc = OpacusRDP()
    for step in history:
        opacus_acc.step(noise_multiplier=step.noise_multiplier, sample_rate=step.sample_rate)
    # Opacus: other orders, same conversion formula; a looser or equal bound
    assert opacus_acc.get_epsilon(delta) == pytest.approx(eps_rdp, rel=0.02)
    assert eps_rdp >= eps_pld


def test_incremental_equals_from_scratch_varied_60_rounds() -> None:
    _cross_check(_varied(60, seed=7))


@pytest.mark.slow
def test_incremental_equals_from_scratch_varied_1000_rounds() -> None:
    _cross_check(_varied(1000, seed=11))


@settings(max_examples=25)
@given(
    q=st.floats(1e-3, 1.0),
    sigma=st.floats(0.5, 8.0),
    steps=st.integers(1, 300),
    delta_exp=st.integers(3, 9),
)
def test_rdp_is_never_below_pld(q: float, sigma: float, steps: int, delta_exp: int) -> None:
    kw = {"sample_rate": q, "noise_multiplier": sigma, "steps": steps, "delta": 10.0**-delta_exp}
    rdp = accounting.epsilon(**kw, accountant="rdp")  # type: ignore[arg-type]
    pld = accounting.epsilon(**kw, accountant="pld")  # type: ignore[arg-type]
    # PLD is an upper bound on the true epsilon, tight to its grid (1e-3 per composition
    # at worst); RDP is an upper bound too, never tighter than the true curve.
    assert rdp >= pld - 1e-3 * steps or math.isclose(rdp, pld, rel_tol=1e-3)


def test_unsampled_steps_compose_exactly() -> None:
    import dp_accounting

    pld = PLDAccountant()
    sigmas = [1.0, 2.0, 1.5, 3.0]
    for s in sigmas:
        pld.step(noise_multiplier=s, sample_rate=1.0)
    sigma_eff = 1.0 / math.sqrt(sum(1.0 / s**2 for s in sigmas))
    exact = dp_accounting.get_epsilon_gaussian(sigma_eff, 1e-5)
    assert pld.get_epsilon(1e-5) == pytest.approx(exact, rel=1e-9)
    assert pld.get_epsilon(1e-5) <= _pld_from_scratch_dp_accounting(
        [MechanismStep(1.0, s, 1) for s in sigmas], 1e-5
    )


def test_mixed_sampled_and_unsampled() -> None:
    history = [MechanismStep(0.05, 1.2, 3), MechanismStep(1.0, 4.0, 2), MechanismStep(0.1, 1.0, 1)]
    ours = accounting.epsilon_for_history(history, delta=1e-6, accountant="pld")
    ref = _pld_from_scratch_dp_accounting(history, 1e-6)
    assert ours == pytest.approx(ref, rel=0.01)


def test_query_cost_stays_flat_with_varying_parameters() -> None:
    # Not a timed benchmark (see `secagg bench dp`): a loose sanity bound only.
    rdp = RDPAccountant()
    for step in _varied(300, seed=5):
        rdp.compose(step)
    start = time.perf_counter()
    rdp.step(noise_multiplier=1.234567, sample_rate=0.0123457)
    rdp.get_epsilon(1e-5)
    assert time.perf_counter() - start < 1.0
