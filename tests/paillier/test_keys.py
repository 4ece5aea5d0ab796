"""Keys: allowed sizes, key id, CRT decryption, secrecy of the private key, gmpy2."""

from __future__ import annotations

import pickle

import numpy as np
import phe.util
import pytest
from hypothesis import given
from hypothesis import strategies as st

from secagg.errors import ConfigError, SecAggError
from secagg.paillier import Encryptor, KeyPair, PaillierConfig, generate_keypair, simulate
from secagg.paillier.errors import Gmpy2MissingError, KeySizeError, PublicKeyFormatError
from secagg.paillier.gmp import require_gmpy2
from secagg.paillier.keys import PublicKey, check_key_bits


def test_default_key_is_2048_bits(big_keypair: KeyPair) -> None:
    assert big_keypair.public.bits == 2048
    assert generate_keypair.__defaults__ == (2048,)


@pytest.mark.parametrize("bits", [2048, 3072])
def test_real_sizes_allowed(bits: int) -> None:
    assert check_key_bits(bits) == bits


@pytest.mark.parametrize("bits", [512, 1024, 1536, 4096, 2048.0, True])
def test_other_sizes_refused(bits: object) -> None:
    with pytest.raises(KeySizeError) as ei:
        check_key_bits(bits)
    assert isinstance(ei.value, ConfigError) and isinstance(ei.value, SecAggError)


def test_test_sizes_need_the_flag(small_keypair: KeyPair) -> None:
    with pytest.raises(KeySizeError):
        PublicKey(small_keypair.public.n)
    assert PublicKey(small_keypair.public.n, insecure_test_key=True) == small_keypair.public


def test_public_key_validation(keypair: KeyPair) -> None:
    n = keypair.public.n
    with pytest.raises(PublicKeyFormatError):
        PublicKey(n + 1, insecure_test_key=True)  # even
    with pytest.raises(PublicKeyFormatError):
        PublicKey(n, short_exponent_base=keypair.private.to_phe().p, insecure_test_key=True)
    with pytest.raises(PublicKeyFormatError):
        PublicKey(n, short_exponent_base=n * n, insecure_test_key=True)


def test_key_id_binds_modulus_and_base(keypair: KeyPair, small_keypair: KeyPair) -> None:
    pk = keypair.public
    assert len(pk.key_id) == 32
    assert pk.key_id == PublicKey(pk.n, pk.short_exponent_base, insecure_test_key=True).key_id
    assert pk.key_id != PublicKey(pk.n, insecure_test_key=True).key_id
    assert pk.key_id != small_keypair.public.key_id


@given(m=st.integers(min_value=0))
def test_crt_decryption_matches_phe(keypair: KeyPair, m: int) -> None:
    pk = keypair.public
    m %= pk.n
    c = pk.to_phe().raw_encrypt(m)
    assert keypair.private.raw_decrypt(c) == m == keypair.private.to_phe().raw_decrypt(c)


def test_private_key_is_never_pickled(keypair: KeyPair) -> None:
    with pytest.raises(TypeError, match="never pickled"):
        pickle.dumps(keypair.private)
    with pytest.raises(TypeError):
        pickle.dumps(keypair)
    assert str(keypair.private.to_phe().p) not in repr(keypair.private)
    pickle.loads(pickle.dumps(keypair.public))  # the public key travels freely


def test_refuses_to_run_without_gmpy2(monkeypatch: pytest.MonkeyPatch, keypair: KeyPair) -> None:
    """phe silently falls back to pure Python without gmpy2: every entry point refuses."""
    require_gmpy2()
    monkeypatch.setattr(phe.util, "HAVE_GMP", False)
    with pytest.raises(Gmpy2MissingError):
        require_gmpy2()
    with pytest.raises(Gmpy2MissingError):
        generate_keypair(2048)
    with pytest.raises(Gmpy2MissingError):
        Encryptor(keypair.public)
    with pytest.raises(Gmpy2MissingError):
        simulate(
            [np.zeros(3)] * 2,
            PaillierConfig(key_bits=1024, insecure_test_key=True),
            keypair=keypair,
        )
