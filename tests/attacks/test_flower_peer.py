"""The peer check, side by side: the share-mixing (dropout lie) attack and the seed
entropy of Flower 1.42's own SecAgg+ client code, against this project's protocol.

Needs the optional ``flwr`` package (skipped without it; run it in an environment with
``pip install flwr==1.42.0``: see docs/attacks.md for the measured result)."""

from __future__ import annotations

import pytest

from protocols.attacks.server_attacks import dropout_lie

GUARANTEES = ("ACT-11", "HBC-8")

flwr = pytest.importorskip("flwr", reason="the optional flwr package is not installed")


def test_share_mixing_recovers_the_victim_in_flower_but_not_here() -> None:
    from protocols.attacks.flower_peer import flower_share_mixing

    theirs = flower_share_mixing(n=5, threshold=3, d=16)
    assert theirs["recovered"] and theirs["seed_shares_released"] >= 3
    assert theirs["key_shares_released"] >= 3  # both kinds of the victim's shares
    for split, ask_twice in ((True, False), (False, True), (False, False)):
        ours = dropout_lie(split=split, ask_twice=ask_twice)
        assert ours.recovered is None


def test_flower_masks_carry_at_most_32_bits_of_seed_entropy() -> None:
    from protocols.attacks.flower_peer import flower_seed_entropy

    got = flower_seed_entropy()
    assert got["different_keys"] and got["same_mask"]
