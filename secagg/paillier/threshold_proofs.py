"""Decryption shares, their batched zero-knowledge proof, and their combination.

Member i's share of a ciphertext c is ``c_i = c^(2 Delta s_i) mod N^2``. Any t shares
combine with the integer Lagrange coefficients ``mu_i = Delta prod_(j != i) j / (j - i)``
into ``c' = prod c_i^(2 mu_i) = c^(4 Delta^2 d)``, and the plaintext is
``L(c') / (4 Delta^2) mod N`` (Fouque-Poupard-Stern; Damgard-Jurik, s = 1).

A member proves its shares correct with one non-interactive proof per round (not per
ciphertext): Fiat-Shamir coefficients ``rho_k`` (128 bits, derived from the transcript
*after* the shares are fixed) fold every ciphertext of the round into ``G = prod
(c_k^4)^rho_k`` and every share into ``Y = prod (c_(i,k)^2)^rho_k``, and the member proves
``log_v(v_i) = log_G(Y)`` (equality of discrete logs, Chaum-Pedersen as FPS adapt it to
the group of squares of Z*_(N^2), whose order has no prime factor below 2^127 at real key
sizes). A wrong share survives the folding with probability about 2^-128. The
transcript is domain separated with :func:`secagg.context.canonical` and binds session,
round, member, committee id (hence key id) and the hash of the round's ciphertexts.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from secagg.context import canonical, check_party, check_round, check_session_id
from secagg.paillier.errors import InvalidDecryptionShareError, NotEnoughSharesError
from secagg.paillier.gmp import require_gmpy2
from secagg.paillier.threshold_keys import KeyShare, ThresholdPublicKey

#: Fiat-Shamir challenge length (soundness error 2^-128 per proof).
CHALLENGE_BITS = 128
#: Length of each random-linear-combination coefficient (batching error about 2^-128).
BATCH_COEFF_BITS = 128
#: Statistical hiding of the secret exponent in the proof's response.
STATISTICAL_BITS = 128

_COEFF_LABEL = "secagg/paillier/threshold/batch-coefficients"
_CHALLENGE_LABEL = "secagg/paillier/threshold/proof-challenge"


@dataclass(frozen=True)
class ProofContext:
    """What a member's proof is bound to: session, round, member, committee, ciphertexts."""

    session_id: bytes
    round_index: int
    member: int
    committee_id: bytes
    ciphertext_digest: bytes  # SHA-256 of the encoded ciphertext vector (the product)

    def __post_init__(self) -> None:
        check_session_id(self.session_id)
        check_round(self.round_index)
        check_party(self.member, "member")


@dataclass(frozen=True)
class BatchProof:
    """A Fiat-Shamir proof (challenge e, response z) for all of a member's shares."""

    challenge: int
    response: int


def elements_digest(tpk: ThresholdPublicKey, elements: Sequence[int]) -> bytes:
    """SHA-256 over fixed-width big-endian elements of Z_(N^2)."""
    width = tpk.public.ciphertext_bytes
    h = hashlib.sha256()
    for x in elements:
        h.update(int(x).to_bytes(width, "big"))
    return h.digest()


def response_bits(tpk: ThresholdPublicKey) -> int:
    """Size of the proof's random nonce: |Delta s_i| + challenge + statistical bits."""
    secret_bits = 2 * tpk.public.bits + tpk.params.delta.bit_length()
    return secret_bits + CHALLENGE_BITS + STATISTICAL_BITS


def decryption_shares(key_share: KeyShare, ciphertexts: Sequence[int]) -> list[int]:
    """``c^(2 Delta s_i) mod N^2`` for every ciphertext (one full-size powmod each)."""
    gmpy2 = require_gmpy2()
    tpk = key_share.public
    n2 = gmpy2.mpz(tpk.public.nsquare)
    e = gmpy2.mpz(2 * tpk.params.delta * key_share.secret)
    return [int(gmpy2.powmod(gmpy2.mpz(c), e, n2)) for c in ciphertexts]


def _int_bytes(x: int, width: int) -> bytes:
    return int(x).to_bytes(width, "big")


def batch_coefficients(
    tpk: ThresholdPublicKey, ctx: ProofContext, shares_digest: bytes, count: int
) -> list[int]:
    """``count`` Fiat-Shamir coefficients of :data:`BATCH_COEFF_BITS` bits (SHAKE-256)."""
    seed = canonical(
        _COEFF_LABEL,
        ctx.session_id,
        ctx.round_index,
        ctx.member,
        ctx.committee_id,
        ctx.ciphertext_digest,
        shares_digest,
        count,
    )
    step = BATCH_COEFF_BITS // 8
    stream = hashlib.shake_256(seed).digest(step * count)
    return [int.from_bytes(stream[i : i + step], "big") for i in range(0, len(stream), step)]


def _fold(tpk: ThresholdPublicKey, elements: Sequence[int], power: int, coeffs: list[int]) -> Any:
    """``prod (x_k^power)^(rho_k) mod N^2``."""
    gmpy2 = require_gmpy2()
    n2 = gmpy2.mpz(tpk.public.nsquare)
    acc = gmpy2.mpz(1)
    for x, rho in zip(elements, coeffs, strict=True):
        acc = acc * gmpy2.powmod(gmpy2.mpz(x), power * rho, n2) % n2
    return acc


def _challenge(tpk: ThresholdPublicKey, ctx: ProofContext, *elements: Any) -> int:
    width = tpk.public.ciphertext_bytes
    enc = canonical(
        _CHALLENGE_LABEL,
        ctx.session_id,
        ctx.round_index,
        ctx.member,
        ctx.committee_id,
        ctx.ciphertext_digest,
        *(_int_bytes(x, width) for x in elements),
    )
    return int.from_bytes(hashlib.sha256(enc).digest()[: CHALLENGE_BITS // 8], "big")


def prove_shares(
    key_share: KeyShare, ctx: ProofContext, ciphertexts: Sequence[int], shares: Sequence[int]
) -> BatchProof:
    """The member's one proof that every share is ``c_k^(2 Delta s_i)``.

    Cost: one 130-bit powmod per ciphertext (folding G) plus three full-size powmods.
    """
    gmpy2 = require_gmpy2()
    tpk = key_share.public
    if ctx.member != key_share.member:
        raise InvalidDecryptionShareError(ctx.member, "proof context names another member")
    n2 = gmpy2.mpz(tpk.public.nsquare)
    x = gmpy2.mpz(tpk.params.delta * key_share.secret)  # log_v(v_i) = log_(c^4)(c_i^2)
    coeffs = batch_coefficients(tpk, ctx, elements_digest(tpk, shares), len(shares))
    g = _fold(tpk, ciphertexts, 4, coeffs)
    y = gmpy2.powmod(g, x, n2)  # = prod (c_(i,k)^2)^rho_k when the shares are honest
    v, vi = tpk.verification_base, tpk.verification_key(key_share.member)
    r = gmpy2.mpz(secrets.randbits(response_bits(tpk)))
    a, b = gmpy2.powmod(v, r, n2), gmpy2.powmod(g, r, n2)
    e = _challenge(tpk, ctx, v, vi, g, y, a, b)
    return BatchProof(e, int(r + e * x))


def verify_shares(
    tpk: ThresholdPublicKey,
    ctx: ProofContext,
    ciphertexts: Sequence[int],
    shares: Sequence[int],
    proof: BatchProof,
) -> None:
    """Check member ``ctx.member``'s proof; raise :class:`InvalidDecryptionShareError`
    naming the member when it fails."""
    gmpy2 = require_gmpy2()
    member = ctx.member
    if len(shares) != len(ciphertexts):
        raise InvalidDecryptionShareError(member, "share count differs from ciphertext count")
    if not 0 <= proof.challenge < 2**CHALLENGE_BITS or not 0 <= proof.response < 2 ** (
        response_bits(tpk) + 1
    ):
        raise InvalidDecryptionShareError(member, "proof values out of range")
    n2 = gmpy2.mpz(tpk.public.nsquare)
    coeffs = batch_coefficients(tpk, ctx, elements_digest(tpk, shares), len(shares))
    g = _fold(tpk, ciphertexts, 4, coeffs)
    y = _fold(tpk, shares, 2, coeffs)
    v, vi = tpk.verification_base, tpk.verification_key(member)
    e, z = gmpy2.mpz(proof.challenge), gmpy2.mpz(proof.response)
    try:
        a = gmpy2.powmod(v, z, n2) * gmpy2.powmod(vi, -e, n2) % n2
        b = gmpy2.powmod(g, z, n2) * gmpy2.powmod(y, -e, n2) % n2
    except (ZeroDivisionError, ValueError):  # a share that is not a unit mod N^2
        raise InvalidDecryptionShareError(member, "a share is not invertible mod N^2") from None
    if _challenge(tpk, ctx, v, vi, g, y, a, b) != proof.challenge:
        raise InvalidDecryptionShareError(member, "batched decryption proof does not verify")


# --- combination ---------------------------------------------------------------------


def lagrange_coefficients(subset: Sequence[int], delta: int) -> dict[int, int]:
    """Integer ``mu_i = Delta prod_(j in S, j != i) j / (j - i)`` for each i in S."""
    out = {}
    for i in subset:
        num, den = delta, 1
        for j in subset:
            if j != i:
                num *= j
                den *= j - i
        if num % den:
            raise NotEnoughSharesError(f"Delta does not clear the denominators of {subset}")
        out[i] = num // den
    return out


def _check_subset(tpk: ThresholdPublicKey, subset: Sequence[int]) -> None:
    params = tpk.params
    if len(subset) != params.threshold or len(set(subset)) != len(subset):
        raise NotEnoughSharesError(
            f"combination needs exactly {params.threshold} distinct members, got {list(subset)}"
        )
    for i in subset:
        params.check_member(i)


class _Combiner:
    """Folds t members' shares of one ciphertext into (A, B) with c' = A / B mod N^2."""

    def __init__(self, tpk: ThresholdPublicKey, subset: Sequence[int]) -> None:
        _check_subset(tpk, subset)
        mu = lagrange_coefficients(subset, tpk.params.delta)
        self.pos = [(i, 2 * c) for i, c in mu.items() if c > 0]
        self.neg = [(i, -2 * c) for i, c in mu.items() if c < 0]

    def fold(
        self, gmpy2: Any, n2: Any, shares: Mapping[int, Sequence[int]], k: int
    ) -> tuple[Any, Any]:
        a, b = gmpy2.mpz(1), gmpy2.mpz(1)
        for i, e in self.pos:
            a = a * gmpy2.powmod(shares[i][k], e, n2) % n2
        for i, e in self.neg:
            b = b * gmpy2.powmod(shares[i][k], e, n2) % n2
        return a, b


def _decrypt_folded(gmpy2: Any, n: Any, scale: Any, a: Any, b: Any, k: int) -> int:
    """``L(A / B) / (4 Delta^2) mod N`` with one inverse mod N instead of mod N^2.

    ``A = B (1 + N L) mod N^2`` gives ``(A - B) / N = B L mod N``; ``scale`` is
    ``(4 Delta^2)^-1 mod N``.
    """
    diff = (a - b) % (n * n)
    if diff % n:
        raise NotEnoughSharesError(f"combined shares of ciphertext {k} are not 1 mod N")
    try:
        inv_b = gmpy2.invert(b % n, n)
    except ZeroDivisionError:
        raise NotEnoughSharesError(f"a share of ciphertext {k} is not a unit") from None
    return int(diff // n * inv_b % n * scale % n)


def _scale(gmpy2: Any, tpk: ThresholdPublicKey) -> tuple[Any, Any, Any]:
    """(N, N^2, (4 Delta^2)^-1 mod N) as gmpy2 integers."""
    n = gmpy2.mpz(tpk.public.n)
    return n, n * n, gmpy2.invert(4 * tpk.params.delta**2, n)


def combine_shares(tpk: ThresholdPublicKey, shares: Mapping[int, Sequence[int]]) -> list[int]:
    """Plaintexts from exactly t members' shares (no proof checked: see the aggregator)."""
    gmpy2 = require_gmpy2()
    subset = sorted(shares)
    comb = _Combiner(tpk, subset)
    n, n2, scale = _scale(gmpy2, tpk)
    return [
        _decrypt_folded(gmpy2, n, scale, *comb.fold(gmpy2, n2, shares, k), k)
        for k in range(_share_count(shares))
    ]


def _share_count(shares: Mapping[int, Sequence[int]]) -> int:
    lengths = {len(v) for v in shares.values()}
    if len(lengths) != 1:
        raise NotEnoughSharesError("members sent share vectors of different lengths")
    return lengths.pop()


def combine_optimistic(
    tpk: ThresholdPublicKey, shares: Mapping[int, Sequence[int]]
) -> list[int] | None:
    """Combine two t-subsets of t + 1 members' shares; the plaintexts if they agree on
    every ciphertext, ``None`` if they disagree anywhere (then verify the proofs).

    Agreement is checked as ``A1 B2 = A2 B1 mod N^2`` (no inverse mod N^2). It exposes
    any single wrong share among the t + 1; two or more members that coordinate their
    errors can make both subsets agree on a wrong sum (see docs/paillier.md), which is
    why :func:`combine` offers ``verify="always"``.
    """
    gmpy2 = require_gmpy2()
    t = tpk.params.threshold
    members = sorted(shares)
    if len(members) != t + 1:
        raise NotEnoughSharesError(f"optimistic combination needs {t + 1} members' shares")
    first, second = _Combiner(tpk, members[:t]), _Combiner(tpk, members[1:])
    n, n2, scale = _scale(gmpy2, tpk)
    out = []
    for k in range(_share_count(shares)):
        a1, b1 = first.fold(gmpy2, n2, shares, k)
        a2, b2 = second.fold(gmpy2, n2, shares, k)
        if a1 * b2 % n2 != a2 * b1 % n2:
            return None
        try:
            out.append(_decrypt_folded(gmpy2, n, scale, a1, b1, k))
        except NotEnoughSharesError:
            return None
    return out
