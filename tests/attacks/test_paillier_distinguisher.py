"""What a Paillier aggregator sees: ciphertexts that tell nothing about the plaintexts.

Left-or-right game: the adversary picks two packed plaintexts (all-zero slots and
all-maximum slots), the challenger encrypts one, and the adversary tries every
structural shortcut a Paillier implementation can leave open: a missing obfuscator
(c = 1 + m n mod n^2 decodes directly) and an obfuscator reused with a ciphertext of a
known plaintext (their ratio is (1 + n)^(m - m') and decodes). Both broken encryptors
are distinguished with advantage 1; the project's encryptor gives the same adversary no
advantage beyond sampling noise.
"""

from __future__ import annotations

import secrets

import pytest

from protocols.attacks.distinguishers import ind_advantage
from secagg.paillier import generate_keypair
from secagg.paillier.encrypt import Encryptor

GUARANTEES = ("G1",)
TRIALS = 40


@pytest.fixture(scope="module")
def key():  # type: ignore[no-untyped-def]
    return generate_keypair(512, insecure_test_key=True).public


def _decode_if_trivial(c: int, n: int) -> int | None:
    """m if c = 1 + m n (mod n^2), i.e. c carries no obfuscation; else None."""
    return (c - 1) // n if (c - 1) % n == 0 else None


def _adversary(c: int, n: int, reference: tuple[int, int], candidates: tuple[int, int]) -> int:
    """Guess which candidate plaintext ``c`` encrypts (0 when no shortcut works)."""
    n2 = n * n
    m = _decode_if_trivial(c, n)
    if m is None:  # a reused obfuscator: c / c_ref = (1 + n)^(m - m_ref)
        c_ref, m_ref = reference
        diff = _decode_if_trivial(c * pow(c_ref, -1, n2) % n2, n)
        if diff is not None:
            m = (diff + m_ref) % n
    if m in candidates:
        return candidates.index(m)
    return 0  # a fixed guess: against alternating secret bits it has advantage exactly 0


def _game(encrypt, n: int) -> float:  # type: ignore[no-untyped-def]
    lo, hi = 0, n - 1  # extreme packed plaintexts: every slot empty, every bit set
    known = 12345
    reference = (encrypt(known), known)

    def play(trial: int, b: int) -> tuple[int, int]:
        c = encrypt((lo, hi)[b])
        return b, _adversary(c, n, reference, (lo, hi))

    return ind_advantage(play, TRIALS)


def test_broken_paillier_encryptors_are_distinguished(key) -> None:  # type: ignore[no-untyped-def]
    n = key.n
    n2 = n * n

    def no_obfuscation(m: int) -> int:
        return (1 + m * n) % n2

    fixed_r = pow(secrets.randbelow(n - 2) + 2, n, n2)

    def reused_obfuscator(m: int) -> int:
        return (1 + m * n) * fixed_r % n2

    assert _game(no_obfuscation, n) == 1.0
    assert _game(reused_obfuscator, n) == 1.0


def test_project_encryptor_gives_no_advantage(key) -> None:  # type: ignore[no-untyped-def]
    enc = Encryptor(key, workers=1)

    def encrypt(m: int) -> int:
        return enc.encrypt([m])[0]

    # no shortcut ever applies to a freshly obfuscated ciphertext: the adversary falls
    # back to its fixed guess, which is right exactly half the time
    assert _game(encrypt, key.n) == 0.0
