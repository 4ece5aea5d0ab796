"""Audit helper: a coalition of corrupt committee members and the aggregator attacks a round.

The coalition holds the key shares of ``corrupt`` members and plays the aggregator; the
other members are real :class:`CommitteeMember` objects it can only talk to in bytes.
Two goals, each *attempted*, the recovered values compared with the truth:

- ``"single"``: decrypt one client's contribution. Honest members are asked to endorse
  the victim's ciphertext passed off as the product (alone, or with every contribution);
  the corrupt members' shares of it are combined with whatever the honest members
  released.
- ``"difference"``: decrypt two subsets of one round (everyone, and everyone but the
  victim) and subtract. Two strategies: *sequential* (the full set first, then the
  subset) and *split view* (half of the honest members see each request; balanced is
  the coalition's best split, since each product needs its own endorsers).

With fewer than t shares of a product the coalition still combines what it has (the
Lagrange coefficients of the shares it holds, as if the threshold were that small) and
decodes the result; that is its best guess and its error is reported. With t corrupt
members the same code decrypts exactly: the control. ``agreement=False`` replaces the
honest members by members without the quorum rule (each still decrypts one subset per
round): the split view then succeeds with t - 1 corrupt members, which is why q exists.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from secagg.errors import SecAggError
from secagg.paillier.aggregate import multiply_ciphertexts
from secagg.paillier.codec import (
    DecryptionRequest,
    encode_ciphertexts,
    encode_request,
)
from secagg.paillier.contribution import VerifiedContribution, open_contribution
from secagg.paillier.gmp import require_gmpy2
from secagg.paillier.packing import IntArray, PackedEncoder, PackingConfig
from secagg.paillier.roles import Client
from secagg.paillier.threshold_codec import (
    Endorsement,
    ShareRequest,
    decode_share_response,
    encode_endorsement,
    encode_share_request,
)
from secagg.paillier.threshold_keys import ThresholdDeal
from secagg.paillier.threshold_member import (
    CommitteeMember,
    contributors_digest,
    endorsed_bytes,
)
from secagg.paillier.threshold_proofs import decryption_shares, lagrange_coefficients

Target = Literal["single", "difference"]
ROUND = 1


class _NoAgreementMember(CommitteeMember):
    """A checking member without the quorum rule (one subset per round only): the
    deliberately weak committee of the ``agreement=False`` control."""

    def _check_agreement(self, cur: object, endorsements: Sequence[bytes]) -> None:
        return None


@dataclass
class CoalitionReport:
    """What the coalition recovered of the victim's quantised update, and how well."""

    target: Target
    corrupt: tuple[int, ...]
    truth: IntArray
    recovered: IntArray
    shares_obtained: dict[str, tuple[int, ...]]  # product label -> members whose shares
    refusals: dict[str, str] = field(default_factory=dict)  # "member/product" -> error

    @property
    def exact_fraction(self) -> float:
        """Fraction of the victim's elements recovered exactly."""
        return float(np.mean(self.recovered == self.truth))

    @property
    def max_abs_error(self) -> int:
        """Largest error over the elements, in quanta."""
        return int(np.max(np.abs(self.recovered - self.truth)))

    @property
    def succeeded(self) -> bool:
        """True when every element of the victim's update was recovered exactly."""
        return bool(np.array_equal(self.recovered, self.truth))


class _Round:
    """Clients, members and the coalition of one attacked round."""

    def __init__(
        self, deal: ThresholdDeal, corrupt: Sequence[int], n: int, d: int, agreement: bool
    ):
        tpk = deal.public
        self.deal, self.tpk, self.d = deal, tpk, d
        self.corrupt = tuple(sorted(corrupt))
        self.packing = PackingConfig(key_bits=tpk.public.bits, value_bits=16, max_clients=n)
        self.session = os.urandom(16)
        rng = np.random.default_rng(0)
        client_keys = {i: Ed25519PrivateKey.generate() for i in range(n)}
        self.roster = {i: k.public_key() for i, k in client_keys.items()}
        self.member_keys = {m: Ed25519PrivateKey.generate() for m in tpk.params.member_ids}
        self.registry = {m: k.public_key() for m, k in self.member_keys.items()}
        updates = [rng.uniform(-1, 1, d) for _ in range(n)]
        enc = PackedEncoder(self.packing, rounding="nearest")
        self.truth = [enc.quantize(u) - self.packing.offset for u in updates]
        self.payloads = {}
        for i in range(n):
            c = Client(i, tpk.public, self.packing, signing_key=client_keys[i], rounding="nearest")
            self.payloads[i] = c.contribute(updates[i], session_id=self.session, round_index=ROUND)
        self.member_class = CommitteeMember if agreement else _NoAgreementMember
        self.honest = {
            m: self.new_member(m) for m in tpk.params.member_ids if m not in self.corrupt
        }

    def new_member(self, m: int) -> CommitteeMember:
        return self.member_class(
            self.deal.share(m),
            self.packing,
            self.roster,
            self.registry,
            session_id=self.session,
            min_contributors=2,
            signing_key=self.member_keys[m],
        )

    def opened(self, i: int) -> VerifiedContribution:
        return open_contribution(
            self.payloads[i],
            session_id=self.session,
            round_index=ROUND,
            public_key=self.tpk.public,
            packing=self.packing,
            roster=self.roster,
        )

    def product(self, ids: Sequence[int]) -> tuple[list[int], bytes]:
        """The product of the listed clients' ciphertexts, and its encoding."""
        cts = multiply_ciphertexts(
            self.tpk.public, [self.opened(i).vector.ciphertexts for i in ids]
        )
        return cts, encode_ciphertexts(self.tpk.public, self.packing, self.d, cts)

    def request(self, product: bytes, ids: Sequence[int]) -> bytes:
        contributions = tuple(self.payloads[i] for i in sorted(ids))
        return encode_request(DecryptionRequest(self.session, ROUND, product, contributions))


def _corrupt_endorsement(r: _Round, m: int, cs: bytes, pd: bytes) -> bytes:
    """A corrupt member signs whatever tuple the coalition wants."""
    cid = r.tpk.committee_id
    sig = r.member_keys[m].sign(endorsed_bytes(r.session, ROUND, m, cid, cs, pd))
    return encode_endorsement(Endorsement(r.session, ROUND, m, cid, cs, pd, sig))


def _gather(
    r: _Round,
    label: str,
    ids: Sequence[int],
    product_ids: Sequence[int],
    asked: Sequence[int],
    refusals: dict[str, str],
) -> dict[int, list[int]]:
    """Shares of the product over ``product_ids`` in a request listing ``ids``: the
    corrupt members' always, an ``asked`` honest member's only if it releases them."""
    cts, product = r.product(product_ids)
    request = r.request(product, ids)
    shares = {m: decryption_shares(r.deal.share(m), cts) for m in r.corrupt}
    replies: dict[int, bytes] = {}
    if not r.tpk.params.requires_agreement:
        for m in asked:
            _ask(replies, m, r.honest[m].decrypt, request, label, refusals)
    else:
        cs = contributors_digest(r.session, ROUND, {i: r.payloads[i] for i in ids})
        pd = hashlib.sha256(product).digest()
        ends = {m: _corrupt_endorsement(r, m, cs, pd) for m in r.corrupt}
        for m in asked:
            _ask(ends, m, r.honest[m].endorse, request, label, refusals)
        second = encode_share_request(
            ShareRequest(r.session, ROUND, cs, pd, product, tuple(ends[m] for m in sorted(ends)))
        )
        for m in asked:
            if m in ends:
                _ask(replies, m, r.honest[m].release, second, label, refusals)
    for m, reply in replies.items():
        shares[m] = list(decode_share_response(reply, r.tpk).shares)
    return shares


def _ask(
    into: dict[int, bytes],
    member: int,
    call: Callable[[bytes], bytes],
    message: bytes,
    label: str,
    refusals: dict[str, str],
) -> None:
    """Send one message to an honest member; keep its answer or its named refusal."""
    try:
        into[member] = call(message)
    except SecAggError as exc:
        refusals[f"{member}/{label}"] = f"{type(exc).__name__}: {exc}"


def best_effort_plaintexts(r: _Round, shares: dict[int, list[int]]) -> list[int]:
    """Combine whatever shares the coalition holds (at most t of them, Lagrange over the
    members it has) and read the plaintext as if the combination were valid."""
    gmpy2 = require_gmpy2()
    t = r.tpk.params.threshold
    members = sorted(shares)[:t]
    if not members:
        return [0] * r.packing.num_plaintexts(r.d)
    mu = lagrange_coefficients(members, r.tpk.params.delta)
    n = gmpy2.mpz(r.tpk.public.n)
    n2 = n * n
    scale = gmpy2.invert(4 * r.tpk.params.delta**2, n)
    out = []
    for k in range(len(shares[members[0]])):
        acc = gmpy2.mpz(1)
        for m in members:
            acc = acc * gmpy2.powmod(shares[m][k], 2 * mu[m], n2) % n2
        out.append(int((acc - 1) // n * scale % n))
    return out


def _slots(r: _Round, plaintexts: list[int]) -> IntArray:
    """Raw slot values of packed plaintexts (no range check: the attacker reads anything)."""
    bits, mask = r.packing.slot_bits, (1 << r.packing.slot_bits) - 1
    vals = [(p >> (j * bits)) & mask for p in plaintexts for j in range(r.packing.slots)]
    return np.array(vals[: r.d], dtype=np.int64)


def _single(
    r: _Round, victim: int, refusals: dict[str, str]
) -> tuple[IntArray, dict[str, tuple[int, ...]]]:
    """The victim's ciphertext, alone or passed off as the sum of everyone's."""
    honest = sorted(r.honest)
    alone = _gather(r, "victim-alone", [victim], [victim], honest, refusals)
    disguised = _gather(r, "victim-as-sum", sorted(r.payloads), [victim], honest, refusals)
    best = max((alone, disguised), key=len)
    got = {"victim-alone": tuple(sorted(alone)), "victim-as-sum": tuple(sorted(disguised))}
    return _slots(r, best_effort_plaintexts(r, best)) - r.packing.offset, got


def run_coalition_attack(
    deal: ThresholdDeal,
    corrupt: Sequence[int],
    *,
    target: Target,
    victim: int = 0,
    clients: int = 4,
    elements: int = 40,
    agreement: bool = True,
) -> CoalitionReport:
    """Run the attack against real members and report what the coalition recovered."""
    r = _Round(deal, corrupt, clients, elements, agreement)
    refusals: dict[str, str] = {}
    if target == "single":
        recovered, got = _single(r, victim, refusals)
    else:
        recovered, got = _best_difference(r, victim, refusals)
    return CoalitionReport(target, r.corrupt, r.truth[victim], recovered, got, refusals)


def _best_difference(
    r: _Round, victim: int, refusals: dict[str, str]
) -> tuple[IntArray, dict[str, tuple[int, ...]]]:
    """Sequential, then split view on a fresh committee; the audit keeps the better."""
    everyone = sorted(r.payloads)
    rest = [i for i in everyone if i != victim]
    honest = sorted(r.honest)
    half = (len(honest) + 1) // 2
    outcomes = []
    for tag, asked_full, asked_part in (
        ("", honest, honest),
        ("split-", honest[:half], honest[half:]),
    ):
        r.honest = {m: r.new_member(m) for m in honest}  # a fresh committee per strategy
        full = _gather(r, f"{tag}full", everyone, everyone, asked_full, refusals)
        part = _gather(r, f"{tag}subset", rest, rest, asked_part, refusals)
        gap = _slots(r, best_effort_plaintexts(r, full)) - _slots(
            r, best_effort_plaintexts(r, part)
        )
        got = {f"{tag}full": tuple(sorted(full)), f"{tag}subset": tuple(sorted(part))}
        outcomes.append((gap - r.packing.offset, got))
    truth = r.truth[victim]
    return max(outcomes, key=lambda o: float(np.mean(o[0] == truth)))
