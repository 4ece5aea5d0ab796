"""The ring side of distributed DP: a client's update into Z_(2^b), and the sum back.

Client (Kairouz, Liu & Steinke, ICML 2021, Sec. 4):

1. rotate: R x with the round's public seed (:mod:`secagg.rotation`), length D;
2. clip to L2 norm C (R is orthogonal, so this is clipping x);
3. scale by 1/gamma (integer units);
4. round stochastically to integers, re-drawing until the L2 norm is at most the
   configured ``norm_bound`` (conditional rounding); coins from ``os.urandom``;
5. add the caller's integer noise (a discrete Gaussian or Skellam draw from ``dp``:
   this module takes it as an int64 array so ``secagg`` does not import ``dp``);
6. wrap into Z_(2^b): a :data:`secagg.ring.RingArray`, the input of the masking protocol.

Server: the masked sum, unmasked, is a ring vector; centre-lift it to
[-2^(b-1), 2^(b-1)), multiply by gamma and invert the rotation. If the true integer sum
left that range in some coordinate, that coordinate wrapped (modular clipping); the
parameter choice in :mod:`dp.distributed` bounds how often.

Conditional rounding. With ``norm_bound`` from Kairouz et al.'s Theorem
(``dp.rounded_sensitivity(C / gamma, granularity=1, dim=D, conditional=True, beta=b)``)
each draw is accepted with probability at least 1 - beta, so the expected number of draws
is at most 1 / (1 - beta) (2.5 at beta = e^-1/2) and ``max_tries`` draws all fail with
probability at most beta^max_tries. Conditioning biases the rounded vector: with A the
acceptance event and U the unconditional rounding of y, E[U | A] - y =
-E[(U - y) 1_(not A)] / P(A), and Cauchy-Schwarz with Var <U - y, u> <= 1/4 for unit u
gives ||E[U | A] - y||_2 <= (1/2) sqrt(beta) / (1 - beta) integer units
(:func:`rounding_bias_bound`), i.e. at most gamma times that in the decoded update.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np
from numpy.typing import NDArray

from secagg.errors import ConfigError, EncodingError
from secagg.ring import Ring, RingArray
from secagg.rotation import HadamardRotation, padded_dimension

FloatVector = NDArray[np.float64]
IntVector = NDArray[np.int64]

#: Largest integer magnitude of one rounded coordinate (keeps sums of squares exact).
MAX_COORDINATE = 2**31


class ConditionalRoundingError(EncodingError):
    """No rounding met the norm bound within ``max_tries`` draws (probability at most
    beta^max_tries when the bound is Kairouz et al.'s): the bound is too tight."""


def rounding_bias_bound(beta: float) -> float:
    """Upper bound (integer units, L2) on the bias of conditional rounding whose draws
    pass with probability >= 1 - beta: (1/2) sqrt(beta) / (1 - beta)."""
    if not 0.0 <= beta < 1.0:
        raise ConfigError(f"beta must be in [0, 1), got {beta!r}")
    return 0.5 * math.sqrt(beta) / (1.0 - beta)


@dataclass(frozen=True)
class DiscreteEncodingConfig:
    """Parameters of one round's encoding (chosen by ``dp.distributed``).

    Args:
        dim: length d of the flattened update.
        clip_norm: L2 clip C, in update units.
        scale: 1 / gamma, integer units per update unit.
        norm_bound: L2 bound of the rounded integer vector (conditional rounding).
        bits: ring size b.
        max_tries: conditional-rounding draws before :class:`ConditionalRoundingError`.
    """

    dim: int
    clip_norm: float
    scale: float
    norm_bound: float
    bits: int
    max_tries: int = 200
    ring: Ring = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "ring", Ring(self.bits))
        padded_dimension(self.dim)
        for name in ("clip_norm", "scale", "norm_bound"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"{name} must be a number, got {value!r}")
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"{name} must be finite and > 0, got {value!r}")
        if self.clip_norm * self.scale >= self.norm_bound:
            raise ConfigError("norm_bound must exceed clip_norm * scale (rounding adds norm)")
        if self.norm_bound >= MAX_COORDINATE:
            raise ConfigError(f"norm_bound {self.norm_bound} must stay below 2^31")
        if isinstance(self.max_tries, bool) or not isinstance(self.max_tries, int):
            raise ConfigError("max_tries must be an int")
        if self.max_tries < 1:
            raise ConfigError("max_tries must be >= 1")

    @property
    def padded_dim(self) -> int:
        """D, the power of two the rotation and the ring vector use."""
        return padded_dimension(self.dim)

    @property
    def gamma(self) -> float:
        """The quantum: one integer step is gamma update units."""
        return 1.0 / self.scale


@dataclass(frozen=True)
class RoundedUpdate:
    """A client's rounded, rotated, clipped update in integer units (before noise)."""

    values: IntVector
    tries: int
    original_norm: float


def secure_coins(count: int) -> FloatVector:
    """``count`` uniforms on the grid k 2^-53 of [0, 1) from ``os.urandom`` (so
    P(u < p) is within 2^-53 of p): the rounding coins."""
    if count == 0:
        return np.zeros(0)
    words = np.frombuffer(os.urandom(8 * count), dtype=np.uint64) >> np.uint64(11)
    out: FloatVector = words.astype(np.float64) * 2.0**-53
    return out


def squared_norm_at_most(values: IntVector, bound: float) -> bool:
    """Exactly whether sum(values^2) <= bound^2 (float fast path, exact ints near it)."""
    if values.size == 0:
        return True
    if int(np.max(np.abs(values))) > bound:
        return False
    as_float = values.astype(np.float64)
    approx = float(np.dot(as_float, as_float))
    limit = bound * bound
    margin = limit * 1e-9 + 1.0
    if approx > limit + margin:
        return False
    if approx < limit - margin:
        return True
    exact = sum(int(v) * int(v) for v in values.tolist())
    return Fraction(exact) <= Fraction(bound) ** 2


class DiscreteEncoder:
    """Client-side :meth:`encode` and server-side :meth:`decode_sum` for one config;
    the rotation seed is per round (public)."""

    def __init__(self, config: DiscreteEncodingConfig) -> None:
        self.config = config
        self.ring = config.ring

    def quantize(self, update: object, *, seed: bytes) -> RoundedUpdate:
        """Steps 1-4: rotate, clip, scale, conditionally round (int64, length D)."""
        cfg = self.config
        rotated = HadamardRotation(cfg.dim, seed).rotate(update)
        norm = float(np.linalg.norm(rotated))
        factor = cfg.scale * (min(1.0, cfg.clip_norm / norm) if norm > 0 else 1.0)
        scaled = rotated * factor
        floor = np.floor(scaled)
        frac = scaled - floor
        base = floor.astype(np.int64)
        for tries in range(1, cfg.max_tries + 1):
            rounded = base + (secure_coins(frac.size) < frac)
            if squared_norm_at_most(rounded, cfg.norm_bound):
                return RoundedUpdate(rounded, tries, norm)
        raise ConditionalRoundingError(
            f"no rounding within norm {cfg.norm_bound} after {cfg.max_tries} draws"
        )

    def wrap(self, values: IntVector, noise: IntVector | None = None) -> RingArray:
        """Steps 5-6: (values + noise) mod 2^b, a reduced ring vector."""
        vec = np.asarray(values)
        if vec.dtype.kind not in "iu" or vec.shape != (self.config.padded_dim,):
            raise EncodingError(f"integer vector of length {self.config.padded_dim} expected")
        total = vec.astype(np.int64, copy=True)
        if noise is not None:
            extra = np.asarray(noise)
            if extra.dtype.kind not in "iu" or extra.shape != total.shape:
                raise EncodingError(f"noise must be an integer vector of shape {total.shape}")
            total += extra.astype(np.int64, copy=False)
        return self.ring.from_signed(total)

    def encode(self, update: object, *, seed: bytes, noise: IntVector | None = None) -> RingArray:
        """The client pipeline: quantize, add ``noise``, wrap."""
        return self.wrap(self.quantize(update, seed=seed).values, noise)

    def unwrap(self, total: RingArray) -> IntVector:
        """The centred lift of an unmasked ring sum to [-2^(b-1), 2^(b-1))."""
        self.ring.validate(total, self.config.padded_dim)
        return self.ring.to_signed(total)

    def decode_sum(self, total: RingArray, *, seed: bytes) -> FloatVector:
        """Server side: unwrap, unscale, inverse rotation: the (noisy) sum of updates."""
        lifted = self.unwrap(total).astype(np.float64) * self.config.gamma
        return HadamardRotation(self.config.dim, seed).unrotate(lifted)
