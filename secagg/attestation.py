"""Neighbourhood evidence for the active setting: statuses, views, and what they certify.

The server decides who is "alive" (its masked input is in the sum) and can tell each
client a different story. Honest clients therefore release a share only on evidence
that other honest clients hold the same story, and the evidence stays O(k):

* **edges** (sent with the masked input): for each of the owner's k neighbours, whether
  the owner masked with it (it received that neighbour's share box);
* **views** (the consistency step): each client's status of each neighbour, ALIVE,
  DROPPED (shared keys, no masked input) or ABSENT (no share box), MAC'd for every
  client within ring distance k with the pairwise keys of :mod:`secagg.registry`.

A client v is **certified alive** when at least t valid views among its holders (its
neighbours, plus its own view) say ALIVE, **certified not alive** when at least t say
DROPPED or ABSENT. Honest clients each give one view per round, so with
``2t > k + 1 + c`` (c corrupt holders) no client is certified both ways. An honest
holder releases

* the self-mask share of an owner o it saw ALIVE only if o is certified alive and, on
  the holder's side of o (both sides for o itself), at most ``cap`` of o's neighbours
  are not certified alive or not masked with by o (its edges);
* the mask-key share of an owner it saw DROPPED only if o is certified not alive.

Why the side rule makes small sums impossible, with the bounds it needs: docs/secagg.md.
Every view and every edge list is bound to (session, round, registry, the model hash,
the signer) through its MAC payload; views travel as one base vector of statuses around
the receiver plus a 16-byte tag each, and in full only where they differ from it.
"""

from __future__ import annotations

import enum
import hmac
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from secagg.context import RoundContext
from secagg.errors import MessageFormatError
from secagg.graph import Graph

TAG_BYTES = 16
Statuses = npt.NDArray[np.uint8]
Bits = npt.NDArray[np.bool_]


class Status(enum.IntEnum):
    """One neighbour's status in a client's view (two bits on the wire)."""

    ABSENT = 0  # no share box from it: never masked with, holds none of its shares
    DROPPED = 1  # shared keys, but its masked input is not in the sum
    ALIVE = 2  # its masked input is in the sum


# --- canonical orders ------------------------------------------------------------------


def view_positions(ring: Graph, client: int) -> npt.NDArray[np.int64]:
    """Ring positions of ``client``'s neighbours in the canonical view order (see
    :meth:`secagg.graph.Graph.view_positions`)."""
    return ring.view_positions(client)


def view_clients(ring: Graph, client: int) -> tuple[int, ...]:
    """``client``'s neighbours in the canonical view order."""
    return ring.view_order(client)


def base_positions(ring: Graph, client: int, radius: int) -> npt.NDArray[np.int64]:
    """Positions ``client``'s base vector covers: within ``radius`` in ring order, or
    the whole ring (ascending) when that window wraps around."""
    if ring.complete or 2 * radius + 1 >= ring.size:
        return np.arange(ring.size, dtype=np.int64)
    p = ring.position(client)
    return np.arange(p - radius, p + radius + 1, dtype=np.int64) % ring.size


def attester_radius(ring: Graph) -> int:
    """How far a holder's evidence reaches: the views of clients within ring distance k
    certify every client whose status its rules use."""
    return ring.degree


def base_radius(ring: Graph) -> int:
    """The base vector's reach: the attesters' own neighbourhoods (3k/2)."""
    return attester_radius(ring) + ring.degree // 2


# --- packing ---------------------------------------------------------------------------


def pack_statuses(statuses: npt.ArrayLike) -> bytes:
    """Two bits per status, four per byte, first status in the lowest bits."""
    s = np.asarray(statuses, dtype=np.uint8)
    pad = (-s.size) % 4
    s = np.concatenate([s, np.zeros(pad, dtype=np.uint8)]).reshape(-1, 4)
    return bytes((s[:, 0] | (s[:, 1] << 2) | (s[:, 2] << 4) | (s[:, 3] << 6)).astype(np.uint8))


def pack_status_rows(rows: npt.NDArray[np.uint8]) -> list[bytes]:
    """:func:`pack_statuses` of every row of a 2-D array at once (a holder checks
    hundreds of views that differ only in their positions)."""
    r, c = rows.shape
    s = np.zeros((r, c + (-c) % 4), dtype=np.uint8)
    s[:, :c] = rows
    q = s.reshape(r, -1, 4)
    packed = (q[:, :, 0] | (q[:, :, 1] << 2) | (q[:, :, 2] << 4) | (q[:, :, 3] << 6)).astype(
        np.uint8
    )
    return [row.tobytes() for row in packed]


def pack_bit_rows(rows: npt.NDArray[np.bool_]) -> list[bytes]:
    """:func:`pack_bits` of every row of a 2-D array at once."""
    return [row.tobytes() for row in np.packbits(rows, axis=1, bitorder="little")]


def statuses_bytes(count: int) -> int:
    """Packed length of ``count`` statuses."""
    return (count + 3) // 4


def unpack_statuses(data: bytes, count: int) -> Statuses:
    """Inverse of :func:`pack_statuses`; :class:`MessageFormatError` on a bad code or
    non-zero padding."""
    if len(data) != statuses_bytes(count):
        raise MessageFormatError(f"{len(data)} status bytes for {count} statuses")
    b = np.frombuffer(data, dtype=np.uint8)
    s = np.stack([b & 3, (b >> 2) & 3, (b >> 4) & 3, (b >> 6) & 3], axis=1).reshape(-1)
    if np.any(s[count:]) or np.any(s[:count] == 3):
        raise MessageFormatError("bad status code or padding")
    return s[:count].copy()


def pack_bits(bits: npt.ArrayLike) -> bytes:
    """One bit per flag, little-endian bit order."""
    return bytes(np.packbits(np.asarray(bits, dtype=bool), bitorder="little"))


def unpack_bits(data: bytes, count: int) -> Bits:
    """Inverse of :func:`pack_bits`; :class:`MessageFormatError` on bad padding."""
    if len(data) != (count + 7) // 8:
        raise MessageFormatError(f"{len(data)} bitmap bytes for {count} flags")
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8), bitorder="little").astype(bool)
    if np.any(bits[count:]):
        raise MessageFormatError("non-zero bitmap padding")
    return bits[:count]


# --- MAC payloads ----------------------------------------------------------------------


_PARTIES = struct.Struct(">II")


@dataclass(frozen=True)
class Binding:
    """What every tag of a round is bound to besides the signer and the receiver."""

    ctx: RoundContext
    registry: bytes  # the registry digest
    extra: bytes = b""  # e.g. the model hash this client received
    _prefixes: dict[str, bytes] = field(default_factory=dict, compare=False, repr=False)

    def payload(self, label: str, signer: int, receiver: int, body: bytes) -> bytes:
        """The bytes a tag covers: the canonical (label, session, round, registry,
        extra), then the fixed-width (signer, receiver) and the body (last, so its
        length is implied)."""
        pre = self._prefixes.get(label)
        if pre is None:
            pre = self._prefixes[label] = self.ctx.encode(label, self.registry, self.extra)
        return pre + _PARTIES.pack(signer, receiver) + body


def tag(key: bytes, payload: bytes) -> bytes:
    """HMAC-SHA256 truncated to 16 bytes."""
    return hmac.digest(key, payload, "sha256")[:TAG_BYTES]


def tag_ok(key: bytes, payload: bytes, value: bytes) -> bool:
    """Constant-time check of a tag."""
    return hmac.compare_digest(tag(key, payload), bytes(value))


# --- what a holder's evidence certifies --------------------------------------------------


@dataclass
class Evidence:
    """The views and edge lists one holder verified, and what they certify.

    ``views`` maps an attester to its statuses in canonical view order; ``edges`` maps an
    owner to its edge flags in the same order. Counts live in length-n arrays indexed
    by ring position: O(n) zeros, O(k^2) additions.
    """

    ring: Graph
    threshold: int
    cap: int
    views: Mapping[int, Statuses]
    edges: Mapping[int, Bits]

    def __post_init__(self) -> None:
        n = self.ring.size
        if not self.views:
            self._alive = self._other = np.zeros(n, dtype=np.int64)
            return
        attesters = list(self.views)
        pos = np.concatenate([view_positions(self.ring, w) for w in attesters])
        st = np.concatenate([self.views[w] for w in attesters])
        a = st == Status.ALIVE
        own = np.array([self.ring.position(w) for w in attesters], dtype=np.int64)
        # a view is also its signer's own ALIVE (it signs only after its masked input)
        self._alive = np.bincount(np.concatenate([pos[a], own]), minlength=n)
        self._other = np.bincount(pos[~a], minlength=n)

    def certified_alive(self, client: int) -> bool:
        """At least t valid views among ``client``'s holders say it is alive."""
        return bool(self._alive[self.ring.position(client)] >= self.threshold)

    def certified_not_alive(self, client: int) -> bool:
        """At least t valid views among ``client``'s neighbours say it is not."""
        return bool(self._other[self.ring.position(client)] >= self.threshold)

    def side_count(self, owner: int, side: int) -> int | None:
        """How many of ``owner``'s neighbours on ``side`` (all of them for side 0 on the
        complete graph) are not certified alive or not masked with by ``owner``; None
        without ``owner``'s edge list."""
        flags = self.edges.get(owner)
        if flags is None:
            return None
        pos = view_positions(self.ring, owner)
        if not self.ring.complete and side != 0:
            half = self.ring.degree // 2
            sel = slice(half, None) if side > 0 else slice(0, half)
            pos, flags = pos[sel], flags[sel]
        certified = self._alive[pos] >= self.threshold
        return int(np.count_nonzero(~(certified & flags)))

    def sides_ok(self, owner: int, holder_side: int) -> bool:
        """The side rule: the holder's side of ``owner`` (both for the owner itself, the
        whole neighbourhood on the complete graph) within the dropout cap."""
        if self.ring.complete:
            sides: tuple[int, ...] = (0,)
        else:
            sides = (-1, 1) if holder_side == 0 else (holder_side,)
        counts = [self.side_count(owner, s) for s in sides]
        return all(c is not None and c <= self.cap for c in counts)
