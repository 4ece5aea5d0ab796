"""Committee parameters, the quorum, safe primes, the dealer and the key formats."""

from __future__ import annotations

import pickle

import pytest

from secagg.paillier.codec import decode_public_key, encode_public_key
from secagg.paillier.errors import KeySizeError, ThresholdConfigError, ThresholdFormatError
from secagg.paillier.keys import PublicKey
from secagg.paillier.threshold_codec import (
    decode_key_share,
    decode_threshold_public_key,
    encode_key_share,
    encode_threshold_public_key,
)
from secagg.paillier.threshold_keys import (
    MAX_MEMBERS,
    CommitteeParams,
    KeyShare,
    ThresholdPublicKey,
    agreement_quorum,
    deal_threshold_key,
    generate_safe_prime,
    generate_threshold_keypair,
    is_safe_prime,
)
from tests.paillier.test_threshold_vectors import P, Q, deal


@pytest.mark.parametrize(
    ("t", "members", "q"), [(2, 2, 2), (2, 3, 3), (3, 5, 4), (2, 5, 4), (4, 7, 6), (5, 5, 5)]
)
def test_quorum_is_smallest_with_2q_above_l_plus_t_minus_1(t: int, members: int, q: int) -> None:
    assert agreement_quorum(t, members) == q
    assert 2 * q > members + t - 1 and 2 * (q - 1) <= members + t - 1
    assert CommitteeParams(t, members).requires_agreement is (t < members)


def test_any_two_quorums_share_t_members() -> None:
    """The reason for q: two q-sets of l members overlap in >= t, so in an honest one."""
    for members in range(2, 12):
        for t in range(2, members + 1):
            q = agreement_quorum(t, members)
            assert t <= q <= members and 2 * q - members >= t


@pytest.mark.parametrize(
    ("t", "members"), [(1, 3), (0, 3), (4, 3), (2, 1), (2, MAX_MEMBERS + 1), (True, 3), (2.0, 3)]
)
def test_impossible_settings_are_refused(t: object, members: object) -> None:
    with pytest.raises(ThresholdConfigError):
        CommitteeParams(t, members)  # type: ignore[arg-type]


def test_member_index_is_checked() -> None:
    params = CommitteeParams(3, 5)
    assert list(params.member_ids) == [1, 2, 3, 4, 5] and params.delta == 120
    for bad in (0, 6, -1, True):
        with pytest.raises(ThresholdConfigError):
            params.check_member(bad)


def test_safe_prime_generation() -> None:
    p = generate_safe_prime(256)
    assert p.bit_length() == 256 and p >> 254 == 3 and is_safe_prime(p)
    assert not is_safe_prime(P + 2) and not is_safe_prime(7919)  # 7919 prime, 3959 not


def test_generated_key_has_the_client_key_format() -> None:
    dl = generate_threshold_keypair(512, threshold=2, members=3, insecure_test_key=True)
    pk = dl.public.public
    assert isinstance(pk, PublicKey) and pk.bits == 512
    assert decode_public_key(encode_public_key(pk), insecure_test_key=True) == pk
    assert PublicKey(pk.n, insecure_test_key=True).key_id == pk.key_id  # same key id as today


def test_real_sizes_need_no_flag_and_test_sizes_need_it() -> None:
    with pytest.raises(KeySizeError):
        deal_threshold_key(P, Q, CommitteeParams(2, 3))
    with pytest.raises(KeySizeError):
        generate_threshold_keypair(512, threshold=2, members=3)


def test_dealer_refuses_bad_primes() -> None:
    params = CommitteeParams(2, 3)
    for p, q in ((P, P), (P, Q + 2), (P + 4, Q)):
        with pytest.raises(ThresholdConfigError):
            deal_threshold_key(p, q, params, insecure_test_key=True)
    with pytest.raises(ThresholdConfigError):
        deal_threshold_key(P, 23, params, insecure_test_key=True)  # sizes differ


def test_public_key_and_share_round_trip() -> None:
    dl = deal(3, 5, short_exponent=True)
    raw = encode_threshold_public_key(dl.public)
    back = decode_threshold_public_key(raw, insecure_test_key=True)
    assert back == dl.public and back.committee_id == dl.public.committee_id
    assert back.public.short_exponent_base == dl.public.public.short_exponent_base
    share = decode_key_share(encode_key_share(dl.share(4)), insecure_test_key=True)
    assert share.member == 4 and share.secret == dl.share(4).secret


def test_decoders_refuse_bad_bytes() -> None:
    dl = deal(3, 5)
    raw = encode_threshold_public_key(dl.public)
    for bad in (b"", raw[:-1], raw + b"\x00", b"XXXX" + raw[4:], raw[:4] + b"\x09" + raw[5:]):
        with pytest.raises(ThresholdFormatError):
            decode_threshold_public_key(bad, insecure_test_key=True)
    with pytest.raises(ThresholdFormatError):  # test-size key without the flag
        decode_threshold_public_key(raw)
    share = bytearray(encode_key_share(dl.share(2)))
    share[-1] ^= 1  # another secret: no longer matches v_2
    with pytest.raises(ThresholdFormatError, match="verification key"):
        decode_key_share(bytes(share), insecure_test_key=True)


def test_public_key_validation() -> None:
    tpk = deal(2, 3).public
    n2 = tpk.public.nsquare
    with pytest.raises(ThresholdConfigError):
        ThresholdPublicKey(tpk.public, tpk.params, tpk.verification_base, tpk.verification_keys[:2])
    with pytest.raises(ThresholdConfigError):
        ThresholdPublicKey(tpk.public, tpk.params, n2, tpk.verification_keys)
    with pytest.raises(ThresholdConfigError):
        KeyShare(tpk, 4, 1)


def test_secrets_are_never_pickled_or_printed() -> None:
    dl = deal(2, 3)
    for obj in (dl, dl.share(1)):
        with pytest.raises(TypeError):
            pickle.dumps(obj)
    assert str(dl.share(1).secret) not in repr(dl.share(1)) + repr(dl)
