"""What the server sees of one client: a masked vector uniform on the ring, whatever the
input, that still changes exactly with the input."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from scipy import stats

from secagg import SecAggConfig, crypto
from secagg.client import SecAggClient
from secagg.encoding import FixedPointEncoder
from secagg.messages import Expect, MaskedInput, MsgType, decode
from secagg.ring import Ring
from secagg.simulate import InProcessRound

N, D = 5, 40_000


def _uniform_pvalue(v: np.ndarray, ring: Ring) -> float:  # type: ignore[type-arg]
    top = (v >> np.array(ring.bits - 8, dtype=v.dtype)).astype(np.int64)
    return float(stats.chisquare(np.bincount(top, minlength=256)).pvalue)


def _masked_vectors(rnd: InProcessRound) -> dict[int, np.ndarray]:  # type: ignore[type-arg]
    assert rnd.server.transcript is not None
    expect = Expect.reading(rnd.config, rnd.session_id, rnd.round_index, rnd.dimension)
    out = {}
    for rec in rnd.server.transcript.by_phase("masked_input"):
        msg = decode(rec.payload, expect, (MsgType.MASKED_INPUT,))
        assert isinstance(msg, MaskedInput)
        out[rec.sender] = msg.vector
    return out


@pytest.mark.parametrize("bits", [16, 32])
@pytest.mark.parametrize("fill", [0.0, 0.5, -1.0])
def test_masked_inputs_in_the_transcript_look_uniform(bits: int, fill: float) -> None:
    cfg = SecAggConfig.default(N, setting="honest_but_curious", bits=bits)
    xs = np.full((N, D), fill)
    rnd = InProcessRound(xs, cfg)
    rnd.run()
    ring = cfg.encoding.ring
    masked = _masked_vectors(rnd)
    assert len(masked) == N
    for c, y in masked.items():
        assert _uniform_pvalue(y, ring) > 1e-4 / N, c
    # the same test does reject what it should: the encoded input without masks
    plain = FixedPointEncoder(cfg.encoding).encode(xs[0])
    assert _uniform_pvalue(plain, ring) < 1e-10


class FixedKeys(SecAggClient):
    """Deterministic key material (test only), to hold everything but the input fixed."""

    def _generate_mask_key(self) -> crypto.AgreementKeyPair:
        return crypto.AgreementKeyPair.from_private_bytes(
            hashlib.sha256(b"mask%d" % self.id).digest()
        )

    def _generate_self_mask_seed(self) -> bytes:
        return hashlib.sha256(b"self%d" % self.id).digest()


def test_masked_vector_changes_exactly_with_the_input() -> None:
    cfg = SecAggConfig.default(N, setting="honest_but_curious", rounding="nearest")
    session = b"fixed-session-01"
    xs = np.random.default_rng(0).uniform(-1, 1, (N, 64))
    ys = xs.copy()
    ys[2] += 0.25  # only client 2's input changes
    a = InProcessRound(xs, cfg, session_id=session, client_factory=FixedKeys)
    b = InProcessRound(ys, cfg, session_id=session, client_factory=FixedKeys)
    a.run()
    b.run()
    ma, mb = _masked_vectors(a), _masked_vectors(b)
    ring = cfg.encoding.ring
    enc = FixedPointEncoder(cfg.encoding, rounding="nearest")
    for c in range(N):
        if c == 2:
            assert not np.array_equal(ma[c], mb[c])
            want = ring.sub(enc.encode(np.clip(ys[2], -1, 1)), enc.encode(xs[2]))
            assert np.array_equal(ring.sub(mb[c], ma[c]), want)
        else:
            assert np.array_equal(ma[c], mb[c])
