"""Roles: a cheating aggregator is refused by the key holder; a bad client is excluded."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from secagg.paillier import Aggregator, Client, KeyHolder, KeyPair, PackedEncoder, PackingConfig
from secagg.paillier.aggregate import multiply_ciphertexts
from secagg.paillier.codec import (
    DecryptionRequest,
    decode_ciphertexts,
    decode_contribution,
    decode_request,
    encode_ciphertexts,
    encode_contribution,
    encode_request,
)
from secagg.paillier.contribution import sign_contribution
from secagg.paillier.errors import (
    CiphertextRangeError,
    ContributionSignatureError,
    DecryptionRefusedError,
    DuplicateContributionError,
    InsufficientContributorsError,
    InvalidContributionError,
    KeyIdMismatchError,
    LengthMismatchError,
    PaillierConfigError,
    PaillierFormatError,
    ProductMismatchError,
    RoundAlreadyDecryptedError,
    SenderMismatchError,
    UnknownClientError,
    WrongRoundError,
)
from secagg.paillier.keys import PublicKey
from secagg.paillier.packing import IntArray

N, D, MIN = 4, 40, 3


@dataclass
class Round:
    """Four clients, an aggregator and a key holder sharing one session."""

    kp: KeyPair
    packing: PackingConfig
    session: bytes
    signing: dict[int, Ed25519PrivateKey]
    clients: dict[int, Client]
    key_holder: KeyHolder
    updates: dict[int, np.ndarray]

    @property
    def roster(self) -> dict[int, Ed25519PublicKey]:
        return {i: k.public_key() for i, k in self.signing.items()}

    def aggregator(self, round_index: int) -> MaliciousAggregator:
        """An aggregator that behaves honestly unless a test calls ``forge``."""
        return MaliciousAggregator(
            self.kp.public,
            self.packing,
            self.roster,
            session_id=self.session,
            round_index=round_index,
            num_elements=D,
            min_contributors=MIN,
        )

    def contributions(self, round_index: int) -> dict[int, bytes]:
        return {
            i: c.contribute(self.updates[i], session_id=self.session, round_index=round_index)
            for i, c in self.clients.items()
        }


@pytest.fixture
def rnd(keypair: KeyPair) -> Round:
    packing = PackingConfig(key_bits=1024, max_clients=N)
    signing = {i: Ed25519PrivateKey.generate() for i in range(N)}
    rng = np.random.default_rng(5)
    session = os.urandom(16)
    kh = KeyHolder(
        keypair,
        packing,
        {i: k.public_key() for i, k in signing.items()},
        session_id=session,
        min_contributors=MIN,
    )
    clients = {
        i: Client(i, keypair.public, packing, signing_key=signing[i], rounding="nearest")
        for i in range(N)
    }
    return Round(
        keypair,
        packing,
        session,
        signing,
        clients,
        kh,
        {i: rng.uniform(-1, 1, D) for i in range(N)},
    )


def _expected(r: Round, ids: list[int]) -> IntArray:
    enc = PackedEncoder(r.packing, rounding="nearest")
    return sum((enc.quantize(r.updates[i]) - r.packing.offset for i in ids), np.zeros(D, np.int64))


class MaliciousAggregator(Aggregator):
    """Test-only aggregator that builds whatever request it likes."""

    def forge(
        self, product: list[int], contributions: list[bytes], round_index: int | None = None
    ) -> bytes:
        body = encode_ciphertexts(self.public_key, self.packing, self.num_elements, product)
        rnd = self.round_index if round_index is None else round_index
        return encode_request(DecryptionRequest(self.session_id, rnd, body, tuple(contributions)))

    def vectors(self, ids: list[int]) -> list[tuple[int, ...]]:
        return [self.accepted[i].vector.ciphertexts for i in ids]


def _resign(
    r: Round, i: int, body: bytes, round_index: int = 1, key: Ed25519PrivateKey | None = None
) -> bytes:
    """What a malicious client (or a forger with ``key``) sends: any body, signed."""
    return sign_contribution(
        key or r.signing[i],
        session_id=r.session,
        round_index=round_index,
        client_id=i,
        public_key=r.kp.public,
        ciphertexts=body,
    )


def _collect(r: Round, round_index: int) -> MaliciousAggregator:
    agg = r.aggregator(round_index)
    for i, payload in r.contributions(round_index).items():
        assert agg.receive(i, payload)
    return agg


def test_honest_round(rnd: Round) -> None:
    agg = _collect(rnd, 1)
    out = agg.finish(rnd.key_holder.decrypt(agg.request()))
    assert out.contributors == tuple(range(N))
    np.testing.assert_array_equal(out.signed_sums, _expected(rnd, list(range(N))))
    np.testing.assert_array_equal(out.sum, out.signed_sums / rnd.packing.resolved_scale)


def test_refuses_single_ciphertext_passed_off_as_the_sum(rnd: Round) -> None:
    agg = _collect(rnd, 1)
    request = agg.forge(list(agg.vectors([0])[0]), [agg.accepted[i].payload for i in range(N)])
    with pytest.raises(ProductMismatchError):
        rnd.key_holder.decrypt(request)


def test_refuses_one_contribution(rnd: Round) -> None:
    agg = _collect(rnd, 1)
    request = agg.forge(list(agg.vectors([2])[0]), [agg.accepted[2].payload])
    with pytest.raises(InsufficientContributorsError):
        rnd.key_holder.decrypt(request)


def test_refuses_product_over_fewer_than_min_contributors(rnd: Round) -> None:
    agg = _collect(rnd, 1)
    ids = list(range(MIN - 1))
    request = agg.forge(
        multiply_ciphertexts(rnd.kp.public, agg.vectors(ids)),
        [agg.accepted[i].payload for i in ids],
    )
    with pytest.raises(InsufficientContributorsError):
        rnd.key_holder.decrypt(request)


def test_refuses_one_client_counted_several_times(rnd: Round) -> None:
    agg = _collect(rnd, 1)
    request = agg.forge(
        multiply_ciphertexts(rnd.kp.public, agg.vectors([1, 1, 1])), [agg.accepted[1].payload] * MIN
    )
    with pytest.raises(InvalidContributionError) as ei:
        rnd.key_holder.decrypt(request)
    assert isinstance(ei.value.__cause__, DuplicateContributionError)


def test_refuses_replay_from_another_round(rnd: Round) -> None:
    """Round-1 contributions (already decrypted) replayed as round 2, as-is or relabelled."""
    old = _collect(rnd, 1)
    rnd.key_holder.decrypt(old.request())
    ids = [0, 1, 2]
    product = multiply_ciphertexts(rnd.kp.public, old.vectors(ids))
    payloads = [old.accepted[i].payload for i in ids]
    with pytest.raises(RoundAlreadyDecryptedError):
        rnd.key_holder.decrypt(old.forge(product, payloads))  # the whole old request again
    new = _collect(rnd, 2)
    with pytest.raises(InvalidContributionError) as ei:
        rnd.key_holder.decrypt(new.forge(product, payloads))
    assert isinstance(ei.value.__cause__, WrongRoundError)
    relabelled = []
    for p in payloads:
        m = decode_contribution(p)
        relabelled.append(
            encode_contribution(type(m)(m.session_id, 2, m.client_id, m.ciphertexts, m.signature))
        )
    with pytest.raises(InvalidContributionError) as ei:
        rnd.key_holder.decrypt(new.forge(product, relabelled))
    assert isinstance(ei.value.__cause__, ContributionSignatureError)
    # the honest round-2 request still goes through
    assert new.finish(rnd.key_holder.decrypt(new.request())).contributors == tuple(range(N))


def test_refuses_second_decryption_in_a_round(rnd: Round) -> None:
    """Two subsets in one round would reveal their difference: one decryption per round."""
    agg = _collect(rnd, 1)
    rnd.key_holder.decrypt(agg.request())
    ids = [0, 1, 2]
    with pytest.raises(RoundAlreadyDecryptedError):
        rnd.key_holder.decrypt(
            agg.forge(
                multiply_ciphertexts(rnd.kp.public, agg.vectors(ids)),
                [agg.accepted[i].payload for i in ids],
            )
        )


def test_refuses_forged_and_foreign_contributions(rnd: Round) -> None:
    agg = _collect(rnd, 1)
    body = decode_contribution(agg.accepted[0].payload).ciphertexts
    forged = _resign(rnd, 0, body, key=Ed25519PrivateKey.generate())
    stranger = _resign(rnd, 9, body, key=Ed25519PrivateKey.generate())
    others = [agg.accepted[i].payload for i in (1, 2)]
    product = multiply_ciphertexts(rnd.kp.public, agg.vectors([0, 1, 2]))
    for bad, cause in ((forged, ContributionSignatureError), (stranger, UnknownClientError)):
        with pytest.raises(InvalidContributionError) as ei:
            rnd.key_holder.decrypt(agg.forge(product, [bad, *others]))
        assert isinstance(ei.value.__cause__, cause)


def test_refuses_other_session_and_garbage(rnd: Round) -> None:
    agg = _collect(rnd, 1)
    req = decode_request(agg.request())
    other = encode_request(DecryptionRequest(os.urandom(16), 1, req.product, req.contributions))
    with pytest.raises(WrongRoundError) as ei:
        rnd.key_holder.decrypt(other)
    assert isinstance(ei.value, DecryptionRefusedError)
    with pytest.raises(PaillierFormatError):
        rnd.key_holder.decrypt(b"garbage")
    assert issubclass(ProductMismatchError, DecryptionRefusedError)


def test_bad_client_is_excluded_not_the_round(rnd: Round) -> None:
    payloads = rnd.contributions(1)
    pk = rnd.kp.public
    nct = rnd.packing.num_plaintexts(D)
    cases: dict[int, tuple[bytes, type[Exception]]] = {
        0: (
            _resign(rnd, 0, encode_ciphertexts(pk, rnd.packing, D, [pk.nsquare] * nct)),
            CiphertextRangeError,
        ),
        1: (payloads[1][:-3], PaillierFormatError),
    }
    for i, (payload, err) in cases.items():
        agg = rnd.aggregator(1)
        assert not agg.receive(i, payload)
        assert isinstance(agg.rejected[i], err)
        for j in range(N):
            if j != i:
                assert agg.receive(j, payloads[j])
        out = agg.finish(rnd.key_holder.decrypt(agg.request()))
        assert i not in out.contributors and len(out.contributors) == N - 1
        np.testing.assert_array_equal(
            out.signed_sums, _expected(rnd, [j for j in range(N) if j != i])
        )
        rnd.key_holder.last_round = None  # reuse the key holder for the next case


@pytest.mark.parametrize("case", ["key_id", "length", "signature", "sender", "round", "dup"])
def test_each_bad_contribution_has_its_named_error(rnd: Round, case: str) -> None:
    payloads = rnd.contributions(1)
    pk = rnd.kp.public
    body = decode_contribution(payloads[0]).ciphertexts
    agg = rnd.aggregator(1)
    sender, err = 0, Exception
    if case == "key_id":
        other = PublicKey(pk.n, insecure_test_key=True)
        v = decode_ciphertexts(body, pk, rnd.packing, D)
        payload = _resign(rnd, 0, encode_ciphertexts(other, rnd.packing, D, list(v.ciphertexts)))
        err = KeyIdMismatchError
    elif case == "length":
        short = rnd.clients[0].contribute(
            rnd.updates[0][:-1], session_id=rnd.session, round_index=1
        )
        payload, err = short, LengthMismatchError
    elif case == "signature":
        m = decode_contribution(payloads[0])
        payload = encode_contribution(type(m)(m.session_id, 1, 0, body, bytes(64)))
        err = ContributionSignatureError
    elif case == "sender":
        payload, sender, err = payloads[0], 1, SenderMismatchError
    elif case == "round":
        payload, err = _resign(rnd, 0, body, round_index=2), WrongRoundError
    else:
        assert agg.receive(0, payloads[0])
        payload, err = payloads[0], DuplicateContributionError
    assert not agg.receive(sender, payload)
    assert isinstance(agg.rejected[sender], err)
    assert sender not in agg.accepted


def test_aggregator_needs_min_contributors(rnd: Round) -> None:
    agg = rnd.aggregator(1)
    for i, p in list(rnd.contributions(1).items())[: MIN - 1]:
        agg.receive(i, p)
    with pytest.raises(InsufficientContributorsError):
        agg.request()


@pytest.mark.parametrize("bad", [1, 0, N + 1, 2.0])
def test_min_contributors_floor(rnd: Round, bad: object) -> None:
    with pytest.raises(PaillierConfigError):
        KeyHolder(
            rnd.kp,
            rnd.packing,
            rnd.roster,
            session_id=rnd.session,
            min_contributors=bad,  # type: ignore[arg-type]
        )


def test_aggregator_checks_the_answer(rnd: Round) -> None:
    agg = _collect(rnd, 1)
    with pytest.raises(PaillierConfigError):
        agg.finish(b"")
    response = rnd.key_holder.decrypt(agg.request())
    other = _collect(rnd, 2)
    other.request()
    with pytest.raises(WrongRoundError):
        other.finish(response)
