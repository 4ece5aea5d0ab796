"""User-level DP-FedAvg (McMahan et al., ICLR 2018): clipping, Gaussian noise on the sum,
a fixed public denominator; adaptive clipping (Andrew et al., NeurIPS 2021); the
sensitivity of quantised updates (Kairouz et al., ICML 2021).

Per round, with client sampling rate q and expected clients m = q * N:

1. each client clips its update to L2 norm C (:meth:`DPFedAvg.clip`);
2. the clipped updates are summed (securely: the server learns only the sum);
3. Gaussian noise N(0, z^2 S^2) is added to the sum, where S is the L2 bound of what was
   actually summed (S = C, or larger after quantisation);
4. the noised sum is divided by m, fixed and public. The un-noised number of
   participants is not used, so it is not part of the release.

The round is a Poisson-subsampled Gaussian mechanism with noise multiplier z and rate q:
:meth:`DPFedAvg.round_cost` is what the ledger accounts. Noise location: ``central``
means the server adds the noise after secure aggregation, so the server is trusted to
add it (and sees the un-noised sum); ``distributed`` (clients add discrete noise in the
ring, so no party sees an un-noised sum) is the interface reserved for a later issue.

Randomness: every noise draw and rounding coin here comes from the OS CSPRNG
(:mod:`dp.secure_noise`, :mod:`dp.secure_random`). The ``rng`` parameters that used to
take a numpy ``Generator`` are deprecated and ignored: a seeded PCG64 is predictable
from its state, and its floating-point normals leak low bits (Mironov, CCS 2012).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from dp.errors import (
    ClipNormError,
    NoiseLocationError,
    NoiseMultiplierError,
    QuantizationError,
    UpdateError,
)
from dp.ledger import RoundCost, round_cost
from dp.ledger_format import ExtraValue
from dp.secure_noise import add_secure_gaussian, noise_grid, rounding_inflation
from dp.secure_random import random_words
from dp.validation import check_clip_norm, check_count, check_noise_multiplier, check_sample_rate

FloatVector = NDArray[np.float64]


class NoiseLocation(StrEnum):
    """Who adds the noise. ``local``: each client to its own gradients (DP-SGD);
    ``central``: the server, to the securely aggregated sum (trusted for noise);
    ``distributed``: the clients, in shares, before masking (later issue)."""

    LOCAL = "local"
    CENTRAL = "central"
    DISTRIBUTED = "distributed"


class Mechanism(Protocol):
    """What the protocol layer needs from a DP mechanism."""

    name: str
    noise_location: NoiseLocation

    def round_cost(self) -> RoundCost:
        """The (q, sigma, steps, sensitivity) this round spends, for the ledger."""
        ...


def _as_vector(update: object, where: str) -> FloatVector:
    arr = np.asarray(update)
    if arr.dtype.kind not in "fiu" or arr.ndim != 1:
        raise UpdateError(f"{where} must be a 1-D numeric vector, got {arr.dtype} {arr.shape}")
    vec = arr.astype(np.float64)
    if not np.all(np.isfinite(vec)):
        raise UpdateError(f"{where} contains NaN or Inf")
    return vec


def clip_l2(update: object, clip_norm: float) -> tuple[FloatVector, float]:
    """``update`` scaled to L2 norm at most ``clip_norm``; also returns its original norm."""
    clip = check_clip_norm(clip_norm)
    vec = _as_vector(update, "update")
    norm = float(np.linalg.norm(vec))
    if norm > clip:
        vec = vec * (clip / norm)
    return vec, norm


def rounded_sensitivity(
    clip_norm: float,
    *,
    granularity: float,
    dim: int,
    conditional: bool = False,
    beta: float = math.exp(-0.5),
) -> float:
    """L2 bound of a clipped vector after stochastic rounding to multiples of ``granularity``.

    Unconditional rounding moves each coordinate by less than gamma: bound C + gamma*sqrt(d).
    Conditional rounding (Kairouz et al. 2021, Sec. 4.1) re-draws until the rounded norm
    is at most min(C + gamma*sqrt(d), sqrt(C^2 + gamma^2 d / 4 + sqrt(2 ln(1/beta))
    * gamma * (C + gamma*sqrt(d)/2))); each draw passes with probability >= 1 - beta.
    This is the sensitivity to account: quantisation can push a clipped update above C.
    """
    c = check_clip_norm(clip_norm)
    g = check_clip_norm(granularity, "granularity")
    d = check_count(dim, "dim", minimum=1)
    loose = c + g * math.sqrt(d)
    if not conditional:
        return loose
    if not (0.0 < beta < 1.0):
        raise QuantizationError(f"beta must be in (0, 1), got {beta!r}")
    tight = math.sqrt(
        c * c
        + g * g * d / 4.0
        + math.sqrt(2.0 * math.log(1.0 / beta)) * g * (c + g * math.sqrt(d) / 2.0)
    )
    return min(loose, tight)


def _ignored_rng(rng: object, where: str) -> None:
    """Warn that a passed numpy generator is no longer used (see the module doc)."""
    if rng is not None:
        warnings.warn(
            f"{where}: the rng argument is deprecated and ignored; noise and rounding coins "
            "come from the OS CSPRNG",
            DeprecationWarning,
            stacklevel=3,
        )


def secure_unit_uniforms(count: int) -> FloatVector:
    """``count`` uniforms on the grid k 2^-53 of [0, 1), from the OS CSPRNG (rounding
    coins: P(u < p) = ceil(p 2^53) 2^-53, within 2^-53 of p)."""
    words = random_words(count) >> np.uint64(11)
    out: FloatVector = words.astype(np.float64) * 2.0**-53
    return out


def conditional_stochastic_round(
    vector: object,
    *,
    granularity: float,
    bound: float,
    rng: np.random.Generator | None = None,
    max_tries: int = 1000,
) -> FloatVector:
    """Unbiased stochastic rounding to multiples of ``granularity``, re-drawn until the
    L2 norm is at most ``bound`` (use :func:`rounded_sensitivity` with conditional=True).
    Coins from the OS CSPRNG; ``rng`` is deprecated and ignored."""
    _ignored_rng(rng, "conditional_stochastic_round")
    vec = _as_vector(vector, "vector")
    g = check_clip_norm(granularity, "granularity")
    scaled = vec / g
    floor = np.floor(scaled)
    frac = scaled - floor
    for _ in range(check_count(max_tries, "max_tries", minimum=1)):
        rounded = (floor + (secure_unit_uniforms(vec.size) < frac)) * g
        if float(np.linalg.norm(rounded)) <= bound:
            return rounded
    raise QuantizationError(f"no rounding within norm {bound} after {max_tries} tries")


@dataclass
class AdaptiveClipping:
    """Quantile-based adaptive clipping (Andrew et al. 2021), with its noise accounted.

    Each client also reports b = 1[||update|| <= C] - 1/2 (sensitivity 1/2); the server
    adds N(0, count_noise_std^2) to their sum, estimates the unclipped fraction with the
    fixed denominator, and moves C geometrically toward the ``target_quantile``.
    Theorem 1 of the paper: the update noise z_update and count noise sigma_b together
    are one Gaussian mechanism with z = (z_update^-2 + (2 sigma_b)^-2)^-1/2, so for a
    total z the update noise is z_update = (z^-2 - (2 sigma_b)^-2)^-1/2.
    """

    initial_clip: float
    target_quantile: float = 0.5
    learning_rate: float = 0.2
    count_noise_std: float = 1.0
    clip: float = field(init=False)

    def __post_init__(self) -> None:
        self.clip = check_clip_norm(self.initial_clip, "initial_clip")
        if not (0.0 <= self.target_quantile <= 1.0):
            raise ClipNormError(f"target_quantile must be in [0, 1], got {self.target_quantile}")
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0.0):
            raise ClipNormError(f"learning_rate must be > 0, got {self.learning_rate}")
        check_noise_multiplier(self.count_noise_std, "count_noise_std")

    def update_noise_multiplier(self, total: float) -> float:
        """z_update for a total noise multiplier ``total`` (must be < 2 * sigma_b)."""
        z = check_noise_multiplier(total)
        rest = z**-2 - (2.0 * self.count_noise_std) ** -2
        if rest <= 0.0:
            raise NoiseMultiplierError(
                f"noise_multiplier {z} must be below 2 * count_noise_std = "
                f"{2.0 * self.count_noise_std}: the count noise alone would exceed the budget"
            )
        return float(rest**-0.5)

    def indicator(self, norm: float) -> float:
        """The centred bit a client reports: +1/2 if unclipped, -1/2 otherwise."""
        return 0.5 if norm <= self.clip else -0.5

    def step(
        self,
        indicator_sum: float,
        expected_clients: float,
        rng: np.random.Generator | None = None,
    ) -> float:
        """Noise the indicators' sum (secure Gaussian on a power-of-two grid below 1/2:
        the sum of +-1/2 bits is on it, so the sensitivity 1/2 is exact), update C and
        return it. ``rng`` is deprecated and ignored."""
        _ignored_rng(rng, "AdaptiveClipping.step")
        noisy = float(add_secure_gaussian([float(indicator_sum)], self.count_noise_std)[0])
        unclipped_fraction = noisy / expected_clients + 0.5
        self.clip *= math.exp(-self.learning_rate * (unclipped_fraction - self.target_quantile))
        return self.clip


@dataclass(frozen=True)
class ClippedUpdate:
    """A client's contribution: the clipped update and, with adaptive clipping, its bit."""

    vector: FloatVector
    original_norm: float
    indicator: float | None


class DPFedAvg:
    """DP-FedAvg with a fixed public denominator; central noise (distributed reserved).

    ``noise_multiplier`` z is the total (with adaptive clipping, the count noise is taken
    out of it); ``sensitivity`` is the L2 bound of the summed vectors (default C; pass
    :func:`rounded_sensitivity` when updates are quantised). Noise std = z_update * S.
    """

    name = "dp_fedavg"

    def __init__(
        self,
        *,
        clip_norm: float,
        noise_multiplier: float,
        expected_clients: float,
        sample_rate: float,
        sensitivity: float | None = None,
        adaptive: AdaptiveClipping | None = None,
        noise_location: NoiseLocation = NoiseLocation.CENTRAL,
    ) -> None:
        if noise_location is not NoiseLocation.CENTRAL:
            raise NoiseLocationError(
                f"DPFedAvg supports central noise today; {noise_location.value!r} noise "
                "(discrete noise added in the ring) comes with distributed DP"
            )
        self.noise_location = noise_location
        self.noise_multiplier = check_noise_multiplier(noise_multiplier)
        self.sample_rate = check_sample_rate(sample_rate)
        if not (math.isfinite(expected_clients) and expected_clients > 0):
            raise ClipNormError(f"expected_clients must be > 0, got {expected_clients!r}")
        self.expected_clients = float(expected_clients)
        self.adaptive = adaptive
        self.clip_norm = adaptive.clip if adaptive else check_clip_norm(clip_norm)
        self._sensitivity_ratio = (
            1.0
            if sensitivity is None
            else check_clip_norm(sensitivity, "sensitivity") / self.clip_norm
        )
        if self._sensitivity_ratio < 1.0:
            raise ClipNormError("sensitivity must be >= clip_norm")
        self.update_noise_multiplier = (
            adaptive.update_noise_multiplier(self.noise_multiplier)
            if adaptive
            else self.noise_multiplier
        )

    @property
    def sensitivity(self) -> float:
        """L2 bound of one client's summed vector (scales with an adaptive clip)."""
        return self.clip_norm * self._sensitivity_ratio

    @property
    def noise_std(self) -> float:
        """Std of the Gaussian noise added to each coordinate of the sum."""
        return self.update_noise_multiplier * self.sensitivity

    def clip(self, update: object) -> ClippedUpdate:
        """Client side: clip to C (and the adaptive-clipping bit)."""
        vec, norm = clip_l2(update, self.clip_norm)
        bit = self.adaptive.indicator(norm) if self.adaptive else None
        return ClippedUpdate(vec, norm, bit)

    def release(
        self,
        clipped_sum: object,
        *,
        rng: np.random.Generator | None = None,
        indicator_sum: float | None = None,
    ) -> FloatVector:
        """Server side: noise the sum, divide by the fixed denominator, then (adaptive)
        update the clip for the next round. Commit the round to the ledger first.

        The noise is :func:`dp.secure_noise.add_secure_gaussian`: the sum is rounded to
        a power-of-two grid gamma of about 2^-40 std and discrete Gaussian noise on that
        grid is added, from the OS CSPRNG. Rounding can add gamma sqrt(d) to the
        sensitivity, so the std is z (S + gamma sqrt(d)) and the ledger's z stays exact
        (a relative increase of at most z sqrt(d) 2^-40). ``rng`` is deprecated and
        ignored."""
        _ignored_rng(rng, "DPFedAvg.release")
        total = _as_vector(clipped_sum, "clipped_sum")
        if self.adaptive is not None and indicator_sum is None:
            raise UpdateError("adaptive clipping needs indicator_sum")
        grid = noise_grid(self.noise_std)
        inflated = self.sensitivity + rounding_inflation(grid, max(1, total.size))
        noised = add_secure_gaussian(total, self.update_noise_multiplier * inflated, grid=grid)
        if self.adaptive is not None and indicator_sum is not None:
            self.clip_norm = self.adaptive.step(indicator_sum, self.expected_clients)
        out: FloatVector = noised / self.expected_clients
        return out

    def round_cost(self) -> RoundCost:
        """What this round spends (one Poisson-subsampled Gaussian step at z, q)."""
        extra: dict[str, ExtraValue] = {
            "expected_clients": self.expected_clients,
            "noise_std": self.noise_std,
            "update_noise_multiplier": self.update_noise_multiplier,
        }
        if self.adaptive is not None:
            extra["count_noise_std"] = self.adaptive.count_noise_std
            extra["target_quantile"] = self.adaptive.target_quantile
        return round_cost(
            mechanism=self.name,
            noise_location="central",
            sample_rate=self.sample_rate,
            noise_multiplier=self.noise_multiplier,
            steps=1,
            clip_norm=self.clip_norm,
            sensitivity=self.sensitivity,
            extra=extra,
        )
