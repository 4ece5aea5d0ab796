"""The pipeline's envelope (``SAGP``): one exchange's protocol messages for (or from)
one client, across the rounds in flight, bounded and versioned."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from secagg.errors import MessageFormatError
from secagg.wire import Reader, Writer

MAGIC = b"SAGP"
VERSION = 2
TO_CLIENT, TO_SERVER = 0, 1
MAX_PARTS = 8
MAX_STARTS = 2
MAX_DESCRIPTOR = 1 << 12


@dataclass(frozen=True)
class Bundle:
    """One exchange's messages for (or from) one client, across rounds in flight."""

    direction: int
    session_id: bytes
    exchange: int
    client: int
    parts: tuple[tuple[int, bytes], ...] = ()
    starts: tuple[int, ...] = ()
    live_rounds: tuple[int, ...] = ()
    descriptor: bytes = b""

    def encode(self) -> bytes:
        """The ``SAGP`` wire form."""
        w = Writer().raw(MAGIC).u8(VERSION).u8(self.direction).blob(self.session_id)
        w.u32(self.exchange).u32(self.client).blob(self.descriptor)
        for group in (self.starts, self.live_rounds):
            w.u32(len(group))
            for r in group:
                w.u32(r)
        w.u32(len(self.parts))
        for r, msg in self.parts:
            w.u32(r).blob(msg)
        return w.getvalue()

    @classmethod
    def decode(cls, data: bytes, direction: int, max_part: int) -> Bundle:
        """Parse strictly (bounded counts and sizes); raises :class:`MessageFormatError`."""
        if not isinstance(data, bytes | bytearray | memoryview):
            raise MessageFormatError(f"a bundle must be bytes, got {type(data).__name__}")
        r = Reader(bytes(data))
        if r.remaining < 6 or r.raw(4) != MAGIC:
            raise MessageFormatError("not a secagg pipeline bundle (bad magic)")
        if r.u8() != VERSION:
            raise MessageFormatError("unsupported pipeline bundle version")
        if r.u8() != direction:
            raise MessageFormatError("bundle sent in the wrong direction")
        session = r.blob(64)
        exchange = r.u32()
        client = r.u32()
        descriptor = r.blob(MAX_DESCRIPTOR)
        starts = tuple(r.u32() for _ in range(r.count(MAX_STARTS, "started rounds")))
        live = tuple(r.u32() for _ in range(r.count(MAX_PARTS, "live rounds")))
        parts = []
        for _ in range(r.count(MAX_PARTS, "bundle parts")):
            rnd = r.u32()
            parts.append((rnd, r.blob(max_part)))
        r.end()
        if len({p for p, _ in parts}) != len(parts):
            raise MessageFormatError("two parts for the same round")
        return cls(direction, session, exchange, client, tuple(parts), starts, live, descriptor)


def max_part_bytes(dimension: int, degree: int = 0) -> int:
    """An upper bound on one protocol message of a session: the masked input (8 bytes an
    element at most) or the O(k^2)-bit worst case of an attestation bundle whose every
    view differs from the base, plus 1 MiB of headroom."""
    return 8 * dimension + (1 << 20) + 72 * (degree + 1) + (degree + 1) ** 2


def digest(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()
