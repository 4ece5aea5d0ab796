"""Shamir t-of-n: any t reconstruct, t-1 reveal nothing, bad shares fail by name."""

from __future__ import annotations

import contextlib
import os
from collections import Counter

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from secagg import shamir
from secagg.errors import (
    DuplicateShareError,
    InconsistentSharesError,
    InsufficientSharesError,
    SecretFormatError,
    ShamirError,
    ShareFormatError,
    ShareOutOfRangeError,
)
from secagg.shamir import PRIME, SHARE_BYTES, Share, split_int


@st.composite
def sharing(draw: st.DrawFn) -> tuple[bytes, int, int, list[int]]:
    n = draw(st.integers(1, 200))
    t = draw(st.integers(1, n))
    k = draw(st.integers(t, n))
    subset = draw(st.permutations(range(n)))[:k]
    return draw(st.binary(min_size=32, max_size=32)), n, t, subset


@given(sharing())
def test_any_t_or_more_shares_reconstruct(case: tuple[bytes, int, int, list[int]]) -> None:
    secret, n, t, subset = case
    shares = shamir.split(secret, n, t)
    assert len(shares) == n and [s.index for s in shares] == list(range(1, n + 1))
    chosen = [shares[i] for i in subset]
    assert shamir.combine(chosen[:t]) == secret
    assert shamir.combine(chosen) == secret  # extra shares are checked, then agree


@given(sharing())
def test_fewer_than_t_shares_are_refused(case: tuple[bytes, int, int, list[int]]) -> None:
    secret, n, t, subset = case
    shares = shamir.split(secret, n, t)
    with pytest.raises(InsufficientSharesError):
        shamir.combine([shares[i] for i in subset[: t - 1]])


def test_prime_is_the_smallest_above_2_256() -> None:
    import gmpy2

    assert PRIME == 2**256 + 297 and gmpy2.is_prime(PRIME, 64)
    assert all(not gmpy2.is_prime(2**256 + k, 32) for k in range(1, 297))


def test_edge_secrets() -> None:
    for secret in (bytes(32), b"\xff" * 32):
        assert shamir.combine(shamir.split(secret, 5, 3)[1:4]) == secret
    assert shamir.combine(shamir.split(b"\x01" * 32, 1, 1)) == b"\x01" * 32


# --- t-1 shares carry no information (small test-only field) --------------------------

SMALL_P = 11


def _joint_counts(secret: int, xs: tuple[int, ...], coefficient, trials: int) -> Counter:  # type: ignore[no-untyped-def,type-arg]
    n, t = max(5, *xs), len(xs) + 1
    counts: Counter = Counter()  # type: ignore[type-arg]
    for _ in range(trials):
        pts = dict(split_int(secret, n, t, SMALL_P, coefficient))
        counts[tuple(pts[x] for x in xs)] += 1
    return counts


def _same_distribution_pvalue(c1: Counter, c2: Counter) -> float:  # type: ignore[type-arg]
    cells = sorted(set(c1) | set(c2))
    table = np.array([[c1[c] for c in cells], [c2[c] for c in cells]])
    return float(stats.chi2_contingency(table).pvalue)


@pytest.mark.parametrize("xs", [(1, 2), (2, 5)])
def test_t_minus_one_shares_are_independent_of_the_secret(xs: tuple[int, ...]) -> None:
    rng = np.random.default_rng(12345)

    def coefficient(p: int) -> int:
        return int(rng.integers(p))

    a = _joint_counts(0, xs, coefficient, 6000)
    b = _joint_counts(7, xs, coefficient, 6000)
    assert len(a) == SMALL_P ** len(xs)  # every combination of t-1 share values occurs
    assert _same_distribution_pvalue(a, b) > 1e-3


def test_the_independence_test_catches_a_broken_sharing() -> None:
    """Zero random coefficients make every share equal the secret: the test must fail."""
    a = _joint_counts(0, (1, 2), lambda p: 0, 2000)
    b = _joint_counts(7, (1, 2), lambda p: 0, 2000)
    assert _same_distribution_pvalue(a, b) < 1e-10
    # a half-broken source (coefficients from a tiny range) is caught as well
    rng = np.random.default_rng(1)
    a = _joint_counts(0, (1, 2), lambda p: int(rng.integers(2)), 6000)
    b = _joint_counts(7, (1, 2), lambda p: int(rng.integers(2)), 6000)
    assert _same_distribution_pvalue(a, b) < 1e-10


# --- named errors ---------------------------------------------------------------------


def test_duplicate_shares() -> None:
    s = shamir.split(os.urandom(32), 5, 3)
    with pytest.raises(DuplicateShareError):
        shamir.combine([s[0], s[1], s[1]])
    with pytest.raises(DuplicateShareError):
        shamir.combine([s[0], s[1], Share(2, 3, 5, (s[1].value + 1) % PRIME)])


def test_mixed_sharings_are_inconsistent() -> None:
    a = shamir.split(os.urandom(32), 5, 3)
    b = shamir.split(os.urandom(32), 6, 3)
    c = shamir.split(os.urandom(32), 5, 2)
    with pytest.raises(InconsistentSharesError):
        shamir.combine([a[0], a[1], b[2]])
    with pytest.raises(InconsistentSharesError):
        shamir.combine([a[0], a[1], c[2]])


def test_corrupted_extra_share_is_detected() -> None:
    secret = os.urandom(32)
    s = shamir.split(secret, 7, 3)
    bad = Share(s[5].index, 3, 7, (s[5].value + 1) % PRIME)
    with pytest.raises(InconsistentSharesError):
        shamir.combine([*s[:5], bad])
    # without the check the first t shares decide (the caller opted out)
    assert shamir.combine([*s[:5], bad], check=False) == secret


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(index=0, threshold=2, num_shares=3, value=1),
        dict(index=4, threshold=2, num_shares=3, value=1),
        dict(index=1, threshold=4, num_shares=3, value=1),
        dict(index=1, threshold=0, num_shares=3, value=1),
        dict(index=1, threshold=2, num_shares=3, value=PRIME),
        dict(index=1, threshold=2, num_shares=3, value=-1),
        dict(index=1, threshold=2, num_shares=2**16, value=1),
    ],
)
def test_out_of_range_shares(kwargs: dict[str, int]) -> None:
    with pytest.raises(ShareOutOfRangeError):
        Share(**kwargs)


def test_share_field_types() -> None:
    with pytest.raises(ShareFormatError):
        Share(index=True, threshold=1, num_shares=1, value=0)
    with pytest.raises(ShareFormatError):
        shamir.combine([b"not a share"])  # type: ignore[list-item]
    with pytest.raises(InsufficientSharesError):
        shamir.combine([])


@pytest.mark.parametrize("secret", [b"", b"x" * 31, b"x" * 33, "x" * 32, 5])
def test_bad_secret(secret: object) -> None:
    with pytest.raises(SecretFormatError):
        shamir.split(secret, 3, 2)  # type: ignore[arg-type]


@pytest.mark.parametrize("n,t", [(3, 0), (3, 4), (0, 0), (2**16, 2), (3.0, 2), (3, True)])
def test_bad_n_t(n: object, t: object) -> None:
    with pytest.raises(ShamirError):
        shamir.split(bytes(32), n, t)  # type: ignore[arg-type]


def test_serialisation_round_trip() -> None:
    for s in shamir.split(os.urandom(32), 9, 4):
        data = s.to_bytes()
        assert len(data) == SHARE_BYTES
        assert Share.from_bytes(data) == s
    assert "value" not in repr(s)  # secret material stays out of logs


@given(st.binary(max_size=2 * SHARE_BYTES))
def test_from_bytes_never_crashes_unnamed(data: bytes) -> None:
    with contextlib.suppress(ShamirError):
        Share.from_bytes(data)


@given(st.integers(0, SHARE_BYTES * 8 - 1))
def test_bit_flips_are_rejected_or_change_the_share(bit: int) -> None:
    s = shamir.split(b"\x42" * 32, 5, 3)[1]
    data = bytearray(s.to_bytes())
    data[bit // 8] ^= 1 << (bit % 8)
    with contextlib.suppress(ShamirError):
        assert Share.from_bytes(bytes(data)) != s


def test_from_bytes_rejects_wrong_version_and_type() -> None:
    data = bytearray(shamir.split(bytes(32), 3, 2)[0].to_bytes())
    data[0] = 2
    with pytest.raises(ShareFormatError, match="version"):
        Share.from_bytes(bytes(data))
    with pytest.raises(ShareFormatError):
        Share.from_bytes("x" * SHARE_BYTES)  # type: ignore[arg-type]
