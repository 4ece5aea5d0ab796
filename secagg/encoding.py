"""Fixed-point encoding of float vectors into Z_(2^b), and decoding of their sums.

A value ``x`` is clipped to ``[clip_min, clip_max]``, scaled by ``scale`` and rounded to
an integer ``q`` (stochastically, so that ``E[q] = x * scale``, or to nearest for
reproducible tests), then stored as ``q mod 2^b`` (two's complement). The sum of ``n``
encodings is the encoding of the sum as long as ``|sum q| < 2^(b-1)``;
:class:`FixedPointConfig` refuses any parameters for which that could fail, counting the
worst case of ``n`` clients at the clip edge plus an optional bound on added integer
noise (distributed DP adds signed integer noise in the ring before masking).
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from secagg.errors import ConfigError, EncodingError, NonFiniteInputError, RingOverflowError
from secagg.ring import Ring, RingArray

Rounding = Literal["stochastic", "nearest"]

#: Largest per-element integer magnitude. Far below float64's 2^53, so that adding the
#: uniform rounding offset keeps 8 fractional bits and stochastic rounding stays unbiased.
MAX_ELEMENT_MAGNITUDE = 2**44


@dataclass(frozen=True)
class FixedPointConfig:
    """Parameters of the encoding, validated against wrap-around for ``num_clients``.

    Args:
        bits: ring size b (8..62).
        clip_min, clip_max: every element is clipped to this range before encoding.
        num_clients: the largest number of encoded vectors that will be summed.
        scale: quantisation scale (one quantum is ``1/scale``). ``None`` picks the
            largest power of two for which the sum cannot wrap; a power of two makes
            scaling and decoding exact in floating point.
        noise_bound: bound on the absolute value of integer noise added to the *sum*
            (in quanta); reserved as head-room in the overflow check.
    """

    bits: int
    clip_min: float
    clip_max: float
    num_clients: int
    scale: float | None = None
    noise_bound: int = 0
    ring: Ring = field(init=False, repr=False, compare=False)
    resolved_scale: float = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "ring", Ring(self.bits))
        lo, hi = self.clip_min, self.clip_max
        for name, v in (("clip_min", lo), ("clip_max", hi)):
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                raise ConfigError(f"{name} must be a finite number, got {v!r}")
        if not lo < hi:
            raise ConfigError(f"clip range must satisfy clip_min < clip_max, got [{lo}, {hi}]")
        n = self.num_clients
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError(f"num_clients must be a positive int, got {n!r}")
        nb = self.noise_bound
        if isinstance(nb, bool) or not isinstance(nb, int) or nb < 0:
            raise ConfigError(f"noise_bound must be a non-negative int, got {nb!r}")
        limit = (1 << (self.bits - 1)) - 1 - nb  # |sum| must stay <= limit
        if limit < n:
            raise RingOverflowError(
                f"no room in Z_2^{self.bits}: {n} clients with noise bound {nb} leave no "
                "value bits; use more bits or fewer clients"
            )
        max_abs = max(abs(lo), abs(hi))
        if self.scale is None:
            per_client = min(limit // n, MAX_ELEMENT_MAGNITUDE)
            scale = 2.0 ** math.floor(math.log2(per_client / max_abs))
            while n * math.ceil(max_abs * scale) > limit or max_abs * scale > per_client:
                scale /= 2
        else:
            scale = self.scale
            if isinstance(scale, bool) or not isinstance(scale, int | float):
                raise ConfigError(f"scale must be a number, got {scale!r}")
            if not math.isfinite(scale) or scale <= 0:
                raise ConfigError(f"scale must be finite and > 0, got {scale!r}")
            per = math.ceil(max_abs * scale)
            if per > MAX_ELEMENT_MAGNITUDE:
                raise ConfigError(
                    f"scale {scale} makes an element as large as {per} > 2^44, beyond what "
                    "float64 rounds exactly: lower the scale"
                )
            if n * per > limit:
                raise RingOverflowError(
                    f"sum of n={n} clients clipped to [{lo}, {hi}] at scale {scale} reaches "
                    f"{n * per} quanta (plus noise bound {nb}), which wraps Z_2^{self.bits} "
                    f"(|sum| must stay below 2^{self.bits - 1}); use more bits, a smaller "
                    "scale, a narrower clip range or fewer clients"
                )
        if scale * max_abs < 1:
            raise RingOverflowError(
                f"Z_2^{self.bits} is too small for n={n} clients with clip range [{lo}, {hi}]: "
                f"less than one quantum per element is left; use more bits"
            )
        object.__setattr__(self, "resolved_scale", float(scale))

    @property
    def quantum(self) -> float:
        """The value of one integer step, 1/scale."""
        return 1.0 / self.resolved_scale

    @property
    def max_element(self) -> int:
        """Largest |q| a single encoded element can have."""
        return math.ceil(max(abs(self.clip_min), abs(self.clip_max)) * self.resolved_scale)

    def describe(self) -> dict[str, Any]:
        """A JSON-friendly summary of the resolved parameters."""
        return {
            "bits": self.bits,
            "dtype": str(self.ring.dtype),
            "clip_range": [self.clip_min, self.clip_max],
            "num_clients": self.num_clients,
            "scale": self.resolved_scale,
            "quantum": self.quantum,
            "noise_bound": self.noise_bound,
        }


class FixedPointEncoder:
    """Encodes float vectors into the ring and decodes sums back to floats."""

    def __init__(self, config: FixedPointConfig, *, rounding: Rounding = "stochastic") -> None:
        if rounding not in ("stochastic", "nearest"):
            raise ConfigError(f"rounding must be 'stochastic' or 'nearest', got {rounding!r}")
        self.config = config
        self.ring = config.ring
        self.rounding: Rounding = rounding

    # -- encoding ---------------------------------------------------------------------

    def quantize(
        self, x: npt.ArrayLike, *, rng: np.random.Generator | None = None
    ) -> npt.NDArray[np.int64]:
        """Clip, scale and round ``x`` to signed integers (before reduction mod 2^b).

        ``rng`` drives stochastic rounding; by default it is seeded from ``secrets`` so
        the rounding noise is unpredictable. Raises :class:`NonFiniteInputError` on NaN
        or Inf and :class:`EncodingError` on non-numeric input.
        """
        scaled = _as_float_vector(x)  # a private float64 copy: safe to work in place
        cfg = self.config
        np.clip(scaled, cfg.clip_min, cfg.clip_max, out=scaled)
        scaled *= cfg.resolved_scale
        if self.rounding == "nearest":
            np.rint(scaled, out=scaled)
        else:
            gen = rng if rng is not None else np.random.default_rng(secrets.randbits(128))
            scaled += gen.random(scaled.shape)
            np.floor(scaled, out=scaled)
        # |x * scale| <= max_element, and floor(v + u) of such v cannot exceed it.
        return scaled.astype(np.int64)

    def encode(self, x: npt.ArrayLike, *, rng: np.random.Generator | None = None) -> RingArray:
        """Encode a float vector into Z_(2^b) (a 1-D array of the ring's dtype)."""
        return self.ring.from_signed(self.quantize(x, rng=rng))

    def add_noise(self, encoded: RingArray, noise: npt.NDArray[np.signedinteger[Any]]) -> RingArray:
        """Add signed integer noise (in quanta) to an encoded vector, mod 2^b.

        The caller is responsible for keeping the noise of the whole sum within the
        ``noise_bound`` the configuration reserved.
        """
        n = np.asarray(noise)
        if n.dtype.kind not in "iu":
            raise EncodingError(f"integer noise expected, got dtype {n.dtype}")
        if n.shape != encoded.shape:
            raise EncodingError(f"noise shape {n.shape} differs from vector shape {encoded.shape}")
        return self.ring.add(encoded, self.ring.from_signed(n))

    # -- decoding ---------------------------------------------------------------------

    def decode_sum(self, total: RingArray, num_summed: int) -> npt.NDArray[np.float64]:
        """Decode the ring sum of ``num_summed`` encodings to a float64 vector.

        ``num_summed`` must not exceed the configured ``num_clients``: beyond it the sum
        may have wrapped and decoding would be silently wrong.
        """
        if isinstance(num_summed, bool) or not isinstance(num_summed, int) or num_summed < 0:
            raise EncodingError(f"num_summed must be a non-negative int, got {num_summed!r}")
        if num_summed > self.config.num_clients:
            raise RingOverflowError(
                f"a sum of {num_summed} encodings exceeds the {self.config.num_clients} "
                "clients this configuration was checked for"
            )
        self.ring.validate(total)
        return self.ring.to_signed(total).astype(np.float64) / self.config.resolved_scale

    def decode(self, encoded: RingArray) -> npt.NDArray[np.float64]:
        """Decode one encoded vector."""
        return self.decode_sum(encoded, 1)


def _as_float_vector(x: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Validate a numeric vector and return a float64 1-D copy of it."""
    try:
        arr = np.asarray(x)
    except Exception as exc:  # e.g. ragged nested lists
        raise EncodingError(f"input cannot be read as an array: {exc}") from exc
    if arr.dtype.kind not in "fiu":
        raise EncodingError(f"input must be a real numeric vector, got dtype {arr.dtype}")
    if arr.ndim != 1:
        raise EncodingError(f"input must be 1-D (flatten model updates first), got {arr.shape}")
    out = arr.astype(np.float64, copy=True)
    # Fast path: the sum of finite float64 values is finite unless it overflows, so one
    # reduction replaces an element-wise mask in the common case.
    if not np.isfinite(out.sum()) and not np.isfinite(out).all():
        bad = ~np.isfinite(out)
        raise NonFiniteInputError(
            f"input holds {int(np.count_nonzero(bad))} NaN/Inf element(s) (first at index "
            f"{int(np.flatnonzero(bad)[0])}); refusing to encode"
        )
    return out
