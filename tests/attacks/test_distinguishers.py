"""Server-view statistics: each distinguisher wins against a weak masking scheme and has
no advantage against the protocol's masked vectors.

Paillier ciphertexts are not covered yet (secagg.paillier is being built concurrently).
"""

from __future__ import annotations

import hashlib

import numpy as np

from protocols.attacks.distinguishers import (
    difference_hits,
    ind_advantage,
    seed_search,
    uniformity_pvalue,
)
from secagg import SecAggConfig, crypto
from secagg.client import SecAggClient
from secagg.encoding import FixedPointEncoder
from secagg.messages import Expect, MaskedInput, MsgType, decode
from secagg.simulate import InProcessRound

GUARANTEES = ("HBC-2", "HBC-8")

N, D, BITS = 3, 256, 32
CFG = SecAggConfig.default(N, setting="honest_but_curious", rounding="nearest")
ENC = FixedPointEncoder(CFG.encoding, rounding="nearest")
MAX_ABS = CFG.encoding.max_element
SESSION = b"fixed-session-07"


class ReusedKeys(SecAggClient):
    """Key material reused across rounds (a bug); the protocol still binds each mask to
    (session, round, parties), so only a replayed round index makes masks repeat."""

    def _generate_mask_key(self) -> crypto.AgreementKeyPair:
        return crypto.AgreementKeyPair.from_private_bytes(hashlib.sha256(b"m%d" % self.id).digest())

    def _generate_self_mask_seed(self) -> bytes:
        return hashlib.sha256(b"s%d" % self.id).digest()


def _view(xs: np.ndarray, round_index: int = 0, factory: type = SecAggClient) -> np.ndarray:  # type: ignore[type-arg]
    rnd = InProcessRound(
        xs, CFG, session_id=SESSION, round_index=round_index, client_factory=factory
    )
    rnd.run()
    assert rnd.server.transcript is not None
    expect = Expect(SESSION, round_index, N, rnd.server.ring, D)
    rec = next(r for r in rnd.server.transcript.by_phase("masked_input") if r.sender == 0)
    msg = decode(rec.payload, expect, (MsgType.MASKED_INPUT,))
    assert isinstance(msg, MaskedInput)
    return msg.vector


def _inputs(seed: int) -> np.ndarray:  # type: ignore[type-arg]
    return np.random.default_rng(seed).uniform(-1, 1, (N, D))


def _weak_mask(seed: int) -> np.ndarray:  # type: ignore[type-arg]
    """A low-entropy mask: a 12-bit seed into a non-cryptographic generator."""
    return np.random.default_rng(seed).integers(0, 2**BITS, D, dtype=np.uint64).astype(np.uint32)


def test_uniformity_holds_for_protocol_views_and_fails_unmasked() -> None:
    xs = np.full((N, 20_000), 0.25)
    rnd = InProcessRound(xs, CFG)
    rnd.run()
    expect = Expect.reading(rnd.config, rnd.session_id, 0, xs.shape[1])
    assert rnd.server.transcript is not None
    for rec in rnd.server.transcript.by_phase("masked_input"):
        msg = decode(rec.payload, expect, (MsgType.MASKED_INPUT,))
        assert isinstance(msg, MaskedInput)
        assert uniformity_pvalue(msg.vector, BITS) > 1e-4
    assert uniformity_pvalue(ENC.encode(xs[0]), BITS) < 1e-10


def _left_or_right(factory: type, replay_round: bool) -> float:
    """Round r: the adversary knows client 0's input; round r+1: x_0 or x_1. It guesses
    the bit whose difference from the known input matches the difference of the views."""

    def play(trial: int, b: int) -> tuple[int, int]:
        known, cands = _inputs(3 * trial), (_inputs(3 * trial + 1), _inputs(3 * trial + 2))
        r0 = 2 * trial
        y_known = _view(known, r0, factory)
        y_b = _view(cands[b], r0 if replay_round else r0 + 1, factory)
        scores = [
            difference_hits(
                (y_b.astype(np.int64) - ENC.encode(c[0]).astype(np.int64)) & 0xFFFFFFFF,
                (y_known.astype(np.int64) - ENC.encode(known[0]).astype(np.int64)) & 0xFFFFFFFF,
                BITS,
                0,
            )
            for c in cands
        ]
        return b, int(np.argmax(scores)) if max(scores) > 0.5 else trial % 3 % 2

    return ind_advantage(play, trials=24)


def test_reused_masks_are_distinguished_and_protocol_masks_are_not() -> None:
    # weak: the same masks twice (keys reused and the round replayed) -> advantage 1
    assert _left_or_right(ReusedKeys, replay_round=True) == 1.0
    # the protocol: fresh keys every round; and reused keys are still bound to the round
    assert _left_or_right(SecAggClient, replay_round=False) <= 0.5
    assert _left_or_right(ReusedKeys, replay_round=False) <= 0.5
    # the raw difference statistic: 1 on replayed masks, its uniform level on fresh ones
    uniform_level = (4 * MAX_ABS + 1) / 2**BITS
    a, b = _view(_inputs(0), 0), _view(_inputs(9), 1)
    assert abs(difference_hits(a, b, BITS, MAX_ABS) - uniform_level) < 0.15
    a, b = _view(_inputs(0), 0, ReusedKeys), _view(_inputs(9), 0, ReusedKeys)
    assert difference_hits(a, b, BITS, MAX_ABS) == 1.0


def test_low_entropy_seed_is_found_and_protocol_seed_is_not() -> None:
    x = ENC.encode(_inputs(5)[0])
    weak = (x.astype(np.uint64) + _weak_mask(2741)).astype(np.uint32)
    assert seed_search(weak, _weak_mask, range(2**12), BITS, MAX_ABS) == [2741]
    assert seed_search(_view(_inputs(5)), _weak_mask, range(2**12), BITS, MAX_ABS) == []
