"""Committee members: the key holder's checks, agreement, and a persistent record."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from secagg.paillier import Client, PackingConfig
from secagg.paillier.codec import DecryptionRequest, decode_request, encode_request
from secagg.paillier.errors import (
    ForeignSessionError,
    InsufficientContributorsError,
    InvalidContributionError,
    InvalidDecryptionShareError,
    ProductMismatchError,
    QuorumError,
    RoundAlreadyDecryptedError,
    SecondSubsetError,
    ThresholdConfigError,
    ThresholdFormatError,
    UnverifiedProductError,
)
from secagg.paillier.threshold_aggregator import ThresholdAggregator
from secagg.paillier.threshold_codec import (
    MAX_HISTORY,
    MemberState,
    RoundRecord,
    ShareRequest,
    ShareResponse,
    decode_member_state,
    decode_share_request,
    decode_share_response,
    encode_member_state,
    encode_share_request,
    encode_share_response,
)
from secagg.paillier.threshold_keys import ThresholdDeal
from secagg.paillier.threshold_member import CommitteeMember
from tests.paillier.test_threshold_vectors import deal

CLIENTS, D, MIN = 4, 30, 3


@dataclass
class Setup:
    """Four clients and a 3-of-5 committee (or another t-of-l) in one session."""

    dl: ThresholdDeal
    packing: PackingConfig
    session: bytes
    clients: dict[int, Client]
    member_keys: dict[int, Ed25519PrivateKey]
    updates: dict[int, np.ndarray]

    @property
    def roster(self) -> dict:
        return {i: c.verification_key for i, c in self.clients.items()}

    @property
    def registry(self) -> dict:
        return {m: k.public_key() for m, k in self.member_keys.items()}

    def member(self, m: int, state: bytes | None = None) -> CommitteeMember:
        return CommitteeMember(
            self.dl.share(m),
            self.packing,
            self.roster,
            self.registry,
            session_id=self.session,
            min_contributors=MIN,
            signing_key=self.member_keys[m],
            state=state,
        )

    def aggregator(self, rnd: int, ids: list[int] | None = None) -> ThresholdAggregator:
        agg = ThresholdAggregator(
            self.dl.public,
            self.packing,
            self.roster,
            self.registry,
            session_id=self.session,
            round_index=rnd,
            num_elements=D,
            min_contributors=MIN,
        )
        for i in ids if ids is not None else sorted(self.clients):
            agg.receive(
                i,
                self.clients[i].contribute(
                    self.updates[i], session_id=self.session, round_index=rnd
                ),
            )
        return agg


def make_setup(t: int = 3, members: int = 5) -> Setup:
    dl = deal(t, members)
    packing = PackingConfig(key_bits=512, value_bits=16, max_clients=CLIENTS)
    rng = np.random.default_rng(1)
    clients = {i: Client(i, dl.public.public, packing, rounding="nearest") for i in range(CLIENTS)}
    keys = {m: Ed25519PrivateKey.generate() for m in dl.public.params.member_ids}
    ups = {i: rng.uniform(-1, 1, D) for i in clients}
    return Setup(dl, packing, os.urandom(16), clients, keys, ups)


@pytest.fixture
def setup() -> Setup:
    return make_setup()


def _expected(s: Setup, ids: list[int]) -> np.ndarray:
    enc = s.clients[0].encoder
    return np.sum([enc.quantize(s.updates[i]) - s.packing.offset for i in ids], axis=0)


def run_round(s: Setup, members: dict[int, CommitteeMember], rnd: int = 1) -> tuple:
    agg = s.aggregator(rnd)
    request = agg.request()
    for m, mem in members.items():
        assert agg.receive_endorsement(m, mem.endorse(request))
    second = agg.share_request()
    for m in sorted(agg.endorsements):
        assert agg.receive_share(m, members[m].release(second))
    return agg, request, second


def test_honest_round_decrypts_the_exact_sum(setup: Setup) -> None:
    members = {m: setup.member(m) for m in range(1, 6)}
    agg, _, _ = run_round(setup, members)
    out = agg.finish()
    assert np.array_equal(out.outcome.signed_sums, _expected(setup, [0, 1, 2, 3]))
    assert out.members_used == (1, 2, 3, 4) and not out.proofs_verified
    always = agg.finish(verify="always")
    assert np.array_equal(always.outcome.signed_sums, out.outcome.signed_sums)
    assert always.proofs_verified and not always.excluded


def test_wrong_share_is_excluded_and_its_member_named(setup: Setup) -> None:
    members = {m: setup.member(m) for m in range(1, 6)}
    agg = setup.aggregator(1)
    request = agg.request()
    for m, mem in members.items():
        agg.receive_endorsement(m, mem.endorse(request))
    second = agg.share_request()
    tpk = setup.dl.public
    n2 = tpk.public.nsquare
    for m in sorted(agg.endorsements):
        raw = members[m].release(second)
        if m == 3:
            r = decode_share_response(raw, tpk)
            bad = (r.shares[0] * (1 + tpk.public.n) % n2, *r.shares[1:])
            raw = encode_share_response(tpk, ShareResponse(**{**r.__dict__, "shares": bad}))
        agg.receive_share(m, raw)
    out = agg.finish()
    assert out.proofs_verified and out.members_used == (1, 2, 4)
    err = out.excluded[3]
    assert isinstance(err, InvalidDecryptionShareError) and err.member == 3
    assert np.array_equal(out.outcome.signed_sums, _expected(setup, [0, 1, 2, 3]))


def test_member_refuses_sub_threshold_product(setup: Setup) -> None:
    agg = setup.aggregator(1, ids=[0, 1])  # two contributions, MIN = 3
    inner = agg.inner
    inner.min_contributors = 2  # a cheating aggregator lowers its own floor
    request = agg.request()
    with pytest.raises(InsufficientContributorsError):
        setup.member(1).endorse(request)


def test_member_refuses_single_ciphertext_passed_off_as_the_sum(setup: Setup) -> None:
    agg = setup.aggregator(1)
    req = decode_request(agg.request())
    forged = encode_request(
        DecryptionRequest(req.session_id, 1, _single_product(setup, req), req.contributions)
    )
    with pytest.raises(ProductMismatchError):
        setup.member(2).endorse(forged)


def _single_product(s: Setup, req: DecryptionRequest) -> bytes:
    from secagg.paillier.codec import decode_contribution

    return decode_contribution(req.contributions[0]).ciphertexts


def test_member_refuses_replay_and_second_subset(setup: Setup) -> None:
    members = {m: setup.member(m) for m in range(1, 6)}
    run_round(setup, members, rnd=2)
    m1 = members[1]
    old = setup.aggregator(1).request()  # an earlier round: a replay
    with pytest.raises(RoundAlreadyDecryptedError, match="replay"):
        m1.endorse(old)
    subset = setup.aggregator(2, ids=[0, 1, 2]).request()  # same round, another subset
    with pytest.raises(SecondSubsetError):
        m1.endorse(subset)


def test_member_releases_once_and_only_what_it_endorsed(setup: Setup) -> None:
    members = {m: setup.member(m) for m in range(1, 6)}
    _agg, _request, second = run_round(setup, members)
    with pytest.raises(RoundAlreadyDecryptedError):
        members[1].release(second)  # a second release of the same round
    fresh = setup.member(1)
    with pytest.raises(UnverifiedProductError):
        fresh.release(second)  # never verified this round's product itself
    other = setup.aggregator(1, ids=[0, 1, 2])
    other.request()
    forged = decode_share_request(second)
    swapped = ShareRequest(
        forged.session_id,
        1,
        other.pending.contributors_digest,
        forged.product_digest,
        forged.product,
        forged.endorsements,
    )
    with pytest.raises(SecondSubsetError):
        setup.member(2, members[2].export_state()).release(encode_share_request(swapped))


def test_member_refuses_without_quorum(setup: Setup) -> None:
    members = {m: setup.member(m) for m in range(1, 6)}
    agg = setup.aggregator(1)
    request = agg.request()
    for m in (1, 2, 3):  # q = 4 for 3-of-5
        agg.receive_endorsement(m, members[m].endorse(request))
    with pytest.raises(QuorumError):
        agg.share_request()
    p = agg.pending
    short = encode_share_request(
        ShareRequest(
            setup.session,
            1,
            p.contributors_digest,
            p.product_digest,
            p.product,
            tuple(agg.endorsements.values()),
        )
    )
    with pytest.raises(QuorumError, match="needs 4"):
        members[1].release(short)
    dup = (*tuple(agg.endorsements.values()), agg.endorsements[1])
    forged = ShareRequest(setup.session, 1, p.contributors_digest, p.product_digest, p.product, dup)
    with pytest.raises(QuorumError, match="duplicated"):
        members[1].release(encode_share_request(forged))


def test_endorsements_on_another_tuple_do_not_count(setup: Setup) -> None:
    """Endorsements gathered for the full set cannot unlock a subset's release."""
    members = {m: setup.member(m) for m in range(1, 6)}
    agg = setup.aggregator(1)
    request = agg.request()
    for m in range(1, 6):
        agg.receive_endorsement(m, members[m].endorse(request))
    sub = setup.aggregator(1, ids=[0, 1, 2])
    sub_request = sub.request()
    loner = setup.member(5)  # a member that has seen only the subset
    loner.endorse(sub_request)
    p = sub.pending
    stolen = ShareRequest(
        setup.session,
        1,
        p.contributors_digest,
        p.product_digest,
        p.product,
        tuple(agg.endorsements.values()),
    )
    with pytest.raises(QuorumError, match="another tuple"):
        loner.release(encode_share_request(stolen))


def test_foreign_session_and_garbage(setup: Setup) -> None:
    m = setup.member(1)
    req = decode_request(setup.aggregator(1).request())
    other = encode_request(DecryptionRequest(b"x" * 16, 1, req.product, req.contributions))
    with pytest.raises(ForeignSessionError):
        m.endorse(other)
    for junk in (b"", b"SAPT\x01\x04", b"\x00" * 64):
        with pytest.raises(ThresholdFormatError):
            m.release(junk)


def test_bad_contribution_refuses_the_request(setup: Setup) -> None:
    req = decode_request(setup.aggregator(1).request())
    tampered = bytearray(req.contributions[1])
    tampered[-1] ^= 1
    bad = encode_request(
        DecryptionRequest(
            req.session_id,
            1,
            req.product,
            (req.contributions[0], bytes(tampered), *req.contributions[2:]),
        )
    )
    with pytest.raises(InvalidContributionError):
        setup.member(3).endorse(bad)


def test_state_survives_export_and_import(setup: Setup) -> None:
    members = {m: setup.member(m) for m in range(1, 6)}
    _, _request, second = run_round(setup, members)
    state = members[3].export_state()
    restored = setup.member(3, state)
    assert restored.latest is not None and restored.latest.released
    with pytest.raises(RoundAlreadyDecryptedError):
        restored.release(second)
    with pytest.raises(SecondSubsetError):
        restored.endorse(setup.aggregator(1, ids=[0, 1, 2]).request())
    s = decode_member_state(state)
    assert [r for r, _ in s.decrypted] == [1]
    with pytest.raises(ThresholdFormatError):
        setup.member(4, state)  # another member's record


def test_state_decoder_validates() -> None:
    ok = MemberState(
        1,
        b"\x00" * 32,
        b"s" * 16,
        RoundRecord(5, b"a" * 32, b"b" * 32, True),
        ((3, b"c" * 32), (5, b"a" * 32)),
    )
    raw = encode_member_state(ok)
    assert decode_member_state(raw) == ok
    for bad in (raw[:-1], raw + b"\x00", raw[:4] + b"\x02" + raw[5:]):
        with pytest.raises(ThresholdFormatError):
            decode_member_state(bad)
    unordered = MemberState(
        1, b"\x00" * 32, b"s" * 16, ok.current, ((5, b"a" * 32), (3, b"c" * 32))
    )
    with pytest.raises(ThresholdFormatError, match="increasing"):
        decode_member_state(encode_member_state(unordered))
    with pytest.raises(ThresholdFormatError):
        encode_member_state(
            MemberState(
                1, b"\x00" * 32, b"s" * 16, ok.current, ((1, b"c" * 32),) * (MAX_HISTORY + 1)
            )
        )


def test_signing_key_must_match_the_registry(setup: Setup) -> None:
    with pytest.raises(ThresholdConfigError):
        CommitteeMember(
            setup.dl.share(1),
            setup.packing,
            setup.roster,
            setup.registry,
            session_id=setup.session,
            min_contributors=MIN,
            signing_key=setup.member_keys[2],
        )


def test_full_committee_needs_no_agreement() -> None:
    s = make_setup(3, 3)
    members = {m: s.member(m) for m in (1, 2, 3)}
    agg = s.aggregator(1)
    request = agg.request()
    for m, mem in members.items():
        assert agg.receive_share(m, mem.decrypt(request))
    out = agg.finish()
    assert (
        np.array_equal(out.outcome.signed_sums, _expected(s, [0, 1, 2, 3])) and out.proofs_verified
    )
    with pytest.raises(RoundAlreadyDecryptedError):
        members[1].decrypt(request)
    with pytest.raises(QuorumError):
        setup_35 = make_setup(3, 5)
        setup_35.member(1).decrypt(setup_35.aggregator(1).request())
