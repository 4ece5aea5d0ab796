"""The aggregator's side of a committee round: collect, gather endorsements, combine.

:class:`ThresholdAggregator` wraps the ordinary :class:`secagg.paillier.roles.Aggregator`
(contributions are validated exactly as today) and adds the committee's exchanges:

1. :meth:`~ThresholdAggregator.request` - the ordinary decryption request, sent to
   every member; each answers with an endorsement (:meth:`receive_endorsement`);
2. :meth:`~ThresholdAggregator.share_request` - once q valid endorsements are in, the
   product and those endorsements, sent to the endorsers; each answers with its
   decryption shares and batched proof (:meth:`receive_share`);
3. :meth:`~ThresholdAggregator.finish` - optimistic combination of t + 1 shares (two
   t-subsets must agree), the proofs checked only when they disagree (or always, with
   ``verify="always"``); a member whose proof fails is named and excluded.

With t = l step 1 is skipped: members answer the request with shares directly.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from typing import Literal

from secagg.errors import SecAggError
from secagg.paillier.codec import (
    DecryptedSum,
    decode_ciphertexts,
    decode_request,
    encode_decrypted_sum,
)
from secagg.paillier.contribution import Roster
from secagg.paillier.errors import (
    InvalidDecryptionShareError,
    NotEnoughSharesError,
    PaillierConfigError,
    QuorumError,
    ThresholdFormatError,
    WrongRoundError,
)
from secagg.paillier.packing import PackingConfig
from secagg.paillier.roles import AggregateOutcome, Aggregator
from secagg.paillier.threshold_codec import (
    ShareRequest,
    ShareResponse,
    decode_share_response,
    encode_share_request,
)
from secagg.paillier.threshold_keys import ThresholdPublicKey
from secagg.paillier.threshold_member import MemberRegistry, contributors_digest, valid_endorsers
from secagg.paillier.threshold_proofs import (
    ProofContext,
    combine_optimistic,
    combine_shares,
    verify_shares,
)

Verify = Literal["optimistic", "always"]


@dataclass(frozen=True)
class ThresholdOutcome:
    """The round's sum, the members whose shares made it, and those excluded (why)."""

    outcome: AggregateOutcome
    members_used: tuple[int, ...]
    proofs_verified: bool
    excluded: dict[int, SecAggError] = field(default_factory=dict)


@dataclass(frozen=True)
class PendingRound:
    """What the aggregator sent in this round: the product and its digests."""

    request: bytes
    product: bytes
    ciphertexts: tuple[int, ...]
    contributors_digest: bytes
    product_digest: bytes


class ThresholdAggregator:
    """The aggregator of a committee round (holds the public key only)."""

    def __init__(
        self,
        public_key: ThresholdPublicKey,
        packing: PackingConfig,
        roster: Roster,
        registry: MemberRegistry,
        *,
        session_id: bytes,
        round_index: int,
        num_elements: int,
        min_contributors: int,
    ) -> None:
        self.public_key = public_key
        self.registry = dict(registry)
        self.inner = Aggregator(
            public_key.public,
            packing,
            roster,
            session_id=session_id,
            round_index=round_index,
            num_elements=num_elements,
            min_contributors=min_contributors,
        )
        self.session_id = self.inner.session_id
        self.round_index = self.inner.round_index
        self.endorsements: dict[int, bytes] = {}
        self.shares: dict[int, ShareResponse] = {}
        self.member_errors: dict[int, SecAggError] = {}
        self._pending: PendingRound | None = None

    def receive(self, sender: int, payload: bytes) -> bool:
        """One client's contribution (see :meth:`Aggregator.receive`)."""
        return self.inner.receive(sender, payload)

    def request(self) -> bytes:
        """The decryption request for every member (the ordinary one: product + contributions)."""
        raw = self.inner.request()
        req = decode_request(raw)
        payloads = {i: c.payload for i, c in self.inner.accepted.items()}
        vector = decode_ciphertexts(req.product, self.public_key.public, self.inner.packing)
        self._pending = PendingRound(
            raw,
            req.product,
            vector.ciphertexts,
            contributors_digest(self.session_id, self.round_index, payloads),
            hashlib.sha256(req.product).digest(),
        )
        return raw

    @property
    def pending(self) -> PendingRound:
        """This round's request, product and digests (after :meth:`request`)."""
        if self._pending is None:
            raise PaillierConfigError("no decryption request was made in this round")
        return self._pending

    def receive_endorsement(self, member: int, payload: bytes) -> bool:
        """Keep a member's endorsement if it verifies for this round's tuple."""
        p = self.pending
        try:
            ok = valid_endorsers(
                self.public_key,
                self.registry,
                [payload],
                session_id=self.session_id,
                round_index=self.round_index,
                contributors=p.contributors_digest,
                product=p.product_digest,
            )
            if ok != {member}:
                raise QuorumError(f"endorsement delivered by member {member} names {sorted(ok)}")
        except QuorumError as exc:
            self.member_errors[member] = exc
            return False
        self.endorsements[member] = payload
        return True

    def share_request(self) -> bytes:
        """The product and the q endorsements, for the endorsing members."""
        p = self.pending
        params = self.public_key.params
        if params.requires_agreement and len(self.endorsements) < params.quorum:
            raise QuorumError(
                f"{len(self.endorsements)} endorsements, the committee needs {params.quorum}"
            )
        ends = tuple(self.endorsements[m] for m in sorted(self.endorsements))
        return encode_share_request(
            ShareRequest(
                self.session_id,
                self.round_index,
                p.contributors_digest,
                p.product_digest,
                p.product,
                ends,
            )
        )

    def receive_share(self, member: int, payload: bytes) -> bool:
        """Keep a member's share response if it is well formed and for this round."""
        p = self.pending
        try:
            r = decode_share_response(payload, self.public_key)
            same = (
                r.member == member
                and hmac.compare_digest(r.session_id, self.session_id)
                and r.round_index == self.round_index
                and hmac.compare_digest(r.committee_id, self.public_key.committee_id)
                and hmac.compare_digest(r.contributors_digest, p.contributors_digest)
                and hmac.compare_digest(r.product_digest, p.product_digest)
            )
            if not same:
                raise WrongRoundError(f"share of member {member} is for another round or product")
            if len(r.shares) != len(p.ciphertexts):
                raise InvalidDecryptionShareError(member, "wrong number of shares")
        except (ThresholdFormatError, WrongRoundError, InvalidDecryptionShareError) as exc:
            self.member_errors[member] = exc
            return False
        self.shares[member] = r
        return True

    def _verified(self, p: PendingRound) -> tuple[list[int], dict[int, SecAggError]]:
        valid: list[int] = []
        bad: dict[int, SecAggError] = {}
        for m in sorted(self.shares):
            r = self.shares[m]
            ctx = ProofContext(
                self.session_id, self.round_index, m, self.public_key.committee_id, p.product_digest
            )
            try:
                verify_shares(self.public_key, ctx, p.ciphertexts, r.shares, r.proof)
            except InvalidDecryptionShareError as exc:
                bad[m] = exc
                continue
            valid.append(m)
        return valid, bad

    def finish(self, *, verify: Verify = "optimistic") -> ThresholdOutcome:
        """Combine the shares into the sum; exclude (and name) members with bad shares.

        Raises :class:`NotEnoughSharesError` (with ``excluded``) when fewer than t valid
        shares remain.
        """
        p = self.pending
        t = self.public_key.params.threshold
        got = {m: self.shares[m].shares for m in sorted(self.shares)}
        if len(got) < t:
            raise NotEnoughSharesError(f"{len(got)} shares, the committee needs {t}")
        if verify == "optimistic" and len(got) > t:
            first = sorted(got)[: t + 1]
            pts = combine_optimistic(self.public_key, {m: got[m] for m in first})
            if pts is not None:
                return ThresholdOutcome(self._decode(p, pts), tuple(first), False)
        valid, bad = self._verified(p)
        if len(valid) < t:
            raise NotEnoughSharesError(
                f"{len(valid)} valid shares, the committee needs {t}",
                {m: str(e) for m, e in bad.items()},
            )
        used = valid[:t]
        pts = combine_shares(self.public_key, {m: got[m] for m in used})
        return ThresholdOutcome(self._decode(p, pts), tuple(used), True, dict(bad))

    def _decode(self, p: PendingRound, plaintexts: list[int]) -> AggregateOutcome:
        """Hand the combined plaintexts to the ordinary aggregator's checked decoding."""
        inner = self.inner
        ids = tuple(sorted(inner.accepted))
        msg = DecryptedSum(
            self.session_id,
            self.round_index,
            self.public_key.public.key_id,
            inner.num_elements,
            ids,
            tuple(plaintexts),
        )
        return inner.finish(encode_decrypted_sum(self.public_key.public, inner.packing, msg))
