"""Multi-round differencing (So et al., AAAI 2023): two sums whose survivor sets differ by
one client give that client's update; the contribution guard refuses the repeat."""

from __future__ import annotations

import numpy as np
import pytest

from protocols.attacks.server_attacks import client_differencing_attack, differencing_attack

GUARANTEES = ("HBC-9", "ACT-9")


def _updates() -> list[np.ndarray]:  # type: ignore[type-arg]
    rng = np.random.default_rng(0)
    return [rng.uniform(-1, 1, 16) for _ in range(5)]


def test_differencing_recovers_a_client_from_two_bare_rounds() -> None:
    ups = _updates()
    out = differencing_attack(ups, victim=2, guarded=False)
    assert out.recovered is not None
    assert np.allclose(out.recovered, ups[2], atol=1e-6)  # exact up to fixed point


def test_contribution_guard_stops_differencing() -> None:
    ups = _updates()
    out = differencing_attack(ups, victim=2, guarded=True)
    assert not out.succeeded and out.refused_by == "RepeatedContributionError"
    assert out.details["repeat_clients"] == [0, 1, 3, 4]
    # with fresh DP noise the repeat is allowed (and both releases are accounted); on these
    # noiseless test vectors the difference is then the update, which is why DP must be real
    assert differencing_attack(ups, victim=2, guarded=True, fresh_noise=True).succeeded


# --- the rule on the client (issue 13, item 2) --------------------------------------------


def test_the_client_guard_stops_differencing_end_to_end() -> None:
    """The server runs round 0 at M with everyone and round 1 at M + 1e-9 without the
    victim: the guarded clients see a repeat and refuse, so no second sum exists."""
    out = client_differencing_attack("client")
    assert out.recovered is None and out.refused_by == "ContributionRefusedError"
    assert out.details["refusals"] == 4


@pytest.mark.parametrize("guard", ["none", "hash"])
def test_the_same_attack_recovers_the_victim_without_the_client_guard(guard: str) -> None:
    """Controls: no client rule (the same model twice), and a per-model-hash rule that
    the server bypasses with M + 1e-9."""
    out = client_differencing_attack(guard)
    assert out.recovered is not None and out.error < 1e-6 < out.chance_error


def test_a_repeat_with_fresh_noise_is_charged_by_each_client_and_hides_the_victim() -> None:
    out = client_differencing_attack("client_noise")
    assert out.recovered is None and out.error > out.chance_error
    assert out.details["client_ledger_rounds"] == [1, 1, 0, 1, 1]  # the victim sent once


def test_a_near_zero_model_pair_is_a_repeat() -> None:
    """Near zero a relative test would see 1e-6 w -> 1.5e-6 w as a 50% change; the
    policy's absolute scale floor sees a repeat. The per-hash control is bypassed."""
    assert client_differencing_attack("client", second="near_zero").details["refusals"] == 4
    control = client_differencing_attack("hash", second="near_zero")
    assert control.recovered is not None and control.error < 1e-4 < control.chance_error


def test_a_model_moved_past_the_repeat_distance_is_a_new_model() -> None:
    """The stated limit: a model moved by more than the repeat distance (here 0.02 in L2
    against 0.01) is not a repeat, and the difference then carries the victim's update
    up to the other clients' drift (about 7% of its scale here). Only DP noise bounds
    that; the cap bounds the tries."""
    out = client_differencing_attack("client", epsilon=5e-3)
    assert out.details["refusals"] == 0
    assert out.error < 0.1 * out.chance_error


def test_a_functionally_equivalent_model_is_the_stated_limit() -> None:
    """Moving the model far along a feature no client uses gives the same updates at a
    model no parameter-space rule calls a repeat: the victim's update comes back exactly.
    This is why ACT-9 claims no more than near repeats; against a server that knows the
    model's symmetries only DP noise on every contribution bounds differencing."""
    out = client_differencing_attack("client", second="dead_feature")
    assert out.details["refusals"] == 0
    assert out.recovered is not None and out.error < 1e-6
