"""Issue 13, item 1: every driver checks DP-FedAvg's accounting assumptions against the
participation it really runs (who takes part, the fixed denominator, one step per
round), and refuses a mismatch by name."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

import dp
from protocols.participation import AccountingAssumptionError, Participation, check_dp_fedavg
from protocols.privacy_layer import PrivacyLayer

HASH = b"\x05" * 32


def _mech(q: float, expected: float) -> dp.DPFedAvg:
    return dp.DPFedAvg(
        clip_norm=1.0, noise_multiplier=1.0, expected_clients=expected, sample_rate=q
    )


def _ups(ids: range | list[int] | tuple[int, ...], d: int = 8) -> dict[int, np.ndarray]:
    rng = np.random.default_rng(3)
    return {c: rng.uniform(-0.3, 0.3, d) for c in ids}


def test_every_client_every_round_refuses_claimed_amplification() -> None:
    """On main a layer whose rounds take every client accepted sample_rate 0.1 and the
    ledger charged a tenth of the rounds' real cost."""
    with pytest.raises(AccountingAssumptionError, match="amplification"):
        PrivacyLayer(dp=_mech(0.1, 10.0), ledger=dp.PrivacyLedger.in_memory(delta=1e-5))


def test_the_fixed_denominator_and_the_population_are_checked() -> None:
    layer = PrivacyLayer(dp=_mech(1.0, 12.0), ledger=dp.PrivacyLedger.in_memory(delta=1e-5))
    with pytest.raises(AccountingAssumptionError, match="fixed denominator"):
        layer.aggregate(_ups(range(10)), model_hash=HASH)
    ok = PrivacyLayer(dp=_mech(1.0, 10.0), ledger=dp.PrivacyLedger.in_memory(delta=1e-5))
    assert ok.aggregate(_ups(range(10)), model_hash=HASH).status == "committed"
    with pytest.raises(AccountingAssumptionError, match="every client must be asked"):
        ok.aggregate(_ups(range(9)), model_hash=b"\x06" * 32)  # client 9 not asked


def test_poisson_cohorts_are_drawn_by_the_layer_and_enforced() -> None:
    n, q = 40, 0.25
    ledger = dp.PrivacyLedger.in_memory(delta=1e-5)
    layer = PrivacyLayer(
        dp=_mech(q, q * n), ledger=ledger, participation=Participation.poisson(q, n)
    )
    ticket = layer.begin_round()
    assert ticket.cohort is not None and set(ticket.cohort) <= set(range(n))
    outsider = next(c for c in range(n) if c not in ticket.cohort)
    with pytest.raises(AccountingAssumptionError, match="not sampled"):
        layer.aggregate(_ups([*ticket.cohort, outsider]), model_hash=HASH, ticket=ticket)
    assert ledger.entries[-1].status == "aborted_unreleased"  # refused before anything was sent
    ticket = layer.begin_round()
    assert ticket.cohort is not None
    out = layer.aggregate(_ups(ticket.cohort), model_hash=HASH, ticket=ticket)
    assert out.status == "committed" and out.survivors == ticket.cohort


def test_poisson_coins_have_the_stated_rate() -> None:
    p = Participation.poisson(0.05, 1000)
    sizes = np.array([len(p.sample(range(1000))) for _ in range(200)])
    # mean 50, std of the mean sqrt(47.5 / 200) = 0.49: a 6-sigma window
    assert abs(sizes.mean() - 50) < 3.0
    assert len({tuple(p.sample(range(1000))) for _ in range(5)}) == 5  # fresh coins


@pytest.mark.parametrize(
    ("participation", "q", "match"),
    [
        (Participation.poisson(0.1, 100), 0.2, "sampled at rate"),
        (Participation.poisson(0.1, 100, secret=False), 0.1, "no amplification"),
        (Participation.fixed_size(10, 100), 0.1, "not covered by the Poisson"),
    ],
)
def test_sampling_that_the_accountant_does_not_cover_is_refused(
    participation: Participation, q: float, match: str
) -> None:
    with pytest.raises(AccountingAssumptionError, match=match):
        check_dp_fedavg(_mech(q, q * 100), participation, where="test")


def test_a_cost_with_more_than_one_step_per_model_is_refused() -> None:
    mech = SimpleNamespace(
        sample_rate=1.0,
        expected_clients=5.0,
        round_cost=lambda: SimpleNamespace(params=SimpleNamespace(steps=2)),
    )
    with pytest.raises(AccountingAssumptionError, match="once per round"):
        check_dp_fedavg(mech, Participation.everyone(5), where="test")


def test_matching_participation_is_accepted() -> None:
    check_dp_fedavg(_mech(1.0, 7.0), Participation.everyone(7), where="test")
    check_dp_fedavg(_mech(0.1, 10.0), Participation.poisson(0.1, 100), where="test")


@pytest.mark.parametrize(
    "bad",
    [
        dict(sampling="sometimes"),
        dict(sampling="all", rate=0.5),
        dict(sampling="poisson", population=0),
        dict(sampling="poisson", population=10, rate=1.5),
        dict(sampling="fixed_size", population=10, cohort=11),
    ],
)
def test_bad_participation_gets_a_named_error(bad: dict[str, object]) -> None:
    with pytest.raises(AccountingAssumptionError):
        Participation(**bad)  # type: ignore[arg-type]
