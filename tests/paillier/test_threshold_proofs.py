"""Decryption shares, the batched proof and the combination, against the textbook."""

from __future__ import annotations

import secrets
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from secagg.paillier.errors import InvalidDecryptionShareError, NotEnoughSharesError
from secagg.paillier.threshold_proofs import (
    BatchProof,
    ProofContext,
    combine_optimistic,
    combine_shares,
    decryption_shares,
    lagrange_coefficients,
    prove_shares,
    verify_shares,
)
from tests.paillier.test_threshold_vectors import N, deal, textbook_encrypt

N2 = N * N
SESSION = b"threshold-tests!"


@st.composite
def committees(draw: st.DrawFn) -> tuple[int, int, list[int]]:
    members = draw(st.integers(2, 6))
    t = draw(st.integers(2, members))
    order = draw(st.permutations(list(range(1, members + 1))))
    return t, members, list(order)


def _ciphertexts(count: int) -> tuple[list[int], list[int]]:
    msgs = [secrets.randbelow(N) for _ in range(count)]
    return msgs, [textbook_encrypt(N, m, secrets.randbelow(N - 2) + 2) for m in msgs]


def _interpolate_anyway(delta: int, shares: dict[int, int]) -> int:
    """What t - 1 shares give at best: Lagrange over the shares held, read as a plaintext."""
    acc = 1
    for i, ci in shares.items():
        lam = Fraction(1)
        for j in shares:
            if j != i:
                lam *= Fraction(j, j - i)
        acc = acc * pow(ci, 2 * int(lam * delta), N2) % N2
    return (acc - 1) // N * pow(4 * delta * delta, -1, N) % N


@given(committees())
def test_any_t_shares_decrypt_and_t_minus_1_do_not(c: tuple[int, int, list[int]]) -> None:
    t, members, order = c
    dl = deal(t, members)
    msgs, cts = _ciphertexts(3)
    subset = sorted(order[:t])
    shares = {i: decryption_shares(dl.share(i), cts) for i in subset}
    assert combine_shares(dl.public, shares) == msgs
    fewer = subset[: t - 1]
    with pytest.raises(NotEnoughSharesError):
        combine_shares(dl.public, {i: shares[i] for i in fewer})
    guess = [
        _interpolate_anyway(dl.public.params.delta, {i: shares[i][k] for i in fewer})
        for k in range(3)
    ]
    assert all(g != m for g, m in zip(guess, msgs, strict=True))


@given(committees())
def test_optimistic_combination_agrees_on_honest_shares(c: tuple[int, int, list[int]]) -> None:
    t, members, order = c
    if t == members:
        return  # t + 1 shares do not exist
    dl = deal(t, members)
    msgs, cts = _ciphertexts(2)
    chosen = sorted(order[: t + 1])
    shares = {i: decryption_shares(dl.share(i), cts) for i in chosen}
    assert combine_optimistic(dl.public, shares) == msgs


def test_lagrange_coefficients_are_integers_summing_to_delta() -> None:
    mu = lagrange_coefficients([1, 2, 3], 120)
    assert mu == {1: 360, 2: -360, 3: 120} and sum(mu.values()) == 120


def _ctx(dl_member: int, committee_id: bytes, digest: bytes = b"\x01" * 32) -> ProofContext:
    return ProofContext(SESSION, 7, dl_member, committee_id, digest)


def test_proof_accepts_honest_shares_and_names_a_wrong_one() -> None:
    dl = deal(3, 5)
    tpk = dl.public
    _, cts = _ciphertexts(20)
    shares = decryption_shares(dl.share(4), cts)
    ctx = _ctx(4, tpk.committee_id)
    proof = prove_shares(dl.share(4), ctx, cts, shares)
    verify_shares(tpk, ctx, cts, shares, proof)
    for k in (0, 7, 19):  # one wrong share anywhere among 20 is caught by the one proof
        bad = list(shares)
        bad[k] = bad[k] * 4 % N2
        with pytest.raises(InvalidDecryptionShareError) as info:
            verify_shares(tpk, ctx, cts, bad, proof)
        assert info.value.member == 4


def test_proof_is_bound_to_its_context() -> None:
    dl = deal(3, 5)
    tpk = dl.public
    _, cts = _ciphertexts(4)
    shares = decryption_shares(dl.share(2), cts)
    ctx = _ctx(2, tpk.committee_id)
    proof = prove_shares(dl.share(2), ctx, cts, shares)
    for other in (
        ProofContext(SESSION, 8, 2, tpk.committee_id, ctx.ciphertext_digest),  # round
        ProofContext(b"another-session!", 7, 2, tpk.committee_id, ctx.ciphertext_digest),
        _ctx(2, tpk.committee_id, b"\x02" * 32),  # ciphertexts
        _ctx(3, tpk.committee_id),  # claimed by another member
    ):
        with pytest.raises(InvalidDecryptionShareError):
            verify_shares(tpk, other, cts, shares, proof)
    with pytest.raises(InvalidDecryptionShareError):
        verify_shares(tpk, ctx, cts, shares, BatchProof(proof.challenge, proof.response + 1))
    with pytest.raises(InvalidDecryptionShareError):  # another member's key share
        prove_shares(dl.share(3), ctx, cts, shares)


def test_shares_of_another_member_fail_its_proof() -> None:
    dl = deal(3, 5)
    _, cts = _ciphertexts(3)
    s1 = decryption_shares(dl.share(1), cts)
    ctx = _ctx(1, dl.public.committee_id)
    proof = prove_shares(dl.share(1), ctx, cts, s1)
    with pytest.raises(InvalidDecryptionShareError):
        verify_shares(dl.public, ctx, cts, decryption_shares(dl.share(2), cts), proof)


def test_optimistic_combination_exposes_one_wrong_share() -> None:
    dl = deal(3, 5)
    msgs, cts = _ciphertexts(3)
    shares = {i: decryption_shares(dl.share(i), cts) for i in (1, 2, 4, 5)}
    for bad_member in shares:
        tampered = {i: list(v) for i, v in shares.items()}
        tampered[bad_member][1] = tampered[bad_member][1] * pow(1 + N, 5, N2) % N2
        assert combine_optimistic(dl.public, tampered) is None
    assert combine_optimistic(dl.public, shares) == msgs


def test_two_coordinated_members_fool_the_optimistic_check_not_the_proofs() -> None:
    """The documented limit: members 2 and 4 (both in both subsets of {1, 2, 4, 5}) shift
    the plaintext consistently; only proof verification catches them."""
    dl = deal(3, 5)
    tpk = dl.public
    msgs, cts = _ciphertexts(1)
    shares = {i: decryption_shares(dl.share(i), cts) for i in (1, 2, 4, 5)}
    mu1, mu2 = lagrange_coefficients([1, 2, 4], 120), lagrange_coefficients([2, 4, 5], 120)
    a1, a2, b1, b2 = mu1[2], mu1[4], mu2[2], mu2[4]
    w = 1 + N  # shift inside the plaintext subgroup
    shares[2] = [shares[2][0] * pow(w, a2 - b2, N2) % N2]
    shares[4] = [shares[4][0] * pow(w, b1 - a1, N2) % N2]
    wrong = combine_optimistic(tpk, shares)
    assert wrong is not None and wrong != msgs  # both subsets agree on a wrong plaintext
    ctx = _ctx(2, tpk.committee_id)
    proof = prove_shares(dl.share(2), ctx, cts, decryption_shares(dl.share(2), cts))
    with pytest.raises(InvalidDecryptionShareError):
        verify_shares(tpk, ctx, cts, shares[2], proof)
