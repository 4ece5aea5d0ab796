"""The three parties of the Paillier backend, as sans-I/O objects (bytes in, bytes out).

- :class:`Client` quantises, packs and encrypts its update and signs the result.
- :class:`Aggregator` holds only the public key: it validates each contribution (a bad
  one excludes that client, never the round), multiplies the valid ciphertexts and hands
  the key holder its product together with every contribution it used.
- :class:`KeyHolder` holds the private key (a trusted key authority, or one designated
  client). It never decrypts what it is given: it re-verifies at least
  ``min_contributors`` distinct signed contributions for the current round, recomputes
  their product itself, refuses if the aggregator's product differs, decrypts only its
  own product, and only once per round.

The aggregator and the key holder must not collude: together they can decrypt any
single client's ciphertext. See threat_models/paillier.md.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from secagg.context import check_party, check_round, check_session_id
from secagg.encoding import Rounding
from secagg.errors import SecAggError
from secagg.paillier.aggregate import multiply_ciphertexts
from secagg.paillier.codec import (
    DecryptedSum,
    DecryptionRequest,
    decode_ciphertexts,
    decode_decrypted_sum,
    decode_request,
    encode_ciphertexts,
    encode_decrypted_sum,
    encode_request,
)
from secagg.paillier.contribution import (
    Roster,
    VerifiedContribution,
    open_contribution,
    sign_contribution,
)
from secagg.paillier.encrypt import Encryptor, ObfuscatorStore
from secagg.paillier.errors import (
    DecodeRangeError,
    DuplicateContributionError,
    ForeignSessionError,
    InsufficientContributorsError,
    InvalidContributionError,
    PaillierConfigError,
    ProductMismatchError,
    RoundAlreadyDecryptedError,
    SlotOverflowError,
    WrongRoundError,
)
from secagg.paillier.keys import KeyPair, PublicKey
from secagg.paillier.packing import IntArray, PackedEncoder, PackingConfig

#: A sum over fewer than two clients is one client's update.
MIN_CONTRIBUTORS_FLOOR = 2


def check_min_contributors(min_contributors: object, packing: PackingConfig) -> int:
    """Validate ``min_contributors``: at least 2, at most the packing's ``max_clients``."""
    if (
        isinstance(min_contributors, bool)
        or not isinstance(min_contributors, int)
        or not MIN_CONTRIBUTORS_FLOOR <= min_contributors <= packing.max_clients
    ):
        raise PaillierConfigError(
            f"min_contributors must be an int in [{MIN_CONTRIBUTORS_FLOOR}, "
            f"{packing.max_clients}], got {min_contributors!r}"
        )
    return min_contributors


def _check_key_matches(public_key: PublicKey, packing: PackingConfig) -> None:
    if public_key.bits != packing.key_bits:
        raise PaillierConfigError(
            f"packing is sized for {packing.key_bits}-bit keys, the key has {public_key.bits}"
        )


class Client:
    """One client: encodes, encrypts and signs its update for a round."""

    def __init__(
        self,
        client_id: int,
        public_key: PublicKey,
        packing: PackingConfig,
        *,
        signing_key: Ed25519PrivateKey | None = None,
        rounding: Rounding = "stochastic",
        encryptor: Encryptor | None = None,
    ) -> None:
        _check_key_matches(public_key, packing)
        self.client_id = check_party(client_id, "client")
        self.public_key = public_key
        self.packing = packing
        self.encoder = PackedEncoder(packing, rounding=rounding)
        self._signing_key = signing_key or Ed25519PrivateKey.generate()
        self.encryptor = encryptor or Encryptor(public_key)

    @property
    def verification_key(self) -> Ed25519PublicKey:
        """The Ed25519 key to register in the round's roster."""
        return self._signing_key.public_key()

    def contribute(
        self,
        update: npt.ArrayLike,
        *,
        session_id: bytes,
        round_index: int,
        rng: np.random.Generator | None = None,
        obfuscators: ObfuscatorStore | None = None,
    ) -> bytes:
        """The signed contribution message for ``update`` in this session and round.

        Raises :class:`secagg.errors.NonFiniteInputError` on NaN/Inf and
        :class:`secagg.errors.EncodingError` on a malformed vector.
        """
        values = self.encoder.quantize(update, rng=rng)
        plaintexts = self.encoder.pack(values)
        cts = self.encryptor.encrypt(plaintexts, obfuscators=obfuscators)
        body = encode_ciphertexts(self.public_key, self.packing, values.size, cts)
        return sign_contribution(
            self._signing_key,
            session_id=session_id,
            round_index=round_index,
            client_id=self.client_id,
            public_key=self.public_key,
            ciphertexts=body,
        )


@dataclass(frozen=True)
class AggregateOutcome:
    """What the aggregator learns at the end of a round: the sum and who is in it."""

    contributors: tuple[int, ...]
    signed_sums: IntArray  # sum of the signed quantised values (in quanta)
    sum: npt.NDArray[np.float64]


class Aggregator:
    """Collects contributions, multiplies them, and asks the key holder for the sum."""

    def __init__(
        self,
        public_key: PublicKey,
        packing: PackingConfig,
        roster: Roster,
        *,
        session_id: bytes,
        round_index: int,
        num_elements: int,
        min_contributors: int,
    ) -> None:
        _check_key_matches(public_key, packing)
        self.public_key = public_key
        self.packing = packing
        self.roster = dict(roster)
        self.session_id = check_session_id(session_id)
        self.round_index = check_round(round_index)
        self.num_elements = num_elements
        self.min_contributors = check_min_contributors(min_contributors, packing)
        self.encoder = PackedEncoder(packing)
        self.accepted: dict[int, VerifiedContribution] = {}
        self.rejected: dict[int, SecAggError] = {}
        self._requested: tuple[int, ...] | None = None

    def receive(self, sender: int, payload: bytes) -> bool:
        """Validate one client's contribution; a bad one excludes only that client.

        Returns whether it was accepted; the reason for a rejection is kept in
        :attr:`rejected` (a named :class:`secagg.errors.SecAggError`).
        """
        if sender in self.rejected:
            return False
        if sender in self.accepted:
            del self.accepted[sender]
            self.rejected[sender] = DuplicateContributionError(
                f"client {sender} sent a second contribution; both are discarded"
            )
            return False
        try:
            c = open_contribution(
                payload,
                session_id=self.session_id,
                round_index=self.round_index,
                public_key=self.public_key,
                packing=self.packing,
                roster=self.roster,
                num_elements=self.num_elements,
                sender=sender,
            )
        except SecAggError as exc:
            self.rejected[sender] = exc
            return False
        self.accepted[sender] = c
        return True

    def request(self) -> bytes:
        """The decryption request: the product of all accepted contributions, and them.

        Raises :class:`InsufficientContributorsError` with fewer than ``min_contributors``
        accepted contributions (the round fails; nothing is sent).
        """
        ids = tuple(sorted(self.accepted))
        if len(ids) < self.min_contributors:
            raise InsufficientContributorsError(
                f"{len(ids)} valid contributions, the round needs {self.min_contributors}"
            )
        if len(ids) > self.packing.max_clients:
            raise SlotOverflowError(f"{len(ids)} contributions exceed max_clients")
        product = multiply_ciphertexts(
            self.public_key, [self.accepted[i].vector.ciphertexts for i in ids]
        )
        body = encode_ciphertexts(self.public_key, self.packing, self.num_elements, product)
        self._requested = ids
        return encode_request(
            DecryptionRequest(
                self.session_id,
                self.round_index,
                body,
                tuple(self.accepted[i].payload for i in ids),
            )
        )

    def finish(self, response: bytes) -> AggregateOutcome:
        """Decode the key holder's decrypted sum into the float sum of the contributors."""
        if self._requested is None:
            raise PaillierConfigError("no decryption was requested in this round")
        m = decode_decrypted_sum(response, self.public_key, self.packing)
        same_session = hmac.compare_digest(m.session_id, self.session_id)
        if not same_session or m.round_index != self.round_index:
            raise WrongRoundError("decrypted sum belongs to another session or round")
        if m.num_elements != self.num_elements or m.contributors != self._requested:
            raise DecodeRangeError("decrypted sum covers other contributors or another length")
        sums = self.encoder.unpack_sums(list(m.plaintexts), m.num_elements, len(m.contributors))
        count = len(m.contributors)
        return AggregateOutcome(
            m.contributors,
            self.encoder.signed_sums(sums, count),
            self.encoder.decode_sums(sums, count),
        )


class KeyHolder:
    """Holds the private key and decrypts only sums it has recomputed and checked."""

    def __init__(
        self,
        keypair: KeyPair,
        packing: PackingConfig,
        roster: Roster,
        *,
        session_id: bytes,
        min_contributors: int,
    ) -> None:
        _check_key_matches(keypair.public, packing)
        self._keypair = keypair
        self.public_key = keypair.public
        self.packing = packing
        self.roster = dict(roster)
        self.session_id = check_session_id(session_id)
        self.min_contributors = check_min_contributors(min_contributors, packing)
        self.last_round: int | None = None

    def decrypt(self, request: bytes) -> bytes:
        """Answer a decryption request with the decrypted sum, or refuse.

        Refusals (each a :class:`secagg.paillier.errors.DecryptionRefusedError`, or a
        :class:`PaillierFormatError` for unreadable bytes): another session, a round
        not after the last one decrypted, an invalid or duplicated contribution, fewer
        than ``min_contributors`` contributions, or a claimed product that is not the
        product of the contributions.
        """
        req = decode_request(request)
        if not hmac.compare_digest(req.session_id, self.session_id):
            raise ForeignSessionError("decryption request for another session")
        if self.last_round is not None and req.round_index <= self.last_round:
            raise RoundAlreadyDecryptedError(
                f"round {req.round_index} is not after round {self.last_round}, the last one "
                "decrypted; each round is decrypted once"
            )
        claimed = decode_ciphertexts(req.product, self.public_key, self.packing)
        d = claimed.num_elements
        verified: dict[int, VerifiedContribution] = {}
        for payload in req.contributions:
            try:
                c = open_contribution(
                    payload,
                    session_id=self.session_id,
                    round_index=req.round_index,
                    public_key=self.public_key,
                    packing=self.packing,
                    roster=self.roster,
                    num_elements=d,
                )
            except SecAggError as exc:
                raise InvalidContributionError(f"a contribution does not validate: {exc}") from exc
            if c.client_id in verified:
                raise InvalidContributionError(
                    f"client {c.client_id} appears twice"
                ) from DuplicateContributionError(f"client {c.client_id} appears twice")
            verified[c.client_id] = c
        if len(verified) < self.min_contributors:
            raise InsufficientContributorsError(
                f"{len(verified)} distinct contributions, at least {self.min_contributors} are "
                "needed to decrypt a sum"
            )
        if len(verified) > self.packing.max_clients:
            raise SlotOverflowError(f"{len(verified)} contributions exceed max_clients")
        ids = tuple(sorted(verified))
        product = multiply_ciphertexts(
            self.public_key, [verified[i].vector.ciphertexts for i in ids]
        )
        mine = encode_ciphertexts(self.public_key, self.packing, d, product)
        theirs = encode_ciphertexts(self.public_key, self.packing, d, claimed.ciphertexts)
        if not hmac.compare_digest(mine, theirs):
            raise ProductMismatchError(
                "the aggregator's product is not the product of the contributions it sent"
            )
        private = self._keypair.private
        plaintexts = tuple(private.raw_decrypt(c) for c in product)
        self.last_round = req.round_index
        return encode_decrypted_sum(
            self.public_key,
            self.packing,
            DecryptedSum(
                self.session_id, req.round_index, self.public_key.key_id, d, ids, plaintexts
            ),
        )
