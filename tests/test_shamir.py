"""Shamir t-of-n: any t reconstruct, t-1 reveal nothing, bad shares fail by name; the
vectorised GF(2^31 - 1) path agrees with the scalar reference and a known answer."""

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
from secagg.shamir import LIMBS, PRIME, SHARE_BYTES, Share, combine_int, split_int


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


def _bumped(s: Share) -> Share:
    """The same share with its first limb changed."""
    return Share(s.index, s.threshold, s.num_shares, ((s.value[0] + 1) % PRIME, *s.value[1:]))


def test_the_field_is_the_mersenne_prime_2_31_minus_1() -> None:
    import gmpy2

    assert PRIME == 2**31 - 1 and gmpy2.is_prime(PRIME, 64)
    assert LIMBS * 30 >= 256 > (LIMBS - 1) * 30


#: Known answer: secret bytes 0..31, t = 3, coefficients c_1[l] = 1000 + l and
#: c_2[l] = 2^31 - 2 - l for limb l; the share at x = 4 as hex (version 2, index 4, t 3, n 5).
KAT_SHARE_4 = (
    "020004000300051c1d2d9f206477e0015170d9044494210d0e1e6024283b7410607fb80080d02d00000f21"
)


def _kat_coefficients() -> np.ndarray:
    c = np.empty((3, LIMBS), dtype=np.uint64)
    c[0] = shamir.secret_to_limbs(bytes(range(32)))
    c[1] = [1000 + limb for limb in range(LIMBS)]
    c[2] = [PRIME - 2 - limb for limb in range(LIMBS)]
    return c


def test_known_answer_and_the_scalar_reference() -> None:
    c = _kat_coefficients()
    values = shamir.evaluate(c, 5)
    for x in range(1, 6):  # f_l(x) = sum_j c_j[l] x^j with Python integers
        want = [sum(int(c[j, limb]) * x**j for j in range(3)) % PRIME for limb in range(LIMBS)]
        assert values[x - 1].tolist() == want
    share = Share(4, 3, 5, tuple(values[3].tolist()))
    assert share.to_bytes().hex() == KAT_SHARE_4
    shares = [Share(x, 3, 5, tuple(values[x - 1].tolist())) for x in (5, 2, 4)]
    assert shamir.combine(shares) == bytes(range(32))
    # limb by limb, the field-generic scalar interpolation gives the same limbs
    limbs = [
        combine_int([(s.index, s.value[limb]) for s in shares], PRIME) for limb in range(LIMBS)
    ]
    assert limbs == shamir.secret_to_limbs(bytes(range(32)))


@given(
    st.lists(st.lists(st.integers(0, PRIME - 1), min_size=3, max_size=3), min_size=1, max_size=40),
    st.lists(st.integers(0, PRIME - 1), min_size=1, max_size=40),
)
def test_exact_matrix_products_mod_p(rows: list[list[int]], col: list[int]) -> None:
    a = np.array([r * (len(col) // 3 + 1) for r in rows], dtype=np.uint64)[:, : len(col)]
    b = np.array(col, dtype=np.uint64)[:, None]
    want = [sum(int(x) * int(y) for x, y in zip(r, col, strict=False)) % PRIME for r in a.tolist()]
    assert shamir._matmul_mod(a, b)[:, 0].tolist() == want


def test_extreme_values_stay_exact() -> None:
    """Every entry p - 1 and 2^16 inner terms: the float64 partial sums stay exact."""
    a = np.full((2, 2**16), PRIME - 1, dtype=np.uint64)
    b = np.full((2**16, 1), PRIME - 1, dtype=np.uint64)
    assert shamir._matmul_mod(a, b)[:, 0].tolist() == [2**16 % PRIME] * 2  # (-1)(-1) 2^16


@given(
    st.lists(st.integers(1, 2**16 - 1), min_size=1, max_size=30, unique=True), st.integers(0, 2**16)
)
def test_lagrange_matches_the_scalar_reference(xs: list[int], z: int) -> None:
    want = []
    for i, xi in enumerate(xs):
        num = den = 1
        for j, xj in enumerate(xs):
            if i != j:
                num, den = num * (z - xj) % PRIME, den * (xi - xj) % PRIME
        want.append(num * pow(den, -1, PRIME) % PRIME)
    assert shamir.lagrange_at(xs, z).tolist() == want


def test_secret_limbs_round_trip_and_refuse_wide_limbs() -> None:
    for secret in (bytes(32), b"\xff" * 32, os.urandom(32)):
        assert shamir.limbs_to_secret(shamir.secret_to_limbs(secret)) == secret
    with pytest.raises(InconsistentSharesError):
        shamir.limbs_to_secret([2**30] + [0] * (LIMBS - 1))
    with pytest.raises(InconsistentSharesError):
        shamir.limbs_to_secret([0] * (LIMBS - 1) + [2**16])


def test_random_field_elements_are_in_range_and_unbiased() -> None:
    x = shamir.random_field_elements(200_000)
    assert x.dtype == np.uint64 and int(x.max()) < PRIME
    # the top bit and the lowest bit are fair (a modular reduction of 32 bits would not
    # be detectable here; the rejection rule is what makes it exact)
    for bit in (0, 30):
        ones = int(np.count_nonzero((x >> np.uint64(bit)) & np.uint64(1)))
        assert abs(ones - 100_000) < 5 * 224  # 5 sigma


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
        shamir.combine([s[0], s[1], _bumped(s[1])])


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
    bad = _bumped(s[5])
    with pytest.raises(InconsistentSharesError):
        shamir.combine([*s[:5], bad])
    # without the check the first t shares decide (the caller opted out)
    assert shamir.combine([*s[:5], bad], check=False) == secret


ONE = (1,) * LIMBS


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(index=0, threshold=2, num_shares=3, value=ONE),
        dict(index=4, threshold=2, num_shares=3, value=ONE),
        dict(index=1, threshold=4, num_shares=3, value=ONE),
        dict(index=1, threshold=0, num_shares=3, value=ONE),
        dict(index=1, threshold=2, num_shares=3, value=(PRIME, *ONE[1:])),
        dict(index=1, threshold=2, num_shares=3, value=(*ONE[:-1], -1)),
        dict(index=1, threshold=2, num_shares=2**16, value=ONE),
    ],
)
def test_out_of_range_shares(kwargs: dict[str, object]) -> None:
    with pytest.raises(ShareOutOfRangeError):
        Share(**kwargs)


def test_share_field_types() -> None:
    with pytest.raises(ShareFormatError):
        Share(index=True, threshold=1, num_shares=1, value=ONE)
    with pytest.raises(ShareFormatError):
        Share(index=1, threshold=1, num_shares=1, value=ONE[:-1])
    with pytest.raises(ShareFormatError):
        Share(index=1, threshold=1, num_shares=1, value=5)  # type: ignore[arg-type]
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
    data[0] = 1  # the GF(2^256 + 297) format of earlier versions
    with pytest.raises(ShareFormatError, match="version"):
        Share.from_bytes(bytes(data))
    with pytest.raises(ShareFormatError):
        Share.from_bytes("x" * SHARE_BYTES)  # type: ignore[arg-type]
