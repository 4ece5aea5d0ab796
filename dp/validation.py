"""Range checks for privacy parameters, shared by accountants, mechanisms and the client.

Each check returns the value (as the canonical Python type) or raises the named
:mod:`dp.errors` exception, so a NaN never reaches an accountant and a bad value is
reported with the parameter's name.
"""

from __future__ import annotations

import math
import numbers

from dp.errors import (
    ClipNormError,
    DeltaError,
    EpsilonError,
    NoiseMultiplierError,
    SampleRateError,
    StepsError,
)


def _as_float(value: object, name: str, error: type[ValueError]) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise error(f"{name} must be a real number, got {type(value).__name__}")
    return float(value)


def check_noise_multiplier(value: object, name: str = "noise_multiplier") -> float:
    """A finite noise multiplier > 0 (sigma = noise std / sensitivity)."""
    sigma = _as_float(value, name, NoiseMultiplierError)
    if not math.isfinite(sigma) or sigma <= 0.0:
        raise NoiseMultiplierError(f"{name} must be finite and > 0, got {sigma!r}")
    return sigma


def check_clip_norm(value: object, name: str = "clip_norm") -> float:
    """A finite L2 clipping norm (or sensitivity bound) > 0."""
    clip = _as_float(value, name, ClipNormError)
    if not math.isfinite(clip) or clip <= 0.0:
        raise ClipNormError(f"{name} must be finite and > 0, got {clip!r}")
    return clip


def check_sample_rate(value: object, name: str = "sample_rate") -> float:
    """A sampling probability in (0, 1]."""
    q = _as_float(value, name, SampleRateError)
    if not (0.0 < q <= 1.0):  # also rejects NaN
        raise SampleRateError(f"{name} must be in (0, 1], got {q!r}")
    return q


def check_delta(value: object, *, population: int | None = None, name: str = "delta") -> float:
    """delta in (0, 1); below 1/population when the population size is known.

    delta >= 1/n would allow a mechanism that publishes one record in the clear.
    """
    delta = _as_float(value, name, DeltaError)
    if not (0.0 < delta < 1.0):
        raise DeltaError(f"{name} must be in (0, 1), got {delta!r}")
    if population is not None:
        n = check_count(population, "population")
        if n < 1:
            raise DeltaError("population must be >= 1")
        if delta >= 1.0 / n:
            raise DeltaError(
                f"{name}={delta!r} is not below 1/n = {1.0 / n:.3g} for n={n}; "
                "use delta well below 1/n (e.g. 1/n^1.1)"
            )
    return delta


def check_epsilon(value: object, name: str = "target_epsilon") -> float:
    """A finite epsilon > 0."""
    eps = _as_float(value, name, EpsilonError)
    if not math.isfinite(eps) or eps <= 0.0:
        raise EpsilonError(f"{name} must be finite and > 0, got {eps!r}")
    return eps


def check_count(value: object, name: str = "steps", *, minimum: int = 0) -> int:
    """A Python or numpy integer >= minimum (bools refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise StepsError(f"{name} must be an integer, got {type(value).__name__}")
    count = int(value)
    if count < minimum:
        raise StepsError(f"{name} must be >= {minimum}, got {count}")
    return count
