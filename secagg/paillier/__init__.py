"""Paillier-encrypted summation: packed, parallel, and decrypted only as a checked sum.

Clients encrypt packed fixed-point updates under the key holder's public key; the
aggregator, holding only the public key, multiplies the ciphertexts; the key holder
recomputes that product from the signed contributions and decrypts only the sum. Entry
point: :func:`simulate`. Usage, roles and parameters: docs/paillier.md; threats:
threat_models/paillier.md.

Without a single key holder: a t-of-l committee of checking members
(:class:`CommitteeMember`) decrypts under a dealt threshold key
(:func:`generate_threshold_keypair`) whose clients' public key is the same
:class:`PublicKey`; entry point :func:`simulate_threshold`.
"""

from secagg.paillier.config import PaillierConfig
from secagg.paillier.encrypt import Encryptor, ObfuscatorStore
from secagg.paillier.keys import KeyPair, PrivateKey, PublicKey, generate_keypair
from secagg.paillier.packing import PackedEncoder, PackingConfig
from secagg.paillier.roles import AggregateOutcome, Aggregator, Client, KeyHolder
from secagg.paillier.simulate import simulate
from secagg.paillier.threshold_aggregator import ThresholdAggregator, ThresholdOutcome
from secagg.paillier.threshold_keys import (
    CommitteeParams,
    KeyShare,
    ThresholdDeal,
    ThresholdPublicKey,
    agreement_quorum,
    generate_threshold_keypair,
)
from secagg.paillier.threshold_member import CommitteeMember
from secagg.paillier.threshold_simulate import simulate_threshold

__all__ = [
    "AggregateOutcome",
    "Aggregator",
    "Client",
    "CommitteeMember",
    "CommitteeParams",
    "Encryptor",
    "KeyHolder",
    "KeyPair",
    "KeyShare",
    "ObfuscatorStore",
    "PackedEncoder",
    "PackingConfig",
    "PaillierConfig",
    "PrivateKey",
    "PublicKey",
    "ThresholdAggregator",
    "ThresholdDeal",
    "ThresholdOutcome",
    "ThresholdPublicKey",
    "agreement_quorum",
    "generate_keypair",
    "generate_threshold_keypair",
    "simulate",
    "simulate_threshold",
]
