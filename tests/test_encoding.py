"""Fixed-point encoding into Z_(2^b): round trips, sums, overflow refusal, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from secagg.encoding import FixedPointConfig, FixedPointEncoder
from secagg.errors import (
    ConfigError,
    EncodingError,
    NonFiniteInputError,
    RingOverflowError,
    RingValueError,
)
from secagg.ring import Ring


@st.composite
def configs(draw: st.DrawFn) -> FixedPointConfig:
    bits = draw(st.integers(8, 62))
    n = draw(st.integers(1, min(1000, 2 ** (bits - 3))))
    lo = draw(st.floats(-100, 0, exclude_max=True, allow_subnormal=False))
    hi = draw(st.floats(0, 100, exclude_min=True, allow_subnormal=False))
    assume(max(abs(lo), abs(hi)) > 1e-3)
    try:
        return FixedPointConfig(bits=bits, clip_min=lo, clip_max=hi, num_clients=n)
    except RingOverflowError:
        assume(False)
        raise


def vectors(d: int) -> st.SearchStrategy[np.ndarray]:  # type: ignore[type-arg]
    return hnp.arrays(
        np.float32,
        d,
        elements=st.floats(-200, 200, width=32, allow_nan=False, allow_infinity=False),
    )


@given(configs(), vectors(16), st.sampled_from(["stochastic", "nearest"]), st.integers(0, 2**32))
def test_round_trip_within_one_quantum(
    cfg: FixedPointConfig,
    x: np.ndarray,
    rounding: str,
    seed: int,  # type: ignore[type-arg]
) -> None:
    enc = FixedPointEncoder(cfg, rounding=rounding)  # type: ignore[arg-type]
    y = enc.encode(x, rng=np.random.default_rng(seed))
    assert y.dtype == cfg.ring.dtype and y.shape == x.shape
    assert int(y.max(initial=0)) <= cfg.ring.mask
    back = enc.decode(y)
    clipped = np.clip(x.astype(np.float64), cfg.clip_min, cfg.clip_max)
    bound = cfg.quantum * (0.5 if rounding == "nearest" else 1.0)
    assert np.all(np.abs(back - clipped) <= bound * (1 + 1e-9))


@given(configs(), st.data())
def test_sum_of_n_decodes_within_n_quanta(cfg: FixedPointConfig, data: st.DataObject) -> None:
    n = data.draw(st.integers(1, min(cfg.num_clients, 12)))
    xs = [data.draw(vectors(8)) for _ in range(n)]
    enc = FixedPointEncoder(cfg)
    total = cfg.ring.sum([enc.encode(x) for x in xs])
    got = enc.decode_sum(total, n)
    want = sum(np.clip(x.astype(np.float64), cfg.clip_min, cfg.clip_max) for x in xs)
    assert np.all(np.abs(got - want) <= n * cfg.quantum * (1 + 1e-9))


def test_worst_case_sum_at_clip_edges_does_not_wrap() -> None:
    for bits in (8, 16, 31, 32, 33, 62):
        for n in (1, 3, 100):
            try:
                cfg = FixedPointConfig(bits=bits, clip_min=-2.5, clip_max=1.0, num_clients=n)
            except RingOverflowError:
                continue
            enc = FixedPointEncoder(cfg, rounding="nearest")
            for edge in (-2.5, 1.0):
                x = np.full(4, edge, dtype=np.float64)
                total = cfg.ring.sum([enc.encode(x + 10.0 * np.sign(edge))] * n)  # clipped
                got = enc.decode_sum(total, n)
                assert np.allclose(got, n * edge, atol=n * cfg.quantum), (bits, n, edge)


def test_stochastic_rounding_is_unbiased() -> None:
    cfg = FixedPointConfig(bits=16, clip_min=-1.0, clip_max=1.0, num_clients=1, scale=10.0)
    enc = FixedPointEncoder(cfg)
    x = np.full(200_000, 0.03)  # 0.3 quanta: rounds to 0 w.p. 0.7 and to 1 w.p. 0.3
    q = enc.quantize(x, rng=np.random.default_rng(7))
    assert set(np.unique(q)) == {0, 1}
    # mean of Bernoulli(0.3) over 2e5 draws: std 0.001; allow 5 sigma
    assert abs(q.mean() - 0.3) < 0.005
    # the nearest mode is deterministic and biased towards 0 here
    assert FixedPointEncoder(cfg, rounding="nearest").quantize(x).max() == 0


def test_deterministic_mode_is_reproducible() -> None:
    cfg = FixedPointConfig(bits=32, clip_min=-1.0, clip_max=1.0, num_clients=10)
    enc = FixedPointEncoder(cfg, rounding="nearest")
    x = np.linspace(-1, 1, 101, dtype=np.float32)
    assert np.array_equal(enc.encode(x), enc.encode(x))


def test_backing_dtype() -> None:
    assert Ring(8).dtype == np.uint32 and Ring(32).dtype == np.uint32
    assert Ring(33).dtype == np.uint64 and Ring(62).dtype == np.uint64


@pytest.mark.parametrize("bits", [7, 63, 64, 0, -1, 32.0, True])
def test_bits_out_of_range(bits: object) -> None:
    with pytest.raises(ConfigError):
        Ring(bits)  # type: ignore[arg-type]


def test_overflow_refused_with_clear_message() -> None:
    with pytest.raises(RingOverflowError) as info:
        FixedPointConfig(bits=16, clip_min=-1.0, clip_max=1.0, num_clients=100, scale=1000.0)
    msg = str(info.value)
    assert "n=100" in msg and "[-1.0, 1.0]" in msg and "2^16" in msg
    # the largest n that fits is accepted, the next one refused
    FixedPointConfig(bits=16, clip_min=-1.0, clip_max=1.0, num_clients=32, scale=1000.0)
    with pytest.raises(RingOverflowError):
        FixedPointConfig(bits=16, clip_min=-1.0, clip_max=1.0, num_clients=33, scale=1000.0)


def test_no_room_at_all() -> None:
    with pytest.raises(RingOverflowError):
        FixedPointConfig(bits=8, clip_min=-1.0, clip_max=1.0, num_clients=200)
    with pytest.raises(RingOverflowError):
        FixedPointConfig(bits=8, clip_min=-1e-6, clip_max=1e-6, num_clients=1, scale=0.5)


def test_auto_scale_is_maximal_and_safe() -> None:
    cfg = FixedPointConfig(bits=32, clip_min=-1.0, clip_max=1.0, num_clients=1000)
    limit = 2**31 - 1
    assert 1000 * cfg.max_element <= limit
    assert 1000 * 2 * cfg.max_element > limit  # the next power of two would wrap
    assert math.log2(cfg.resolved_scale).is_integer()
    big = FixedPointConfig(bits=62, clip_min=-1.0, clip_max=1.0, num_clients=1)
    assert big.max_element <= 2**44  # float64 keeps 8 fractional bits for rounding


def test_noise_head_room_is_reserved() -> None:
    cfg = FixedPointConfig(bits=20, clip_min=-1.0, clip_max=1.0, num_clients=4, noise_bound=1000)
    assert 4 * cfg.max_element + 1000 <= 2**19 - 1
    with pytest.raises(RingOverflowError):
        FixedPointConfig(
            bits=20,
            clip_min=-1.0,
            clip_max=1.0,
            num_clients=4,
            scale=cfg.resolved_scale,
            noise_bound=2**19,
        )


def test_integer_noise_decodes_exactly() -> None:
    cfg = FixedPointConfig(bits=24, clip_min=-1.0, clip_max=1.0, num_clients=3, noise_bound=500)
    enc = FixedPointEncoder(cfg, rounding="nearest")
    rng = np.random.default_rng(3)
    xs = [rng.uniform(-1, 1, 50) for _ in range(3)]
    noises = [rng.integers(-100, 101, 50) for _ in range(3)]
    noisy = [enc.add_noise(enc.encode(x), z) for x, z in zip(xs, noises, strict=True)]
    exact = cfg.ring.sum([enc.encode(x) for x in xs])
    got = enc.decode_sum(cfg.ring.sum(noisy), 3) - enc.decode_sum(exact, 3)
    assert np.allclose(got, np.sum(noises, axis=0) * cfg.quantum)
    with pytest.raises(EncodingError):
        enc.add_noise(enc.encode(xs[0]), np.zeros(50))  # float noise
    with pytest.raises(EncodingError):
        enc.add_noise(enc.encode(xs[0]), np.zeros(49, dtype=np.int64))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_input_is_an_error(bad: float) -> None:
    enc = FixedPointEncoder(FixedPointConfig(bits=32, clip_min=-1, clip_max=1, num_clients=2))
    x = np.zeros(10, dtype=np.float32)
    x[7] = bad
    with pytest.raises(NonFiniteInputError, match="index 7"):
        enc.encode(x)


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((2, 3)),
        np.array(["a", "b"]),
        np.array([1 + 2j]),
        np.array([True, False]),
        np.array([object()]),
        "not a vector",
        [[1.0], [2.0, 3.0]],
    ],
)
def test_bad_input_types(bad: object) -> None:
    enc = FixedPointEncoder(FixedPointConfig(bits=32, clip_min=-1, clip_max=1, num_clients=2))
    with pytest.raises(EncodingError):
        enc.encode(bad)  # type: ignore[arg-type]


def test_integer_input_is_accepted() -> None:
    enc = FixedPointEncoder(FixedPointConfig(bits=32, clip_min=-5, clip_max=5, num_clients=2))
    assert np.allclose(enc.decode(enc.encode(np.array([1, -2, 9]))), [1, -2, 5], atol=1e-6)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(clip_min=1.0, clip_max=1.0),
        dict(clip_min=2.0, clip_max=1.0),
        dict(clip_min=math.nan, clip_max=1.0),
        dict(clip_min=-math.inf, clip_max=1.0),
        dict(num_clients=0),
        dict(num_clients=2.5),
        dict(scale=0.0),
        dict(scale=-1.0),
        dict(scale=math.inf),
        dict(scale=2.0**45),
        dict(noise_bound=-1),
    ],
)
def test_bad_config(kwargs: dict[str, object]) -> None:
    base: dict[str, object] = dict(bits=32, clip_min=-1.0, clip_max=1.0, num_clients=2)
    base.update(kwargs)
    with pytest.raises(ConfigError):
        FixedPointConfig(**base)  # type: ignore[arg-type]


def test_bad_rounding_mode() -> None:
    cfg = FixedPointConfig(bits=32, clip_min=-1, clip_max=1, num_clients=2)
    with pytest.raises(ConfigError):
        FixedPointEncoder(cfg, rounding="up")  # type: ignore[arg-type]


def test_decode_validates_its_input() -> None:
    cfg = FixedPointConfig(bits=20, clip_min=-1, clip_max=1, num_clients=2)
    enc = FixedPointEncoder(cfg)
    with pytest.raises(RingOverflowError):
        enc.decode_sum(cfg.ring.zeros(4), 3)
    with pytest.raises(RingValueError):
        enc.decode_sum(np.zeros(4, dtype=np.uint64), 1)
    with pytest.raises(RingValueError):
        enc.decode_sum(np.full(4, 2**20, dtype=np.uint32), 1)
    with pytest.raises(RingValueError):
        enc.decode_sum(np.zeros((2, 2), dtype=np.uint32), 1)
    with pytest.raises(EncodingError):
        enc.decode_sum(cfg.ring.zeros(4), -1)


def test_ring_arithmetic() -> None:
    for bits in (8, 20, 32, 40, 62):
        ring = Ring(bits)
        rng = np.random.default_rng(bits)
        a = ring.reduce(rng.integers(0, 2**62, 100, dtype=np.uint64).astype(ring.dtype))
        b = ring.reduce(rng.integers(0, 2**62, 100, dtype=np.uint64).astype(ring.dtype))
        m = 2**bits
        s = ring.add(a, b)
        assert [int(v) for v in s] == [(int(x) + int(y)) % m for x, y in zip(a, b, strict=True)]
        assert np.array_equal(ring.sub(s, b), a)
        assert np.array_equal(ring.add(a, ring.neg(a)), ring.zeros(100))
        assert np.array_equal(ring.sum([a, b, ring.neg(b)]), a)
        signed = np.array([-3, 0, 5, -(2 ** (bits - 1)), 2 ** (bits - 1) - 1])
        assert np.array_equal(ring.to_signed(ring.from_signed(signed)), signed)
    with pytest.raises(RingValueError):
        Ring(16).sum([])
    with pytest.raises(RingValueError):
        Ring(16).from_signed(np.array([0.5]))
    with pytest.raises(RingValueError):
        Ring(16).validate([1, 2])
    with pytest.raises(RingValueError):
        Ring(16).validate(Ring(16).zeros(3), d=4)
