"""Key agreement, KDF, AEAD and signatures: RFC vectors and context binding."""

from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from secagg import crypto
from secagg.context import RoundContext
from secagg.errors import DecryptionError, KeyFormatError, SignatureError

CTX = RoundContext(b"session-0000-0001", 5)


# --- known answers ---------------------------------------------------------------------


def test_x25519_rfc7748_section_5_2() -> None:
    scalar = bytes.fromhex("a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4")
    u = bytes.fromhex("e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c")
    out = bytes.fromhex("c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552")
    assert crypto.x25519_exchange(scalar, u) == out


def test_x25519_rfc7748_section_6_1_diffie_hellman() -> None:
    a_priv = bytes.fromhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
    a_pub = bytes.fromhex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
    b_priv = bytes.fromhex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb")
    b_pub = bytes.fromhex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
    shared = bytes.fromhex("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742")
    alice = crypto.AgreementKeyPair.from_private_bytes(a_priv)
    bob = crypto.AgreementKeyPair.from_private_bytes(b_priv)
    assert alice.public_bytes == a_pub and bob.public_bytes == b_pub
    assert alice.exchange(b_pub) == shared == bob.exchange(a_pub)


def test_hkdf_rfc5869_test_case_1() -> None:
    okm = crypto.hkdf(
        bytes.fromhex("0b" * 22),
        bytes.fromhex("f0f1f2f3f4f5f6f7f8f9"),
        length=42,
        salt=bytes.fromhex("000102030405060708090a0b0c"),
    )
    assert okm.hex() == (
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
    )


def test_ed25519_rfc8032_test_1() -> None:
    sk = crypto.SigningKey.from_private_bytes(
        bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
    )
    pk = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
    sig = bytes.fromhex(
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bac"
        "c61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
    )
    assert sk.public_bytes == pk
    assert sk.sign(b"") == sig
    crypto.verify_signature(pk, sig, b"")


# --- X25519 hygiene -------------------------------------------------------------------


@pytest.mark.parametrize("point", [bytes(32), (1).to_bytes(32, "little")])
def test_low_order_points_are_refused(point: bytes) -> None:
    with pytest.raises(KeyFormatError):
        crypto.AgreementKeyPair.generate().exchange(point)


@pytest.mark.parametrize("bad", [b"", b"x" * 31, b"x" * 33, "x" * 32])
def test_bad_key_lengths(bad: object) -> None:
    with pytest.raises(KeyFormatError):
        crypto.load_x25519_public(bad)  # type: ignore[arg-type]
    with pytest.raises(KeyFormatError):
        crypto.AgreementKeyPair.from_private_bytes(bad)  # type: ignore[arg-type]
    with pytest.raises(KeyFormatError):
        crypto.SigningKey.from_private_bytes(bad)  # type: ignore[arg-type]


def test_fresh_keys_differ_and_reprs_hide_private_parts() -> None:
    a, b = crypto.AgreementKeyPair.generate(), crypto.AgreementKeyPair.generate()
    assert a.public_bytes != b.public_bytes
    assert a.private_bytes().hex() not in repr(a)
    s = crypto.SigningKey.generate()
    assert "private" not in repr(s).lower() or "public" in repr(s)


# --- derivations are symmetric and bound to their context ------------------------------


def test_pairwise_seed_symmetric_and_context_bound() -> None:
    a, b = crypto.AgreementKeyPair.generate(), crypto.AgreementKeyPair.generate()
    s_ab = crypto.derive_pairwise_seed(a.exchange(b.public_bytes), CTX, 3, 9)
    s_ba = crypto.derive_pairwise_seed(b.exchange(a.public_bytes), CTX, 9, 3)
    assert s_ab == s_ba and len(s_ab) == 32
    shared = a.exchange(b.public_bytes)
    others = {
        crypto.derive_pairwise_seed(shared, RoundContext(CTX.session_id, 6), 3, 9),
        crypto.derive_pairwise_seed(shared, RoundContext(b"session-0000-0002", 5), 3, 9),
        crypto.derive_pairwise_seed(shared, CTX, 3, 8),
        crypto.derive_channel_key(shared, CTX, 3, 9),
    }
    assert s_ab not in others and len(others) == 4
    with pytest.raises(KeyFormatError):
        crypto.derive_pairwise_seed(shared, CTX, 3, 3)
    with pytest.raises(KeyFormatError):
        crypto.derive_channel_key(shared, CTX, 4, 4)


# --- AES-GCM share boxes ----------------------------------------------------------------


@given(st.binary(max_size=200))
def test_seal_open_round_trip(plaintext: bytes) -> None:
    key = os.urandom(32)
    aad = crypto.share_aad(CTX, 1, 2)
    assert crypto.open_sealed(key, crypto.seal(key, plaintext, aad), aad) == plaintext


@pytest.mark.parametrize(
    "aad_other",
    [
        crypto.share_aad(CTX, 2, 1),  # reversed direction
        crypto.share_aad(CTX, 1, 3),  # redirected to another receiver
        crypto.share_aad(CTX, 4, 2),  # claimed by another sender
        crypto.share_aad(RoundContext(CTX.session_id, 6), 1, 2),  # replayed next round
        crypto.share_aad(RoundContext(b"session-0000-0009", 5), 1, 2),  # other session
        crypto.share_aad(CTX, 1, 2, label="other"),
    ],
)
def test_aad_binds_direction_round_and_session(aad_other: bytes) -> None:
    key = os.urandom(32)
    box = crypto.seal(key, b"share bytes", crypto.share_aad(CTX, 1, 2))
    with pytest.raises(DecryptionError):
        crypto.open_sealed(key, box, aad_other)


def test_tampering_and_wrong_key_fail() -> None:
    key = os.urandom(32)
    aad = crypto.share_aad(CTX, 1, 2)
    box = bytearray(crypto.seal(key, b"share bytes", aad))
    for i in (0, 12, len(box) - 1):
        t = bytearray(box)
        t[i] ^= 0x80
        with pytest.raises(DecryptionError):
            crypto.open_sealed(key, bytes(t), aad)
    with pytest.raises(DecryptionError):
        crypto.open_sealed(os.urandom(32), bytes(box), aad)
    with pytest.raises(DecryptionError):
        crypto.open_sealed(key, bytes(box[:20]), aad)
    with pytest.raises(KeyFormatError):
        crypto.seal(b"short", b"", aad)
    with pytest.raises(KeyFormatError):
        crypto.open_sealed(b"short", bytes(box), aad)


def test_nonces_are_fresh() -> None:
    key = os.urandom(32)
    aad = crypto.share_aad(CTX, 1, 2)
    assert len({crypto.seal(key, b"same", aad)[:12] for _ in range(50)}) == 50


# --- signatures over advertisements and consistency payloads ---------------------------


def test_signed_advertisement_binds_every_field() -> None:
    ident = crypto.SigningKey.generate()
    c_pk, s_pk = os.urandom(32), os.urandom(32)
    payload = crypto.advertisement_payload(CTX, 7, c_pk, s_pk)
    sig = ident.sign(payload)
    crypto.verify_signature(ident.public_bytes, sig, payload)
    variants = [
        crypto.advertisement_payload(CTX, 8, c_pk, s_pk),
        crypto.advertisement_payload(CTX, 7, s_pk, c_pk),
        crypto.advertisement_payload(RoundContext(CTX.session_id, 6), 7, c_pk, s_pk),
        crypto.advertisement_payload(CTX, 7, c_pk, s_pk, extra=b"model-hash"),
    ]
    for v in variants:
        with pytest.raises(SignatureError):
            crypto.verify_signature(ident.public_bytes, sig, v)
    with pytest.raises(SignatureError):
        crypto.verify_signature(crypto.SigningKey.generate().public_bytes, sig, payload)
    with pytest.raises(SignatureError):
        crypto.verify_signature(ident.public_bytes, sig[:63], payload)
    with pytest.raises(SignatureError):
        crypto.verify_signature(b"short", sig, payload)


def test_consistency_payload_signs_survivors_and_extra_context() -> None:
    p = crypto.consistency_payload(CTX, [3, 1, 2], extra=b"model:abc")
    assert p == crypto.consistency_payload(CTX, (1, 2, 3), extra=b"model:abc")
    assert p != crypto.consistency_payload(CTX, (1, 2), extra=b"model:abc")
    assert p != crypto.consistency_payload(CTX, (1, 2, 3), extra=b"model:abd")
    assert p != crypto.consistency_payload(RoundContext(CTX.session_id, 9), (1, 2, 3), b"model:abc")
