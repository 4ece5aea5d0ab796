"""The typed messages of one SecAgg round and their versioned binary encoding.

Layout of every message::

    magic "SAGG" | version u8 | type u8 | session_len u8 | session | round u64 | sender u32
    | body (type-specific, fixed or length-prefixed fields) | nothing else

Every server -> client message is **per client and O(k)**: the client's neighbours'
keys, the boxes addressed to it, its neighbours' statuses, the evidence about its
neighbourhood. A neighbour that is not there is listed as absent, so a client tells
"absent" from "withheld by the server".

``decode`` validates everything it can without protocol state: magic, version, type,
session id and round (against the expected ones), the sender field, counts (bounded by
the graph degree and window sizes of :class:`Expect`), lengths, client ids
(< num_clients, sorted, no duplicates), status codes, the ring dtype and vector length.
The state machines then check what needs state (who may send what, neighbourhoods,
tags, digests).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import numpy as np

from secagg.attestation import TAG_BYTES, statuses_bytes, unpack_statuses
from secagg.context import SESSION_ID_MAX_BYTES, SESSION_ID_MIN_BYTES
from secagg.crypto import NONCE_BYTES, PUBLIC_KEY_BYTES, SIGNATURE_BYTES
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
VERSION = 2
SERVER_ID = 0xFFFFFFFF
DIGEST_BYTES = 32
#: Plaintext of one share box: owner u32 | holder u32 | key share | self-mask share.
SHARE_BOX_PLAINTEXT = 8 + 2 * SHARE_BYTES
SHARE_BOX_BYTES = NONCE_BYTES + SHARE_BOX_PLAINTEXT + 16
MAX_REASON = 1024
_SHARE_RECORD = struct.Struct(f">IB{SHARE_BYTES}s")  # owner, kind, share
_TAGGED = struct.Struct(f">I{TAG_BYTES}s")  # party, tag
_LEAF = struct.Struct(f">I{DIGEST_BYTES}s{DIGEST_BYTES}s")  # holder, key digest, mask digest
_BOX = struct.Struct(f">I{SHARE_BOX_BYTES}s")  # party, box


class MsgType(IntEnum):
    """Wire type codes (client -> server below 16, server -> client from 16)."""

    ADVERTISE_KEYS = 1
    SHARE_KEYS = 2
    MASKED_INPUT = 3
    VIEW_REPORT = 4
    UNMASK_SHARES = 5
    COMPLAINT = 6
    NEIGHBOUR_KEYS = 16
    SHARE_DELIVERY = 17
    STATUS_LIST = 18
    ATTESTATIONS = 19
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


Tags = tuple[tuple[int, bytes], ...]  # (party, 16-byte tag), sorted by party


# --- client -> server ---------------------------------------------------------------------


@dataclass(frozen=True)
class AdvertiseKeys:
    """Its two round public keys; active: signed (for proofs) and MAC'd per neighbour."""

    header: Header
    channel_public: bytes
    mask_public: bytes
    signature: bytes = b""
    tags: Tags = ()


@dataclass(frozen=True)
class ShareKeys:
    """One encrypted share box per neighbour, and the commitment to what it dealt:
    the seed digest, one (holder, key digest, mask digest) leaf per holder (itself
    included), signed in the active setting."""

    header: Header
    boxes: tuple[tuple[int, bytes], ...]  # (receiver, ciphertext)
    seed_digest: bytes
    leaves: tuple[tuple[int, bytes, bytes], ...]
    signature: bytes = b""


@dataclass(frozen=True)
class MaskedInput:
    """The masked, encoded input y_u in Z_(2^b); active: its edges (which neighbours it
    masked with, canonical view order), MAC'd for each holder."""

    header: Header
    bits: int
    vector: RingArray
    edges: bytes = b""
    tags: Tags = ()


@dataclass(frozen=True)
class ViewReport:
    """Active: its status of each neighbour (canonical order), MAC'd for every client
    within ring distance k."""

    header: Header
    statuses: bytes
    tags: Tags = ()


@dataclass(frozen=True)
class UnmaskShares:
    """One share per peer, of the self-mask seed or of the mask key."""

    header: Header
    shares: tuple[tuple[int, ShareKind, bytes], ...]  # (owner, kind, share bytes)


@dataclass(frozen=True)
class Complaint:
    """Instead of its masked input: the box from ``owner`` does not match its digests.
    Reveals this client's round channel key so anyone can check (the round aborts)."""

    header: Header
    owner: int
    channel_private: bytes


# --- server -> client ---------------------------------------------------------------------


@dataclass(frozen=True)
class NeighbourEntry:
    """One neighbour's advertisement as relayed, or its explicit absence."""

    client: int
    present: bool
    channel_public: bytes = b""
    mask_public: bytes = b""
    tag: bytes = b""  # active: its MAC for this receiver


@dataclass(frozen=True)
class NeighbourKeys:
    """Every neighbour of the receiver: keys, or marked absent (sorted by client)."""

    header: Header
    entries: tuple[NeighbourEntry, ...]


@dataclass(frozen=True)
class DeliveryEntry:
    """One neighbour's box for the receiver with the digests its owner committed, or
    its explicit absence (it did not share keys with the receiver)."""

    sender: int
    shared: bool
    box: bytes = b""
    key_digest: bytes = b""
    mask_digest: bytes = b""


@dataclass(frozen=True)
class ShareDelivery:
    """Every neighbour the receiver saw advertise: its box, or marked absent."""

    header: Header
    entries: tuple[DeliveryEntry, ...]


@dataclass(frozen=True)
class StatusList:
    """The receiver's neighbours' statuses (canonical view order, packed)."""

    header: Header
    statuses: bytes


@dataclass(frozen=True)
class Attestations:
    """Active: the evidence about the receiver's neighbourhood. ``base`` holds statuses
    over the base window; each edge list and view is its signer's tag, with the full
    value only where it differs from what the base implies (b"" otherwise)."""

    header: Header
    base: bytes
    edges: tuple[tuple[int, bytes, bytes], ...]  # (owner, explicit bitmap or b"", tag)
    views: tuple[tuple[int, bytes, bytes], ...]  # (attester, explicit statuses or b"", tag)


@dataclass(frozen=True)
class Abort:
    """Server -> clients: the round is over without a result."""

    header: Header
    reason: str


Message = (
    AdvertiseKeys
    | ShareKeys
    | MaskedInput
    | ViewReport
    | UnmaskShares
    | Complaint
    | NeighbourKeys
    | ShareDelivery
    | StatusList
    | Attestations
    | Abort
)

_TYPE_OF: dict[type, MsgType] = {
    AdvertiseKeys: MsgType.ADVERTISE_KEYS,
    ShareKeys: MsgType.SHARE_KEYS,
    MaskedInput: MsgType.MASKED_INPUT,
    ViewReport: MsgType.VIEW_REPORT,
    UnmaskShares: MsgType.UNMASK_SHARES,
    Complaint: MsgType.COMPLAINT,
    NeighbourKeys: MsgType.NEIGHBOUR_KEYS,
    ShareDelivery: MsgType.SHARE_DELIVERY,
    StatusList: MsgType.STATUS_LIST,
    Attestations: MsgType.ATTESTATIONS,
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
    _ENCODERS[type(msg)](w, msg)
    return w.getvalue()


def _enc_advertise(w: Writer, m: Any) -> None:
    w.raw(m.channel_public).raw(m.mask_public)
    _sig(w, m.signature)
    _tags(w, m.tags)


def _enc_share_keys(w: Writer, m: Any) -> None:
    w.u32(len(m.boxes)).raw(b"".join(_BOX.pack(p, b) for p, b in m.boxes))
    w.raw(m.seed_digest).u32(len(m.leaves)).raw(b"".join(_LEAF.pack(*lf) for lf in m.leaves))
    _sig(w, m.signature)


def _enc_masked(w: Writer, m: Any) -> None:
    v = np.ascontiguousarray(m.vector)
    w.u8(m.bits).u8(v.dtype.itemsize).u64(v.shape[0])
    w.raw(v.astype(v.dtype.newbyteorder("<"), copy=False).tobytes())
    w.blob(m.edges)
    _tags(w, m.tags)


def _enc_view(w: Writer, m: Any) -> None:
    w.blob(m.statuses)
    _tags(w, m.tags)


def _enc_unmask(w: Writer, m: Any) -> None:
    w.u32(len(m.shares)).raw(b"".join(_SHARE_RECORD.pack(o, k, s) for o, k, s in m.shares))


def _enc_complaint(w: Writer, m: Any) -> None:
    w.u32(m.owner).raw(m.channel_private)


def _enc_neighbours(w: Writer, m: Any) -> None:
    w.u32(len(m.entries))
    for e in m.entries:
        w.u32(e.client).u8(1 if e.present else 0)
        if e.present:
            w.raw(e.channel_public).raw(e.mask_public).blob(e.tag)


def _enc_delivery(w: Writer, m: Any) -> None:
    w.u32(len(m.entries))
    for e in m.entries:
        w.u32(e.sender).u8(1 if e.shared else 0)
        if e.shared:
            w.raw(e.box).raw(e.key_digest).raw(e.mask_digest)


def _enc_statuses(w: Writer, m: Any) -> None:
    w.blob(m.statuses)


def _enc_attestations(w: Writer, m: Any) -> None:
    w.blob(m.base)
    for group in (m.edges, m.views):
        w.u32(len(group))
        for party, explicit, tag_ in group:
            w.u32(party).blob(explicit).raw(tag_)


def _enc_abort(w: Writer, m: Any) -> None:
    w.blob(m.reason.encode("utf-8")[:MAX_REASON])


_ENCODERS: dict[type, Any] = {
    AdvertiseKeys: _enc_advertise,
    ShareKeys: _enc_share_keys,
    MaskedInput: _enc_masked,
    ViewReport: _enc_view,
    UnmaskShares: _enc_unmask,
    Complaint: _enc_complaint,
    NeighbourKeys: _enc_neighbours,
    ShareDelivery: _enc_delivery,
    StatusList: _enc_statuses,
    Attestations: _enc_attestations,
    Abort: _enc_abort,
}


def _sig(w: Writer, sig: bytes) -> None:
    w.u8(1 if sig else 0)
    if sig:
        w.raw(sig)


def _tags(w: Writer, tags: Tags) -> None:
    w.u32(len(tags)).raw(b"".join(_TAGGED.pack(p, t) for p, t in tags))


# --- decoding -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Expect:
    """What the receiver expects: checked before a body is trusted.

    ``degree`` bounds per-neighbour lists (k); ``window`` bounds the attesters and the
    MAC'd parties of one message (the clients within ring distance k); ``base`` is the
    number of statuses in an attestation base vector.
    """

    session_id: bytes
    round_index: int
    num_clients: int
    ring: Ring
    dimension: int
    degree: int = 0
    window: int = 0
    base: int = 0

    @property
    def max_list(self) -> int:
        """Per-neighbour list bound (the holders of one client)."""
        return max(self.degree + 1, 1)

    @classmethod
    def reading(cls, config: Any, session_id: bytes, round_index: int, dimension: int) -> Expect:
        """Bounds for reading a session's client messages after the fact (a transcript):
        per-neighbour lists up to the degree, tags up to the population."""
        n = config.num_clients
        ring = config.encoding.ring
        return cls(session_id, round_index, n, ring, dimension, config.degree, n, 0)


def decode(data: bytes, expect: Expect, allowed: tuple[MsgType, ...]) -> Message:
    """Parse ``data`` strictly; raise a named :class:`ProtocolError` subclass if it is bad.

    ``allowed`` lists the message types acceptable at this step; any other valid type
    raises :class:`UnexpectedMessageError`.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise MessageFormatError(f"a message must be bytes, got {type(data).__name__}")
    r = Reader(bytes(data))
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
    from_server = mtype >= MsgType.NEIGHBOUR_KEYS
    if from_server and sender != SERVER_ID:
        raise MessageFormatError("server message with a client sender id")
    if not from_server:
        _client_id(sender, expect.num_clients)
    msg: Message = _DECODERS[mtype](r, Header(session, round_index, sender), expect)
    r.end()
    return msg


def _dec_advertise(r: Reader, h: Header, e: Expect) -> Message:
    c, m = r.raw(PUBLIC_KEY_BYTES), r.raw(PUBLIC_KEY_BYTES)
    return AdvertiseKeys(h, c, m, _read_sig(r), _read_tags(r, e.max_list, e.num_clients))


def _dec_share_keys(r: Reader, h: Header, e: Expect) -> Message:
    n = e.num_clients
    boxes = _records(r, _BOX, e.max_list, "share box")
    _check_ids([p for p, _ in boxes], n, "share boxes")
    seed = r.raw(DIGEST_BYTES)
    leaves = _records(r, _LEAF, e.max_list, "commitment leaf")
    _check_ids([lf[0] for lf in leaves], n, "commitment leaves")
    return ShareKeys(h, tuple(boxes), seed, tuple(leaves), _read_sig(r))


def _dec_masked(r: Reader, h: Header, e: Expect) -> Message:
    ring = e.ring
    bits, itemsize, d = r.u8(), r.u8(), r.u64()
    if bits != ring.bits:
        raise MessageFormatError(f"masked input in Z_2^{bits}, expected Z_2^{ring.bits}")
    if itemsize != ring.itemsize:
        raise MessageFormatError(f"element size {itemsize} bytes, expected {ring.itemsize}")
    if d != e.dimension:
        raise MessageFormatError(f"vector length {d}, expected {e.dimension}")
    raw = r.view(d * itemsize)
    vec: Any = np.frombuffer(raw, dtype=ring.dtype.newbyteorder("<")).astype(ring.dtype, copy=False)
    try:
        ring.validate(vec, d)
    except RingValueError as exc:
        raise MessageFormatError(str(exc)) from exc
    edges = r.blob((e.degree + 7) // 8)
    if edges and len(edges) != (e.degree + 7) // 8:
        raise MessageFormatError(f"edge list of {len(edges)} bytes for degree {e.degree}")
    return MaskedInput(h, bits, vec, edges, _read_tags(r, e.max_list, e.num_clients))


def _dec_view(r: Reader, h: Header, e: Expect) -> Message:
    st = r.blob(statuses_bytes(e.degree))
    unpack_statuses(st, e.degree)
    return ViewReport(h, st, _read_tags(r, max(e.window, 1), e.num_clients))


def _dec_unmask(r: Reader, h: Header, e: Expect) -> Message:
    n = e.num_clients
    count = r.count(e.max_list, "share")
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
    return UnmaskShares(h, tuple(shares))


def _dec_complaint(r: Reader, h: Header, e: Expect) -> Message:
    return Complaint(h, _client_id(r.u32(), e.num_clients), r.raw(32))


def _dec_neighbours(r: Reader, h: Header, e: Expect) -> Message:
    entries = []
    for _ in range(r.count(e.max_list, "neighbour entry")):
        c = _client_id(r.u32(), e.num_clients)
        present = _flag(r)
        if present:
            entries.append(
                NeighbourEntry(
                    c, True, r.raw(PUBLIC_KEY_BYTES), r.raw(PUBLIC_KEY_BYTES), r.blob(TAG_BYTES)
                )
            )
        else:
            entries.append(NeighbourEntry(c, False))
    _check_ids([x.client for x in entries], e.num_clients, "neighbour list")
    return NeighbourKeys(h, tuple(entries))


def _dec_delivery(r: Reader, h: Header, e: Expect) -> Message:
    entries = []
    for _ in range(r.count(e.max_list, "delivery entry")):
        c = _client_id(r.u32(), e.num_clients)
        if _flag(r):
            box, kd, md = r.raw(SHARE_BOX_BYTES), r.raw(DIGEST_BYTES), r.raw(DIGEST_BYTES)
            entries.append(DeliveryEntry(c, True, box, kd, md))
        else:
            entries.append(DeliveryEntry(c, False))
    _check_ids([x.sender for x in entries], e.num_clients, "share delivery")
    return ShareDelivery(h, tuple(entries))


def _dec_statuses(r: Reader, h: Header, e: Expect) -> Message:
    st = r.blob(statuses_bytes(e.degree))
    unpack_statuses(st, e.degree)
    return StatusList(h, st)


def _dec_attestations(r: Reader, h: Header, e: Expect) -> Message:
    base = r.blob(statuses_bytes(e.base))
    unpack_statuses(base, e.base)
    groups = []
    for limit, width in (
        (e.max_list, (e.degree + 7) // 8),
        (max(e.window, 1), statuses_bytes(e.degree)),
    ):
        items = []
        for _ in range(r.count(limit, "attestation")):
            party = _client_id(r.u32(), e.num_clients)
            explicit = r.blob(width)
            if explicit and len(explicit) != width:
                raise MessageFormatError("explicit attestation of the wrong length")
            items.append((party, explicit, r.raw(TAG_BYTES)))
        _check_ids([p for p, _, _ in items], e.num_clients, "attestations")
        groups.append(tuple(items))
    return Attestations(h, base, groups[0], groups[1])


def _dec_abort(r: Reader, h: Header, e: Expect) -> Message:
    raw = r.blob(MAX_REASON)
    try:
        reason = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MessageFormatError("abort reason is not UTF-8") from exc
    return Abort(h, reason)


_DECODERS: dict[MsgType, Any] = {
    MsgType.ADVERTISE_KEYS: _dec_advertise,
    MsgType.SHARE_KEYS: _dec_share_keys,
    MsgType.MASKED_INPUT: _dec_masked,
    MsgType.VIEW_REPORT: _dec_view,
    MsgType.UNMASK_SHARES: _dec_unmask,
    MsgType.COMPLAINT: _dec_complaint,
    MsgType.NEIGHBOUR_KEYS: _dec_neighbours,
    MsgType.SHARE_DELIVERY: _dec_delivery,
    MsgType.STATUS_LIST: _dec_statuses,
    MsgType.ATTESTATIONS: _dec_attestations,
    MsgType.ABORT: _dec_abort,
}


def _client_id(v: int, n: int) -> int:
    if not 0 <= v < n:
        raise MessageFormatError(f"client id {v} outside 0..{n - 1}")
    return v


def _flag(r: Reader) -> bool:
    f = r.u8()
    if f not in (0, 1):
        raise MessageFormatError(f"bad flag {f}")
    return f == 1


def _unique(ids: list[int], what: str) -> None:
    if len(set(ids)) != len(ids):
        raise DuplicateSenderError(f"duplicate client ids in {what}")


def _check_ids(ids: list[int], n: int, what: str) -> None:
    for i in ids:
        _client_id(i, n)
    _unique(ids, what)
    if ids != sorted(ids):
        raise MessageFormatError(f"{what} must be sorted by client id")


def _records(r: Reader, rec: struct.Struct, limit: int, what: str) -> list[Any]:
    count = r.count(limit, what)
    return list(rec.iter_unpack(r.view(count * rec.size)))


def _read_sig(r: Reader) -> bytes:
    return r.raw(SIGNATURE_BYTES) if _flag(r) else b""


def _read_tags(r: Reader, limit: int, n: int) -> Tags:
    tags = _records(r, _TAGGED, limit, "tag")
    _check_ids([p for p, _ in tags], n, "tags")
    return tuple((p, t) for p, t in tags)
