"""A committee member: a checking key holder that agrees with the others on what it decrypts.

Sans-I/O, bytes in and bytes out, in two exchanges per round (one more than the single
key holder's):

1. ``endorse(request)``: the request is the aggregator's ordinary decryption request
   (claimed product + every contribution). The member does what
   :class:`secagg.paillier.roles.KeyHolder` does - re-verifies at least
   ``min_contributors`` distinct contributions signed for this session and round,
   recomputes their product and refuses a mismatch - then records (round,
   contributor-set digest, product digest) in its state and signs that tuple (Ed25519).
2. ``release(share_request)``: the aggregator sends the product again with at least q
   endorsements from registered members on the *same* tuple (2q > l + t - 1). The
   member checks that it endorsed this tuple itself, that the product matches, and the
   q signatures, then releases its decryption shares with one batched proof, once.

Refusals, each named: another session; a round before its latest (a replay,
:class:`RoundAlreadyDecryptedError`); another contributor set or product in its
latest round (:class:`SecondSubsetError`); a second release; a product it never
verified (:class:`UnverifiedProductError`); fewer than q valid endorsements
(:class:`QuorumError`); and every refusal of the key holder. With t = l no agreement is
needed (every member's share is required anyway): :meth:`CommitteeMember.decrypt` does
both steps in one exchange.

The state (latest round, released flag, decrypted rounds) is exported as versioned
bytes (:func:`secagg.paillier.threshold_codec.encode_member_state`); a driver stores it
durably *before* sending the member's reply.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from secagg.context import canonical, check_session_id
from secagg.errors import SecAggError
from secagg.paillier.aggregate import multiply_ciphertexts
from secagg.paillier.codec import decode_ciphertexts, decode_request, encode_ciphertexts
from secagg.paillier.contribution import Roster, VerifiedContribution, open_contribution
from secagg.paillier.errors import (
    DuplicateContributionError,
    ForeignSessionError,
    InsufficientContributorsError,
    InvalidContributionError,
    PaillierConfigError,
    ProductMismatchError,
    QuorumError,
    RoundAlreadyDecryptedError,
    SecondSubsetError,
    SlotOverflowError,
    ThresholdConfigError,
    ThresholdFormatError,
    UnverifiedProductError,
)
from secagg.paillier.packing import PackingConfig
from secagg.paillier.roles import check_min_contributors
from secagg.paillier.threshold_codec import (
    MAX_HISTORY,
    Endorsement,
    MemberState,
    RoundRecord,
    ShareResponse,
    decode_endorsement,
    decode_member_state,
    decode_share_request,
    encode_endorsement,
    encode_member_state,
    encode_share_response,
)
from secagg.paillier.threshold_keys import KeyShare, ThresholdPublicKey
from secagg.paillier.threshold_proofs import ProofContext, decryption_shares, prove_shares

ENDORSE_LABEL = "secagg/paillier/threshold/endorse"
CONTRIBUTORS_LABEL = "secagg/paillier/threshold/contributor-set"

#: Member index -> Ed25519 verification key, provisioned out of band with the key shares.
MemberRegistry = Mapping[int, Ed25519PublicKey]


def contributors_digest(
    session_id: bytes, round_index: int, contributions: Mapping[int, bytes]
) -> bytes:
    """SHA-256 binding the round to its contributor ids and each contribution's bytes."""
    fields: list[bytes | int] = [session_id, round_index, len(contributions)]
    for cid in sorted(contributions):
        fields += [cid, hashlib.sha256(contributions[cid]).digest()]
    return hashlib.sha256(canonical(CONTRIBUTORS_LABEL, *fields)).digest()


def endorsed_bytes(
    session_id: bytes,
    round_index: int,
    member: int,
    committee_id: bytes,
    contributors: bytes,
    product: bytes,
) -> bytes:
    """The exact bytes an endorsement signature covers."""
    return canonical(
        ENDORSE_LABEL, session_id, round_index, member, committee_id, contributors, product
    )


def check_registry(tpk: ThresholdPublicKey, registry: MemberRegistry) -> dict[int, bytes]:
    """Validate a member registry (keys 1..l, Ed25519 keys); raw public keys by member."""
    out = {}
    for member, key in registry.items():
        tpk.params.check_member(member)
        if not isinstance(key, Ed25519PublicKey):
            raise ThresholdConfigError(f"registry entry of member {member} is not an Ed25519 key")
        out[member] = key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return out


def valid_endorsers(
    tpk: ThresholdPublicKey,
    registry: MemberRegistry,
    endorsements: Sequence[bytes],
    *,
    session_id: bytes,
    round_index: int,
    contributors: bytes,
    product: bytes,
) -> set[int]:
    """Distinct registered members whose endorsement of this exact tuple verifies.

    Raises :class:`QuorumError` on any endorsement that is malformed, for another tuple,
    from an unregistered member, duplicated, or badly signed.
    """
    seen: set[int] = set()
    for raw in endorsements:
        try:
            e = decode_endorsement(raw)
        except ThresholdFormatError as exc:
            raise QuorumError(f"malformed endorsement: {exc}") from exc
        same = (
            hmac.compare_digest(e.session_id, session_id)
            and e.round_index == round_index
            and hmac.compare_digest(e.committee_id, tpk.committee_id)
            and hmac.compare_digest(e.contributors_digest, contributors)
            and hmac.compare_digest(e.product_digest, product)
        )
        if not same:
            raise QuorumError(f"endorsement of member {e.member} is for another tuple")
        key = registry.get(e.member)
        if key is None or e.member in seen:
            raise QuorumError(f"endorsement of member {e.member}: unregistered or duplicated")
        try:
            key.verify(
                e.signature,
                endorsed_bytes(
                    session_id, round_index, e.member, e.committee_id, contributors, product
                ),
            )
        except InvalidSignature:
            raise QuorumError(f"endorsement of member {e.member} does not verify") from None
        seen.add(e.member)
    return seen


@dataclass(frozen=True)
class VerifiedRound:
    """A decryption request that passed every key-holder check, with its digests."""

    round_index: int
    contributors: tuple[int, ...]
    contributors_digest: bytes
    product: tuple[int, ...]
    product_bytes: bytes
    product_digest: bytes


def _open_all(
    payloads: Sequence[bytes],
    open_one: Callable[[bytes, int], VerifiedContribution],
    round_index: int,
) -> dict[int, VerifiedContribution]:
    """Open every contribution; any invalid or duplicated one refuses the whole request."""
    verified: dict[int, VerifiedContribution] = {}
    for payload in payloads:
        try:
            c = open_one(payload, round_index)
        except SecAggError as exc:
            raise InvalidContributionError(f"a contribution does not validate: {exc}") from exc
        if c.client_id in verified:
            raise InvalidContributionError(
                f"client {c.client_id} appears twice"
            ) from DuplicateContributionError(f"client {c.client_id} appears twice")
        verified[c.client_id] = c
    return verified


class CommitteeMember:
    """One member of a t-of-l committee: checks, agrees, then releases its share once."""

    def __init__(
        self,
        key_share: KeyShare,
        packing: PackingConfig,
        roster: Roster,
        registry: MemberRegistry,
        *,
        session_id: bytes,
        min_contributors: int,
        signing_key: Ed25519PrivateKey,
        state: bytes | None = None,
    ) -> None:
        tpk = key_share.public
        if tpk.public.bits != packing.key_bits:
            raise PaillierConfigError(
                f"packing is sized for {packing.key_bits}-bit keys, the key has {tpk.public.bits}"
            )
        raw = check_registry(tpk, registry)
        own = signing_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        if not hmac.compare_digest(raw.get(key_share.member, b""), own):
            raise ThresholdConfigError(
                f"member {key_share.member}'s signing key is not the one in the registry"
            )
        self._share = key_share
        self._signing_key = signing_key
        self.public_key = tpk
        self.member = key_share.member
        self.packing = packing
        self.roster = dict(roster)
        self.registry = dict(registry)
        self.session_id = check_session_id(session_id)
        self.min_contributors = check_min_contributors(min_contributors, packing)
        self._state = self._load_state(state)

    def _load_state(self, state: bytes | None) -> MemberState:
        if state is None:
            return MemberState(self.member, self.public_key.committee_id, self.session_id, None, ())
        s = decode_member_state(state)
        if s.member != self.member or not hmac.compare_digest(
            s.committee_id, self.public_key.committee_id
        ):
            raise ThresholdFormatError("member state belongs to another member or committee")
        if not hmac.compare_digest(s.session_id, self.session_id):
            raise ThresholdFormatError("member state belongs to another session")
        return s

    def export_state(self) -> bytes:
        """The member's persistent record as versioned bytes (store it before replying)."""
        return encode_member_state(self._state)

    @property
    def latest(self) -> RoundRecord | None:
        """The latest round this member endorsed, or ``None``."""
        return self._state.current

    # -- checks -----------------------------------------------------------------------

    def _check_round_order(self, round_index: int) -> None:
        cur = self._state.current
        if cur is not None and round_index < cur.round_index:
            raise RoundAlreadyDecryptedError(
                f"round {round_index} precedes round {cur.round_index}, this member's latest "
                "(a replay)"
            )

    def verify_request(self, request: bytes) -> VerifiedRound:
        """The key holder's checks on a decryption request; the verified product."""
        req = decode_request(request)
        if not hmac.compare_digest(req.session_id, self.session_id):
            raise ForeignSessionError("decryption request for another session")
        self._check_round_order(req.round_index)
        pk = self.public_key.public
        claimed = decode_ciphertexts(req.product, pk, self.packing)
        d = claimed.num_elements

        def open_one(payload: bytes, rnd: int) -> VerifiedContribution:
            return open_contribution(
                payload,
                session_id=self.session_id,
                round_index=rnd,
                public_key=pk,
                packing=self.packing,
                roster=self.roster,
                num_elements=d,
            )

        verified = _open_all(req.contributions, open_one, req.round_index)
        if len(verified) < self.min_contributors:
            raise InsufficientContributorsError(
                f"{len(verified)} distinct contributions, at least {self.min_contributors} are "
                "needed to decrypt a sum"
            )
        if len(verified) > self.packing.max_clients:
            raise SlotOverflowError(f"{len(verified)} contributions exceed max_clients")
        ids = tuple(sorted(verified))
        product = multiply_ciphertexts(pk, [verified[i].vector.ciphertexts for i in ids])
        mine = encode_ciphertexts(pk, self.packing, d, product)
        if not hmac.compare_digest(mine, req.product):
            raise ProductMismatchError(
                "the aggregator's product is not the product of the contributions it sent"
            )
        payloads = {i: verified[i].payload for i in ids}
        return VerifiedRound(
            req.round_index,
            ids,
            contributors_digest(self.session_id, req.round_index, payloads),
            tuple(product),
            mine,
            hashlib.sha256(mine).digest(),
        )

    def _admit(self, v: VerifiedRound) -> None:
        """Record the verified tuple as this round's; refuse another one in the same round."""
        self._check_round_order(v.round_index)
        cur = self._state.current
        if cur is not None and cur.round_index == v.round_index:
            same = hmac.compare_digest(
                cur.contributors_digest, v.contributors_digest
            ) and hmac.compare_digest(cur.product_digest, v.product_digest)
            if not same:
                raise SecondSubsetError(
                    f"round {v.round_index}: this member already endorsed another contributor "
                    "set or product; one subset per round"
                )
            return
        record = RoundRecord(v.round_index, v.contributors_digest, v.product_digest, False)
        self._state = MemberState(
            self.member, self._state.committee_id, self.session_id, record, self._state.decrypted
        )

    # -- the two exchanges ------------------------------------------------------------

    def endorse(self, request: bytes) -> bytes:
        """Exchange 1: verify the request, record its tuple, return a signed endorsement."""
        v = self.verify_request(request)
        self._admit(v)
        cid = self.public_key.committee_id
        sig = self._signing_key.sign(
            endorsed_bytes(
                self.session_id,
                v.round_index,
                self.member,
                cid,
                v.contributors_digest,
                v.product_digest,
            )
        )
        return encode_endorsement(
            Endorsement(
                self.session_id,
                v.round_index,
                self.member,
                cid,
                v.contributors_digest,
                v.product_digest,
                sig,
            )
        )

    def _current_for(self, round_index: int, contributors: bytes, product: bytes) -> RoundRecord:
        self._check_round_order(round_index)
        cur = self._state.current
        if cur is None or cur.round_index != round_index:
            raise UnverifiedProductError(
                f"round {round_index}: this member has not verified and endorsed its product"
            )
        if not (
            hmac.compare_digest(cur.contributors_digest, contributors)
            and hmac.compare_digest(cur.product_digest, product)
        ):
            raise SecondSubsetError(
                f"round {round_index}: the request names another contributor set or product "
                "than the one this member endorsed"
            )
        if cur.released:
            raise RoundAlreadyDecryptedError(
                f"round {round_index} was already decrypted by this member; once per round"
            )
        return cur

    def release(self, share_request: bytes) -> bytes:
        """Exchange 2: with q endorsements on the tuple this member endorsed, its shares."""
        req = decode_share_request(share_request)
        if not hmac.compare_digest(req.session_id, self.session_id):
            raise ForeignSessionError("share request for another session")
        cur = self._current_for(req.round_index, req.contributors_digest, req.product_digest)
        if not hmac.compare_digest(hashlib.sha256(req.product).digest(), cur.product_digest):
            raise ProductMismatchError("the product sent differs from the one endorsed")
        self._check_agreement(cur, req.endorsements)
        product = decode_ciphertexts(req.product, self.public_key.public, self.packing)
        return self._respond(cur, product.ciphertexts)

    def _check_agreement(self, cur: RoundRecord, endorsements: Sequence[bytes]) -> None:
        """Refuse unless q registered members endorsed this member's tuple (t < l)."""
        params = self.public_key.params
        if not params.requires_agreement:
            return
        endorsers = valid_endorsers(
            self.public_key,
            self.registry,
            endorsements,
            session_id=self.session_id,
            round_index=cur.round_index,
            contributors=cur.contributors_digest,
            product=cur.product_digest,
        )
        if len(endorsers) < params.quorum:
            raise QuorumError(
                f"{len(endorsers)} endorsements, a {params.threshold}-of-{params.members} "
                f"committee needs {params.quorum} (2q > l + t - 1)"
            )

    def decrypt(self, request: bytes) -> bytes:
        """One exchange, for t = l only: verify the request and release the shares."""
        params = self.public_key.params
        if params.requires_agreement:
            raise QuorumError(
                f"a {params.threshold}-of-{params.members} committee must agree first: "
                "endorse, then release with the endorsements"
            )
        v = self.verify_request(request)
        self._admit(v)
        cur = self._current_for(v.round_index, v.contributors_digest, v.product_digest)
        return self._respond(cur, v.product)

    def _respond(self, cur: RoundRecord, product: Sequence[int]) -> bytes:
        """Shares and proof; the state records the release before the bytes are returned."""
        tpk = self.public_key
        ctx = ProofContext(
            self.session_id, cur.round_index, self.member, tpk.committee_id, cur.product_digest
        )
        shares = decryption_shares(self._share, product)
        proof = prove_shares(self._share, ctx, product, shares)
        done = RoundRecord(cur.round_index, cur.contributors_digest, cur.product_digest, True)
        history = (*self._state.decrypted, (cur.round_index, cur.contributors_digest))
        self._state = MemberState(
            self.member, tpk.committee_id, self.session_id, done, history[-MAX_HISTORY:]
        )
        return encode_share_response(
            tpk,
            ShareResponse(
                self.session_id,
                cur.round_index,
                self.member,
                tpk.committee_id,
                cur.contributors_digest,
                cur.product_digest,
                tuple(shares),
                proof,
            ),
        )
