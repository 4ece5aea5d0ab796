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
from secagg.attestation import pack_bits, pack_statuses
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
    Attestations,
    Complaint,
    DeliveryEntry,
    Expect,
    Header,
    MaskedInput,
    MsgType,
    NeighbourEntry,
    NeighbourKeys,
    ShareDelivery,
    ShareKeys,
    ShareKind,
    StatusList,
    UnmaskShares,
    ViewReport,
    decode,
    encode,
)
from secagg.ring import Ring

SESSION = b"0123456789abcdef"
N, D, K = 8, 16, 4
RING = Ring(20)
EXPECT = Expect(SESSION, 7, N, RING, D, K, 2 * K + 1, N)
ALL = tuple(MsgType)
TAG = b"t" * 16


def _h(sender: int = 2) -> Header:
    return Header(SESSION, 7, sender)


def _sh() -> Header:
    return _h(SERVER_ID)


def samples() -> list[object]:
    share = shamir.split(os.urandom(32), 5, 3)[0].to_bytes()
    box = os.urandom(SHARE_BOX_BYTES)
    vec = RING.reduce(np.arange(D, dtype=np.uint32) * np.uint32(99991))
    dig = os.urandom(32)
    st4 = pack_statuses([2, 1, 0, 2])
    return [
        AdvertiseKeys(_h(), os.urandom(32), os.urandom(32), os.urandom(64), ((1, TAG), (3, TAG))),
        AdvertiseKeys(_h(), os.urandom(32), os.urandom(32), b""),
        NeighbourKeys(
            _sh(),
            (
                NeighbourEntry(1, True, os.urandom(32), os.urandom(32), TAG),
                NeighbourEntry(3, False),
                NeighbourEntry(4, True, os.urandom(32), os.urandom(32), b""),
            ),
        ),
        ShareKeys(
            _h(),
            ((1, box), (5, box)),
            dig,
            ((1, dig, dig), (2, dig, dig), (5, dig, dig)),
            os.urandom(64),
        ),
        ShareKeys(_h(), (), dig, ((2, dig, dig),)),
        ShareDelivery(_sh(), (DeliveryEntry(1, True, box, dig, dig), DeliveryEntry(5, False))),
        MaskedInput(_h(), 20, vec),
        MaskedInput(_h(), 20, vec, pack_bits([1, 0, 1, 1]), ((1, TAG), (6, TAG))),
        StatusList(_sh(), st4),
        ViewReport(_h(), st4, ((0, TAG), (3, TAG), (7, TAG))),
        Attestations(
            _sh(),
            pack_statuses([2] * N),
            ((1, b"", TAG), (3, pack_bits([1, 1, 0, 1]), TAG)),
            ((4, st4, TAG), (6, b"", TAG)),
        ),
        UnmaskShares(_h(), ((1, ShareKind.SELF_MASK, share), (3, ShareKind.MASK_KEY, share))),
        Complaint(_h(), 5, os.urandom(32)),
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
    big = Expect(SESSION, 7, N, RING, 1000, K, 2 * K + 1, N)
    assert decode(data, big, ALL)
    assert len(data) - 4 * 1000 < 64


@pytest.mark.parametrize("msg", samples(), ids=lambda m: type(m).__name__)
def test_wrong_round_session_and_type(msg: object) -> None:
    data = encode(msg)  # type: ignore[arg-type]
    with pytest.raises(WrongRoundError):
        decode(data, Expect(SESSION, 8, N, RING, D, K, 2 * K + 1, N), ALL)
    with pytest.raises(WrongSessionError):
        decode(data, Expect(b"fedcba9876543210", 7, N, RING, D, K, 2 * K + 1, N), ALL)
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
    for prefix in (b"", b"SAGG\x02"):
        with contextlib.suppress(ProtocolError):
            decode(prefix + blob, EXPECT, ALL)


@given(st.sampled_from([t for t in MsgType]), st.binary(max_size=300))
def test_valid_header_random_body(mtype: MsgType, body: bytes) -> None:
    sender = SERVER_ID if mtype >= MsgType.NEIGHBOUR_KEYS else 1
    header = b"SAGG\x02" + bytes([mtype]) + bytes([len(SESSION)]) + SESSION
    header += (7).to_bytes(8, "big") + sender.to_bytes(4, "big")
    with contextlib.suppress(ProtocolError):
        decode(header + body, EXPECT, ALL)


def test_specific_violations() -> None:
    # client id out of range, sender mismatch, duplicates, unsorted lists, bad codes
    dig = os.urandom(32)
    with pytest.raises(MessageFormatError, match="client id"):
        decode(
            encode(NeighbourKeys(_sh(), (NeighbourEntry(0, False), NeighbourEntry(9, False)))),
            EXPECT,
            ALL,
        )
    with pytest.raises(MessageFormatError, match="sorted"):
        decode(
            encode(NeighbourKeys(_sh(), (NeighbourEntry(3, False), NeighbourEntry(1, False)))),
            EXPECT,
            ALL,
        )
    with pytest.raises(DuplicateSenderError):
        decode(
            encode(NeighbourKeys(_sh(), (NeighbourEntry(1, False), NeighbourEntry(1, False)))),
            EXPECT,
            ALL,
        )
    with pytest.raises(MessageFormatError, match="server message"):
        decode(encode(StatusList(_h(), pack_statuses([2] * K))), EXPECT, ALL)
    with pytest.raises(MessageFormatError):
        decode(encode(ViewReport(_sh(), pack_statuses([2] * K))), EXPECT, ALL)
    with pytest.raises(MessageFormatError, match="status"):  # code 3 is no status
        decode(encode(StatusList(_sh(), bytes([0b11000000]))), EXPECT, ALL)
    with pytest.raises(MessageFormatError):  # a status list of the wrong length
        decode(encode(StatusList(_sh(), pack_statuses([2] * (K + 4)))), EXPECT, ALL)
    with pytest.raises(MessageFormatError, match="sorted"):
        decode(encode(ShareKeys(_h(), (), dig, ((3, dig, dig), (1, dig, dig)))), EXPECT, ALL)
    box = os.urandom(SHARE_BOX_BYTES)
    with pytest.raises(DuplicateSenderError):
        decode(encode(ShareKeys(_h(), ((1, box), (1, box)), dig, ())), EXPECT, ALL)
    with pytest.raises(MessageFormatError, match="count"):  # more boxes than holders
        boxes = tuple((i, box) for i in range(K + 2))
        decode(encode(ShareKeys(_h(), boxes, dig, ())), EXPECT, ALL)
    with pytest.raises(MessageFormatError, match="exceeds the limit"):
        decode(encode(MaskedInput(_h(), 20, RING.zeros(D), b"\x01\x02", ())), EXPECT, ALL)
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
    with pytest.raises(MessageFormatError, match="version"):  # version 1 is retired
        decode(bytes(raw), EXPECT, ALL)
    raw[4] = 2
    raw[5] = 99
    with pytest.raises(MessageFormatError, match="unknown message type"):
        decode(bytes(raw), EXPECT, ALL)


def test_huge_counts_are_refused_before_allocation() -> None:
    header = b"SAGG\x02" + bytes([MsgType.NEIGHBOUR_KEYS, len(SESSION)]) + SESSION
    header += (7).to_bytes(8, "big") + SERVER_ID.to_bytes(4, "big")
    with pytest.raises(MessageFormatError, match="count"):
        decode(header + (2**31).to_bytes(4, "big"), EXPECT, ALL)


@given(st.lists(st.lists(st.integers(0, 2), min_size=7, max_size=7), min_size=1, max_size=9))
def test_row_packing_equals_packing_each_row(rows: list[list[int]]) -> None:
    """The holder's batched rebuild of implicit views and edge lists is byte-exact."""
    from secagg.attestation import pack_bit_rows, pack_status_rows

    m = np.array(rows, dtype=np.uint8)
    assert pack_status_rows(m) == [pack_statuses(r) for r in rows]
    assert pack_bit_rows(m == 2) == [pack_bits([x == 2 for x in r]) for r in rows]
