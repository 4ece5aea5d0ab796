"""Packed encoding: layout, no carry between slots, refusal of unsound parameters."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from secagg.errors import EncodingError, NonFiniteInputError
from secagg.paillier.errors import (
    DecodeRangeError,
    LengthMismatchError,
    PaillierConfigError,
    SlotOverflowError,
)
from secagg.paillier.packing import PackedEncoder, PackingConfig


def test_default_layout_is_the_issue_layout() -> None:
    """16-bit values, 1000 clients, 1 guard bit: 75 slots of 27 bits in 2048 bits."""
    cfg = PackingConfig()
    assert (cfg.slot_bits, cfg.slots) == (27, 75)
    assert cfg.slots * cfg.slot_bits <= cfg.key_bits - 1
    assert cfg.clip_min <= -1 and cfg.clip_max >= 1


@pytest.mark.parametrize(
    ("value_bits", "clients", "guard", "slot_bits"),
    [
        (16, 1000, 1, 27),
        (16, 1024, 1, 27),
        (16, 1025, 1, 28),
        (8, 1, 0, 8),
        (8, 2, 2, 11),
        (32, 2**20, 3, 55),
    ],
)
def test_slot_width_formula(value_bits: int, clients: int, guard: int, slot_bits: int) -> None:
    cfg = PackingConfig(value_bits=value_bits, max_clients=clients, guard_bits=guard)
    assert cfg.slot_bits == slot_bits
    assert clients * cfg.max_value < 2**cfg.slot_bits


def test_refuses_slot_wider_than_exact_sums() -> None:
    with pytest.raises(SlotOverflowError, match="exceeds 62 bits"):
        PackingConfig(value_bits=32, max_clients=2**30, guard_bits=2)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"value_bits": 7},
        {"value_bits": 33},
        {"value_bits": 16.0},
        {"max_clients": 0},
        {"guard_bits": -1},
        {"key_bits": 1000},
        {"clip_min": 1.0, "clip_max": -1.0},
        {"clip_min": float("nan")},
        {"scale": -1.0},
    ],
)
def test_refuses_bad_parameters(kwargs: dict[str, object]) -> None:
    with pytest.raises(PaillierConfigError):
        PackingConfig(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_input_is_an_error(bad: float) -> None:
    enc = PackedEncoder(PackingConfig(key_bits=512, max_clients=4))
    with pytest.raises(NonFiniteInputError):
        enc.encode(np.array([0.1, bad, 0.2]))


@pytest.mark.parametrize("bad", [np.zeros((2, 2)), np.zeros(0), np.array(["a"]), [[1.0], [2.0, 3]]])
def test_malformed_vector_is_an_error(bad: object) -> None:
    enc = PackedEncoder(PackingConfig(key_bits=512, max_clients=4))
    with pytest.raises(EncodingError):
        enc.encode(bad)  # type: ignore[arg-type]


def test_clip_edges_map_to_the_value_range() -> None:
    cfg = PackingConfig(key_bits=512, max_clients=4)
    enc = PackedEncoder(cfg, rounding="nearest")
    q = enc.quantize(np.array([-5.0, -1.0, 0.0, 1.0, 5.0]))
    assert q[0] == q[1] and q[3] == q[4]
    assert q.min() >= 0 and q.max() <= cfg.max_value
    assert q[2] == cfg.offset  # zero is exact
    assert q[3] - cfg.offset == cfg.offset - q[1]  # symmetric range


@st.composite
def layouts(draw: st.DrawFn) -> PackingConfig:
    return PackingConfig(
        key_bits=draw(st.sampled_from([512, 1024, 2048])),
        value_bits=draw(st.integers(8, 24)),
        max_clients=draw(st.integers(1, 5000)),
        guard_bits=draw(st.integers(0, 3)),
    )


@given(cfg=layouts(), data=st.data())
def test_slot_sums_never_carry(cfg: PackingConfig, data: st.DataObject) -> None:
    """Plaintext sums of up to max_clients packed vectors unpack to element-wise sums,
    including every client at the top of the value range (the carry worst case)."""
    enc = PackedEncoder(cfg)
    d = data.draw(st.integers(1, 3 * cfg.slots + 1))
    k = data.draw(st.integers(1, min(cfg.max_clients, 12)))
    edge = data.draw(st.booleans())
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32)))
    vals = [
        np.full(d, cfg.max_value, np.int64) if edge else rng.integers(0, cfg.max_value + 1, d)
        for _ in range(k)
    ]
    packed = [enc.pack(v) for v in vals]
    assert all(p.bit_length() <= cfg.key_bits - 1 for row in packed for p in row)
    totals = [sum(col) for col in zip(*packed, strict=True)]
    # the remaining (max_clients - k) clients at the top: still no carry
    extra = (cfg.max_clients - k) * cfg.max_value
    got = enc.unpack_sums(totals, d, k)
    np.testing.assert_array_equal(got, np.sum(vals, axis=0))
    assert got.max() + extra < 2**cfg.slot_bits


def test_unpack_refuses_more_than_max_clients() -> None:
    cfg = PackingConfig(key_bits=512, max_clients=3)
    enc = PackedEncoder(cfg)
    with pytest.raises(SlotOverflowError):
        enc.unpack_sums(enc.pack(np.zeros(4, np.int64)), 4, 4)


def test_unpack_detects_impossible_sums() -> None:
    cfg = PackingConfig(key_bits=512, max_clients=3)
    enc = PackedEncoder(cfg)
    ones = enc.pack(np.full(4, cfg.max_value, np.int64))
    with pytest.raises(DecodeRangeError, match="exceeds"):
        enc.unpack_sums([ones[0] * 2], 4, 1)  # two clients' worth claimed as one
    with pytest.raises(DecodeRangeError, match="padding"):
        enc.unpack_sums([1 << ((cfg.slots - 1) * cfg.slot_bits)], 4, 1)
    with pytest.raises(DecodeRangeError, match="packed width"):
        enc.unpack_sums([1 << (cfg.slots * cfg.slot_bits)], 4, 1)
    with pytest.raises(LengthMismatchError):
        enc.unpack_sums(ones + ones, 4, 1)


def test_pack_refuses_out_of_range_values() -> None:
    enc = PackedEncoder(PackingConfig(key_bits=512, max_clients=3))
    with pytest.raises(EncodingError):
        enc.pack(np.array([-1, 0]))
    with pytest.raises(EncodingError):
        enc.pack(np.array([2**16]))
