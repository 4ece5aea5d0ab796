"""``simulate``: exact packed sums, the per-element phe reference, dropouts, the result."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from secagg.errors import EncodingError
from secagg.paillier import KeyPair, PackedEncoder, PaillierConfig, simulate
from secagg.paillier.codec import decode_ciphertexts, decode_contribution
from secagg.paillier.errors import (
    InsufficientContributorsError,
    PaillierConfigError,
    SlotOverflowError,
)
from secagg.paillier.reference import reference_signed_sums
from secagg.result import AggregationResult, client_key

SMALL = PaillierConfig(key_bits=512, insecure_test_key=True, rounding="nearest", workers=1)
MID = dataclasses.replace(SMALL, key_bits=1024)
#: The masking backend's eight result attributes, in order.
RESULT_FIELDS = "sum mean survivors dropped timings bytes_sent transcript params".split()  # noqa: SIM905


def _signed(cfg: PaillierConfig, n: int, vectors: list[np.ndarray]) -> list[np.ndarray]:
    packing = cfg.packing(n)
    enc = PackedEncoder(packing, rounding="nearest")
    return [enc.quantize(v) - packing.offset for v in vectors]


@st.composite
def rounds(draw: st.DrawFn) -> list[np.ndarray]:
    n = draw(st.integers(2, 6))
    d = draw(st.integers(1, 120))
    seed = draw(st.integers(0, 2**32))
    edges = draw(st.sampled_from(["random", "edges", "beyond"]))
    rng = np.random.default_rng(seed)
    if edges == "edges":
        return [rng.choice([-1.0, 1.0, 0.0], size=d) for _ in range(n)]
    if edges == "beyond":
        return [rng.uniform(-3, 3, size=d) for _ in range(n)]
    return [rng.uniform(-1, 1, size=d) for _ in range(n)]


@given(vectors=rounds())
def test_packed_sum_is_exact(small_keypair: KeyPair, vectors: list[np.ndarray]) -> None:
    """Packed sum == element-wise sum of the quantised inputs, clip edges included."""
    n = len(vectors)
    res = simulate(vectors, SMALL, keypair=small_keypair)
    scale = SMALL.packing(n).resolved_scale
    expected = np.sum(_signed(SMALL, n, vectors), axis=0)
    np.testing.assert_array_equal(res.sum * scale, expected)
    np.testing.assert_array_equal(res.sum, expected / scale)
    assert res.survivors == tuple(range(n)) and res.dropped == ()
    np.testing.assert_allclose(res.sum, np.sum(np.clip(vectors, -1, 1), axis=0), atol=n / scale)


@settings(max_examples=12)
@given(vectors=rounds())
def test_packed_sum_equals_per_element_phe(
    small_keypair: KeyPair, vectors: list[np.ndarray]
) -> None:
    n = len(vectors)
    res = simulate(vectors, SMALL, keypair=small_keypair)
    signed = _signed(SMALL, n, vectors)
    ref = reference_signed_sums(small_keypair.public, small_keypair.private, signed)
    np.testing.assert_array_equal(res.sum * SMALL.packing(n).resolved_scale, ref)


def test_result_shape_matches_the_masking_backend(small_keypair: KeyPair) -> None:
    rng = np.random.default_rng(1)
    vectors = [rng.uniform(-1, 1, 50) for _ in range(5)]
    res = simulate(vectors, SMALL, dropouts=[3], seed=2, keypair=small_keypair)
    assert isinstance(res, AggregationResult)
    assert [f.name for f in dataclasses.fields(res)] == RESULT_FIELDS
    assert res.survivors == (0, 1, 2, 4) and res.dropped == (3,)
    np.testing.assert_array_equal(res.mean, res.sum / 4)
    assert set(res.bytes_sent) == {client_key(i) for i in range(5)} | {"server", "key_holder"}
    assert res.bytes_sent[client_key(3)] == 0
    assert {"keygen", "encrypt", "aggregate", "decrypt", "decode"} <= set(res.timings)
    assert res.params["min_contributors"] == 3 and res.params["rejected"] == {}


def test_transcript_holds_ciphertexts_only(small_keypair: KeyPair) -> None:
    vectors = [np.full(30, 0.5), np.full(30, -0.25), np.zeros(30)]
    res = simulate(vectors, SMALL, dropouts=[1], keypair=small_keypair)
    assert res.transcript is not None
    assert [(r.phase, r.sender, r.kind) for r in res.transcript] == [
        ("ciphertexts", 0, "contribution"),
        ("ciphertexts", 2, "contribution"),
    ]
    pk, packing = small_keypair.public, SMALL.packing(3)
    for rec in res.transcript:
        assert len(rec.payload) == res.bytes_sent[client_key(rec.sender)]
        vec = decode_ciphertexts(decode_contribution(rec.payload).ciphertexts, pk, packing, 30)
        enc = PackedEncoder(packing, rounding="nearest").encode(vectors[rec.sender])
        assert all(c != m and c > pk.n for c, m in zip(vec.ciphertexts, enc, strict=True))
    assert (
        simulate(
            vectors, dataclasses.replace(SMALL, record_transcript=False), keypair=small_keypair
        ).transcript
        is None
    )


def test_dropouts_and_mean_over_contributors(small_keypair: KeyPair) -> None:
    vectors = [np.full(10, float(i) / 10) for i in range(6)]
    res = simulate(vectors, SMALL, dropouts=iter([0, 5, 5]), keypair=small_keypair)
    assert res.survivors == (1, 2, 3, 4) and res.dropped == (0, 5)
    np.testing.assert_allclose(res.sum, 1.0, atol=1e-3)
    np.testing.assert_allclose(res.mean, 0.25, atol=1e-3)


def test_too_many_dropouts_fail_the_round(small_keypair: KeyPair) -> None:
    with pytest.raises(InsufficientContributorsError):
        simulate([np.zeros(4)] * 4, SMALL, dropouts=[0, 1, 2], keypair=small_keypair)
    with pytest.raises(PaillierConfigError):
        simulate([np.zeros(4)], SMALL, keypair=small_keypair)  # a sum of one is one update


@pytest.mark.parametrize("dropouts", [[4], [-1], [1.0], ["0"]])
def test_bad_dropout_indices(small_keypair: KeyPair, dropouts: list[object]) -> None:
    with pytest.raises(PaillierConfigError):
        simulate([np.zeros(4)] * 4, SMALL, dropouts=dropouts, keypair=small_keypair)  # type: ignore[arg-type]


def test_non_finite_client_is_excluded_with_its_error(small_keypair: KeyPair) -> None:
    vectors = [np.full(8, 0.5), np.array([0.1] * 7 + [np.nan]), np.full(8, 0.5), np.full(8, 0.5)]
    res = simulate(vectors, SMALL, keypair=small_keypair)
    assert res.survivors == (0, 2, 3) and res.dropped == (1,)
    assert res.params["rejected"][1].startswith("NonFiniteInputError")
    np.testing.assert_allclose(res.sum, 1.5)


@pytest.mark.parametrize(
    "vectors", [[], [np.zeros(3), np.zeros(4)], [np.zeros((2, 2))] * 2, [np.zeros(0)] * 2]
)
def test_malformed_vector_sets_raise(small_keypair: KeyPair, vectors: list[np.ndarray]) -> None:
    with pytest.raises(EncodingError):
        simulate(vectors, SMALL, keypair=small_keypair)


def test_slots_sized_for_max_clients(small_keypair: KeyPair) -> None:
    with pytest.raises(SlotOverflowError):
        simulate(
            [np.zeros(3)] * 5, dataclasses.replace(SMALL, max_clients=4), keypair=small_keypair
        )


@pytest.mark.parametrize(
    "change",
    [
        {"randomness": "short_exponent"},
        {"precompute": True},
        {"workers": 2},
        {"key_holder": 1},
        {"rounding": "stochastic"},
    ],
)
def test_modes_give_the_same_sum(keypair: KeyPair, change: dict[str, object]) -> None:
    rng = np.random.default_rng(3)
    vectors = [rng.uniform(-1, 1, 200) for _ in range(3)]
    base = simulate(vectors, MID, keypair=keypair, seed=9)
    res = simulate(vectors, dataclasses.replace(MID, **change), keypair=keypair, seed=9)  # type: ignore[arg-type]
    if change.get("rounding") == "stochastic":
        again = simulate(vectors, dataclasses.replace(MID, **change), keypair=keypair, seed=9)  # type: ignore[arg-type]
        np.testing.assert_array_equal(res.sum, again.sum)  # the seed fixes the rounding
        np.testing.assert_allclose(res.sum, base.sum, atol=3 / MID.packing(3).resolved_scale)
    else:
        np.testing.assert_array_equal(res.sum, base.sum)
    assert res.params["randomness"] == change.get("randomness", "standard")


def test_default_config_is_sound(big_keypair: KeyPair) -> None:
    """config=None: a 2048-bit key, a clip range containing [-1, 1], exact small sums."""
    cfg = PaillierConfig()
    assert cfg.key_bits == 2048 and cfg.clip_min <= -1 and cfg.clip_max >= 1
    res = simulate([np.full(5, 1.0), np.full(5, -1.0), np.full(5, 0.5)], keypair=big_keypair)
    np.testing.assert_allclose(res.sum, 0.5, atol=3e-4)
    assert res.params["key_bits"] == 2048 and res.params["slots_per_plaintext"] == 2047 // 19
