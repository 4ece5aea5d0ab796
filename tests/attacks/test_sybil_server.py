"""A server that runs fake clients to reach the threshold around one real victim."""

from __future__ import annotations

import numpy as np

from protocols.attacks.server_attacks import sybil_attack

GUARANTEES = ("ACT-10",)

X = np.random.default_rng(9).uniform(-1, 1, 8)


def test_sybils_are_refused_with_a_trusted_registry() -> None:
    """Fake clients cannot sign or MAC as registered identities: the server drops them
    and the victim sees no neighbour, so the round aborts before the victim masks."""
    out = sybil_attack(X, trusted_registry=True)
    assert not out.succeeded and out.refused_by == "TooFewSurvivorsError"


def test_without_a_trusted_registry_the_guarantee_is_void() -> None:
    """The documented non-goal: a server that controls the registry controls the threshold."""
    out = sybil_attack(X, trusted_registry=False)
    assert out.recovered is not None and np.allclose(out.recovered, X, atol=1e-6)
