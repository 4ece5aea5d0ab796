"""A client's round state as one record, and its versioned byte form.

Flower starts a fresh ClientApp process for every message, so a client that takes part
in several exchanges of a round must carry its state (key pairs, the self-mask seed, the
shares it holds, what it already released) from one process to the next.
:class:`RoundState` is everything :class:`~secagg.client.SecAggClient` keeps for a
round; :meth:`RoundState.to_bytes` / :meth:`RoundState.from_bytes` turn it into the
project's bounded wire format and back (no pickle, every field checked, contradictions
between fields refused with :class:`ClientStateError`). The bytes hold secrets: they
belong in the client's own storage (Flower's node state), never on the wire.

The security records survive the round trip: the released kinds per owner (so a
restored client never releases the other kind) and the phase (so an answered round is
never answered again). The config, the trust and the registry are not stored: the
caller passes them back (they come from the session and the node's provisioning).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from secagg import crypto
from secagg.attestation import Status
from secagg.errors import KeyFormatError, MessageFormatError, SecAggError
from secagg.messages import ShareKind
from secagg.shamir import SHARE_BYTES
from secagg.wire import Reader, Writer

MAGIC = b"SAGS"
VERSION = 2
_MAX_CONTEXT = 1 << 12
_MAX_ERROR = 1 << 10
_MAX_DIMENSION = (1 << 32) - 1


class ClientStateError(SecAggError, ValueError):
    """Saved client state that is malformed or does not fit the session."""


class ClientPhase(enum.Enum):
    """Where the client is in the round."""

    INIT = "init"
    ADVERTISED = "advertised"  # sent AdvertiseKeys, waiting for its neighbours' keys
    SHARED = "shared"  # sent ShareKeys, waiting for the share delivery
    MASKED = "masked"  # sent MaskedInput, waiting for its neighbours' statuses
    REPORTED = "reported"  # active: sent its view, waiting for the attestations
    DONE = "done"  # sent its unmasking shares (or a complaint)
    ABORTED = "aborted"


_PHASES = tuple(ClientPhase)


@dataclass
class RoundState:
    """Everything one client holds for one round (secret: keep it on the client)."""

    client: int
    session_id: bytes
    round_index: int
    dimension: int
    extra_context: bytes = b""
    advert_context: bytes = b""
    phase: ClientPhase = ClientPhase.INIT
    channel_key: crypto.AgreementKeyPair | None = None
    mask_key: crypto.AgreementKeyPair | None = None
    self_seed: bytes | None = None
    order: tuple[int, ...] = ()  # neighbours, in status order
    listed: frozenset[int] = frozenset()  # neighbours the server said were present
    keys: dict[int, tuple[bytes, bytes]] = field(default_factory=dict)  # accepted: (channel, mask)
    holders: tuple[int, ...] = ()  # every holder of this client's secrets, sorted
    peers: frozenset[int] = frozenset()  # neighbours masked with (boxes received)
    statuses: dict[int, Status] = field(default_factory=dict)
    held: dict[int, tuple[bytes, bytes]] = field(default_factory=dict)  # owner -> (key, mask share)
    released: dict[int, ShareKind] = field(default_factory=dict)
    error: str = ""

    def forget_secrets(self) -> None:
        """Drop what must not outlive the round's answer (shares, seed)."""
        self.held.clear()
        self.self_seed = None

    # -- bytes ---------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """The versioned byte form."""
        w = Writer().raw(MAGIC).u8(VERSION)
        w.u8(_PHASES.index(self.phase)).u32(self.client).blob(self.session_id)
        w.u64(self.round_index).u32(self.dimension)
        w.blob(self.extra_context).blob(self.advert_context)
        for secret in (self.channel_key, self.mask_key):
            w.blob(secret.private_bytes() if secret is not None else b"")
        w.blob(self.self_seed or b"")
        for group in (self.order, sorted(self.listed), self.holders, sorted(self.peers)):
            w.u32(len(group))
            for c in group:
                w.u32(c)
        w.u32(len(self.keys))
        for c in sorted(self.keys):
            w.u32(c).raw(self.keys[c][0]).raw(self.keys[c][1])
        w.u32(len(self.statuses))
        for c in sorted(self.statuses):
            w.u32(c).u8(int(self.statuses[c]))
        w.u32(len(self.held))
        for c in sorted(self.held):
            w.u32(c).raw(self.held[c][0]).raw(self.held[c][1])
        w.u32(len(self.released))
        for c in sorted(self.released):
            w.u32(c).u8(int(self.released[c]))
        w.blob(self.error.encode("utf-8")[:_MAX_ERROR])
        return w.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, num_clients: int, degree: int) -> RoundState:
        """Parse and check :meth:`to_bytes` output for a session of ``num_clients``
        clients and graph degree ``degree``; :class:`ClientStateError` if it is bad."""
        try:
            state = _read(data, num_clients, degree)
        except ClientStateError:
            raise
        except (MessageFormatError, KeyFormatError, ValueError, IndexError) as exc:
            raise ClientStateError(f"saved client state does not load: {exc}") from exc
        state.check()
        return state

    def check(self) -> None:
        """Refuse a state whose fields contradict each other."""
        p = self.phase
        if p is not ClientPhase.INIT and (self.channel_key is None or self.mask_key is None):
            raise ClientStateError(f"a client in phase {p.value} must hold its key pairs")
        if not set(self.keys) <= self.listed or not self.peers <= set(self.keys):
            raise ClientStateError("accepted keys or peers outside the listed neighbours")
        if not set(self.order) >= self.listed or self.client in self.order:
            raise ClientStateError("listed neighbours outside the neighbour order")
        if not set(self.held) <= self.peers | {self.client}:
            raise ClientStateError("held shares of a client that is no peer")
        if not set(self.statuses) <= set(self.order):
            raise ClientStateError("statuses of a client that is no neighbour")
        if (
            p in (ClientPhase.SHARED, ClientPhase.MASKED, ClientPhase.REPORTED)
            and self.self_seed is None
            and self.held
        ):
            raise ClientStateError(f"a client in phase {p.value} holding shares must hold its seed")


def _read(data: bytes, n: int, degree: int) -> RoundState:
    if not isinstance(data, bytes | bytearray):
        raise ClientStateError(f"client state must be bytes, got {type(data).__name__}")
    r = Reader(bytes(data))
    if r.remaining < 5 or r.raw(4) != MAGIC or r.u8() != VERSION:
        raise ClientStateError("not a saved secagg client state (magic or version)")
    code = r.u8()
    if code >= len(_PHASES):
        raise ClientStateError(f"unknown phase code {code}")
    st = RoundState(_party(r.u32(), n), r.blob(64), r.u64(), r.u32())
    st.phase = _PHASES[code]
    if st.dimension < 1:
        raise ClientStateError("dimension must be positive")
    st.extra_context, st.advert_context = r.blob(_MAX_CONTEXT), r.blob(_MAX_CONTEXT)
    channel, mask, seed = r.blob(32), r.blob(32), r.blob(32)
    st.channel_key = crypto.AgreementKeyPair.from_private_bytes(channel) if channel else None
    st.mask_key = crypto.AgreementKeyPair.from_private_bytes(mask) if mask else None
    st.self_seed = seed or None
    limit = degree + 1
    order, listed, holders, peers = (
        tuple(_party(r.u32(), n) for _ in range(r.count(limit, "ids"))) for _ in range(4)
    )
    st.order, st.listed, st.holders, st.peers = order, frozenset(listed), holders, frozenset(peers)
    for _ in range(r.count(limit, "keys")):
        c = _party(r.u32(), n)
        st.keys[c] = (r.raw(32), r.raw(32))
    for _ in range(r.count(limit, "statuses")):
        c = _party(r.u32(), n)
        st.statuses[c] = Status(_code(r.u8(), 3))
    for _ in range(r.count(limit, "held shares")):
        c = _party(r.u32(), n)
        st.held[c] = (r.raw(SHARE_BYTES), r.raw(SHARE_BYTES))
    for _ in range(r.count(limit, "released shares")):
        c = _party(r.u32(), n)
        st.released[c] = ShareKind(_code(r.u8(), 2))
    st.error = r.blob(_MAX_ERROR).decode("utf-8", "replace")
    r.end()
    return st


def _party(c: int, n: int) -> int:
    if c >= n:
        raise ClientStateError(f"client id {c} out of range for {n} clients")
    return c


def _code(v: int, count: int) -> int:
    if v >= count:
        raise ClientStateError(f"code {v} out of range")
    return v


MAX_DIMENSION = _MAX_DIMENSION
