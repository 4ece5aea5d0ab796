"""Domain separation: an injective byte encoding of (label, session, round, parties, ...).

Every key derivation, mask expansion, associated-data block and signed payload in the
project goes through :func:`canonical`, so two different contexts can never produce the
same bytes (each field is type-tagged and length-prefixed). That is what binds a key to
its session, round and parties and makes a message from one context useless in another.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from functools import lru_cache

from secagg.errors import ContextError

#: Version tag mixed into every context; bump it if the encoding ever changes.
CONTEXT_VERSION = b"secagg/ctx/v1"

SESSION_ID_MIN_BYTES = 8
SESSION_ID_MAX_BYTES = 64
MAX_ROUND = 2**64 - 1
MAX_PARTY = 2**32 - 1

_TAG_BYTES = b"B"
_TAG_INT = b"I"
_TAG_STR = b"S"

Field = bytes | int | str


def canonical(label: str, *fields: Field) -> bytes:
    """Encode ``label`` and ``fields`` injectively (type tag + length prefix per field)."""
    if not isinstance(label, str) or not label:
        raise ContextError("context label must be a non-empty str")
    return _prefix(label) + _encode_fields(fields)


@lru_cache(maxsize=1024)
def _prefix(label: str) -> bytes:
    return CONTEXT_VERSION + _encode_str(label)


_PACK_LEN = struct.Struct(">I").pack
_PACK_INT = struct.Struct(">Q").pack


def _encode_fields(fields: tuple[Field, ...]) -> bytes:
    out = []
    for f in fields:
        t = type(f)
        if t is bytes:
            out.append(_TAG_BYTES + _PACK_LEN(len(f)) + f)  # type: ignore[arg-type, operator]
        elif t is int:
            if f < 0 or f > 2**64 - 1:  # type: ignore[operator]
                raise ContextError(f"integer context field {f!r} outside [0, 2^64)")
            out.append(_TAG_INT + _PACK_INT(f))
        elif isinstance(f, bool):
            raise ContextError("bool is not a context field; use an int")
        elif isinstance(f, bytes | bytearray | memoryview):
            b = bytes(f)
            out.append(_TAG_BYTES + _PACK_LEN(len(b)) + b)
        elif isinstance(f, int):
            if f < 0 or f > 2**64 - 1:
                raise ContextError(f"integer context field {f} outside [0, 2^64)")
            out.append(_TAG_INT + _PACK_INT(int(f)))
        elif isinstance(f, str):
            out.append(_encode_str(f))
        else:
            raise ContextError(f"unsupported context field type {type(f).__name__}")
    return b"".join(out)


def _encode_str(s: str) -> bytes:
    b = s.encode("utf-8")
    return _TAG_STR + struct.pack(">I", len(b)) + b


def check_session_id(session_id: object) -> bytes:
    """Return ``session_id`` as bytes, or raise :class:`ContextError` if it is unusable."""
    if not isinstance(session_id, bytes | bytearray):
        raise ContextError(f"session id must be bytes, got {type(session_id).__name__}")
    if not SESSION_ID_MIN_BYTES <= len(session_id) <= SESSION_ID_MAX_BYTES:
        raise ContextError(
            f"session id must be {SESSION_ID_MIN_BYTES}..{SESSION_ID_MAX_BYTES} bytes, "
            f"got {len(session_id)}"
        )
    return bytes(session_id)


def check_round(round_index: object) -> int:
    """Validate a round number (a non-negative 64-bit integer)."""
    if isinstance(round_index, bool) or not isinstance(round_index, int):
        raise ContextError(f"round must be an int, got {type(round_index).__name__}")
    if not 0 <= round_index <= MAX_ROUND:
        raise ContextError(f"round {round_index} outside [0, 2^64)")
    return round_index


def check_party(party: object, what: str = "party") -> int:
    """Validate a party (client) identifier (a non-negative 32-bit integer)."""
    if isinstance(party, bool) or not isinstance(party, int):
        raise ContextError(f"{what} id must be an int, got {type(party).__name__}")
    if not 0 <= party <= MAX_PARTY:
        raise ContextError(f"{what} id {party} outside [0, 2^32)")
    return party


@dataclass(frozen=True)
class RoundContext:
    """The (session, round) pair every derivation of one protocol round is bound to."""

    session_id: bytes
    round_index: int
    _prefixes: dict[str, bytes] = field(
        default_factory=dict, init=False, repr=False, compare=False, hash=False
    )

    def __post_init__(self) -> None:
        check_session_id(self.session_id)
        check_round(self.round_index)

    def encode(self, label: str, *fields: Field) -> bytes:
        """Canonical bytes of ``label``, this session and round, then ``fields``."""
        return self.prefix(label) + _encode_fields(fields)

    def prefix(self, label: str) -> bytes:
        """Canonical bytes of ``label``, this session and round (cached per label).

        Hot paths append a fixed layout to it (fixed-width fields, at most one
        variable field, last): for one label the layout never changes, so the encoding
        stays injective without a tag and length per field.
        """
        pre = self._prefixes.get(label)
        if pre is None:
            pre = self._prefixes[label] = canonical(label, self.session_id, self.round_index)
        return pre
