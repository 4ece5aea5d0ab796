"""The wire format: round trips, and every decoder fuzzed (random bytes, truncations,
bit flips, valid messages of the wrong round, session or type)."""

from __future__ import annotations

import contextlib
import os

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from secagg import shamir
from secagg.errors import (
    DuplicateSenderError,
    MessageFormatError,
    ProtocolError,
    UnexpectedMessageError,
    WrongRoundError,
    WrongSessionError,
)
from secagg.messages import (
    SERVER_ID,
    SHARE_BOX_BYTES,
    Abort,
    AdvertiseKeys,
    ConsistencySignature,
    Expect,
    Header,
    KeyDirectory,
    KeyEntry,
    MaskedInput,
    MsgType,
    ShareDelivery,
    ShareKeys,
    ShareKind,
    SignatureList,
    SurvivorList,
    UnmaskShares,
    decode,
    encode,
)
from secagg.ring import Ring

SESSION = b"0123456789abcdef"
N, D = 8, 16
RING = Ring(20)
EXPECT = Expect(SESSION, 7, N, RING, D)
ALL = tuple(MsgType)


def _h(sender: int = 2) -> Header:
    return Header(SESSION, 7, sender)


def _sh() -> Header:
    return _h(SERVER_ID)


def samples() -> list[object]:
    share = shamir.split(os.urandom(32), 5, 3)[0].to_bytes()
    box = os.urandom(SHARE_BOX_BYTES)
    vec = RING.reduce(np.arange(D, dtype=np.uint32) * np.uint32(99991))
    return [
        AdvertiseKeys(_h(), os.urandom(32), os.urandom(32), os.urandom(64)),
        AdvertiseKeys(_h(), os.urandom(32), os.urandom(32), b""),
        KeyDirectory(
            _sh(),
            (
                KeyEntry(1, os.urandom(32), os.urandom(32), b""),
                KeyEntry(4, os.urandom(32), os.urandom(32), os.urandom(64)),
            ),
        ),
        ShareKeys(_h(), ((1, box), (5, box))),
        ShareDelivery(_sh(), (1, 2, 5), ((1, box), (5, box))),
        MaskedInput(_h(), 20, vec),
        SurvivorList(_sh(), (0, 2, 7)),
        ConsistencySignature(_h(), os.urandom(64)),
        SignatureList(_sh(), ((0, os.urandom(64)), (3, os.urandom(64)))),
        UnmaskShares(_h(), ((1, ShareKind.SELF_MASK, share), (3, ShareKind.MASK_KEY, share))),
        Abort(_sh(), "too few survivors"),
    ]


@pytest.mark.parametrize("msg", samples(), ids=lambda m: type(m).__name__)
def test_round_trip(msg: object) -> None:
    data = encode(msg)  # type: ignore[arg-type]
    back = decode(data, EXPECT, ALL)
    assert type(back) is type(msg)
    if isinstance(msg, MaskedInput):
        assert isinstance(back, MaskedInput)
        assert np.array_equal(back.vector, msg.vector) and back.vector.dtype == RING.dtype
    else:
        assert back == msg


def test_masked_input_costs_4_bytes_per_element_at_b_le_32() -> None:
    vec = RING.zeros(1000)
    data = encode(MaskedInput(_h(), 20, vec))
    big = Expect(SESSION, 7, N, RING, 1000)
    assert decode(data, big, ALL)
    assert len(data) - 4 * 1000 < 64


@pytest.mark.parametrize("msg", samples(), ids=lambda m: type(m).__name__)
def test_wrong_round_session_and_type(msg: object) -> None:
    data = encode(msg)  # type: ignore[arg-type]
    with pytest.raises(WrongRoundError):
        decode(data, Expect(SESSION, 8, N, RING, D), ALL)
    with pytest.raises(WrongSessionError):
        decode(data, Expect(b"fedcba9876543210", 7, N, RING, D), ALL)
    others = tuple(t for t in ALL if t != MsgType(data[5]))
    with pytest.raises(UnexpectedMessageError):
        decode(data, EXPECT, others)


@pytest.mark.parametrize("msg", samples(), ids=lambda m: type(m).__name__)
def test_every_truncation_is_a_named_error(msg: object) -> None:
    data = encode(msg)  # type: ignore[arg-type]
    for cut in range(len(data)):
        with pytest.raises(ProtocolError):
            decode(data[:cut], EXPECT, ALL)
    with pytest.raises(MessageFormatError):
        decode(data + b"\x00", EXPECT, ALL)


@given(st.sampled_from(samples()), st.data())
def test_bit_flips_never_crash_unnamed(msg: object, data: st.DataObject) -> None:
    raw = bytearray(encode(msg))  # type: ignore[arg-type]
    for _ in range(data.draw(st.integers(1, 4))):
        bit = data.draw(st.integers(0, 8 * len(raw) - 1))
        raw[bit // 8] ^= 1 << (bit % 8)
    with contextlib.suppress(ProtocolError):
        decode(bytes(raw), EXPECT, ALL)


@given(st.binary(max_size=400))
def test_random_bytes_never_crash_unnamed(blob: bytes) -> None:
    for prefix in (b"", b"SAGG\x01"):
        with contextlib.suppress(ProtocolError):
            decode(prefix + blob, EXPECT, ALL)


@given(st.sampled_from([t for t in MsgType]), st.binary(max_size=300))
def test_valid_header_random_body(mtype: MsgType, body: bytes) -> None:
    sender = SERVER_ID if mtype >= MsgType.KEY_DIRECTORY else 1
    header = b"SAGG\x01" + bytes([mtype]) + bytes([len(SESSION)]) + SESSION
    header += (7).to_bytes(8, "big") + sender.to_bytes(4, "big")
    with contextlib.suppress(ProtocolError):
        decode(header + body, EXPECT, ALL)


def test_specific_violations() -> None:
    # client id out of range, sender mismatch, duplicates, unsorted lists, bad ring data
    with pytest.raises(MessageFormatError, match="client id"):
        decode(encode(SurvivorList(_sh(), (0, 9))), EXPECT, ALL)
    with pytest.raises(MessageFormatError, match="sorted"):
        decode(encode(SurvivorList(_sh(), (3, 1))), EXPECT, ALL)
    with pytest.raises(MessageFormatError, match="sorted"):
        decode(encode(SurvivorList(_sh(), (1, 1))), EXPECT, ALL)
    with pytest.raises(MessageFormatError, match="server message"):
        decode(encode(SurvivorList(_h(), (1,))), EXPECT, ALL)
    with pytest.raises(MessageFormatError):
        decode(encode(ConsistencySignature(_sh(), os.urandom(64))), EXPECT, ALL)
    box = os.urandom(SHARE_BOX_BYTES)
    with pytest.raises(DuplicateSenderError):
        decode(encode(ShareKeys(_h(), ((1, box), (1, box)))), EXPECT, ALL)
    with pytest.raises(MessageFormatError, match="vector length"):
        decode(encode(MaskedInput(_h(), 20, RING.zeros(D + 1))), EXPECT, ALL)
    with pytest.raises(MessageFormatError, match="Z_2\\^"):
        decode(encode(MaskedInput(_h(), 21, RING.zeros(D))), EXPECT, ALL)
    with pytest.raises(MessageFormatError, match=">= 2\\^20"):
        decode(encode(MaskedInput(_h(), 20, np.full(D, 2**20, dtype=np.uint32))), EXPECT, ALL)
    with pytest.raises(MessageFormatError, match="element size"):
        decode(encode(MaskedInput(_h(), 20, np.zeros(D, dtype=np.uint64))), EXPECT, ALL)
    share = shamir.split(os.urandom(32), 5, 3)[0].to_bytes()
    with pytest.raises(DuplicateSenderError):
        decode(
            encode(
                UnmaskShares(
                    _h(), ((1, ShareKind.SELF_MASK, share), (1, ShareKind.MASK_KEY, share))
                )
            ),
            EXPECT,
            ALL,
        )
    with pytest.raises(MessageFormatError, match="bad magic"):
        decode(b"PICKLE" + os.urandom(40), EXPECT, ALL)
    with pytest.raises(MessageFormatError, match="must be bytes"):
        decode("not bytes", EXPECT, ALL)  # type: ignore[arg-type]
    raw = bytearray(encode(Abort(_sh(), "x")))
    raw[4] = 9
    with pytest.raises(MessageFormatError, match="version"):
        decode(bytes(raw), EXPECT, ALL)
    raw[4] = 1
    raw[5] = 99
    with pytest.raises(MessageFormatError, match="unknown message type"):
        decode(bytes(raw), EXPECT, ALL)


def test_huge_counts_are_refused_before_allocation() -> None:
    header = b"SAGG\x01" + bytes([MsgType.SURVIVOR_LIST, len(SESSION)]) + SESSION
    header += (7).to_bytes(8, "big") + SERVER_ID.to_bytes(4, "big")
    with pytest.raises(MessageFormatError, match="count"):
        decode(header + (2**31).to_bytes(4, "big"), EXPECT, ALL)
