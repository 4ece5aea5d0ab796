"""Versioned binary formats of the committee: keys, endorsements, shares, member state.

Every message starts with ``b"SAPT"``, a version byte and a kind byte, then big-endian
fields written with :class:`secagg.wire.Writer`; decoders read with the bounded
:class:`secagg.wire.Reader` (every count checked before anything is allocated) and
reject truncated or trailing bytes, unknown versions and kinds, and out-of-range values
with :class:`ThresholdFormatError`. Nothing is pickled or evaluated.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import ParamSpec, TypeVar

from secagg.context import check_session_id
from secagg.errors import ContextError, MessageFormatError
from secagg.paillier.codec import check_ciphertexts, decode_public_key, encode_public_key
from secagg.paillier.errors import (
    PaillierConfigError,
    PaillierFormatError,
    ThresholdConfigError,
    ThresholdFormatError,
)
from secagg.paillier.packing import MAX_ELEMENTS
from secagg.paillier.threshold_keys import (
    MAX_MEMBERS,
    CommitteeParams,
    KeyShare,
    ThresholdPublicKey,
)
from secagg.paillier.threshold_proofs import CHALLENGE_BITS, BatchProof
from secagg.wire import Reader, Writer

MAGIC = b"SAPT"
VERSION = 1
KIND_PUBLIC_KEY = 1
KIND_KEY_SHARE = 2
KIND_ENDORSEMENT = 3
KIND_SHARE_REQUEST = 4
KIND_SHARE_RESPONSE = 5
KIND_MEMBER_STATE = 6
DIGEST_BYTES = 32
SIGNATURE_BYTES = 64
#: Rounds a member's state remembers (older ones are refused by the monotone rule).
MAX_HISTORY = 1024
MAX_PUBLIC_KEY_BYTES = 4096
MAX_ENDORSEMENT_BYTES = 512
MAX_PROOF_BYTES = 2048
MAX_PRODUCT_BYTES = 2**31

_P = ParamSpec("_P")
_R = TypeVar("_R")


def _header(w: Writer, kind: int) -> Writer:
    return w.raw(MAGIC).u8(VERSION).u8(kind)


class _In:
    """A :class:`Reader` that checks the header and turns every failure into one error."""

    def __init__(self, data: bytes, kind: int, what: str) -> None:
        self.what = what
        try:
            self.r = Reader(data)
            magic, version, got = self.r.raw(4), self.r.u8(), self.r.u8()
        except MessageFormatError as exc:
            raise ThresholdFormatError(f"{what}: {exc}") from None
        if magic != MAGIC or version != VERSION or got != kind:
            raise ThresholdFormatError(
                f"{what}: bad header (magic {magic!r}, version {version}, kind {got})"
            )

    def fail(self, why: str) -> ThresholdFormatError:
        return ThresholdFormatError(f"{self.what}: {why}")

    def session(self) -> bytes:
        try:
            return check_session_id(self.r.raw(self.r.u8()))
        except ContextError as exc:
            raise self.fail(str(exc)) from None

    def member(self) -> int:
        m = self.r.u8()
        if not 1 <= m <= MAX_MEMBERS:
            raise self.fail(f"member index {m} outside [1, {MAX_MEMBERS}]")
        return m


def _session(w: Writer, session_id: bytes) -> Writer:
    sid = check_session_id(session_id)
    return w.u8(len(sid)).raw(sid)


def _reading(fn: Callable[_P, _R]) -> Callable[_P, _R]:
    """Decorator: a MessageFormatError from the Reader becomes a ThresholdFormatError."""

    @functools.wraps(fn)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return fn(*args, **kwargs)
        except MessageFormatError as exc:
            raise ThresholdFormatError(f"{fn.__name__}: {exc}") from None

    return wrapper


# --- threshold public key and key share ----------------------------------------------


def encode_threshold_public_key(tpk: ThresholdPublicKey) -> bytes:
    """Serialize (clients' public key, t, l, v, v_1..v_l)."""
    width = tpk.public.ciphertext_bytes
    w = _header(Writer(), KIND_PUBLIC_KEY).blob(encode_public_key(tpk.public))
    w.u8(tpk.params.threshold).u8(tpk.params.members)
    w.raw(tpk.verification_base.to_bytes(width, "big"))
    for vk in tpk.verification_keys:
        w.raw(vk.to_bytes(width, "big"))
    return w.getvalue()


def _read_public_key(i: _In, insecure_test_key: bool) -> ThresholdPublicKey:
    try:
        pk = decode_public_key(i.r.blob(MAX_PUBLIC_KEY_BYTES), insecure_test_key=insecure_test_key)
        t, members = i.r.u8(), i.r.u8()
        width = pk.ciphertext_bytes
        v = int.from_bytes(i.r.raw(width), "big")
        if not 2 <= members <= MAX_MEMBERS:
            raise i.fail(f"{members} members outside [2, {MAX_MEMBERS}]")
        vks = tuple(int.from_bytes(i.r.raw(width), "big") for _ in range(members))
        return ThresholdPublicKey(pk, CommitteeParams(t, members), v, vks)
    except ThresholdFormatError:
        raise
    except (PaillierConfigError, PaillierFormatError) as exc:
        raise i.fail(str(exc)) from None


@_reading
def decode_threshold_public_key(
    data: bytes, *, insecure_test_key: bool = False
) -> ThresholdPublicKey:
    """Parse and validate a threshold public key (test sizes only if asked)."""
    i = _In(data, KIND_PUBLIC_KEY, "threshold public key")
    tpk = _read_public_key(i, insecure_test_key)
    i.r.end()
    return tpk


def encode_key_share(share: KeyShare) -> bytes:
    """Serialize one member's key share (secret: store it like a private key)."""
    w = _header(Writer(), KIND_KEY_SHARE).blob(encode_threshold_public_key(share.public))
    w.u8(share.member).raw(share.secret.to_bytes(share.public.share_bytes, "big"))
    return w.getvalue()


@_reading
def decode_key_share(data: bytes, *, insecure_test_key: bool = False) -> KeyShare:
    """Parse a key share and check it against its published verification key."""
    i = _In(data, KIND_KEY_SHARE, "key share")
    inner = i.r.blob(MAX_PUBLIC_KEY_BYTES * (MAX_MEMBERS + 2))
    tpk = decode_threshold_public_key(inner, insecure_test_key=insecure_test_key)
    member = i.member()
    secret = int.from_bytes(i.r.raw(tpk.share_bytes), "big")
    i.r.end()
    try:
        share = KeyShare(tpk, member, secret)
    except ThresholdConfigError as exc:
        raise i.fail(str(exc)) from None
    if not share.matches_verification_key():
        raise i.fail(f"share of member {member} does not match its verification key")
    return share


# --- endorsements and share requests -------------------------------------------------


@dataclass(frozen=True)
class Endorsement:
    """A member's signature on (session, round, committee, contributor set, product)."""

    session_id: bytes
    round_index: int
    member: int
    committee_id: bytes
    contributors_digest: bytes
    product_digest: bytes
    signature: bytes


def encode_endorsement(e: Endorsement) -> bytes:
    """Serialize an endorsement."""
    if len(e.signature) != SIGNATURE_BYTES:
        raise ThresholdFormatError(f"signature must be {SIGNATURE_BYTES} bytes")
    w = _session(_header(Writer(), KIND_ENDORSEMENT), e.session_id).u64(e.round_index)
    w.u8(e.member).raw(e.committee_id).raw(e.contributors_digest).raw(e.product_digest)
    return w.raw(e.signature).getvalue()


@_reading
def decode_endorsement(data: bytes) -> Endorsement:
    """Parse an endorsement (structure only; the member module checks the signature)."""
    i = _In(data, KIND_ENDORSEMENT, "endorsement")
    sid, rnd, member = i.session(), i.r.u64(), i.member()
    cid, cs, pd = (i.r.raw(DIGEST_BYTES) for _ in range(3))
    sig = i.r.raw(SIGNATURE_BYTES)
    i.r.end()
    return Endorsement(sid, rnd, member, cid, cs, pd, sig)


@dataclass(frozen=True)
class ShareRequest:
    """The aggregator's second message: the product, its digests and >= q endorsements."""

    session_id: bytes
    round_index: int
    contributors_digest: bytes
    product_digest: bytes
    product: bytes  # an encoded ciphertext vector
    endorsements: tuple[bytes, ...]


def encode_share_request(m: ShareRequest) -> bytes:
    """Serialize a share request."""
    if len(m.endorsements) > MAX_MEMBERS:
        raise ThresholdFormatError(f"more than {MAX_MEMBERS} endorsements")
    w = _session(_header(Writer(), KIND_SHARE_REQUEST), m.session_id).u64(m.round_index)
    w.raw(m.contributors_digest).raw(m.product_digest).blob(m.product).u8(len(m.endorsements))
    for e in m.endorsements:
        w.blob(e)
    return w.getvalue()


@_reading
def decode_share_request(data: bytes) -> ShareRequest:
    """Parse a share request (structure only)."""
    i = _In(data, KIND_SHARE_REQUEST, "share request")
    sid, rnd = i.session(), i.r.u64()
    cs, pd = i.r.raw(DIGEST_BYTES), i.r.raw(DIGEST_BYTES)
    product = i.r.blob(MAX_PRODUCT_BYTES)
    count = i.r.u8()
    if count > MAX_MEMBERS:
        raise i.fail(f"{count} endorsements")
    ends = tuple(i.r.blob(MAX_ENDORSEMENT_BYTES) for _ in range(count))
    i.r.end()
    return ShareRequest(sid, rnd, cs, pd, product, ends)


# --- decryption shares ---------------------------------------------------------------


@dataclass(frozen=True)
class ShareResponse:
    """A member's decryption shares of the round's product and its one batched proof."""

    session_id: bytes
    round_index: int
    member: int
    committee_id: bytes
    contributors_digest: bytes
    product_digest: bytes
    shares: tuple[int, ...]
    proof: BatchProof


def encode_share_response(tpk: ThresholdPublicKey, m: ShareResponse) -> bytes:
    """Serialize a share response (fixed-width shares)."""
    width = tpk.public.ciphertext_bytes
    w = _session(_header(Writer(), KIND_SHARE_RESPONSE), m.session_id).u64(m.round_index)
    w.u8(m.member).raw(m.committee_id).raw(m.contributors_digest).raw(m.product_digest)
    w.u32(len(m.shares)).raw(b"".join(s.to_bytes(width, "big") for s in m.shares))
    z = m.proof.response
    w.raw(m.proof.challenge.to_bytes(CHALLENGE_BITS // 8, "big"))
    return w.blob(z.to_bytes((z.bit_length() + 7) // 8, "big")).getvalue()


@_reading
def decode_share_response(data: bytes, tpk: ThresholdPublicKey) -> ShareResponse:
    """Parse a share response; every share must lie in Z*_(N^2)."""
    i = _In(data, KIND_SHARE_RESPONSE, "share response")
    sid, rnd, member = i.session(), i.r.u64(), i.member()
    cid, cs, pd = (i.r.raw(DIGEST_BYTES) for _ in range(3))
    width = tpk.public.ciphertext_bytes
    count = i.r.count(MAX_ELEMENTS, "share")
    body = i.r.view(count * width)
    shares = tuple(int.from_bytes(body[k : k + width], "big") for k in range(0, len(body), width))
    e = int.from_bytes(i.r.raw(CHALLENGE_BITS // 8), "big")
    z = int.from_bytes(i.r.blob(MAX_PROOF_BYTES), "big")
    i.r.end()
    try:
        check_ciphertexts(tpk.public, shares)
    except PaillierFormatError as exc:
        raise i.fail(f"member {member}: {exc}") from None
    return ShareResponse(sid, rnd, member, cid, cs, pd, shares, BatchProof(e, z))


# --- a member's persistent state -----------------------------------------------------


@dataclass(frozen=True)
class RoundRecord:
    """What a member endorsed in its latest round, and whether it released its share."""

    round_index: int
    contributors_digest: bytes
    product_digest: bytes
    released: bool


@dataclass(frozen=True)
class MemberState:
    """A member's record: its latest round, and the rounds it decrypted (bounded)."""

    member: int
    committee_id: bytes
    session_id: bytes
    current: RoundRecord | None
    decrypted: tuple[tuple[int, bytes], ...]  # (round, contributor-set digest), oldest first


def encode_member_state(s: MemberState) -> bytes:
    """Serialize a member's state (store it before a share leaves the member)."""
    if len(s.decrypted) > MAX_HISTORY:
        raise ThresholdFormatError(f"history longer than {MAX_HISTORY}")
    w = _header(Writer(), KIND_MEMBER_STATE).u8(s.member).raw(s.committee_id)
    _session(w, s.session_id).u8(s.current is not None)
    if s.current is not None:
        c = s.current
        w.u64(c.round_index).raw(c.contributors_digest).raw(c.product_digest).u8(c.released)
    w.u32(len(s.decrypted))
    for rnd, digest in s.decrypted:
        w.u64(rnd).raw(digest)
    return w.getvalue()


@_reading
def decode_member_state(data: bytes) -> MemberState:
    """Parse a member's state; flags must be 0/1 and rounds strictly increasing."""
    i = _In(data, KIND_MEMBER_STATE, "member state")
    member, cid, sid = i.member(), i.r.raw(DIGEST_BYTES), i.session()
    flag = i.r.u8()
    current = None
    if flag not in (0, 1):
        raise i.fail(f"bad flag {flag}")
    if flag:
        rnd, cs, pd = i.r.u64(), i.r.raw(DIGEST_BYTES), i.r.raw(DIGEST_BYTES)
        released = i.r.u8()
        if released not in (0, 1):
            raise i.fail(f"bad released flag {released}")
        current = RoundRecord(rnd, cs, pd, bool(released))
    count = i.r.count(MAX_HISTORY, "history")
    history = tuple((i.r.u64(), i.r.raw(DIGEST_BYTES)) for _ in range(count))
    i.r.end()
    rounds = [r for r, _ in history]
    if any(b <= a for a, b in itertools.pairwise(rounds)):
        raise i.fail("decrypted rounds are not strictly increasing")
    if rounds and (current is None or current.round_index < rounds[-1]):
        raise i.fail("latest round precedes a decrypted round")
    return MemberState(member, cid, sid, current, history)
