"""Key agreement, key derivation, share encryption and signatures for the protocol.

* X25519 (RFC 7748) key pairs; every client advertises two public keys per round, one
  for the pairwise mask seeds and one for the channel that carries encrypted shares.
* HKDF-SHA256 (RFC 5869) turns an X25519 secret into a pairwise mask seed or a channel
  key. ``info`` binds (purpose, session id, round, both parties), so a key derived for
  one context is useless in any other. Party order is normalised so both ends agree.
* AES-256-GCM encrypts Shamir shares between clients through the server; the associated
  data binds (session, round, sender, receiver), so the server can neither redirect a
  ciphertext to another client nor replay it in another round.
* Ed25519 (RFC 8032) signs key advertisements and consistency-check payloads; the
  payload is an arbitrary canonical encoding so later layers can sign extra context
  (e.g. the hash of the model a client received).

All randomness comes from the OS CSPRNG (``os.urandom`` through ``cryptography``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from secagg.context import RoundContext, canonical, check_party
from secagg.errors import DecryptionError, KeyFormatError, SignatureError
from secagg.kdf import hkdf_sha256

PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64
NONCE_BYTES = 12
TAG_BYTES = 16
_HKDF_SALT = b"secagg/kdf/v1"

_RAW = serialization.Encoding.Raw
_RAW_PUB = serialization.PublicFormat.Raw
_RAW_PRIV = serialization.PrivateFormat.Raw
_NO_ENC = serialization.NoEncryption()


# --- X25519 ----------------------------------------------------------------------


@dataclass(frozen=True, repr=False)
class AgreementKeyPair:
    """An X25519 key pair (private part never serialised by accident: no repr)."""

    private: X25519PrivateKey

    @classmethod
    def generate(cls) -> AgreementKeyPair:
        """A fresh key pair from the OS CSPRNG."""
        return cls(X25519PrivateKey.generate())

    @classmethod
    def from_private_bytes(cls, data: bytes) -> AgreementKeyPair:
        """Load a raw 32-byte X25519 private key."""
        if not isinstance(data, bytes) or len(data) != 32:
            raise KeyFormatError("X25519 private key must be 32 bytes")
        return cls(X25519PrivateKey.from_private_bytes(data))

    @property
    def public_bytes(self) -> bytes:
        """The raw 32-byte public key."""
        return self.private.public_key().public_bytes(_RAW, _RAW_PUB)

    def private_bytes(self) -> bytes:
        """The raw 32-byte private key (secret material: Shamir-share it, never send it)."""
        return self.private.private_bytes(_RAW, _RAW_PRIV, _NO_ENC)

    def __repr__(self) -> str:
        return f"AgreementKeyPair(public={self.public_bytes.hex()[:16]}...)"

    def exchange(self, peer_public: bytes) -> bytes:
        """The raw X25519 shared secret with ``peer_public``.

        Raises :class:`KeyFormatError` for a malformed key or a low-order point (the
        all-zero shared secret), which would make the "secret" public.
        """
        return _exchange(self.private, peer_public)


def load_x25519_public(data: bytes) -> X25519PublicKey:
    """Parse a raw X25519 public key, with a named error on bad input."""
    if not isinstance(data, bytes | bytearray) or len(data) != PUBLIC_KEY_BYTES:
        raise KeyFormatError(f"X25519 public key must be {PUBLIC_KEY_BYTES} bytes")
    try:
        return X25519PublicKey.from_public_bytes(bytes(data))
    except ValueError as exc:  # pragma: no cover - length already checked
        raise KeyFormatError(f"bad X25519 public key: {exc}") from exc


def x25519_exchange(private: bytes, peer_public: bytes) -> bytes:
    """X25519(private, peer_public) as in RFC 7748, refusing the all-zero output."""
    if not isinstance(private, bytes) or len(private) != 32:
        raise KeyFormatError("X25519 private key must be 32 bytes")
    return _exchange(X25519PrivateKey.from_private_bytes(private), peer_public)


def _exchange(private: X25519PrivateKey, peer_public: bytes) -> bytes:
    peer = load_x25519_public(peer_public)
    try:
        shared = private.exchange(peer)
    except ValueError as exc:  # cryptography rejects low-order points this way
        raise KeyFormatError(f"X25519 exchange refused: {exc}") from exc
    if shared == bytes(32):  # pragma: no cover - cryptography already refuses it
        raise KeyFormatError("X25519 exchange produced the all-zero secret (low-order point)")
    return shared


# --- HKDF ------------------------------------------------------------------------


def hkdf(secret: bytes, info: bytes, length: int = 32, salt: bytes = _HKDF_SALT) -> bytes:
    """HKDF-SHA256 (RFC 5869)."""
    return hkdf_sha256(secret, info, length, salt)


def derive_pairwise_seed(shared_secret: bytes, ctx: RoundContext, u: int, v: int) -> bytes:
    """The 32-byte mask seed shared by clients ``u`` and ``v`` in ``ctx``.

    Symmetric in (u, v): both ends derive the same seed.
    """
    a, b = sorted((check_party(u), check_party(v)))
    if a == b:
        raise KeyFormatError("a pairwise seed needs two different parties")
    return hkdf(shared_secret, ctx.encode("pairwise-mask-seed", a, b))


def derive_channel_key(shared_secret: bytes, ctx: RoundContext, u: int, v: int) -> bytes:
    """The AES-256-GCM key of the channel between ``u`` and ``v`` in ``ctx`` (symmetric).

    Direction is bound by the associated data of each message, not by the key.
    """
    a, b = sorted((check_party(u), check_party(v)))
    if a == b:
        raise KeyFormatError("a channel key needs two different parties")
    return hkdf(shared_secret, ctx.encode("share-channel-key", a, b))


# --- AES-GCM ---------------------------------------------------------------------


def share_aad(ctx: RoundContext, sender: int, receiver: int, label: str = "shares") -> bytes:
    """Associated data binding a share ciphertext to its context and direction."""
    return ctx.encode("aead/" + label, check_party(sender), check_party(receiver))


def seal(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """AES-256-GCM encrypt: ``nonce || ciphertext || tag`` with a random 96-bit nonce."""
    if not isinstance(key, bytes) or len(key) != 32:
        raise KeyFormatError("AES-256-GCM key must be 32 bytes")
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def open_sealed(key: bytes, blob: bytes, aad: bytes) -> bytes:
    """Decrypt and authenticate; :class:`DecryptionError` on any mismatch."""
    if not isinstance(key, bytes) or len(key) != 32:
        raise KeyFormatError("AES-256-GCM key must be 32 bytes")
    if not isinstance(blob, bytes | bytearray) or len(blob) < NONCE_BYTES + TAG_BYTES:
        raise DecryptionError("ciphertext too short")
    blob = bytes(blob)
    try:
        return AESGCM(key).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], aad)
    except InvalidTag as exc:
        raise DecryptionError(
            "authentication failed: wrong key, tampered data, or wrong context"
        ) from exc


# --- Ed25519 ---------------------------------------------------------------------


@dataclass(frozen=True, repr=False)
class SigningKey:
    """An Ed25519 identity key of one client (or of the server)."""

    private: Ed25519PrivateKey

    @classmethod
    def generate(cls) -> SigningKey:
        """A fresh identity key from the OS CSPRNG."""
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_private_bytes(cls, data: bytes) -> SigningKey:
        """Load a raw 32-byte Ed25519 private key (seed)."""
        if not isinstance(data, bytes) or len(data) != 32:
            raise KeyFormatError("Ed25519 private key must be 32 bytes")
        return cls(Ed25519PrivateKey.from_private_bytes(data))

    def private_bytes(self) -> bytes:
        """The raw 32-byte private key (secret: for provisioning files only)."""
        return self.private.private_bytes(
            _RAW, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )

    @property
    def public_bytes(self) -> bytes:
        """The raw 32-byte verification key."""
        return self.private.public_key().public_bytes(_RAW, _RAW_PUB)

    def __repr__(self) -> str:
        return f"SigningKey(public={self.public_bytes.hex()[:16]}...)"

    def sign(self, message: bytes) -> bytes:
        """A 64-byte Ed25519 signature of ``message``."""
        return self.private.sign(message)


def verify_signature(public: bytes, signature: bytes, message: bytes) -> None:
    """Verify an Ed25519 signature; raises :class:`SignatureError` unless it is valid."""
    if not isinstance(public, bytes | bytearray) or len(public) != PUBLIC_KEY_BYTES:
        raise SignatureError(f"verification key must be {PUBLIC_KEY_BYTES} bytes")
    if not isinstance(signature, bytes | bytearray) or len(signature) != SIGNATURE_BYTES:
        raise SignatureError(f"signature must be {SIGNATURE_BYTES} bytes")
    try:
        Ed25519PublicKey.from_public_bytes(bytes(public)).verify(bytes(signature), message)
    except (InvalidSignature, ValueError) as exc:
        raise SignatureError("signature does not verify") from exc


def advertisement_payload(
    ctx: RoundContext, client: int, mask_public: bytes, channel_public: bytes, extra: bytes = b""
) -> bytes:
    """What a client signs when it advertises its two public keys for a round."""
    return ctx.encode("advertise-keys", check_party(client), mask_public, channel_public, extra)


def consistency_payload(
    ctx: RoundContext, survivors: tuple[int, ...] | list[int], extra: bytes = b""
) -> bytes:
    """What a client signs in ConsistencyCheck: the survivor set plus extra context.

    ``extra`` carries anything else the clients must agree on, e.g. the hash of the
    model each received, which detects a server that sent different models to
    different clients.
    """
    ids = sorted(check_party(p) for p in survivors)
    return ctx.encode("consistency-check", len(ids), *ids, extra)


__all__ = [
    "AgreementKeyPair",
    "SigningKey",
    "advertisement_payload",
    "canonical",
    "consistency_payload",
    "derive_channel_key",
    "derive_pairwise_seed",
    "hkdf",
    "load_x25519_public",
    "open_sealed",
    "seal",
    "share_aad",
    "verify_signature",
    "x25519_exchange",
]
