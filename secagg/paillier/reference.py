"""The plain per-element phe path: one ``EncryptedNumber`` per quantised float.

This is how phe is normally used, and the reference the packed path is checked and
benchmarked against: it encrypts the same signed fixed-point integers the packed encoder
produces (before the offset), one powmod per element, sums them with phe's ``+`` and
decrypts element by element, so its result must equal the packed path's exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from secagg.paillier.gmp import require_gmpy2
from secagg.paillier.keys import PrivateKey, PublicKey
from secagg.paillier.packing import IntArray


def encrypt_elements(public_key: PublicKey, values: IntArray) -> list[Any]:
    """One phe ``EncryptedNumber`` per signed integer of ``values``."""
    require_gmpy2()
    pk = public_key.to_phe()
    return [pk.encrypt(int(v)) for v in values]


def add_elements(vectors: Sequence[Sequence[Any]]) -> list[Any]:
    """Element-wise homomorphic sum of equally long lists of ``EncryptedNumber``."""
    total = list(vectors[0])
    for v in vectors[1:]:
        total = [a + b for a, b in zip(total, v, strict=True)]
    return total


def decrypt_elements(private_key: PrivateKey, summed: Sequence[Any]) -> IntArray:
    """Decrypt each ``EncryptedNumber`` (phe's own decryption) to a signed integer."""
    sk = private_key.to_phe()
    return np.array([int(sk.decrypt(c)) for c in summed], dtype=np.int64)


def reference_signed_sums(
    public_key: PublicKey, private_key: PrivateKey, signed_values: Sequence[IntArray]
) -> IntArray:
    """Encrypt, sum and decrypt signed quantised vectors the per-element way."""
    return decrypt_elements(
        private_key, add_elements([encrypt_elements(public_key, v) for v in signed_values])
    )
