"""Values the server chooses against the clients: the session's parameters, a victim's
neighbourhood, and per-client stories of who is alive. Each attack tries to recover the
victim's input; each has a control in which the same code recovers it from a weakened
client (policy off, graph choosable, attestation off)."""

from __future__ import annotations

import pytest

from protocols.attacks.server_attacks import (
    AttackOutcome,
    forced_neighbourhood,
    isolation_attack,
    policy_downgrade,
)

GUARANTEES = ("ACT-1", "ACT-7", "ACT-13", "ACT-14")


def _at_chance(out: AttackOutcome) -> None:
    assert not out.succeeded
    assert out.error >= 0.9 * out.chance_error or out.error == float("inf"), out


def test_weaker_parameters_than_the_policy_are_refused_before_any_key() -> None:
    out = policy_downgrade(weakened=False)
    _at_chance(out)
    assert out.refused_by == "PolicyViolationError"


def test_weaker_parameters_recover_the_input_when_the_policy_is_off() -> None:
    out = policy_downgrade(weakened=True)
    assert out.succeeded and out.error == 0.0


def test_a_neighbourhood_the_server_picks_is_refused() -> None:
    out = forced_neighbourhood(weakened=False)
    _at_chance(out)
    assert out.details["client_errors"][0] == "NeighbourhoodError"  # type: ignore[index]


def test_a_neighbourhood_the_server_picks_recovers_the_input_from_a_trusting_client() -> None:
    out = forced_neighbourhood(weakened=True)
    assert out.succeeded and out.error == 0.0


@pytest.mark.parametrize("n", [7, 30])
def test_isolating_a_victim_by_equivocation_fails(n: int) -> None:
    out = isolation_attack(weakened=False, n=n)
    _at_chance(out)
    assert out.details["masks_left"]  # its pairwise masks stay on


@pytest.mark.parametrize("n", [7, 30])
def test_isolating_a_victim_recovers_its_input_without_attestation(n: int) -> None:
    out = isolation_attack(weakened=True, n=n)
    assert out.succeeded and out.error == 0.0
