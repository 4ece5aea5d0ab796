"""The dropout lie: the server claims a live victim dropped, after receiving its masked
input, to collect its mask-key shares as well as its self-mask shares. Every attack
tries to recover the victim's input; a refusal is backed by a reconstruction at chance,
and each has a control where the same code recovers the input from a weakened client."""

from __future__ import annotations

from protocols.attacks.server_attacks import AttackOutcome, dropout_lie

GUARANTEES = ("ACT-11", "ACT-2", "ACT-3")


def _at_chance(out: AttackOutcome) -> None:
    assert not out.succeeded
    assert out.error >= 0.9 * out.chance_error, (out.error, out.chance_error)


def test_split_story_gives_one_kind_only_and_the_input_stays_hidden() -> None:
    out = dropout_lie(split=True, ask_twice=False)
    _at_chance(out)
    t = out.details["threshold"]
    assert min(out.details["self_mask_shares"], out.details["mask_key_shares"]) < t  # type: ignore[type-var]


def test_split_story_recovers_the_input_from_clients_that_took_the_servers_threshold() -> None:
    """Control: the same split against clients provisioned with no policy of their own."""
    out = dropout_lie(split=True, ask_twice=False, weakened=True)
    assert out.succeeded and out.error == 0.0


def test_asking_again_after_unmasking_is_refused() -> None:
    out = dropout_lie(split=False, ask_twice=True)
    _at_chance(out)
    assert out.refused_by == "UnexpectedMessageError"
    assert out.details["mask_key_shares"] == 0


def test_asking_again_recovers_the_input_without_the_one_answer_rule() -> None:
    """Control: clients that answer a second status list give the other kind too."""
    out = dropout_lie(split=False, ask_twice=True, weakened=True)
    assert out.succeeded and out.error == 0.0


def test_a_consistent_lie_releases_only_mask_key_shares() -> None:
    """The victim's masked input stays hidden by its self-mask: only one kind is released."""
    out = dropout_lie(split=False, ask_twice=False)
    _at_chance(out)
    assert out.details["self_mask_shares"] == 0
    assert out.details["mask_key_shares"] >= out.details["threshold"]  # type: ignore[operator]
