"""Multi-round differencing (So et al., AAAI 2023): two sums whose survivor sets differ by
one client give that client's update; the contribution guard refuses the repeat."""

from __future__ import annotations

import numpy as np

from protocols.attacks.server_attacks import differencing_attack

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
