"""Keys generated once per test session: small moduli keep property tests fast."""

from __future__ import annotations

import pytest

from secagg.paillier import KeyPair, generate_keypair


@pytest.fixture(scope="session")
def keypair() -> KeyPair:
    """A 1024-bit test key pair with the short-exponent base published."""
    return generate_keypair(1024, short_exponent=True, insecure_test_key=True)


@pytest.fixture(scope="session")
def small_keypair() -> KeyPair:
    """A 512-bit test key pair, for the many-example property tests."""
    return generate_keypair(512, insecure_test_key=True)


@pytest.fixture(scope="session")
def big_keypair() -> KeyPair:
    """A real 2048-bit key pair, only where the size itself matters."""
    return generate_keypair(2048)
