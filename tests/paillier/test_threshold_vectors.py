"""Fixed test material for the threshold tests, and known-answer tests of key generation.

The two 256-bit safe primes below were generated once with
``secagg.paillier.threshold_keys.generate_safe_prime(256)``; their product is a 512-bit
modulus whose factors are public. TEST MATERIAL ONLY: never use them for real data.
Every expected value is recomputed here with plain Python integers and the textbook
formulas (Fouque-Poupard-Stern, Damgard-Jurik s = 1), independently of the library.
"""

from __future__ import annotations

import math
from fractions import Fraction
from functools import cache

import pytest

from secagg.paillier.keys import PublicKey
from secagg.paillier.threshold_keys import (
    CommitteeParams,
    KeyShare,
    ThresholdDeal,
    ThresholdPublicKey,
    deal_threshold_key,
    dealer_exponent,
    is_safe_prime,
    share_exponent,
)

P = 0xC3F7466668E873AF1BC07BD358ACE813E3C391A3DEFB3E705065A2FB0C4CCF7F
Q = 0xC6C29705178912093FF6EDE7E6DB2CC0B35DD70BF5221B276800D2184C7E3727
N = P * Q
M = ((P - 1) // 2) * ((Q - 1) // 2)


@cache
def deal(t: int, members: int, *, short_exponent: bool = False) -> ThresholdDeal:
    """A t-of-l deal over the fixed test primes (fresh polynomial, cached per setting)."""
    return deal_threshold_key(
        P, Q, CommitteeParams(t, members), short_exponent=short_exponent, insecure_test_key=True
    )


def textbook_encrypt(n: int, msg: int, r: int) -> int:
    """(1 + N)^m r^N mod N^2 with Python's pow."""
    return pow(1 + n, msg, n * n) * pow(r, n, n * n) % (n * n)


def textbook_combine(n: int, delta: int, shares: dict[int, int]) -> int:
    """Lagrange over the rationals, times Delta; then L(c') / (4 Delta^2) mod N."""
    n2 = n * n
    acc = 1
    for i, ci in shares.items():
        lam = Fraction(1)
        for j in shares:
            if j != i:
                lam *= Fraction(j, j - i)
        mu = lam * delta
        assert mu.denominator == 1
        acc = acc * pow(ci, 2 * int(mu), n2) % n2
    return (acc - 1) // n * pow(4 * delta * delta, -1, n) % n


def fixed_key(
    t: int, members: int, coefficients: list[int]
) -> tuple[ThresholdPublicKey, list[int]]:
    """A fully deterministic key: fixed primes, polynomial and v = 9^2 mod N^2."""
    params = CommitteeParams(t, members)
    d = dealer_exponent(N, M)
    s = list(share_exponent(d, coefficients, N * M, members))
    v = pow(9, 2, N * N)
    vks = tuple(pow(v, params.delta * si, N * N) for si in s)
    return ThresholdPublicKey(PublicKey(N, insecure_test_key=True), params, v, vks), s


def test_fixed_primes_are_safe() -> None:
    assert is_safe_prime(P) and is_safe_prime(Q) and N.bit_length() == 512


def test_dealer_exponent_tiny_by_brute_force() -> None:
    """p = 23, q = 59: the d below N m with d = 0 mod m, d = 1 mod N, found by search."""
    p, q = 23, 59
    n, m = p * q, 11 * 29
    expected = next(x for x in range(0, n * m, m) if x % n == 1)
    assert dealer_exponent(n, m) == expected == 85492


def test_share_exponent_matches_the_polynomial() -> None:
    coeffs, modulus = [5, 7, 11], 1009 * 1013
    got = share_exponent(42, coeffs, modulus, 6)
    want = tuple((42 + 5 * i + 7 * i**2 + 11 * i**3) % modulus for i in range(1, 7))
    assert got == want


def test_dealer_exponent_at_512_bits() -> None:
    d = dealer_exponent(N, M)
    assert d % M == 0 and d % N == 1 and 0 <= d < N * M


@pytest.mark.parametrize(("t", "members"), [(2, 3), (3, 5), (4, 4)])
def test_dealt_key_against_textbook(t: int, members: int) -> None:
    """Any t shares interpolate to one d with d = 0 mod m, 1 mod N; v_i = v^(Delta s_i)."""
    dl = deal(t, members)
    tpk = dl.public
    delta = math.factorial(members)
    assert tpk.public.n == N and tpk.params.delta == delta
    s = {sh.member: sh.secret for sh in dl.shares}
    for i, si in s.items():
        assert 0 <= si < N * M and si.bit_length() > 900  # about 2|N| bits
        assert pow(tpk.verification_base, delta * si, N * N) == tpk.verification_key(i)
    seen = set()
    for start in range(members - t + 1):
        subset = list(range(start + 1, start + t + 1))
        acc = Fraction(0)
        for i in subset:
            lam = Fraction(1)
            for j in subset:
                if j != i:
                    lam *= Fraction(j, j - i)
            acc += lam * s[i]
        d_times = int(acc * delta) % (N * M)  # Delta * d mod N m
        d = d_times * pow(delta, -1, N * M) % (N * M)
        seen.add(d)
    (d,) = seen
    assert d % M == 0 and d % N == 1


def test_fixed_key_decryption_known_answer() -> None:
    """A deterministic 2-of-3 key: shares and combination equal the textbook values."""
    from secagg.paillier.threshold_proofs import combine_shares, decryption_shares

    tpk, s = fixed_key(2, 3, [0x1234567890ABCDEF])
    msg, r = 0xC0FFEE, 0x5EED
    c = textbook_encrypt(N, msg, r)
    delta = 6
    expected = {i: pow(c, 2 * delta * s[i - 1], N * N) for i in (1, 2, 3)}
    got = {i: decryption_shares(KeyShare(tpk, i, s[i - 1]), [c])[0] for i in (1, 2, 3)}
    assert got == expected
    for pair in ((1, 2), (1, 3), (2, 3)):
        sub = {i: expected[i] for i in pair}
        assert textbook_combine(N, delta, sub) == msg
        assert combine_shares(tpk, {i: [expected[i]] for i in pair}) == [msg]
