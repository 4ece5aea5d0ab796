"""Threshold Paillier keys: a dealer shares the decryption exponent among a t-of-l committee.

The scheme is Fouque, Poupard and Stern ("Sharing decryption in the context of voting or
lotteries", FC 2000) as generalised by Damgard and Jurik (PKC 2001), with s = 1:

- ``N = p q`` for safe primes ``p = 2p' + 1``, ``q = 2q' + 1``; ``m = p' q'``;
- the dealer picks ``d`` with ``d = 0 mod m`` and ``d = 1 mod N`` and shares it with a
  random polynomial ``f`` of degree t - 1 over ``Z_(N m)``: member i gets ``s_i = f(i)``
  (about 2|N| bits);
- it publishes a verification base ``v`` (a random square generating the squares of
  ``Z*_(N^2)``) and verification keys ``v_i = v^(Delta s_i) mod N^2``, ``Delta = l!``;
- then it drops ``d``, ``p``, ``q``, ``m`` and the polynomial.

Clients use :attr:`ThresholdPublicKey.public`, an ordinary
:class:`secagg.paillier.keys.PublicKey` (``g = N + 1``, the same key id and wire format),
so packing, the pool, short-exponent randomness and precomputed obfuscators are unchanged.

Python cannot zeroise an ``int``: "erasing" means the dealer keeps no reference, and the
garbage collector frees the memory without overwriting it. See threat_models/paillier.md.
"""

from __future__ import annotations

import hashlib
import math
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import NoReturn

from secagg.context import canonical
from secagg.paillier.errors import ThresholdConfigError
from secagg.paillier.gmp import require_gmpy2
from secagg.paillier.keys import DEFAULT_KEY_BITS, PublicKey, check_key_bits

#: Largest committee: Delta = l! enters every share exponent (32! has 118 bits).
MAX_MEMBERS = 32
#: A 1-of-l committee is l single key holders; the threshold starts at 2.
MIN_THRESHOLD = 2
#: Miller-Rabin rounds of the final primality tests (error < 4^-64 each).
PRIME_TEST_REPS = 64

_COMMITTEE_LABEL = "secagg/paillier/threshold/committee"
_SIEVE_LIMIT = 4096


def _check_int(name: str, value: object, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ThresholdConfigError(f"{name} must be an int in [{lo}, {hi}], got {value!r}")
    return value


def agreement_quorum(threshold: int, members: int) -> int:
    """The smallest q with 2q > l + t - 1: two q-sets of endorsers share >= t members.

    Among any t members at least one is honest (at most t - 1 are corrupt), and an
    honest member endorses one (contributor set, product) per round, so two different
    products of one round can never both gather q endorsements. For 3-of-5, q = 4.
    """
    params = CommitteeParams(threshold, members)
    return params.quorum


@dataclass(frozen=True)
class CommitteeParams:
    """A t-of-l committee: any t members decrypt, t - 1 learn nothing.

    Raises :class:`ThresholdConfigError` for t < 2 (no threshold), t > l (impossible)
    or l > :data:`MAX_MEMBERS`.
    """

    threshold: int
    members: int

    def __post_init__(self) -> None:
        _check_int("members", self.members, MIN_THRESHOLD, MAX_MEMBERS)
        _check_int("threshold", self.threshold, MIN_THRESHOLD, self.members)

    @property
    def delta(self) -> int:
        """Delta = l!, which makes every Lagrange coefficient an integer."""
        return math.factorial(self.members)

    @property
    def quorum(self) -> int:
        """Endorsements a member needs before it releases a share (see
        :func:`agreement_quorum`); with t = l it equals l and no agreement is needed."""
        return (self.members + self.threshold - 1) // 2 + 1

    @property
    def requires_agreement(self) -> bool:
        """True when t < l: members must first agree on what they decrypt."""
        return self.threshold < self.members

    @property
    def member_ids(self) -> range:
        """Member indices 1..l (the polynomial's evaluation points)."""
        return range(1, self.members + 1)

    def check_member(self, member: object) -> int:
        """Validate a member index."""
        return _check_int("member", member, 1, self.members)


def _check_unit(name: str, x: object, n: int) -> int:
    if isinstance(x, bool) or not isinstance(x, int) or not 0 < x < n * n or math.gcd(x, n) != 1:
        raise ThresholdConfigError(f"{name} must lie in Z*_(N^2)")
    return x


@dataclass(frozen=True)
class ThresholdPublicKey:
    """What every party holds: the clients' public key, (t, l), v and the v_i."""

    public: PublicKey
    params: CommitteeParams
    verification_base: int
    verification_keys: tuple[int, ...]

    def __post_init__(self) -> None:
        n = self.public.n
        _check_unit("verification base", self.verification_base, n)
        if len(self.verification_keys) != self.params.members:
            raise ThresholdConfigError(
                f"{len(self.verification_keys)} verification keys for {self.params.members} members"
            )
        for i, vk in enumerate(self.verification_keys, start=1):
            _check_unit(f"verification key of member {i}", vk, n)
        gmpy2 = require_gmpy2()
        if gmpy2.jacobi(self.verification_base % n, n) != 1:
            raise ThresholdConfigError("verification base is not a square (Jacobi symbol != 1)")

    @cached_property
    def committee_id(self) -> bytes:
        """SHA-256 binding the key id, (t, l), v and every v_i: what members sign."""
        width = self.public.ciphertext_bytes
        enc = canonical(
            _COMMITTEE_LABEL,
            self.public.key_id,
            self.params.threshold,
            self.params.members,
            self.verification_base.to_bytes(width, "big"),
            *(vk.to_bytes(width, "big") for vk in self.verification_keys),
        )
        return hashlib.sha256(enc).digest()

    def verification_key(self, member: int) -> int:
        """v_i of member ``member`` (1-based)."""
        return self.verification_keys[self.params.check_member(member) - 1]

    @property
    def share_bytes(self) -> int:
        """Fixed width of a serialized secret share s_i < N m < N^2."""
        return self.public.ciphertext_bytes


@dataclass(frozen=True, repr=False, eq=False)
class KeyShare:
    """One member's secret: its index and s_i. Never pickled, never printed."""

    public: ThresholdPublicKey
    member: int
    secret: int = field(repr=False)

    def __post_init__(self) -> None:
        self.public.params.check_member(self.member)
        s = self.secret
        if isinstance(s, bool) or not isinstance(s, int) or not 0 <= s < self.public.public.nsquare:
            raise ThresholdConfigError("key share must be an int in [0, N^2)")

    def __repr__(self) -> str:
        return f"KeyShare(member={self.member}, committee={self.public.committee_id.hex()[:16]}...)"

    def __reduce__(self) -> NoReturn:
        raise TypeError("a key share is never pickled (export it with encode_key_share)")

    def matches_verification_key(self) -> bool:
        """Whether v^(Delta s_i) equals the published v_i (one full exponentiation)."""
        gmpy2 = require_gmpy2()
        tpk = self.public
        got = gmpy2.powmod(
            tpk.verification_base, tpk.params.delta * self.secret, tpk.public.nsquare
        )
        return int(got) == tpk.verification_key(self.member)


@dataclass(frozen=True, repr=False, eq=False)
class ThresholdDeal:
    """The dealer's output: the public key and one :class:`KeyShare` per member."""

    public: ThresholdPublicKey
    shares: tuple[KeyShare, ...]

    def __repr__(self) -> str:
        p = self.public.params
        return f"ThresholdDeal({p.threshold}-of-{p.members}, bits={self.public.public.bits})"

    def __reduce__(self) -> NoReturn:
        raise TypeError("a deal holds every key share; it is never pickled")

    def share(self, member: int) -> KeyShare:
        """The key share of ``member`` (1-based)."""
        return self.shares[self.public.params.check_member(member) - 1]


# --- safe primes ---------------------------------------------------------------------


def _small_primes(limit: int) -> list[int]:
    sieve = bytearray([1]) * limit
    sieve[0:2] = b"\x00\x00"
    for i in range(2, math.isqrt(limit) + 1):
        if sieve[i]:
            sieve[i * i :: i] = bytearray(len(range(i * i, limit, i)))
    return [i for i in range(3, limit) if sieve[i]]


_PRIMORIAL = math.prod(_small_primes(_SIEVE_LIMIT))


def is_safe_prime(p: int) -> bool:
    """Whether p and (p - 1) / 2 are both (probable) primes."""
    gmpy2 = require_gmpy2()
    return (
        p > 5
        and p % 2 == 1
        and bool(gmpy2.is_prime(p, PRIME_TEST_REPS))
        and bool(gmpy2.is_prime((p - 1) // 2, PRIME_TEST_REPS))
    )


def generate_safe_prime(bits: int) -> int:
    """A random safe prime of exactly ``bits`` bits with its top two bits set.

    Candidates p' (random, from ``secrets``) are sieved for small factors of p' and
    2p' + 1 with one gcd, then tested with a base-2 Fermat test on both and finally
    Miller-Rabin. At 1024 bits this takes seconds to minutes (docs/paillier.md).
    """
    _check_int("safe prime bits", bits, 16, 8192)
    gmpy2 = require_gmpy2()
    two = gmpy2.mpz(2)
    top = 3 << (bits - 3)  # p' has bits - 1 bits, its top two set
    while True:
        q = gmpy2.mpz(secrets.randbits(bits - 3) | top | 1)
        p = 2 * q + 1
        if gmpy2.gcd(q * p, _PRIMORIAL) != 1:
            continue
        if gmpy2.powmod(two, q - 1, q) != 1 or gmpy2.powmod(two, p - 1, p) != 1:
            continue
        if gmpy2.is_prime(q, PRIME_TEST_REPS) and gmpy2.is_prime(p, PRIME_TEST_REPS):
            return int(p)


# --- the dealer ----------------------------------------------------------------------


def dealer_exponent(n: int, m: int) -> int:
    """The d in [0, N m) with d = 0 mod m and d = 1 mod N (Chinese remainders)."""
    gmpy2 = require_gmpy2()
    return int(m * gmpy2.invert(m, n) % (n * m))


def share_exponent(
    secret: int, coefficients: Sequence[int], modulus: int, members: int
) -> tuple[int, ...]:
    """``f(1), ..., f(members)`` mod ``modulus`` for ``f(X) = secret + sum a_j X^j``."""
    out = []
    for i in range(1, members + 1):
        acc = 0
        for a in reversed(coefficients):  # Horner over a_(t-1), ..., a_1
            acc = (acc + a) * i % modulus
        out.append((acc + secret) % modulus)
    return tuple(out)


def _random_square_generator(p: int, q: int) -> int:
    """A random square of Z*_(N^2) that generates the squares (order N p' q')."""
    gmpy2 = require_gmpy2()
    n = p * q
    n2, order = n * n, n * ((p - 1) // 2) * ((q - 1) // 2)
    while True:
        r = secrets.randbelow(n2 - 2) + 2
        if math.gcd(r, n) != 1:
            continue
        v = int(r * r % n2)
        factors = (p, q, (p - 1) // 2, (q - 1) // 2)
        if all(gmpy2.powmod(v, order // f, n2) != 1 for f in factors):
            return v


def _short_exponent_base(n: int) -> int:
    """The Damgard-Jurik-Nielsen base h_s = (-x^2)^N mod N^2, as keys.py publishes it."""
    gmpy2 = require_gmpy2()
    while True:
        x = secrets.randbelow(n - 2) + 2
        if math.gcd(x, n) == 1:
            return int(gmpy2.powmod((-x * x) % n, n, n * n))


def _check_primes(p: int, q: int, insecure_test_key: bool) -> None:
    for name, x in (("p", p), ("q", q)):
        if isinstance(x, bool) or not isinstance(x, int) or not is_safe_prime(x):
            raise ThresholdConfigError(f"{name} is not a safe prime (2x + 1 with x prime)")
    if p == q or math.gcd(p * q, ((p - 1) // 2) * ((q - 1) // 2)) != 1:
        raise ThresholdConfigError("p and q must differ and gcd(N, p'q') must be 1")
    if p.bit_length() != q.bit_length():
        raise ThresholdConfigError("p and q must have the same size")
    check_key_bits((p * q).bit_length(), insecure_test_key=insecure_test_key)


def deal_threshold_key(
    p: int,
    q: int,
    params: CommitteeParams,
    *,
    short_exponent: bool = False,
    insecure_test_key: bool = False,
) -> ThresholdDeal:
    """Deal a t-of-l key from the safe primes ``p``, ``q`` (the trusted dealer's step).

    Validates the primes, shares d over Z_(N m), publishes v and the v_i, checks that
    any t shares decrypt a test ciphertext, and keeps nothing secret but the shares.
    """
    _check_primes(p, q, insecure_test_key)
    gmpy2 = require_gmpy2()
    n = p * q
    m = ((p - 1) // 2) * ((q - 1) // 2)
    modulus = n * m
    d = dealer_exponent(n, m)
    coefficients = [secrets.randbelow(modulus) for _ in range(params.threshold - 1)]
    secrets_i = share_exponent(d, coefficients, modulus, params.members)
    v = _random_square_generator(p, q)
    n2, delta = n * n, params.delta
    vks = tuple(int(gmpy2.powmod(v, delta * s, n2)) for s in secrets_i)
    base = _short_exponent_base(n) if short_exponent else None
    public = PublicKey(n, base, insecure_test_key=insecure_test_key)
    tpk = ThresholdPublicKey(public, params, v, vks)
    deal = ThresholdDeal(tpk, tuple(KeyShare(tpk, i, s) for i, s in enumerate(secrets_i, 1)))
    del d, coefficients, m, modulus, secrets_i  # the dealer keeps no secret (see module doc)
    _self_check(deal)
    return deal


def _self_check(deal: ThresholdDeal) -> None:
    """Decrypt one random ciphertext with the first t shares; refuse a broken deal."""
    from secagg.paillier.threshold_proofs import combine_shares, decryption_shares

    pk = deal.public.public
    gmpy2 = require_gmpy2()
    msg = secrets.randbelow(pk.n)
    r = secrets.randbelow(pk.n - 2) + 2
    c = int((1 + msg * pk.n) * gmpy2.powmod(r, pk.n, pk.nsquare) % pk.nsquare)
    first = deal.shares[: deal.public.params.threshold]
    got = combine_shares(deal.public, {s.member: decryption_shares(s, [c]) for s in first})
    if got != [msg]:  # pragma: no cover - a bug, not an input
        raise ThresholdConfigError("dealt key does not decrypt its test ciphertext")


def generate_threshold_keypair(
    bits: int = DEFAULT_KEY_BITS,
    *,
    threshold: int,
    members: int,
    short_exponent: bool = False,
    insecure_test_key: bool = False,
) -> ThresholdDeal:
    """Generate two safe primes of ``bits / 2`` bits and deal a ``threshold``-of-``members``
    key. Safe-prime generation dominates (seconds to minutes at 2048 bits)."""
    check_key_bits(bits, insecure_test_key=insecure_test_key)
    params = CommitteeParams(threshold, members)
    p = generate_safe_prime(bits // 2)
    while True:
        q = generate_safe_prime(bits // 2)
        if q != p:
            break
    return deal_threshold_key(
        p, q, params, short_exponent=short_exponent, insecure_test_key=insecure_test_key
    )
