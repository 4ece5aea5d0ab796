"""Shamir t-of-n secret sharing of 32-byte secrets over the prime field GF(2^256 + 297).

``split(secret, n, t)`` draws a random polynomial of degree ``t - 1`` whose constant
term is the secret and hands out its values at x = 1..n; any ``t`` shares determine the
polynomial (and the secret) by Lagrange interpolation at 0, while any ``t - 1`` shares
are uniformly distributed whatever the secret (perfect secrecy). 2^256 + 297 is the
smallest prime above 2^256, so every 32-byte string is a field element.

Each share carries its index, the threshold and the number of shares, so ``combine``
can refuse too few, duplicate or out-of-range shares by name. Lagrange coefficients are
cached per index set: the protocol's server rebuilds many secrets from shares held by
the same survivors and pays for the coefficients once.
"""

from __future__ import annotations

import secrets
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from secagg.errors import (
    DuplicateShareError,
    InconsistentSharesError,
    InsufficientSharesError,
    SecretFormatError,
    ShareFormatError,
    ShareOutOfRangeError,
)

#: The field modulus: the smallest prime above 2^256.
PRIME = 2**256 + 297
SECRET_BYTES = 32
MAX_SHARES = 2**16 - 1

_VERSION = 1
_VALUE_BYTES = 33  # ceil(257 / 8)
_HEADER = struct.Struct(">BHHH")  # version, index, threshold, num_shares
SHARE_BYTES = _HEADER.size + _VALUE_BYTES


@dataclass(frozen=True)
class Share:
    """One share: the polynomial's value at ``index`` (1..num_shares) of a t-of-n sharing."""

    index: int
    threshold: int
    num_shares: int
    value: int

    def __post_init__(self) -> None:
        for name in ("index", "threshold", "num_shares", "value"):
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
        if not 0 <= self.value < PRIME:
            raise ShareOutOfRangeError("share value outside the field GF(2^256 + 297)")

    def __repr__(self) -> str:  # never print the value: shares are secret material
        return f"Share(index={self.index}, threshold={self.threshold}, n={self.num_shares})"

    def to_bytes(self) -> bytes:
        """Versioned fixed-size wire form (41 bytes)."""
        return _HEADER.pack(
            _VERSION, self.index, self.threshold, self.num_shares
        ) + self.value.to_bytes(_VALUE_BYTES, "big")

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
        value = int.from_bytes(data[_HEADER.size :], "big")
        # the fields are ints by construction: check ranges only (this is a hot path of
        # the server, which parses one share per survivor and neighbour)
        if not (1 <= threshold <= num_shares and 1 <= index <= num_shares and value < PRIME):
            raise ShareOutOfRangeError(
                f"share (index {index}, t {threshold}, n {num_shares}) or its value is out of range"
            )
        share = object.__new__(cls)
        object.__setattr__(share, "index", index)
        object.__setattr__(share, "threshold", threshold)
        object.__setattr__(share, "num_shares", num_shares)
        object.__setattr__(share, "value", value)
        return share


# --- field-generic core (also used by tests with a small field) --------------------


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
    return list(_lagrange_cached(tuple(xs), prime))


@lru_cache(maxsize=256)
def _lagrange_cached(xs: tuple[int, ...], prime: int) -> tuple[int, ...]:
    nums: list[int] = []
    dens: list[int] = []
    for i, xi in enumerate(xs):
        num, den = 1, 1
        for j, xj in enumerate(xs):
            if i != j:
                num = num * xj % prime
                den = den * (xj - xi) % prime
        nums.append(num)
        dens.append(den)
    invs = _batch_inverse(dens, prime)  # one modular inversion for all denominators
    return tuple(n * iv % prime for n, iv in zip(nums, invs, strict=True))


@lru_cache(maxsize=256)
def _barycentric_weights(xs: tuple[int, ...], prime: int) -> tuple[int, ...]:
    dens = []
    for i, xi in enumerate(xs):
        den = 1
        for j, xj in enumerate(xs):
            if i != j:
                den = den * (xi - xj) % prime
        dens.append(den)
    return tuple(_batch_inverse(dens, prime))


def _batch_inverse(values: Sequence[int], prime: int) -> list[int]:
    """Inverses of non-zero ``values`` mod ``prime`` with one exponentiation."""
    prefix = [1] * (len(values) + 1)
    for i, v in enumerate(values):
        prefix[i + 1] = prefix[i] * v % prime
    inv = pow(prefix[-1], -1, prime)
    out = [0] * len(values)
    for i in range(len(values) - 1, -1, -1):
        out[i] = inv * prefix[i] % prime
        inv = inv * values[i] % prime
    return out


def on_one_polynomial(points: Sequence[tuple[int, int]], t: int, prime: int) -> bool:
    """Whether ``points`` (distinct x's) lie on one polynomial of degree < ``t``.

    Uses the dual of the Reed-Solomon code: with v_i = 1 / prod_{j != i} (x_i - x_j), the
    points are consistent iff sum_i v_i y_i x_i^e = 0 for e = 0 .. m - t - 1. A random
    combination of those m - t checks (weights rho^e, rho secret and uniform) costs O(m)
    instead of O(m (m - t)) and misses an inconsistency with probability below m / p.
    """
    m = len(points)
    if m <= t:
        return True
    xs = tuple(x for x, _ in points)
    v = _barycentric_weights(xs, prime)
    e = m - t  # number of independent parity checks
    while True:
        rho = secrets.randbelow(prime - 2) + 2
        rx = [rho * x % prime for x in xs]
        if all(r != 1 for r in rx):
            break
    # G(x_i) = sum_{j < e} (rho x_i)^j = ((rho x_i)^e - 1) / (rho x_i - 1)
    invs = _batch_inverse([(r - 1) % prime for r in rx], prime)
    acc = 0
    for (_, y), vi, r, inv in zip(points, v, rx, invs, strict=True):
        g = (pow(r, e, prime) - 1) * inv % prime
        acc = (acc + vi * y % prime * g) % prime
    return acc == 0


def combine_int(points: Sequence[tuple[int, int]], prime: int) -> int:
    """The constant term of the polynomial through ``points`` (distinct x's)."""
    xs = [x for x, _ in points]
    coeffs = _lagrange_cached(tuple(xs), prime)
    return sum(c * y for c, (_, y) in zip(coeffs, points, strict=True)) % prime


def _check_n_t(n: int, t: int, prime: int) -> None:
    for name, v in (("n", n), ("t", t)):
        if isinstance(v, bool) or not isinstance(v, int):
            raise ShareOutOfRangeError(f"{name} must be an int, got {type(v).__name__}")
    if not 1 <= t <= n:
        raise ShareOutOfRangeError(f"need 1 <= t <= n, got t={t}, n={n}")
    if n > MAX_SHARES or n >= prime:
        raise ShareOutOfRangeError(f"n={n} shares exceed the supported maximum")


# --- the public API on 32-byte secrets ---------------------------------------------


def split(secret: bytes, n: int, t: int) -> list[Share]:
    """Split a 32-byte ``secret`` into ``n`` shares, any ``t`` of which recover it."""
    if not isinstance(secret, bytes | bytearray) or len(secret) != SECRET_BYTES:
        raise SecretFormatError(f"secret must be exactly {SECRET_BYTES} bytes")
    points = split_int(int.from_bytes(secret, "big"), n, t, PRIME)
    return [Share(index=x, threshold=t, num_shares=n, value=y) for x, y in points]


def combine(shares: Iterable[Share], *, check: bool = True) -> bytes:
    """Recover the secret from at least ``threshold`` distinct shares.

    With more than ``threshold`` shares and ``check=True`` (the default), every extra
    share must lie on the polynomial the first ``threshold`` define, otherwise
    :class:`InconsistentSharesError` is raised: a corrupted or forged share is detected
    instead of silently yielding a wrong secret.
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
    base = [(s.index, s.value) for s in got[:t]]
    if (
        check
        and len(got) > t
        and not on_one_polynomial([(s.index, s.value) for s in got], t, PRIME)
    ):
        raise InconsistentSharesError(
            f"the {len(got)} shares do not lie on one polynomial of degree < {t}: "
            "at least one share is corrupted or forged"
        )
    secret = combine_int(base, PRIME)
    if secret >= 2 ** (8 * SECRET_BYTES):
        raise InconsistentSharesError("recovered value is not a 32-byte secret")
    return secret.to_bytes(SECRET_BYTES, "big")
