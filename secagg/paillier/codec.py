"""Versioned binary wire format of the Paillier backend, with strict validation (no pickle).

Every message starts with ``b"SAPH"``, a version byte and a kind byte; integers are
big-endian, ciphertexts are fixed-width (``ceil(2 * key_bits / 8)`` bytes) and
plaintexts ``ceil(key_bits / 8)`` bytes. Decoders reject truncated or trailing bytes,
unknown versions and kinds, a key id other than the session's, a length or packing
layout other than the expected one, and any ciphertext outside Z*_(n^2).

Messages: a public key; a ciphertext vector (one client's packed update, or a product of
several); a signed contribution (a ciphertext vector bound to session, round and client);
a decryption request (claimed product + every contribution it was computed from); a
decrypted sum (packed plaintext slot sums and the contributors they cover).
"""

from __future__ import annotations

import hmac
import struct
from collections.abc import Iterable
from dataclasses import dataclass

from secagg.context import check_session_id
from secagg.errors import ContextError
from secagg.paillier.errors import (
    CiphertextRangeError,
    KeyIdMismatchError,
    LengthMismatchError,
    PaillierFormatError,
    PublicKeyFormatError,
)
from secagg.paillier.gmp import require_gmpy2
from secagg.paillier.keys import KEY_ID_BYTES, PublicKey
from secagg.paillier.packing import MAX_ELEMENTS, PackingConfig

MAGIC = b"SAPH"
VERSION = 1
KIND_PUBLIC_KEY = 1
KIND_CIPHERTEXTS = 2
KIND_CONTRIBUTION = 3
KIND_DECRYPTION_REQUEST = 4
KIND_DECRYPTED_SUM = 5
SIGNATURE_BYTES = 64  # Ed25519
MAX_PARTIES = 2**20

_HEADER = struct.Struct(">4sBB")
_LAYOUT = struct.Struct(">32sIHHIH")  # key id, elements, slots, slot bits, count, width


class _Reader:
    """Bounds-checked reads over a byte string; every overrun is a format error."""

    def __init__(self, data: bytes, kind: int, what: str) -> None:
        if not isinstance(data, bytes | bytearray | memoryview):
            raise PaillierFormatError(f"{what} must be bytes, got {type(data).__name__}")
        self.data = memoryview(bytes(data))
        self.pos = 0
        self.what = what
        magic, version, got_kind = _HEADER.unpack(self.take(_HEADER.size))
        if magic != MAGIC:
            raise PaillierFormatError(f"{what}: bad magic {bytes(magic)!r}")
        if version != VERSION:
            raise PaillierFormatError(f"{what}: unsupported version {version}")
        if got_kind != kind:
            raise PaillierFormatError(f"{what}: message kind {got_kind}, expected {kind}")

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise PaillierFormatError(f"{self.what}: truncated (needs {n} more bytes)")
        out = bytes(self.data[self.pos : self.pos + n])
        self.pos += n
        return out

    def unpack(self, fmt: struct.Struct) -> tuple[int | bytes, ...]:
        return fmt.unpack(self.take(fmt.size))

    def u8(self) -> int:
        return self.take(1)[0]

    def u32(self) -> int:
        return int.from_bytes(self.take(4), "big")

    def u64(self) -> int:
        return int.from_bytes(self.take(8), "big")

    def blob(self) -> bytes:
        return self.take(self.u32())

    def session(self) -> bytes:
        try:
            return check_session_id(self.take(self.u8()))
        except ContextError as exc:
            raise PaillierFormatError(f"{self.what}: {exc}") from None

    def finish(self) -> None:
        if self.pos != len(self.data):
            raise PaillierFormatError(f"{self.what}: {len(self.data) - self.pos} trailing bytes")


def _header(kind: int) -> bytes:
    return _HEADER.pack(MAGIC, VERSION, kind)


def _ints(values: Iterable[object]) -> tuple[int, ...]:
    """Fields struct unpacked as integers (a layout mismatch is a format error)."""
    out: list[int] = []
    for v in values:
        if not isinstance(v, int):
            raise PaillierFormatError("malformed integer fields")
        out.append(v)
    return tuple(out)


def _key_id(v: object) -> bytes:
    if not isinstance(v, bytes) or len(v) != KEY_ID_BYTES:
        raise PaillierFormatError("malformed key id")
    return v


def _session(session_id: bytes) -> bytes:
    sid = check_session_id(session_id)  # at most SESSION_ID_MAX_BYTES (< 256): one length byte
    return bytes([len(sid)]) + sid


def _blob(b: bytes) -> bytes:
    return struct.pack(">I", len(b)) + b


# --- public key ----------------------------------------------------------------------


def encode_public_key(pk: PublicKey) -> bytes:
    """Serialize a public key (modulus and optional short-exponent base)."""
    base = pk.short_exponent_base
    out = [_header(KIND_PUBLIC_KEY), struct.pack(">HB", pk.bits, base is not None)]
    out.append(pk.n.to_bytes(pk.plaintext_bytes, "big"))
    if base is not None:
        out.append(base.to_bytes(pk.ciphertext_bytes, "big"))
    return b"".join(out)


def decode_public_key(data: bytes, *, insecure_test_key: bool = False) -> PublicKey:
    """Parse and validate a public key; test-size moduli only if ``insecure_test_key``."""
    r = _Reader(data, KIND_PUBLIC_KEY, "public key")
    bits, flags = _ints(r.unpack(struct.Struct(">HB")))
    if flags not in (0, 1) or not 2 <= bits <= 16384:
        raise PublicKeyFormatError(f"public key: bad header (bits {bits}, flags {flags})")
    n = int.from_bytes(r.take((bits + 7) // 8), "big")
    base = int.from_bytes(r.take((2 * bits + 7) // 8), "big") if flags else None
    r.finish()
    if n.bit_length() != bits:
        raise PublicKeyFormatError(f"public key: modulus has {n.bit_length()} bits, header {bits}")
    return PublicKey(n, base, insecure_test_key=insecure_test_key)


# --- ciphertext vectors --------------------------------------------------------------


@dataclass(frozen=True)
class CiphertextVector:
    """Packed ciphertexts of one vector of ``num_elements`` values under ``key_id``."""

    key_id: bytes
    num_elements: int
    slots: int
    slot_bits: int
    ciphertexts: tuple[int, ...]


def encode_ciphertexts(
    pk: PublicKey,
    packing: PackingConfig,
    num_elements: int,
    ciphertexts: list[int] | tuple[int, ...],
) -> bytes:
    """Serialize a ciphertext vector (fixed-width big-endian ciphertexts)."""
    width = pk.ciphertext_bytes
    if len(ciphertexts) != packing.num_plaintexts(num_elements):
        raise LengthMismatchError(
            f"{len(ciphertexts)} ciphertexts for {num_elements} elements at {packing.slots} "
            "slots each"
        )
    head = _LAYOUT.pack(
        pk.key_id, num_elements, packing.slots, packing.slot_bits, len(ciphertexts), width
    )
    return b"".join(
        [_header(KIND_CIPHERTEXTS), head, *(int(c).to_bytes(width, "big") for c in ciphertexts)]
    )


def decode_ciphertexts(
    data: bytes, pk: PublicKey, packing: PackingConfig, num_elements: int | None = None
) -> CiphertextVector:
    """Parse and validate a ciphertext vector against the key, layout and length.

    Raises :class:`KeyIdMismatchError`, :class:`LengthMismatchError`,
    :class:`CiphertextRangeError` or :class:`PaillierFormatError`.
    """
    r = _Reader(data, KIND_CIPHERTEXTS, "ciphertext vector")
    key_id, *rest = r.unpack(_LAYOUT)
    d, slots, slot_bits, count, width = _ints(rest)
    key_id = _key_id(key_id)
    if not hmac.compare_digest(key_id, pk.key_id):
        raise KeyIdMismatchError("ciphertexts are under another public key (key id differs)")
    if (slots, slot_bits) != (packing.slots, packing.slot_bits):
        raise LengthMismatchError(
            f"packing layout {slots}x{slot_bits} bits, expected {packing.slots}x{packing.slot_bits}"
        )
    if not 1 <= d <= MAX_ELEMENTS or (num_elements is not None and d != num_elements):
        raise LengthMismatchError(f"vector of {d} elements, expected {num_elements}")
    if count != packing.num_plaintexts(d):
        raise LengthMismatchError(
            f"{count} ciphertexts for {d} elements, expected {packing.num_plaintexts(d)}"
        )
    if width != pk.ciphertext_bytes:
        raise LengthMismatchError(f"ciphertext width {width}, expected {pk.ciphertext_bytes}")
    body = r.take(count * width)
    r.finish()
    cts = tuple(int.from_bytes(body[i : i + width], "big") for i in range(0, len(body), width))
    check_ciphertexts(pk, cts)
    return CiphertextVector(key_id, d, slots, slot_bits, cts)


def check_ciphertexts(pk: PublicKey, ciphertexts: tuple[int, ...] | list[int]) -> None:
    """Raise :class:`CiphertextRangeError` unless every ciphertext lies in Z*_(n^2)."""
    gmpy2 = require_gmpy2()
    n, n2 = gmpy2.mpz(pk.n), gmpy2.mpz(pk.nsquare)
    for i, c in enumerate(ciphertexts):
        if not 0 < c < n2:
            raise CiphertextRangeError(f"ciphertext {i} lies outside [1, n^2)")
        if gmpy2.gcd(c, n) != 1:
            raise CiphertextRangeError(f"ciphertext {i} is not a unit mod n^2 (gcd(c, n) != 1)")


# --- signed contributions ------------------------------------------------------------


@dataclass(frozen=True)
class ContributionMessage:
    """A client's ciphertext vector bound to (session, round, client) by a signature."""

    session_id: bytes
    round_index: int
    client_id: int
    ciphertexts: bytes  # an encoded ciphertext vector
    signature: bytes


def encode_contribution(m: ContributionMessage) -> bytes:
    """Serialize a signed contribution."""
    if len(m.signature) != SIGNATURE_BYTES:
        raise PaillierFormatError(f"signature must be {SIGNATURE_BYTES} bytes")
    return b"".join(
        [
            _header(KIND_CONTRIBUTION),
            _session(m.session_id),
            struct.pack(">QI", m.round_index, m.client_id),
            _blob(m.ciphertexts),
            m.signature,
        ]
    )


def decode_contribution(data: bytes) -> ContributionMessage:
    """Parse a contribution (structure only; :mod:`contribution` checks its meaning)."""
    r = _Reader(data, KIND_CONTRIBUTION, "contribution")
    sid = r.session()
    rnd, client = r.u64(), r.u32()
    cts = r.blob()
    sig = r.take(SIGNATURE_BYTES)
    r.finish()
    return ContributionMessage(sid, rnd, client, cts, sig)


# --- decryption request and decrypted sum ---------------------------------------------


@dataclass(frozen=True)
class DecryptionRequest:
    """What the aggregator hands the key holder: its product and all the contributions."""

    session_id: bytes
    round_index: int
    product: bytes  # an encoded ciphertext vector
    contributions: tuple[bytes, ...]  # encoded contributions


def encode_request(m: DecryptionRequest) -> bytes:
    """Serialize a decryption request."""
    if len(m.contributions) > MAX_PARTIES:
        raise PaillierFormatError(f"more than {MAX_PARTIES} contributions")
    return b"".join(
        [
            _header(KIND_DECRYPTION_REQUEST),
            _session(m.session_id),
            struct.pack(">Q", m.round_index),
            _blob(m.product),
            struct.pack(">I", len(m.contributions)),
            *(_blob(c) for c in m.contributions),
        ]
    )


def decode_request(data: bytes) -> DecryptionRequest:
    """Parse a decryption request (structure only)."""
    r = _Reader(data, KIND_DECRYPTION_REQUEST, "decryption request")
    sid = r.session()
    rnd = r.u64()
    product = r.blob()
    count = r.u32()
    if count > MAX_PARTIES:
        raise PaillierFormatError(f"decryption request: {count} contributions")
    contributions = tuple(r.blob() for _ in range(count))
    r.finish()
    return DecryptionRequest(sid, rnd, product, contributions)


@dataclass(frozen=True)
class DecryptedSum:
    """The key holder's answer: packed slot sums of the listed contributors."""

    session_id: bytes
    round_index: int
    key_id: bytes
    num_elements: int
    contributors: tuple[int, ...]
    plaintexts: tuple[int, ...]


def encode_decrypted_sum(pk: PublicKey, packing: PackingConfig, m: DecryptedSum) -> bytes:
    """Serialize a decrypted sum (fixed-width plaintexts)."""
    width = pk.plaintext_bytes
    head = _LAYOUT.pack(
        m.key_id, m.num_elements, packing.slots, packing.slot_bits, len(m.plaintexts), width
    )
    return b"".join(
        [
            _header(KIND_DECRYPTED_SUM),
            _session(m.session_id),
            struct.pack(">Q", m.round_index),
            head,
            struct.pack(">I", len(m.contributors)),
            *(struct.pack(">I", c) for c in m.contributors),
            *(p.to_bytes(width, "big") for p in m.plaintexts),
        ]
    )


def decode_decrypted_sum(data: bytes, pk: PublicKey, packing: PackingConfig) -> DecryptedSum:
    """Parse and validate a decrypted sum against the key and the packing layout."""
    r = _Reader(data, KIND_DECRYPTED_SUM, "decrypted sum")
    sid = r.session()
    rnd = r.u64()
    key_id, *rest = r.unpack(_LAYOUT)
    d, slots, slot_bits, count, width = _ints(rest)
    key_id = _key_id(key_id)
    if not hmac.compare_digest(key_id, pk.key_id):
        raise KeyIdMismatchError("decrypted sum names another public key")
    if (slots, slot_bits, width) != (packing.slots, packing.slot_bits, pk.plaintext_bytes):
        raise LengthMismatchError("decrypted sum has another packing layout")
    if not 1 <= d <= MAX_ELEMENTS or count != packing.num_plaintexts(d):
        raise LengthMismatchError(f"decrypted sum: {count} plaintexts for {d} elements")
    ncontrib = r.u32()
    if ncontrib > MAX_PARTIES:
        raise PaillierFormatError(f"decrypted sum: {ncontrib} contributors")
    contributors = tuple(r.u32() for _ in range(ncontrib))
    plaintexts = tuple(int.from_bytes(r.take(width), "big") for _ in range(count))
    r.finish()
    if any(p >= pk.n for p in plaintexts):
        raise PaillierFormatError("decrypted sum: plaintext outside Z_n")
    return DecryptedSum(sid, rnd, key_id, d, contributors, plaintexts)
