"""The typed messages of one SecAgg round and their versioned binary encoding.

Layout of every message::

    magic "SAGG" | version u8 | type u8 | session_len u8 | session | round u64 | sender u32
    | body (type-specific, fixed or length-prefixed fields) | nothing else

``decode`` validates everything it can without protocol state: magic, version, type,
session id and round (against the expected ones), the sender field, counts, lengths,
client ids (< num_clients, no duplicates), the ring dtype and vector length. The state
machines then check what needs state (who may send what, subsets, signatures).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import numpy as np

from secagg.context import SESSION_ID_MAX_BYTES, SESSION_ID_MIN_BYTES
from secagg.crypto import NONCE_BYTES, PUBLIC_KEY_BYTES, SIGNATURE_BYTES, TAG_BYTES
from secagg.errors import (
    DuplicateSenderError,
    MessageFormatError,
    RingValueError,
    UnexpectedMessageError,
    WrongRoundError,
    WrongSessionError,
)
from secagg.ring import Ring, RingArray
from secagg.shamir import SHARE_BYTES
from secagg.wire import Reader, Writer

MAGIC = b"SAGG"
VERSION = 1
SERVER_ID = 0xFFFFFFFF
#: Plaintext of one share box: owner u32 | holder u32 | key share | self-mask share.
SHARE_BOX_PLAINTEXT = 8 + 2 * SHARE_BYTES
SHARE_BOX_BYTES = NONCE_BYTES + SHARE_BOX_PLAINTEXT + TAG_BYTES
MAX_REASON = 1024
_SHARE_RECORD = struct.Struct(f">IB{SHARE_BYTES}s")  # owner, kind, share


class MsgType(IntEnum):
    """Wire type codes (client -> server below 16, server -> client from 16)."""

    ADVERTISE_KEYS = 1
    SHARE_KEYS = 2
    MASKED_INPUT = 3
    CONSISTENCY_SIGNATURE = 4
    UNMASK_SHARES = 5
    KEY_DIRECTORY = 16
    SHARE_DELIVERY = 17
    SURVIVOR_LIST = 18
    SIGNATURE_LIST = 19
    ABORT = 20


class ShareKind(IntEnum):
    """Which of a peer's secrets an unmasking share rebuilds."""

    SELF_MASK = 0  # the peer survived: its self-mask seed b
    MASK_KEY = 1  # the peer dropped: its pairwise mask key s_sk


@dataclass(frozen=True)
class Header:
    """The fields every message carries."""

    session_id: bytes
    round_index: int
    sender: int


# --- message bodies ---------------------------------------------------------------------


@dataclass(frozen=True)
class AdvertiseKeys:
    """Client -> server: its two public keys (and a signature in the active setting)."""

    header: Header
    channel_public: bytes
    mask_public: bytes
    signature: bytes  # b"" in the honest-but-curious setting


@dataclass(frozen=True)
class KeyEntry:
    """One client's advertisement as the server relays it."""

    client: int
    channel_public: bytes
    mask_public: bytes
    signature: bytes


@dataclass(frozen=True)
class KeyDirectory:
    """Server -> clients: every accepted advertisement (the set U1)."""

    header: Header
    entries: tuple[KeyEntry, ...]


@dataclass(frozen=True)
class ShareKeys:
    """Client -> server: encrypted share boxes, one per neighbour."""

    header: Header
    boxes: tuple[tuple[int, bytes], ...]  # (receiver, ciphertext)


@dataclass(frozen=True)
class ShareDelivery:
    """Server -> client: the set U2 and the boxes addressed to this client."""

    header: Header
    shared: tuple[int, ...]  # U2, sorted
    boxes: tuple[tuple[int, bytes], ...]  # (sender, ciphertext)


@dataclass(frozen=True)
class MaskedInput:
    """Client -> server: the masked, encoded input vector y_u in Z_(2^b)."""

    header: Header
    bits: int
    vector: RingArray


@dataclass(frozen=True)
class SurvivorList:
    """Server -> clients: U3, the clients whose masked inputs are in the sum."""

    header: Header
    survivors: tuple[int, ...]


@dataclass(frozen=True)
class ConsistencySignature:
    """Client -> server (active): signature over U3 and the client's extra context."""

    header: Header
    signature: bytes


@dataclass(frozen=True)
class SignatureList:
    """Server -> clients (active): the consistency signatures it collected (U4)."""

    header: Header
    signatures: tuple[tuple[int, bytes], ...]


@dataclass(frozen=True)
class UnmaskShares:
    """Client -> server: one share per peer, of the self-mask seed or of the mask key."""

    header: Header
    shares: tuple[tuple[int, ShareKind, bytes], ...]  # (owner, kind, share bytes)


@dataclass(frozen=True)
class Abort:
    """Server -> clients: the round is over without a result."""

    header: Header
    reason: str


Message = (
    AdvertiseKeys
    | KeyDirectory
    | ShareKeys
    | ShareDelivery
    | MaskedInput
    | SurvivorList
    | ConsistencySignature
    | SignatureList
    | UnmaskShares
    | Abort
)

_TYPE_OF: dict[type, MsgType] = {
    AdvertiseKeys: MsgType.ADVERTISE_KEYS,
    ShareKeys: MsgType.SHARE_KEYS,
    MaskedInput: MsgType.MASKED_INPUT,
    ConsistencySignature: MsgType.CONSISTENCY_SIGNATURE,
    UnmaskShares: MsgType.UNMASK_SHARES,
    KeyDirectory: MsgType.KEY_DIRECTORY,
    ShareDelivery: MsgType.SHARE_DELIVERY,
    SurvivorList: MsgType.SURVIVOR_LIST,
    SignatureList: MsgType.SIGNATURE_LIST,
    Abort: MsgType.ABORT,
}


def message_type(msg: Message) -> MsgType:
    """The wire type code of ``msg``."""
    return _TYPE_OF[type(msg)]


# --- encoding -----------------------------------------------------------------------------


def encode(msg: Message) -> bytes:
    """Serialise a message to its versioned wire form."""
    h = msg.header
    w = Writer().raw(MAGIC).u8(VERSION).u8(message_type(msg))
    w.u8(len(h.session_id)).raw(h.session_id).u64(h.round_index).u32(h.sender)
    if isinstance(msg, AdvertiseKeys):
        w.raw(msg.channel_public).raw(msg.mask_public)
        _sig(w, msg.signature)
    elif isinstance(msg, KeyDirectory):
        w.u32(len(msg.entries))
        for e in msg.entries:
            w.u32(e.client).raw(e.channel_public).raw(e.mask_public)
            _sig(w, e.signature)
    elif isinstance(msg, ShareKeys | ShareDelivery):
        if isinstance(msg, ShareDelivery):
            _ids(w, msg.shared)
        w.u32(len(msg.boxes))
        for party, box in msg.boxes:
            w.u32(party).raw(box)
    elif isinstance(msg, MaskedInput):
        v = np.ascontiguousarray(msg.vector)
        w.u8(msg.bits).u8(v.dtype.itemsize).u64(v.shape[0])
        w.raw(v.astype(v.dtype.newbyteorder("<"), copy=False).tobytes())
    elif isinstance(msg, SurvivorList):
        _ids(w, msg.survivors)
    elif isinstance(msg, ConsistencySignature):
        w.raw(msg.signature)
    elif isinstance(msg, SignatureList):
        w.u32(len(msg.signatures))
        for client, sig in msg.signatures:
            w.u32(client).raw(sig)
    elif isinstance(msg, UnmaskShares):
        w.u32(len(msg.shares))
        for owner, kind, share in msg.shares:
            w.u32(owner).u8(kind).raw(share)
    elif isinstance(msg, Abort):
        w.blob(msg.reason.encode("utf-8")[:MAX_REASON])
    return w.getvalue()


def _sig(w: Writer, sig: bytes) -> None:
    w.u8(1 if sig else 0)
    if sig:
        w.raw(sig)


def _ids(w: Writer, ids: tuple[int, ...]) -> None:
    w.u32(len(ids))
    for i in ids:
        w.u32(i)


# --- decoding -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Expect:
    """What the receiver expects: checked before a body is trusted."""

    session_id: bytes
    round_index: int
    num_clients: int
    ring: Ring
    dimension: int


def decode(data: bytes, expect: Expect, allowed: tuple[MsgType, ...]) -> Message:
    """Parse ``data`` strictly; raise a named :class:`ProtocolError` subclass if it is bad.

    ``allowed`` lists the message types acceptable at this step; any other valid type
    raises :class:`UnexpectedMessageError`.
    """
    r = Reader(data)
    if r.remaining < 4 or r.raw(4) != MAGIC:
        raise MessageFormatError("not a secagg message (bad magic)")
    version = r.u8()
    if version != VERSION:
        raise MessageFormatError(f"unsupported wire version {version}")
    code = r.u8()
    try:
        mtype = MsgType(code)
    except ValueError as exc:
        raise MessageFormatError(f"unknown message type {code}") from exc
    slen = r.u8()
    if not SESSION_ID_MIN_BYTES <= slen <= SESSION_ID_MAX_BYTES:
        raise MessageFormatError(f"session id length {slen} out of range")
    session = r.raw(slen)
    round_index = r.u64()
    sender = r.u32()
    if session != expect.session_id:
        raise WrongSessionError("message belongs to another session")
    if round_index != expect.round_index:
        raise WrongRoundError(
            f"message is for round {round_index}, this is round {expect.round_index}"
        )
    if mtype not in allowed:
        raise UnexpectedMessageError(
            f"{mtype.name} is not expected now (expecting {', '.join(a.name for a in allowed)})"
        )
    from_server = mtype >= MsgType.KEY_DIRECTORY
    if from_server and sender != SERVER_ID:
        raise MessageFormatError("server message with a client sender id")
    if not from_server:
        _client_id(sender, expect.num_clients)
    h = Header(session, round_index, sender)
    n = expect.num_clients
    msg: Message
    if mtype == MsgType.ADVERTISE_KEYS:
        msg = AdvertiseKeys(h, r.raw(PUBLIC_KEY_BYTES), r.raw(PUBLIC_KEY_BYTES), _read_sig(r))
    elif mtype == MsgType.KEY_DIRECTORY:
        entries = []
        for _ in range(r.count(n, "key entry")):
            client = _client_id(r.u32(), n)
            entries.append(
                KeyEntry(client, r.raw(PUBLIC_KEY_BYTES), r.raw(PUBLIC_KEY_BYTES), _read_sig(r))
            )
        _unique([e.client for e in entries], "key directory")
        msg = KeyDirectory(h, tuple(entries))
    elif mtype == MsgType.SHARE_KEYS:
        boxes = _read_boxes(r, n)
        msg = ShareKeys(h, boxes)
    elif mtype == MsgType.SHARE_DELIVERY:
        shared = _read_ids(r, n, "shared-keys list")
        msg = ShareDelivery(h, shared, _read_boxes(r, n))
    elif mtype == MsgType.MASKED_INPUT:
        msg = _read_masked(r, h, expect)
    elif mtype == MsgType.SURVIVOR_LIST:
        msg = SurvivorList(h, _read_ids(r, n, "survivor list"))
    elif mtype == MsgType.CONSISTENCY_SIGNATURE:
        msg = ConsistencySignature(h, r.raw(SIGNATURE_BYTES))
    elif mtype == MsgType.SIGNATURE_LIST:
        sigs = []
        for _ in range(r.count(n, "signature")):
            sigs.append((_client_id(r.u32(), n), r.raw(SIGNATURE_BYTES)))
        _unique([c for c, _ in sigs], "signature list")
        msg = SignatureList(h, tuple(sigs))
    elif mtype == MsgType.UNMASK_SHARES:
        count = r.count(n, "share")
        shares = []
        kinds = (ShareKind.SELF_MASK, ShareKind.MASK_KEY)
        # fixed-size records: one bounds check for the block, then a C-level unpack
        for owner, kind_code, raw in _SHARE_RECORD.iter_unpack(r.view(count * _SHARE_RECORD.size)):
            if owner >= n:
                raise MessageFormatError(f"client id {owner} outside 0..{n - 1}")
            if kind_code > 1:
                raise MessageFormatError(f"unknown share kind {kind_code}")
            shares.append((owner, kinds[kind_code], raw))
        _unique([o for o, _, _ in shares], "unmask share owners")
        msg = UnmaskShares(h, tuple(shares))
    else:  # ABORT
        raw = r.blob(MAX_REASON)
        try:
            reason = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MessageFormatError("abort reason is not UTF-8") from exc
        msg = Abort(h, reason)
    r.end()
    return msg


def _client_id(v: int, n: int) -> int:
    if not 0 <= v < n:
        raise MessageFormatError(f"client id {v} outside 0..{n - 1}")
    return v


def _unique(ids: list[int], what: str) -> None:
    if len(set(ids)) != len(ids):
        raise DuplicateSenderError(f"duplicate client ids in {what}")


def _read_sig(r: Reader) -> bytes:
    flag = r.u8()
    if flag not in (0, 1):
        raise MessageFormatError(f"bad signature flag {flag}")
    return r.raw(SIGNATURE_BYTES) if flag else b""


def _read_ids(r: Reader, n: int, what: str) -> tuple[int, ...]:
    ids = [_client_id(r.u32(), n) for _ in range(r.count(n, what))]
    if ids != sorted(set(ids)):
        raise MessageFormatError(f"{what} must be sorted and free of duplicates")
    return tuple(ids)


def _read_boxes(r: Reader, n: int) -> tuple[tuple[int, bytes], ...]:
    boxes = []
    for _ in range(r.count(n, "share box")):
        boxes.append((_client_id(r.u32(), n), r.raw(SHARE_BOX_BYTES)))
    _unique([p for p, _ in boxes], "share boxes")
    return tuple(boxes)


def _read_masked(r: Reader, h: Header, expect: Expect) -> MaskedInput:
    ring = expect.ring
    bits, itemsize, d = r.u8(), r.u8(), r.u64()
    if bits != ring.bits:
        raise MessageFormatError(f"masked input in Z_2^{bits}, expected Z_2^{ring.bits}")
    if itemsize != ring.itemsize:
        raise MessageFormatError(f"element size {itemsize} bytes, expected {ring.itemsize}")
    if d != expect.dimension:
        raise MessageFormatError(f"vector length {d}, expected {expect.dimension}")
    raw = r.view(d * itemsize)
    vec: Any = np.frombuffer(raw, dtype=ring.dtype.newbyteorder("<")).astype(ring.dtype, copy=False)
    try:
        ring.validate(vec, d)
    except RingValueError as exc:
        raise MessageFormatError(str(exc)) from exc
    return MaskedInput(h, bits, vec)
