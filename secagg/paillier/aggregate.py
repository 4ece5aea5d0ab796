"""Homomorphic summation: the product of ciphertext vectors, element-wise mod n^2.

Multiplying Paillier ciphertexts adds their plaintexts, so the product of every client's
packed ciphertext vector encrypts the slot-wise sum of their updates. The product runs
over the whole vector at once (numpy object arrays of gmpy2 integers), one modular
multiplication per ciphertext and client.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from secagg.paillier.errors import LengthMismatchError
from secagg.paillier.gmp import require_gmpy2
from secagg.paillier.keys import PublicKey


def multiply_ciphertexts(pk: PublicKey, vectors: Sequence[Sequence[int]]) -> list[int]:
    """Element-wise product mod n^2 of equally long ciphertext vectors (their sum)."""
    if not vectors:
        raise LengthMismatchError("no ciphertext vectors to sum")
    gmpy2 = require_gmpy2()
    length = len(vectors[0])
    if any(len(v) != length for v in vectors):
        raise LengthMismatchError("ciphertext vectors of different lengths cannot be summed")
    n2 = gmpy2.mpz(pk.nsquare)
    acc = np.fromiter((gmpy2.mpz(c) for c in vectors[0]), dtype=object, count=length)
    for v in vectors[1:]:
        acc *= np.fromiter((gmpy2.mpz(c) for c in v), dtype=object, count=length)
        acc %= n2
    return [int(c) for c in acc]
