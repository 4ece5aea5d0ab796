"""Paillier keys: generation with phe, the public key every party holds, the key id.

The public key is the modulus ``n`` (generator ``g = n + 1``, as in phe) and, when the
optional short-exponent randomness mode is enabled, a public base ``h_s = (-x^2)^n mod
n^2`` (Damgard-Jurik-Nielsen). Its *key id* is a SHA-256 digest over a canonical encoding
of both, so a ciphertext can be checked against the key it claims to be under.

The private key holds the factors and decrypts with the Chinese remainder theorem (two
half-size exponentiations mod p^2 and q^2 instead of one mod n^2). It refuses to be
pickled, so it can never be shipped to a worker process by accident.
"""

from __future__ import annotations

import hashlib
import math
import secrets
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, NoReturn

from secagg.context import canonical
from secagg.paillier.errors import KeySizeError, PublicKeyFormatError
from secagg.paillier.gmp import require_gmpy2

#: Modulus sizes for real use: 2048 bits (about 112-bit security) and 3072 (128-bit).
ALLOWED_KEY_BITS = (2048, 3072)
#: Sizes only tests may use (``insecure_test_key=True``): fast, and far too small.
TEST_KEY_BITS = (512, 1024)
DEFAULT_KEY_BITS = 2048
KEY_ID_BYTES = 32

_KEY_ID_LABEL = "secagg/paillier/key-id"


def check_key_bits(bits: object, *, insecure_test_key: bool = False) -> int:
    """Validate a modulus size; test sizes only when ``insecure_test_key`` is set."""
    allowed = ALLOWED_KEY_BITS + (TEST_KEY_BITS if insecure_test_key else ())
    if isinstance(bits, bool) or not isinstance(bits, int) or bits not in allowed:
        raise KeySizeError(
            f"Paillier key size must be one of {allowed} bits, got {bits!r}"
            + ("" if insecure_test_key else " (512/1024 only with insecure_test_key=True)")
        )
    return bits


@dataclass(frozen=True)
class PublicKey:
    """What the aggregator and the clients hold: the modulus and the optional DJN base."""

    n: int
    short_exponent_base: int | None = None
    insecure_test_key: bool = field(default=False, compare=False)

    def __post_init__(self) -> None:
        n = self.n
        if isinstance(n, bool) or not isinstance(n, int) or n <= 1:
            raise PublicKeyFormatError(f"modulus must be an int > 1, got {type(n).__name__}")
        try:
            check_key_bits(n.bit_length(), insecure_test_key=self.insecure_test_key)
        except KeySizeError as exc:
            raise KeySizeError(f"modulus has {n.bit_length()} bits: {exc}") from None
        if n % 2 == 0:
            raise PublicKeyFormatError("modulus is even")
        if math.isqrt(n) ** 2 == n:
            raise PublicKeyFormatError("modulus is a perfect square (p = q)")
        base = self.short_exponent_base
        if base is not None and (
            isinstance(base, bool)
            or not isinstance(base, int)
            or not 0 < base < n * n
            or math.gcd(base, n) != 1
        ):
            raise PublicKeyFormatError("short-exponent base must lie in Z*_(n^2)")

    @property
    def bits(self) -> int:
        """Modulus size in bits."""
        return self.n.bit_length()

    @cached_property
    def nsquare(self) -> int:
        """n^2, the ciphertext modulus."""
        return self.n * self.n

    @property
    def ciphertext_bytes(self) -> int:
        """Fixed width of one serialized ciphertext (an element of Z_(n^2))."""
        return (2 * self.bits + 7) // 8

    @property
    def plaintext_bytes(self) -> int:
        """Fixed width of one serialized plaintext (an element of Z_n)."""
        return (self.bits + 7) // 8

    @cached_property
    def key_id(self) -> bytes:
        """SHA-256 over a canonical encoding of (n, short-exponent base)."""
        base = self.short_exponent_base
        base_bytes = b"" if base is None else base.to_bytes(self.ciphertext_bytes, "big")
        enc = canonical(_KEY_ID_LABEL, self.n.to_bytes(self.plaintext_bytes, "big"), base_bytes)
        return hashlib.sha256(enc).digest()

    def to_phe(self) -> Any:
        """The equivalent ``phe.paillier.PaillierPublicKey``."""
        from phe.paillier import PaillierPublicKey

        return PaillierPublicKey(self.n)


@dataclass(frozen=True, repr=False, eq=False)
class PrivateKey:
    """The key holder's secret: factors of ``n`` and the CRT decryption constants."""

    public: PublicKey
    _phe: Any = field(repr=False)

    @classmethod
    def from_phe(cls, public: PublicKey, phe_private: Any) -> PrivateKey:
        """Wrap a ``phe.paillier.PaillierPrivateKey`` whose modulus is ``public.n``."""
        if phe_private.p * phe_private.q != public.n:
            raise PublicKeyFormatError("private key factors do not match the public modulus")
        return cls(public, phe_private)

    def __repr__(self) -> str:
        return f"PrivateKey(bits={self.public.bits}, key_id={self.public.key_id.hex()[:16]}...)"

    def __reduce__(self) -> NoReturn:
        raise TypeError("a Paillier private key is never pickled (it must not leave its party)")

    @cached_property
    def _crt(self) -> tuple[Any, ...]:
        gmpy2 = require_gmpy2()
        p, q = gmpy2.mpz(self._phe.p), gmpy2.mpz(self._phe.q)
        return (
            p,
            q,
            p * p,
            q * q,
            gmpy2.mpz(self._phe.hp),
            gmpy2.mpz(self._phe.hq),
            gmpy2.invert(p, q),
        )

    def raw_decrypt(self, ciphertext: int) -> int:
        """Decrypt one ciphertext to its plaintext in Z_n (CRT, two half-size powmods)."""
        gmpy2 = require_gmpy2()
        p, q, p2, q2, hp, hq, p_inv = self._crt
        c = gmpy2.mpz(ciphertext)
        mp = ((gmpy2.powmod(c, p - 1, p2) - 1) // p) * hp % p
        mq = ((gmpy2.powmod(c, q - 1, q2) - 1) // q) * hq % q
        u = (mq - mp) * p_inv % q
        return int(mp + u * p)

    def to_phe(self) -> Any:
        """The wrapped ``phe.paillier.PaillierPrivateKey`` (for the reference path)."""
        return self._phe


@dataclass(frozen=True, repr=False, eq=False)
class KeyPair:
    """A public key and its private key, as the key holder generates them."""

    public: PublicKey
    private: PrivateKey

    def __repr__(self) -> str:
        return f"KeyPair(bits={self.public.bits})"


def generate_keypair(
    bits: int = DEFAULT_KEY_BITS, *, short_exponent: bool = False, insecure_test_key: bool = False
) -> KeyPair:
    """Generate a key pair with phe (primes from ``random.SystemRandom``).

    ``short_exponent`` also publishes the base ``h_s`` the optional DJN randomness mode
    needs. ``insecure_test_key`` admits 512/1024-bit moduli, for tests only.
    """
    check_key_bits(bits, insecure_test_key=insecure_test_key)
    gmpy2 = require_gmpy2()
    from phe import paillier

    phe_public, phe_private = paillier.generate_paillier_keypair(n_length=bits)
    n = int(phe_public.n)
    base = None
    if short_exponent:
        while True:
            x = secrets.randbelow(n - 2) + 2
            if math.gcd(x, n) == 1:
                break
        h = (-x * x) % n
        base = int(gmpy2.powmod(h, n, n * n))
    public = PublicKey(n, base, insecure_test_key=insecure_test_key)
    return KeyPair(public, PrivateKey.from_phe(public, phe_private))
