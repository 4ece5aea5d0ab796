"""Wire format: round trips, and every malformed message raises its named error."""

from __future__ import annotations

import struct

import pytest

from secagg.paillier import KeyPair, PackingConfig
from secagg.paillier.codec import (
    ContributionMessage,
    DecryptionRequest,
    decode_ciphertexts,
    decode_contribution,
    decode_public_key,
    decode_request,
    encode_ciphertexts,
    encode_contribution,
    encode_public_key,
    encode_request,
)
from secagg.paillier.errors import (
    CiphertextRangeError,
    KeyIdMismatchError,
    KeySizeError,
    LengthMismatchError,
    PaillierFormatError,
    PublicKeyFormatError,
)
from secagg.paillier.keys import PublicKey

D = 100


@pytest.fixture
def packing() -> PackingConfig:
    return PackingConfig(key_bits=1024, max_clients=8)


@pytest.fixture
def good(keypair: KeyPair, packing: PackingConfig) -> tuple[list[int], bytes]:
    pk = keypair.public.to_phe()
    cts = [int(pk.raw_encrypt(i + 1)) for i in range(packing.num_plaintexts(D))]
    return cts, encode_ciphertexts(keypair.public, packing, D, cts)


def test_public_key_round_trip(keypair: KeyPair) -> None:
    pk = keypair.public
    assert decode_public_key(encode_public_key(pk), insecure_test_key=True) == pk
    plain = PublicKey(pk.n, insecure_test_key=True)
    assert decode_public_key(encode_public_key(plain), insecure_test_key=True) == plain


def test_public_key_errors(keypair: KeyPair) -> None:
    data = encode_public_key(keypair.public)
    with pytest.raises(KeySizeError):
        decode_public_key(data)  # a 1024-bit key outside tests
    for bad in (
        data[:-1],
        data + b"\0",
        b"XXXX" + data[4:],
        data[:4] + b"\x02" + data[5:],
        data[:5] + b"\x02" + data[6:],
        data[:8] + b"\x07" + data[9:],
    ):
        with pytest.raises(PaillierFormatError):
            decode_public_key(bad, insecure_test_key=True)
    even = bytearray(data)
    even[9 + 127] &= 0xFE  # last byte of n: make it even
    with pytest.raises(PublicKeyFormatError):
        decode_public_key(bytes(even), insecure_test_key=True)


def test_ciphertexts_round_trip(
    keypair: KeyPair, packing: PackingConfig, good: tuple[list[int], bytes]
) -> None:
    cts, data = good
    v = decode_ciphertexts(data, keypair.public, packing, D)
    assert v.ciphertexts == tuple(cts) and v.num_elements == D
    assert len(data) == 6 + 46 + len(cts) * keypair.public.ciphertext_bytes


def test_wrong_key_id(
    keypair: KeyPair, small_keypair: KeyPair, packing: PackingConfig, good: tuple[list[int], bytes]
) -> None:
    other = PublicKey(keypair.public.n, insecure_test_key=True)  # same n, no DJN base
    with pytest.raises(KeyIdMismatchError):
        decode_ciphertexts(good[1], other, packing, D)


def test_wrong_length(
    keypair: KeyPair, packing: PackingConfig, good: tuple[list[int], bytes]
) -> None:
    with pytest.raises(LengthMismatchError):
        decode_ciphertexts(good[1], keypair.public, packing, D + 1)
    with pytest.raises(LengthMismatchError):
        decode_ciphertexts(
            good[1], keypair.public, PackingConfig(key_bits=1024, max_clients=2**9), D
        )
    with pytest.raises(LengthMismatchError):
        encode_ciphertexts(keypair.public, packing, D, good[0][:-1])
    # header says one ciphertext fewer than the length needs
    data = bytearray(good[1])
    struct.pack_into(">I", data, 6 + 32 + 8, len(good[0]) - 1)
    with pytest.raises(LengthMismatchError):
        decode_ciphertexts(bytes(data), keypair.public, packing, D)


@pytest.mark.parametrize("which", ["zero", "n2", "max", "factor"])
def test_ciphertext_outside_units_mod_n2(
    keypair: KeyPair, packing: PackingConfig, good: tuple[list[int], bytes], which: str
) -> None:
    pk = keypair.public
    bad = {
        "zero": 0,
        "n2": pk.nsquare,
        "max": 2 ** (8 * pk.ciphertext_bytes) - 1,
        "factor": keypair.private.to_phe().p * 12345,
    }[which]
    cts = list(good[0])
    cts[1] = bad
    body = b"".join(c.to_bytes(pk.ciphertext_bytes, "big") for c in cts)
    data = good[1][: len(good[1]) - len(body)] + body
    with pytest.raises(CiphertextRangeError):
        decode_ciphertexts(data, pk, packing, D)


def test_truncated_and_trailing(
    keypair: KeyPair, packing: PackingConfig, good: tuple[list[int], bytes]
) -> None:
    data = good[1]
    for bad in (data[:-1], data + b"\0", data[:10], b"", b"SAPH\x01\x03" + data[6:]):
        with pytest.raises(PaillierFormatError):
            decode_ciphertexts(bad, keypair.public, packing, D)
    with pytest.raises(PaillierFormatError):
        decode_ciphertexts("text", keypair.public, packing, D)  # type: ignore[arg-type]


def test_contribution_and_request_round_trip() -> None:
    m = ContributionMessage(b"s" * 16, 7, 3, b"body", b"\1" * 64)
    data = encode_contribution(m)
    assert decode_contribution(data) == m
    r = DecryptionRequest(b"s" * 16, 7, b"prod", (data, data))
    assert decode_request(encode_request(r)) == r
    for bad in (data[:-1], data + b"\0"):
        with pytest.raises(PaillierFormatError):
            decode_contribution(bad)
    with pytest.raises(PaillierFormatError, match="session"):
        decode_contribution(encode_contribution(m)[:6] + b"\x02ab" + data[6 + 17 :])
