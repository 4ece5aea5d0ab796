"""secagg.discrete_encoding: conditional rounding meets its norm bound with the stated
bias, the wrapped vector is a ring vector the masking protocol takes, and decoding
inverts wrap, scale and rotation."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dp.mechanisms import rounded_sensitivity
from secagg.discrete_encoding import (
    ConditionalRoundingError,
    DiscreteEncoder,
    DiscreteEncodingConfig,
    rounding_bias_bound,
    secure_coins,
    squared_norm_at_most,
)
from secagg.errors import ConfigError, EncodingError
from secagg.ring import Ring
from secagg.rotation import HadamardRotation

BETA = math.exp(-0.5)


def _config(
    dim: int = 1000, gamma: float = 1e-3, bits: int = 24, beta: float = BETA
) -> DiscreteEncodingConfig:
    padded = 1 << (dim - 1).bit_length()
    bound = rounded_sensitivity(
        1.0 / gamma, granularity=1.0, dim=padded, conditional=True, beta=beta
    )
    return DiscreteEncodingConfig(
        dim=dim, clip_norm=1.0, scale=1 / gamma, norm_bound=bound, bits=bits
    )


def test_rounding_meets_the_bound_and_is_nearly_unbiased() -> None:
    cfg = _config(dim=256, gamma=0.01)
    enc = DiscreteEncoder(cfg)
    x = np.random.default_rng(0).normal(size=256)  # the update (data, not noise)
    rounds = [enc.quantize(x, seed=b"s") for _ in range(3000)]
    values = np.array([r.values for r in rounds], dtype=np.float64)
    assert all(np.linalg.norm(r.values) <= cfg.norm_bound for r in rounds)
    y = HadamardRotation(256, b"s").rotate(x)  # the same rotation: compare in the ring
    y *= cfg.scale / np.linalg.norm(y)  # clipped to C = 1, then scaled
    bias = values.mean(axis=0) - y
    # the stated bound on ||E[U | A] - y||, plus the sampling error of 3000 draws
    sampling = math.sqrt(256 * 0.25 / 3000) * 4
    assert np.linalg.norm(bias) <= rounding_bias_bound(BETA) + sampling
    assert np.mean([r.tries for r in rounds]) <= 1 / (1 - BETA)
    assert rounds[0].values.dtype == np.int64


@settings(max_examples=30)
@given(
    values=st.lists(st.integers(-(2**20), 2**20), min_size=1, max_size=200),
    slack=st.floats(-2.0, 2.0),
)
def test_exact_norm_check(values: list[int], slack: float) -> None:
    arr = np.array(values, dtype=np.int64)
    exact = sum(v * v for v in values)
    bound = math.sqrt(exact) + slack
    if bound <= 0:
        return
    assert squared_norm_at_most(arr, bound) == (Fraction(exact) <= Fraction(bound) ** 2)


def test_an_impossible_bound_is_a_named_error(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = DiscreteEncodingConfig(
        dim=64, clip_norm=1.0, scale=100.0, norm_bound=100.01, bits=20, max_tries=3
    )
    y = np.full(64, 0.125)  # rotated and scaled: 12.5 in every coordinate, norm 100
    x = HadamardRotation(64, b"s").unrotate(y)
    # coins that always round up: every draw has norm 104 > 100.01
    monkeypatch.setattr("secagg.discrete_encoding.secure_coins", lambda n: np.zeros(n))
    with pytest.raises(ConditionalRoundingError):
        DiscreteEncoder(cfg).quantize(x, seed=b"s")


@settings(max_examples=25)
@given(bits=st.integers(8, 62), seed=st.binary(min_size=1, max_size=8), n=st.integers(1, 8))
def test_wrap_and_unwrap_are_inverse_within_range(bits: int, seed: bytes, n: int) -> None:
    cfg = _config(dim=100, gamma=2.0 ** -(bits // 4), bits=bits)
    enc = DiscreteEncoder(cfg)
    rng = np.random.default_rng(bits)
    limit = 2 ** (bits - 1) // (4 * n)
    parts = [rng.integers(-limit, limit, cfg.padded_dim) for _ in range(n)]
    ring = Ring(bits)
    total = ring.sum([enc.wrap(p) for p in parts])
    assert total.dtype == ring.dtype
    np.testing.assert_array_equal(enc.unwrap(total), np.sum(parts, axis=0))


def test_encode_then_decode_recovers_the_sum() -> None:
    cfg = _config(dim=3000, gamma=1e-4, bits=32)
    enc = DiscreteEncoder(cfg)
    rng = np.random.default_rng(3)
    xs = [rng.normal(size=3000) * 0.01 for _ in range(5)]  # norms below the clip
    noise = [np.zeros(cfg.padded_dim, dtype=np.int64) for _ in xs]
    total = enc.ring.sum(
        [enc.encode(x, seed=b"r", noise=z) for x, z in zip(xs, noise, strict=True)]
    )
    decoded = enc.decode_sum(total, seed=b"r")
    np.testing.assert_allclose(decoded, np.sum(xs, axis=0), atol=5 * cfg.gamma)
    # a different round seed is a different rotation
    assert not np.allclose(enc.decode_sum(total, seed=b"other"), decoded, atol=1e-2)


def test_clipping_happens_in_the_rotated_domain() -> None:
    cfg = _config(dim=500, gamma=1e-3)
    enc = DiscreteEncoder(cfg)
    big = np.full(500, 10.0)
    r = enc.quantize(big, seed=b"c")
    assert r.original_norm == pytest.approx(np.linalg.norm(big))
    decoded = enc.decode_sum(enc.wrap(r.values), seed=b"c")
    assert np.linalg.norm(decoded) == pytest.approx(1.0, rel=0.01)


def test_bad_inputs() -> None:
    with pytest.raises(ConfigError):
        DiscreteEncodingConfig(dim=10, clip_norm=1.0, scale=10.0, norm_bound=5.0, bits=20)
    with pytest.raises(ConfigError):
        DiscreteEncodingConfig(dim=10, clip_norm=math.nan, scale=10.0, norm_bound=50.0, bits=20)
    with pytest.raises(ConfigError):
        rounding_bias_bound(1.0)
    enc = DiscreteEncoder(_config(dim=10))
    with pytest.raises(EncodingError):
        enc.wrap(np.zeros(16))  # floats are not integers
    with pytest.raises(EncodingError):
        enc.wrap(np.zeros(16, dtype=np.int64), np.zeros(8, dtype=np.int64))
    with pytest.raises(EncodingError):
        enc.quantize(np.ones(11), seed=b"s")
    u = secure_coins(10_000)
    assert u.min() >= 0.0 and u.max() < 1.0 and abs(u.mean() - 0.5) < 0.02
