"""Bounded binary reading and writing for the versioned wire format.

Every read checks that the bytes are there and every count against a limit before
anything is allocated, so a hostile length field cannot make a decoder allocate or loop
without bound. Nothing here ever unpickles or evaluates received bytes.
"""

from __future__ import annotations

import struct

from secagg.errors import MessageFormatError


class Writer:
    """Appends big-endian fixed-size fields and length-prefixed byte strings."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def u8(self, v: int) -> Writer:
        """One unsigned byte."""
        self._parts.append(struct.pack(">B", v))
        return self

    def u16(self, v: int) -> Writer:
        """Two-byte unsigned integer."""
        self._parts.append(struct.pack(">H", v))
        return self

    def u32(self, v: int) -> Writer:
        """Four-byte unsigned integer."""
        self._parts.append(struct.pack(">I", v))
        return self

    def u64(self, v: int) -> Writer:
        """Eight-byte unsigned integer."""
        self._parts.append(struct.pack(">Q", v))
        return self

    def raw(self, b: bytes | memoryview) -> Writer:
        """Bytes whose length the reader knows."""
        self._parts.append(bytes(b))
        return self

    def blob(self, b: bytes) -> Writer:
        """A byte string with a 4-byte length prefix."""
        self.u32(len(b))
        self._parts.append(bytes(b))
        return self

    def getvalue(self) -> bytes:
        """The encoded bytes."""
        return b"".join(self._parts)


class Reader:
    """Consumes a byte string field by field; every overrun is a MessageFormatError."""

    def __init__(self, data: bytes) -> None:
        if not isinstance(data, bytes | bytearray | memoryview):
            raise MessageFormatError(f"message must be bytes, got {type(data).__name__}")
        self._view = memoryview(bytes(data))
        self._pos = 0

    @property
    def remaining(self) -> int:
        """Bytes not yet consumed."""
        return len(self._view) - self._pos

    def _take(self, n: int) -> memoryview:
        if n < 0 or self._pos + n > len(self._view):
            raise MessageFormatError(
                f"message truncated: need {n} bytes at offset {self._pos}, have {self.remaining}"
            )
        out = self._view[self._pos : self._pos + n]
        self._pos += n
        return out

    def u8(self) -> int:
        """One unsigned byte."""
        return int(self._take(1)[0])

    def u16(self) -> int:
        """Two-byte unsigned integer."""
        return int(struct.unpack(">H", self._take(2))[0])

    def u32(self) -> int:
        """Four-byte unsigned integer."""
        return int(struct.unpack(">I", self._take(4))[0])

    def u64(self) -> int:
        """Eight-byte unsigned integer."""
        return int(struct.unpack(">Q", self._take(8))[0])

    def raw(self, n: int) -> bytes:
        """Exactly ``n`` bytes."""
        return bytes(self._take(n))

    def view(self, n: int) -> memoryview:
        """Exactly ``n`` bytes, without a copy."""
        return self._take(n)

    def blob(self, max_len: int) -> bytes:
        """A length-prefixed byte string of at most ``max_len`` bytes."""
        n = self.u32()
        if n > max_len:
            raise MessageFormatError(f"field of {n} bytes exceeds the limit of {max_len}")
        return self.raw(n)

    def count(self, limit: int, what: str) -> int:
        """A 4-byte element count, at most ``limit``."""
        n = self.u32()
        if n > limit:
            raise MessageFormatError(f"{what} count {n} exceeds the limit of {limit}")
        return n

    def end(self) -> None:
        """Assert the whole message was consumed (no trailing bytes)."""
        if self.remaining:
            raise MessageFormatError(f"{self.remaining} unexpected trailing bytes")
