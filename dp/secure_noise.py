"""Central Gaussian noise from the OS CSPRNG, on a fine power-of-two grid.

This replaces ``numpy.random.Generator.normal`` (PCG64, seeded: predictable from its
state, and floating point: its low bits leak the unnoised value, Mironov CCS 2012) for
the noise the server adds in central DP-FedAvg and for the adaptive-clipping count.

The grid. For a noise std s the grid is the power of two gamma = 2^(floor(log2 s) - 40),
so the lattice sigma s / gamma lies in [2^40, 2^41). It depends on s only, never on the
data. The release is

    y = gamma * (rint(x / gamma) + K),   K ~ N_Z(0, (s / gamma)^2)   (discrete Gaussian),

where x / gamma is exact (a power-of-two scaling) and y is a fixed function of the
integer n = rint(x / gamma) + K (|n| < 2^62 is required, i.e. |x| below about 2^21 s):
no low bit of y depends on x except through n.

Why its privacy is the continuous Gaussian's:

1. rint(x / gamma) moves each coordinate by at most gamma / 2, so the grid values have
   L2 sensitivity at most S + gamma sqrt(d) (:func:`rounding_inflation`); values already
   on the grid (the adaptive-clipping count, a multiple of 1/2) keep S exactly.
2. gamma * round(W / gamma) with W ~ N(0, s^2) continuous is the rounded Gaussian; adding
   it to grid points is post-processing of the Gaussian mechanism (add W, then round to
   the grid), so every accountant of the Gaussian mechanism (RDP, PLD) applies exactly,
   at that sensitivity.
3. The discrete Gaussian K differs from round(W / gamma) by a statistical distance of at
   most 25 / sigma_l^2 + 2^-100 per coordinate (midpoint rule: their pmfs agree within a
   factor 1 +- 50 / sigma_l^2 on |k| <= 12 sigma_l, and both tails beyond are below
   2^-100), and the sampler of :mod:`dp.fast_samplers` adds its own ``tv_bound``
   (about 2^-108). :func:`grid_distance` returns the sum, about 2^-75.

So a release accounted as the Gaussian mechanism with noise multiplier z at sensitivity
S + gamma sqrt(d) is (eps, delta + (1 + e^eps) N grid_distance)-DP for N noised
coordinates in all; :class:`dp.mechanisms.DPFedAvg` raises the std to
z (S + gamma sqrt(d)) so that its ledger's z is exact (a relative increase of at most
z sqrt(d) 2^-40).
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
from numpy.typing import NDArray

from dp.errors import SamplerParameterError, UpdateError
from dp.fast_samplers import FastDiscreteGaussian, discrete_gaussian_sampler

FloatArray = NDArray[np.float64]

GRID_BITS = 40
"""sigma_l = std / grid lies in [2^GRID_BITS, 2^(GRID_BITS+1)) when the values allow."""

MIN_GRID_BITS = 30
"""Below this many grid bits the lattice effect (25 / sigma_l^2) is refused."""


def _check_std(std: float) -> float:
    value = float(std)
    if not (math.isfinite(value) and value > 0.0):
        raise SamplerParameterError(f"noise std must be finite and > 0, got {std!r}")
    return value


def noise_grid(std: float) -> float:
    """The grid gamma = 2^(floor(log2 std) - GRID_BITS) for noise ``std`` (a function of
    the std only, so the grid reveals nothing about the data)."""
    s = _check_std(std)
    return math.ldexp(1.0, math.frexp(s)[1] - 1 - GRID_BITS)


def _lattice_sampler(std: float, grid: float) -> FastDiscreteGaussian:
    """The sampler of N_Z(0, (std / grid)^2), for a power-of-two ``grid`` below std."""
    if math.frexp(grid)[0] != 0.5 or not (2.0**30 <= std / grid < 2.0**48):
        raise SamplerParameterError(
            f"grid {grid!r} must be a power of two with std / grid in [2^30, 2^48)"
        )
    return discrete_gaussian_sampler(Fraction(std) / Fraction(grid))


def grid_distance(std: float, grid: float) -> float:
    """Per-coordinate statistical distance of gamma * N_Z(0, (std/gamma)^2), as sampled,
    from the rounded continuous Gaussian gamma * round(N(0, std^2) / gamma)."""
    s = _check_std(std)
    return 25.0 * (grid / s) ** 2 + 2.0**-100 + _lattice_sampler(s, grid).tv_bound


def rounding_inflation(grid: float, dim: int) -> float:
    """gamma * sqrt(d): how much rounding d coordinates to the grid can add to the L2
    sensitivity of values that are not already on it."""
    return grid * math.sqrt(dim)


def secure_gaussian(shape: int | tuple[int, ...], std: float) -> FloatArray:
    """Noise of std ``std`` as gamma * K on the grid of :func:`noise_grid`, K a discrete
    Gaussian from the OS CSPRNG. To noise values use :func:`add_secure_gaussian`, which
    puts them on the grid first (the privacy argument needs it)."""
    s = _check_std(std)
    grid = noise_grid(s)
    noise = _lattice_sampler(s, grid).sample(shape)
    out: FloatArray = noise.astype(np.float64) * grid
    return out


def secure_gaussian_scalar(std: float) -> float:
    """One draw of :func:`secure_gaussian`."""
    return float(secure_gaussian(1, std)[0])


def add_secure_gaussian(values: object, std: float, *, grid: float | None = None) -> FloatArray:
    """``values`` rounded to the grid plus secure Gaussian noise of std ``std``; ``grid``
    defaults to :func:`noise_grid` of the std (pass it to keep one grid while raising the
    std). See the module doc for why this has the Gaussian mechanism's privacy."""
    arr = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        raise UpdateError("values to noise contain NaN or Inf")
    s = _check_std(std)
    g = noise_grid(s) if grid is None else float(grid)
    sampler = _lattice_sampler(s, g)
    top = float(np.max(np.abs(arr))) if arr.size else 0.0
    if top / g + 1.0 + sampler.max_abs >= 2.0**62:
        raise SamplerParameterError(
            f"values of magnitude {top:.3g} exceed the int64 range of grid {g:.3g} "
            f"(about 2^21 times the noise std {s:.3g})"
        )
    ints = np.rint(arr / g).astype(np.int64)
    ints += sampler.sample(arr.shape)
    out: FloatArray = ints.astype(np.float64) * g
    return out
