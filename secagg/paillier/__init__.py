"""Paillier-encrypted summation: packed, parallel, and decrypted only as a checked sum.

Clients encrypt packed fixed-point updates under the key holder's public key; the
aggregator, holding only the public key, multiplies the ciphertexts; the key holder
recomputes that product from the signed contributions and decrypts only the sum. Entry
point: :func:`simulate`. Usage, roles and parameters: docs/paillier.md; threats:
threat_models/paillier.md.
"""

from secagg.paillier.config import PaillierConfig
from secagg.paillier.encrypt import Encryptor, ObfuscatorStore
from secagg.paillier.keys import KeyPair, PrivateKey, PublicKey, generate_keypair
from secagg.paillier.packing import PackedEncoder, PackingConfig
from secagg.paillier.roles import AggregateOutcome, Aggregator, Client, KeyHolder
from secagg.paillier.simulate import simulate

__all__ = [
    "AggregateOutcome",
    "Aggregator",
    "Client",
    "Encryptor",
    "KeyHolder",
    "KeyPair",
    "ObfuscatorStore",
    "PackedEncoder",
    "PackingConfig",
    "PaillierConfig",
    "PrivateKey",
    "PublicKey",
    "generate_keypair",
    "simulate",
]
