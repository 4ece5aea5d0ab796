"""Shamir t-of-n secret sharing of 32-byte secrets, vectorised over GF(2^31 - 1).

A 32-byte secret is cut into nine limbs of at most 30 bits (the last one 16 bits), each
an element of the Mersenne-prime field GF(p), p = 2^31 - 1. ``split(secret, n, t)``
shares every limb with its own random polynomial of degree ``t - 1`` and hands out the
nine values at x = 1..n as one share. Any ``t`` shares determine the nine polynomials
(and the secret) by Lagrange interpolation at 0; any ``t - 1`` shares are uniformly
distributed whatever the secret, limb by limb and jointly, because the polynomials'
coefficients are independent (perfect secrecy, as over one large field).

Why a small field: the protocol's clients split two secrets over k + 1 holders with
t near k / 2 at every round, and the server interpolates one secret per client. Over
GF(2^256 + 297) that was k * t Python big-integer operations per split (17 ms at
k = 386, t = 256). Here evaluation is a Vandermonde product in float64 BLAS on 16-bit
halves, exact because every partial sum stays below 2^53 (0.5 ms), and interpolation is
a handful of vectorised row products.

Each share carries its index, the threshold and the number of shares, so ``combine``
can refuse too few, duplicate or out-of-range shares by name. With more shares than the
threshold the extras are checked exactly against the polynomials the first t define.
The field-generic scalar functions (``split_int``, ``combine_int``, ``lagrange_at_zero``)
are the reference the vectorised path is tested against, and serve the tests that need
a tiny field.
"""

from __future__ import annotations

import secrets
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import numpy.typing as npt

from secagg.errors import (
    DuplicateShareError,
    InconsistentSharesError,
    InsufficientSharesError,
    SecretFormatError,
    ShareFormatError,
    ShareOutOfRangeError,
)

#: The field modulus, the Mersenne prime 2^31 - 1.
PRIME = 2**31 - 1
SECRET_BYTES = 32
MAX_SHARES = 2**16 - 1
#: Limbs per secret and their width: 8 * 30 + 16 = 256 bits.
LIMBS = 9
LIMB_BITS = 30
_LAST_LIMB_BITS = 8 * SECRET_BYTES - (LIMBS - 1) * LIMB_BITS

_VERSION = 2
_HEADER = struct.Struct(">BHHH")  # version, index, threshold, num_shares
_VALUE_BYTES = 4 * LIMBS
_LIMB_STRUCT = struct.Struct(f">{LIMBS}I")
SHARE_BYTES = _HEADER.size + _VALUE_BYTES

U64 = npt.NDArray[np.uint64]
_P = np.uint64(PRIME)


@dataclass(frozen=True)
class Share:
    """One share: the nine polynomials' values at ``index`` (1..num_shares) of a
    t-of-n sharing."""

    index: int
    threshold: int
    num_shares: int
    value: tuple[int, ...]

    def __post_init__(self) -> None:
        for name in ("index", "threshold", "num_shares"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int):
                raise ShareFormatError(f"share {name} must be an int, got {type(v).__name__}")
        if not 1 <= self.threshold <= self.num_shares <= MAX_SHARES:
            raise ShareOutOfRangeError(
                f"share claims threshold {self.threshold} of {self.num_shares}; need "
                f"1 <= t <= n <= {MAX_SHARES}"
            )
        if not 1 <= self.index <= self.num_shares:
            raise ShareOutOfRangeError(f"share index {self.index} outside 1..{self.num_shares}")
        v = self.value
        if not isinstance(v, tuple) or len(v) != LIMBS:
            raise ShareFormatError(f"share value must be a tuple of {LIMBS} field elements")
        for x in v:
            if isinstance(x, bool) or not isinstance(x, int):
                raise ShareFormatError("share value limbs must be ints")
            if not 0 <= x < PRIME:
                raise ShareOutOfRangeError("share value outside the field GF(2^31 - 1)")

    def __repr__(self) -> str:  # never print the value: shares are secret material
        return f"Share(index={self.index}, threshold={self.threshold}, n={self.num_shares})"

    def to_bytes(self) -> bytes:
        """Versioned fixed-size wire form (43 bytes)."""
        head = _HEADER.pack(_VERSION, self.index, self.threshold, self.num_shares)
        return head + _LIMB_STRUCT.pack(*self.value)

    @classmethod
    def from_bytes(cls, data: bytes) -> Share:
        """Parse and validate the wire form; raises a :class:`ShamirError` subclass."""
        if not isinstance(data, bytes | bytearray | memoryview):
            raise ShareFormatError(f"share must be bytes, got {type(data).__name__}")
        data = bytes(data)
        if len(data) != SHARE_BYTES:
            raise ShareFormatError(f"share must be {SHARE_BYTES} bytes, got {len(data)}")
        version, index, threshold, num_shares = _HEADER.unpack_from(data)
        if version != _VERSION:
            raise ShareFormatError(f"unsupported share format version {version}")
        limbs = _LIMB_STRUCT.unpack_from(data, _HEADER.size)
        # the fields are ints by construction: check ranges only (a hot path of the
        # server, which parses one share per survivor and neighbour)
        if not (1 <= threshold <= num_shares and 1 <= index <= num_shares) or max(limbs) >= PRIME:
            raise ShareOutOfRangeError(
                f"share (index {index}, t {threshold}, n {num_shares}) or its value is out of range"
            )
        return cls._trusted(index, threshold, num_shares, limbs)

    @classmethod
    def _trusted(cls, index: int, threshold: int, num_shares: int, value: tuple[int, ...]) -> Share:
        """A share whose fields are already checked (parsing, splitting): no re-validation."""
        share = object.__new__(cls)
        object.__setattr__(share, "index", index)
        object.__setattr__(share, "threshold", threshold)
        object.__setattr__(share, "num_shares", num_shares)
        object.__setattr__(share, "value", value)
        return share


# --- field-generic scalar reference (also used by tests with a small field) -------------


def random_coefficient(prime: int) -> int:
    """A uniform field element from the OS CSPRNG."""
    return secrets.randbelow(prime)


def split_int(
    secret: int,
    n: int,
    t: int,
    prime: int,
    coefficient: Callable[[int], int] = random_coefficient,
) -> list[tuple[int, int]]:
    """Share the field element ``secret``: ``[(x, f(x)) for x in 1..n]`` with ``f(0) = secret``.

    ``coefficient`` draws the polynomial's random coefficients; it is a parameter so the
    tests can show that a broken source (e.g. always zero) is caught.
    """
    _check_n_t(n, t, prime)
    if not 0 <= secret < prime:
        raise SecretFormatError("secret is not an element of the field")
    coeffs = [secret] + [coefficient(prime) for _ in range(t - 1)]
    out = []
    for x in range(1, n + 1):
        acc = 0
        for c in reversed(coeffs):  # Horner
            acc = (acc * x + c) % prime
        out.append((x, acc))
    return out


def lagrange_at_zero(xs: Sequence[int], prime: int) -> list[int]:
    """Coefficients l_i with f(0) = sum l_i f(x_i) for any f of degree < len(xs)."""
    out = []
    for i, xi in enumerate(xs):
        num, den = 1, 1
        for j, xj in enumerate(xs):
            if i != j:
                num = num * xj % prime
                den = den * (xj - xi) % prime
        out.append(num * pow(den, -1, prime) % prime)
    return out


def combine_int(points: Sequence[tuple[int, int]], prime: int) -> int:
    """The constant term of the polynomial through ``points`` (distinct x's)."""
    coeffs = lagrange_at_zero([x for x, _ in points], prime)
    return sum(c * y for c, (_, y) in zip(coeffs, points, strict=True)) % prime


def _check_n_t(n: int, t: int, prime: int) -> None:
    for name, v in (("n", n), ("t", t)):
        if isinstance(v, bool) or not isinstance(v, int):
            raise ShareOutOfRangeError(f"{name} must be an int, got {type(v).__name__}")
    if not 1 <= t <= n:
        raise ShareOutOfRangeError(f"need 1 <= t <= n, got t={t}, n={n}")
    if n > MAX_SHARES or n >= prime:
        raise ShareOutOfRangeError(f"n={n} shares exceed the supported maximum")


# --- vectorised arithmetic mod 2^31 - 1 --------------------------------------------------


def _mulmod(a: U64, b: U64) -> U64:
    """a * b mod p for arrays of field elements (products below 2^62)."""
    return (a * b) % _P


def _matmul_mod(a: U64, b: U64) -> U64:
    """(a @ b) mod p, exactly, through float64 BLAS on 16-bit halves.

    With a = a1 2^16 + a0 and b = b1 2^16 + b0 (halves below 2^16), each of the four
    partial products sums at most ``a.shape[1] <= 2^16`` terms below 2^32: below 2^48,
    exact in float64.
    """
    a0, a1 = (a & 0xFFFF).astype(np.float64), (a >> 16).astype(np.float64)
    b0, b1 = (b & 0xFFFF).astype(np.float64), (b >> 16).astype(np.float64)
    low = (a0 @ b0).astype(np.uint64) % _P
    mid = (a0 @ b1 + a1 @ b0).astype(np.uint64) % _P  # two sums below 2^48 each
    high = (a1 @ b1).astype(np.uint64) % _P
    return (low + (mid << np.uint64(16)) % _P + (high << np.uint64(32)) % _P) % _P  # type: ignore[no-any-return]


def _row_products(m: U64) -> U64:
    """Product of each row mod p, by halving the columns (log2 of their count steps)."""
    while m.shape[1] > 1:
        if m.shape[1] % 2:
            m = np.concatenate([m, np.ones((m.shape[0], 1), dtype=np.uint64)], axis=1)
        m = _mulmod(m[:, 0::2], m[:, 1::2])
    return m[:, 0]


def _inverse(a: U64) -> U64:
    """a^(p - 2) = 1 / a mod p, elementwise (every a non-zero)."""
    result = np.ones_like(a)
    base = a.copy()
    e = PRIME - 2
    while e:
        if e & 1:
            result = _mulmod(result, base)
        base = _mulmod(base, base)
        e >>= 1
    return result


@lru_cache(maxsize=8)
def _vandermonde(n: int, t: int) -> U64:
    """V[x - 1, j] = x^j mod p for x in 1..n, j < t (cached: one (n, t) per graph)."""
    xs = np.arange(1, n + 1, dtype=np.uint64)
    v = np.empty((n, t), dtype=np.uint64)
    v[:, 0] = 1
    for j in range(1, t):
        v[:, j] = _mulmod(v[:, j - 1], xs)
    v.setflags(write=False)
    return v


def lagrange_at(xs: Sequence[int], z: int) -> U64:
    """Coefficients l_i with f(z) = sum l_i f(x_i) mod p, for distinct ``xs`` and any f
    of degree < len(xs): prod_{j != i} (z - x_j) / (x_i - x_j), all rows at once."""
    x = np.asarray(xs, dtype=np.int64)
    diag = np.eye(x.size, dtype=bool)
    num = np.broadcast_to((z - x)[None, :] % PRIME, (x.size, x.size)).astype(np.uint64)
    den = ((x[:, None] - x[None, :]) % PRIME).astype(np.uint64)
    num[diag] = 1
    den[diag] = 1
    return _mulmod(_row_products(num), _inverse(_row_products(den)))


@lru_cache(maxsize=512)
def _lagrange_at_zero(xs: tuple[int, ...]) -> U64:
    """Cached coefficients at 0: a server rebuilds many secrets from the same holders."""
    out = lagrange_at(xs, 0)
    out.setflags(write=False)
    return out


# --- the public API on 32-byte secrets -----------------------------------------------------


def secret_to_limbs(secret: bytes) -> list[int]:
    """The nine limbs of a 32-byte secret, least significant first."""
    v = int.from_bytes(secret, "big")
    mask = (1 << LIMB_BITS) - 1
    return [(v >> (LIMB_BITS * i)) & mask for i in range(LIMBS)]


def limbs_to_secret(limbs: Sequence[int]) -> bytes:
    """Inverse of :func:`secret_to_limbs`; :class:`InconsistentSharesError` when a limb
    is too wide (shares from a forged or mixed sharing)."""
    top = (1 << LIMB_BITS) - 1
    if any(x > top for x in limbs[:-1]) or limbs[-1] >> _LAST_LIMB_BITS:
        raise InconsistentSharesError("recovered value is not a 32-byte secret")
    return sum(int(x) << (LIMB_BITS * i) for i, x in enumerate(limbs)).to_bytes(SECRET_BYTES, "big")


def random_field_elements(count: int) -> U64:
    """``count`` uniform elements of GF(2^31 - 1) from the OS CSPRNG (31 random bits,
    rejecting the single value p: no modular bias)."""
    out = np.empty(0, dtype=np.uint64)
    while out.size < count:
        need = count - out.size
        draw = np.frombuffer(secrets.token_bytes(4 * (need + 8)), dtype="<u4") & 0x7FFFFFFF
        out = np.concatenate([out, draw[draw != PRIME].astype(np.uint64)])
    return out[:count]


def split(secret: bytes, n: int, t: int) -> list[Share]:
    """Split a 32-byte ``secret`` into ``n`` shares, any ``t`` of which recover it."""
    if not isinstance(secret, bytes | bytearray) or len(secret) != SECRET_BYTES:
        raise SecretFormatError(f"secret must be exactly {SECRET_BYTES} bytes")
    _check_n_t(n, t, PRIME)
    coeffs = np.empty((t, LIMBS), dtype=np.uint64)
    coeffs[0] = secret_to_limbs(bytes(secret))
    coeffs[1:] = random_field_elements((t - 1) * LIMBS).reshape(t - 1, LIMBS)
    values = evaluate(coeffs, n).tolist()
    return [Share._trusted(x + 1, t, n, tuple(values[x])) for x in range(n)]


def evaluate(coefficients: U64, n: int) -> U64:
    """Row x - 1 holds the polynomials' values at x = 1..n; ``coefficients[j, l]`` is the
    coefficient of x^j of limb l's polynomial (the known-answer tests call this)."""
    t = coefficients.shape[0]
    _check_n_t(n, t, PRIME)
    return _matmul_mod(_vandermonde(n, t), np.asarray(coefficients, dtype=np.uint64))


def _values(shares: Sequence[Share]) -> U64:
    return np.array([s.value for s in shares], dtype=np.uint64)


def combine(shares: Iterable[Share], *, check: bool = True) -> bytes:
    """Recover the secret from at least ``threshold`` distinct shares.

    With more than ``threshold`` shares and ``check=True`` (the default), every extra
    share must equal the value the first ``threshold`` shares' polynomials take at its
    index, otherwise :class:`InconsistentSharesError` is raised: a corrupted or forged
    share is detected instead of silently yielding a wrong secret.
    """
    got = list(shares)
    if not got:
        raise InsufficientSharesError("no shares given")
    for s in got:
        if not isinstance(s, Share):
            raise ShareFormatError(f"expected Share objects, got {type(s).__name__}")
    t, n = got[0].threshold, got[0].num_shares
    if any(s.threshold != t or s.num_shares != n for s in got):
        raise InconsistentSharesError("shares come from sharings with different (t, n)")
    seen: set[int] = set()
    for s in got:
        if s.index in seen:
            raise DuplicateShareError(f"two shares carry index {s.index}")
        seen.add(s.index)
    if len(got) < t:
        raise InsufficientSharesError(f"{len(got)} distinct shares given, threshold is {t}")
    base, extra = got[:t], got[t:]
    ys = _values(base)
    if check and extra:
        xs = [s.index for s in base]
        coeffs = np.stack([lagrange_at(xs, s.index) for s in extra])
        if not np.array_equal(_matmul_mod(coeffs, ys), _values(extra)):
            raise InconsistentSharesError(
                f"the {len(got)} shares do not lie on one polynomial of degree < {t}: "
                "at least one share is corrupted or forged"
            )
    lam = _lagrange_at_zero(tuple(s.index for s in base))
    return limbs_to_secret(_matmul_mod(lam[None, :], ys)[0].tolist())


def clear_caches() -> None:
    """Forget the cached Vandermonde matrices and Lagrange coefficients (benchmarks
    measure cold interpolation with this)."""
    _vandermonde.cache_clear()
    _lagrange_at_zero.cache_clear()
