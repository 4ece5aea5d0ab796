"""secagg.rotation: the randomized Walsh-Hadamard rotation is orthogonal and invertible,
the fast transform equals the Hadamard matrix, the public signs come from the seed only,
and rotated coordinates are flat (sub-Gaussian with proxy ||x||^2 / D)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from secagg.errors import ConfigError, EncodingError
from secagg.rotation import HadamardRotation, fwht, padded_dimension, rotation_signs


@pytest.mark.parametrize("bits", range(0, 12))
def test_fwht_is_the_hadamard_matrix(bits: int) -> None:
    size = 1 << bits
    h = np.ones((1, 1))
    for _ in range(bits):
        h = np.block([[h, h], [h, -h]])
    x = np.random.default_rng(bits).normal(size=size)
    np.testing.assert_allclose(fwht(x), h @ x, atol=1e-9 * math.sqrt(size))


@settings(max_examples=40)
@given(
    dim=st.integers(1, 3000),
    seed=st.binary(min_size=1, max_size=32),
    scale=st.floats(1e-6, 1e6),
)
def test_rotation_is_orthogonal_and_invertible(dim: int, seed: bytes, scale: float) -> None:
    rot = HadamardRotation(dim, seed)
    x = np.random.default_rng(dim).normal(size=dim) * scale
    y = rot.rotate(x)
    assert y.shape == (padded_dimension(dim),)
    assert np.linalg.norm(y) == pytest.approx(np.linalg.norm(x), rel=1e-12)
    np.testing.assert_allclose(rot.unrotate(y), x, rtol=0, atol=1e-12 * scale * math.sqrt(dim))


@settings(max_examples=20)
@given(dim=st.integers(1, 600), seed=st.binary(min_size=1, max_size=8))
def test_inner_products_are_kept(dim: int, seed: bytes) -> None:
    rot = HadamardRotation(dim, seed)
    rng = np.random.default_rng(dim)
    a, b = rng.normal(size=dim), rng.normal(size=dim)
    assert float(rot.rotate(a) @ rot.rotate(b)) == pytest.approx(float(a @ b), abs=1e-9 * dim)
    # linear: the rotation of a sum is the sum of the rotations (the server relies on it)
    np.testing.assert_allclose(rot.rotate(a + b), rot.rotate(a) + rot.rotate(b), atol=1e-12)


def test_signs_are_a_function_of_the_seed() -> None:
    a = rotation_signs(b"round-7", 4096)
    assert set(np.unique(a)) == {-1.0, 1.0}
    np.testing.assert_array_equal(a, rotation_signs(b"round-7", 4096))
    assert not np.array_equal(a, rotation_signs(b"round-8", 4096))
    assert stats.binomtest(int((a > 0).sum()), a.size).pvalue > 1e-6


def test_rotated_coordinates_are_flat() -> None:
    dim = 1 << 14
    x = np.zeros(dim)
    x[0] = 1.0  # the worst input for flatness: all mass in one coordinate
    y = HadamardRotation(dim, b"flat").rotate(x)
    np.testing.assert_allclose(np.abs(y), 1 / math.sqrt(dim))
    spiky = np.zeros(dim)
    spiky[:16] = 1.0  # Hoeffding: P(|y_j| > t) <= 2 exp(-t^2 D / (2 ||x||^2))
    y = HadamardRotation(dim, b"flat2").rotate(spiky)
    t = math.sqrt(2 * math.log(2 * dim / 1e-6) * 16 / dim)
    assert np.max(np.abs(y)) <= t


def test_bad_inputs() -> None:
    with pytest.raises(ConfigError):
        padded_dimension(0)
    with pytest.raises(ConfigError):
        HadamardRotation(10, b"")
    rot = HadamardRotation(10, b"s")
    with pytest.raises(EncodingError):
        rot.rotate(np.ones(11))
    with pytest.raises(EncodingError):
        rot.rotate(np.array([1.0] * 9 + [math.inf]))
    with pytest.raises(EncodingError):
        rot.unrotate(np.ones(10))
    with pytest.raises(EncodingError):
        fwht(np.ones(6))
