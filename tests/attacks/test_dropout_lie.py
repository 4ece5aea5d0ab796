"""The dropout lie: the server claims a live victim dropped, after receiving its masked
input, to collect its mask-key shares as well as its self-mask shares."""

from __future__ import annotations

from protocols.attacks.server_attacks import dropout_lie

GUARANTEES = ("ACT-11", "ACT-2", "ACT-3")


def test_split_story_is_caught_by_the_consistency_check() -> None:
    for ask_twice in (False, True):
        out = dropout_lie(split=True, ask_twice=ask_twice)
        assert not out.succeeded and out.refused_by == "ConsistencyCheckError"
        assert out.details["self_mask_shares"] == out.details["mask_key_shares"] == 0


def test_asking_again_after_unmasking_is_refused() -> None:
    out = dropout_lie(split=False, ask_twice=True)
    assert not out.succeeded and out.refused_by == "UnexpectedMessageError"
    assert out.details["mask_key_shares"] == 0


def test_a_consistent_lie_releases_only_mask_key_shares() -> None:
    """The victim's masked input stays hidden by its self-mask: only one kind is released."""
    out = dropout_lie(split=False, ask_twice=False)
    assert not out.succeeded
    assert out.details["self_mask_shares"] == 0
    assert out.details["mask_key_shares"] >= out.details["threshold"]  # type: ignore[operator]
