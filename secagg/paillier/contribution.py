"""Signed contributions: a client's ciphertext vector bound to its session, round and key.

The client signs, with Ed25519, ``canonical("secagg/paillier/contribution", session id,
round, client id, key id, SHA-256(ciphertext vector bytes))``. The aggregator checks the
signature before accepting a contribution, and the key holder checks it again before it
decrypts anything, so the aggregator can neither forge a client, nor replay a
contribution from another round or session, nor pass one client's ciphertext off as
several clients'.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from secagg.context import canonical, check_party, check_round, check_session_id
from secagg.paillier.codec import (
    CiphertextVector,
    ContributionMessage,
    decode_ciphertexts,
    decode_contribution,
    encode_contribution,
)
from secagg.paillier.errors import (
    ContributionSignatureError,
    SenderMismatchError,
    UnknownClientError,
    WrongRoundError,
)
from secagg.paillier.keys import PublicKey
from secagg.paillier.packing import PackingConfig

CONTRIBUTION_LABEL = "secagg/paillier/contribution"

#: Client id -> Ed25519 verification key, registered before the round (authentic PKI).
Roster = Mapping[int, Ed25519PublicKey]


def signed_bytes(
    session_id: bytes, round_index: int, client_id: int, key_id: bytes, ciphertexts: bytes
) -> bytes:
    """The exact bytes a contribution's signature covers."""
    digest = hashlib.sha256(ciphertexts).digest()
    return canonical(
        CONTRIBUTION_LABEL,
        check_session_id(session_id),
        check_round(round_index),
        check_party(client_id, "client"),
        key_id,
        digest,
    )


def sign_contribution(
    signing_key: Ed25519PrivateKey,
    *,
    session_id: bytes,
    round_index: int,
    client_id: int,
    public_key: PublicKey,
    ciphertexts: bytes,
) -> bytes:
    """Wrap an encoded ciphertext vector into a signed contribution message."""
    sig = signing_key.sign(
        signed_bytes(session_id, round_index, client_id, public_key.key_id, ciphertexts)
    )
    return encode_contribution(
        ContributionMessage(session_id, round_index, client_id, ciphertexts, sig)
    )


@dataclass(frozen=True)
class VerifiedContribution:
    """A contribution that passed every check, with its parsed ciphertexts."""

    client_id: int
    vector: CiphertextVector
    payload: bytes  # the contribution message exactly as received


def open_contribution(
    payload: bytes,
    *,
    session_id: bytes,
    round_index: int,
    public_key: PublicKey,
    packing: PackingConfig,
    roster: Roster,
    num_elements: int | None = None,
    sender: int | None = None,
) -> VerifiedContribution:
    """Parse and fully verify one contribution for this session and round.

    Checks, cheapest first: format, sender, session and round, roster membership,
    signature, then key id, layout, length and the range of every ciphertext. Raises the
    named error of the first check that fails.
    """
    msg = decode_contribution(payload)
    if sender is not None and msg.client_id != sender:
        raise SenderMismatchError(f"contribution from party {sender} names client {msg.client_id}")
    if not hmac.compare_digest(msg.session_id, session_id) or msg.round_index != round_index:
        raise WrongRoundError(
            f"contribution of client {msg.client_id} is bound to round {msg.round_index} of "
            "another session or round (replay)"
        )
    vk = roster.get(msg.client_id)
    if vk is None:
        raise UnknownClientError(f"client {msg.client_id} is not in this round's roster")
    try:
        vk.verify(
            msg.signature,
            signed_bytes(
                msg.session_id, msg.round_index, msg.client_id, public_key.key_id, msg.ciphertexts
            ),
        )
    except InvalidSignature:
        raise ContributionSignatureError(
            f"signature of client {msg.client_id}'s contribution does not verify"
        ) from None
    vector = decode_ciphertexts(msg.ciphertexts, public_key, packing, num_elements)
    return VerifiedContribution(msg.client_id, vector, bytes(payload))
