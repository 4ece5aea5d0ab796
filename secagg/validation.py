"""Type and range checks shared by every module that takes values from outside.

One place for "an int (not a bool) in [lo, hi]", "a fraction in [0, 1)", "bytes of this
length", so each caller names the value and the error class and nothing else. They
raise, never ``assert``: the checks stay under ``python -O``.
"""

from __future__ import annotations

from typing import TypeVar

from secagg.errors import ConfigError, SecAggError

E = TypeVar("E", bound=SecAggError)


def is_int(v: object) -> bool:
    """True for an int that is not a bool (bool is an int subclass in Python)."""
    return isinstance(v, int) and not isinstance(v, bool)


def check_int(
    name: str,
    v: object,
    lo: int | None = None,
    hi: int | None = None,
    error: type[SecAggError] = ConfigError,
) -> int:
    """``v`` as an int in [lo, hi] (either bound optional), or ``error``."""
    if not isinstance(v, int) or isinstance(v, bool):
        raise error(f"{name} must be an int, got {type(v).__name__}")
    n = v
    if (lo is not None and n < lo) or (hi is not None and n > hi):
        lo_s = "-inf" if lo is None else str(lo)
        hi_s = "inf" if hi is None else str(hi)
        raise error(f"{name} must be in [{lo_s}, {hi_s}], got {n}")
    return n


def check_fraction(
    name: str, v: object, *, upper_closed: bool = False, error: type[SecAggError] = ConfigError
) -> float:
    """``v`` as a number in [0, 1) (or [0, 1] with ``upper_closed``), or ``error``."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise error(f"{name} must be a number, got {type(v).__name__}")
    f = float(v)
    if not (0 <= f <= 1 if upper_closed else 0 <= f < 1):
        raise error(f"{name} must be in [0, 1{']' if upper_closed else ')'}, got {v!r}")
    return f


def check_bytes(
    name: str,
    v: object,
    length: int | None = None,
    *,
    min_len: int = 0,
    max_len: int | None = None,
    error: type[SecAggError] = ConfigError,
) -> bytes:
    """``v`` as bytes of exactly ``length`` (or within [min_len, max_len]), or ``error``."""
    if not isinstance(v, bytes | bytearray | memoryview):
        raise error(f"{name} must be bytes, got {type(v).__name__}")
    b = bytes(v)
    if length is not None and len(b) != length:
        raise error(f"{name} must be {length} bytes, got {len(b)}")
    if len(b) < min_len or (max_len is not None and len(b) > max_len):
        raise error(f"{name} must be {min_len}..{max_len} bytes, got {len(b)}")
    return b


def check_choice(
    name: str, v: object, choices: tuple[str, ...], error: type[SecAggError] = ConfigError
) -> str:
    """``v`` as one of ``choices``, or ``error``."""
    if not isinstance(v, str) or v not in choices:
        raise error(f"{name} must be one of {', '.join(choices)}; got {v!r}")
    return v


T = TypeVar("T")


def require(value: T | None, what: str, error: type[SecAggError] | None = None) -> T:
    """``value`` if it is set; otherwise the state machine was driven out of order."""
    if value is None:
        from secagg.errors import ProtocolUsageError

        raise (error or ProtocolUsageError)(f"{what} is not available at this step")
    return value
