"""Whole rounds with a committee: exact sums, every client mode, bad and missing members."""

from __future__ import annotations

import numpy as np
import pytest

from secagg.paillier import PaillierConfig, simulate
from secagg.paillier.errors import NotEnoughSharesError, QuorumError
from secagg.paillier.keys import KeyPair
from secagg.paillier.packing import PackedEncoder
from secagg.paillier.threshold_codec import (
    ShareResponse,
    decode_share_response,
    encode_share_response,
)
from secagg.paillier.threshold_simulate import Tamper, simulate_threshold
from tests.paillier.test_threshold_vectors import N, deal

CFG = PaillierConfig(key_bits=512, insecure_test_key=True, rounding="nearest", workers=1)


def _updates(n: int = 5, d: int = 120, seed: int = 3) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.uniform(-1, 1, d) for _ in range(n)]


def _exact(cfg: PaillierConfig, xs: list[np.ndarray], ids: tuple[int, ...]) -> np.ndarray:
    enc = PackedEncoder(cfg.packing(len(xs)), rounding="nearest")
    return np.sum([enc.decode_sums(enc.quantize(xs[i]), 1) for i in ids], axis=0)


def test_round_sum_is_exact_and_matches_the_single_key_holder() -> None:
    xs = _updates()
    res = simulate_threshold(xs, CFG, deal=deal(3, 5), dropouts=[1])
    assert res.survivors == (0, 2, 3, 4)
    assert np.allclose(res.sum, _exact(CFG, xs, res.survivors), atol=1e-9)
    assert res.params["committee"] == "3-of-5" and res.params["quorum"] == 4
    single = simulate(xs, CFG, dropouts=[1])
    assert np.allclose(single.sum, res.sum, atol=1e-9)


@pytest.mark.parametrize(
    "mode",
    [
        {"randomness": "short_exponent"},
        {"precompute": True},
        {"randomness": "short_exponent", "precompute": True},
        {"workers": 2},
        {"value_bits": 8, "max_clients": 40, "guard_bits": 3},
    ],
    ids=["short-exponent", "precomputed", "short+precomputed", "process-pool", "packing"],
)
def test_every_client_mode_works_with_the_threshold_key(mode: dict) -> None:
    cfg = PaillierConfig(
        **{"key_bits": 512, "insecure_test_key": True, "rounding": "nearest", "workers": 1, **mode}
    )
    xs = _updates(d=300)
    res = simulate_threshold(xs, cfg, deal=deal(3, 5, short_exponent=True))
    assert np.allclose(res.sum, _exact(cfg, xs, res.survivors), atol=1e-9)


def test_the_threshold_key_is_an_ordinary_public_key() -> None:
    """The same key decrypts with today's key holder when its factors are known: the
    clients' side cannot tell the difference."""
    from phe.paillier import PaillierPrivateKey, PaillierPublicKey

    from secagg.paillier.keys import PrivateKey
    from tests.paillier.test_threshold_vectors import P, Q

    dl = deal(3, 5)
    pk = dl.public.public
    phe_priv = PaillierPrivateKey(PaillierPublicKey(pk.n), P, Q)
    kp = KeyPair(pk, PrivateKey.from_phe(pk, phe_priv))
    xs = _updates()
    res = simulate(xs, CFG, keypair=kp)
    assert np.allclose(res.sum, _exact(CFG, xs, res.survivors), atol=1e-9)
    assert pk.n == N


def _corrupt(member: int, k: int = 0, t: int = 3, members: int = 5) -> Tamper:
    """A tamper hook: multiply member ``member``'s k-th share by (1 + N)."""
    tpk = deal(t, members).public

    def tamper(m: int, raw: bytes) -> bytes:
        if m != member:
            return raw
        r = decode_share_response(raw, tpk)
        shares = list(r.shares)
        shares[k] = shares[k] * (1 + N) % (N * N)  # still a unit: only the proof can tell
        fields = {**r.__dict__, "shares": tuple(shares)}
        return encode_share_response(tpk, ShareResponse(**fields))

    return tamper


def test_wrong_share_is_caught_and_the_member_named() -> None:
    xs = _updates()
    res = simulate_threshold(xs, CFG, deal=deal(3, 5), tamper=_corrupt(2, k=1))
    assert np.allclose(res.sum, _exact(CFG, xs, res.survivors), atol=1e-9)
    assert res.params["proofs_verified"] and 2 not in res.params["members_used"]
    assert set(res.params["excluded"]) == {2}
    assert res.params["excluded"][2].startswith("InvalidDecryptionShareError: member 2")


def test_one_member_offline_is_tolerated_two_are_not() -> None:
    xs = _updates()
    res = simulate_threshold(xs, CFG, deal=deal(3, 5), offline_members=[3])
    assert res.params["members_used"] == (1, 2, 4, 5)
    assert np.allclose(res.sum, _exact(CFG, xs, res.survivors), atol=1e-9)
    with pytest.raises(QuorumError):  # 3 endorsers < q = 4 (liveness, see docs)
        simulate_threshold(xs, CFG, deal=deal(3, 5), offline_members=[3, 5])


def test_too_many_bad_shares_fail_the_round_by_name() -> None:
    xs = _updates()

    def two_bad(m: int, raw: bytes) -> bytes:
        return _corrupt(1, members=4)(m, _corrupt(2, members=4)(m, raw))

    with pytest.raises(NotEnoughSharesError) as info:
        simulate_threshold(xs, CFG, deal=deal(3, 4), tamper=two_bad)
    assert set(info.value.excluded) == {1, 2}


def test_full_committee_round_in_one_exchange() -> None:
    xs = _updates()
    res = simulate_threshold(xs, CFG, deal=deal(3, 3))
    assert "endorse" not in res.timings and res.params["quorum"] is None
    assert np.allclose(res.sum, _exact(CFG, xs, res.survivors), atol=1e-9)
