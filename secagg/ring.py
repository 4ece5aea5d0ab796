"""The ring Z_(2^b) that masked aggregation works in, backed by numpy unsigned arrays.

``b`` ranges from 8 to 62. Elements live in ``uint32`` for ``b <= 32`` and in ``uint64``
above. Because ``2^b`` divides the backing type's modulus, additions may wrap naturally
in the backing type and be reduced mod ``2^b`` once at the end; :meth:`Ring.reduce` does
that. A vector that leaves a client must be reduced: its high bits would otherwise carry
information that the mask does not cover.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from secagg.errors import ConfigError, RingValueError

MIN_BITS = 8
MAX_BITS = 62

RingArray = npt.NDArray[np.unsignedinteger[Any]]


@dataclass(frozen=True)
class Ring:
    """Z_(2^bits) with a numpy backing dtype; all operations are element-wise."""

    bits: int

    def __post_init__(self) -> None:
        if isinstance(self.bits, bool) or not isinstance(self.bits, int):
            raise ConfigError(f"ring bits must be an int, got {type(self.bits).__name__}")
        if not MIN_BITS <= self.bits <= MAX_BITS:
            raise ConfigError(f"ring bits must be in [{MIN_BITS}, {MAX_BITS}], got {self.bits}")

    # -- properties ----------------------------------------------------------------

    @property
    def dtype(self) -> np.dtype[Any]:
        """The numpy backing dtype: uint32 for b <= 32, uint64 otherwise."""
        return np.dtype(np.uint32) if self.bits <= 32 else np.dtype(np.uint64)

    @property
    def modulus(self) -> int:
        """2^bits."""
        return 1 << self.bits

    @property
    def mask(self) -> int:
        """2^bits - 1, the bit mask that reduces a backing-type value mod 2^bits."""
        return (1 << self.bits) - 1

    @property
    def itemsize(self) -> int:
        """Bytes per element on the wire and in memory."""
        return int(self.dtype.itemsize)

    @property
    def needs_reduction(self) -> bool:
        """True when the backing type is wider than the ring (b != 32)."""
        return self.bits != self.dtype.itemsize * 8

    # -- construction and validation -----------------------------------------------

    def zeros(self, d: int) -> RingArray:
        """The zero vector of length ``d``."""
        return np.zeros(int(d), dtype=self.dtype)

    def validate(self, x: object, d: int | None = None) -> RingArray:
        """Check that ``x`` is a 1-D reduced ring vector (of length ``d`` if given).

        Raises :class:`RingValueError` naming what is wrong; returns ``x`` unchanged.
        """
        if not isinstance(x, np.ndarray):
            raise RingValueError(f"ring vector must be a numpy array, got {type(x).__name__}")
        if x.dtype != self.dtype:
            raise RingValueError(
                f"ring vector dtype {x.dtype} does not match Z_2^{self.bits} ({self.dtype})"
            )
        if x.ndim != 1:
            raise RingValueError(f"ring vector must be 1-D, got shape {x.shape}")
        if d is not None and x.shape[0] != d:
            raise RingValueError(f"ring vector has length {x.shape[0]}, expected {d}")
        if self.needs_reduction and x.size and int(x.max()) > self.mask:
            raise RingValueError(f"ring vector holds elements >= 2^{self.bits}")
        return x

    # -- arithmetic ------------------------------------------------------------------

    def reduce(self, x: RingArray, out: RingArray | None = None) -> RingArray:
        """Reduce ``x`` mod 2^bits (in place when ``out is x``)."""
        if not self.needs_reduction:
            if out is None:
                return x.copy()
            if out is not x:
                np.copyto(out, x)
            return out
        r: RingArray = np.bitwise_and(x, self.dtype.type(self.mask), out=out)
        return r

    def add(self, a: RingArray, b: RingArray, out: RingArray | None = None) -> RingArray:
        """(a + b) mod 2^bits."""
        r = np.add(a, b, out=out)
        return self.reduce(r, out=r)

    def sub(self, a: RingArray, b: RingArray, out: RingArray | None = None) -> RingArray:
        """(a - b) mod 2^bits."""
        r = np.subtract(a, b, out=out)
        return self.reduce(r, out=r)

    def neg(self, a: RingArray, out: RingArray | None = None) -> RingArray:
        """(-a) mod 2^bits."""
        r = np.negative(a, out=out)
        return self.reduce(r, out=r)

    def sum(self, vectors: list[RingArray] | tuple[RingArray, ...]) -> RingArray:
        """Sum of ring vectors mod 2^bits, accumulated in place in one buffer."""
        if not vectors:
            raise RingValueError("cannot sum an empty list of ring vectors")
        acc = np.array(vectors[0], dtype=self.dtype, copy=True)
        for v in vectors[1:]:
            np.add(acc, v, out=acc)  # natural wrap-around; reduced once below
        return self.reduce(acc, out=acc)

    def from_signed(self, values: npt.NDArray[np.signedinteger[Any]]) -> RingArray:
        """Map signed integers (e.g. integer DP noise) into the ring by two's complement."""
        v = np.asarray(values)
        if v.dtype.kind not in "iu":
            raise RingValueError(f"integer values expected, got dtype {v.dtype}")
        # Casting to the unsigned backing type wraps mod 2^32 / 2^64 (two's complement),
        # and 2^b divides that modulus, so one mask finishes the reduction.
        out: RingArray = v.astype(np.int64, copy=False).astype(self.dtype)
        return self.reduce(out, out=out)

    def to_signed(self, x: RingArray) -> npt.NDArray[np.int64]:
        """Centre-lift ring elements to [-2^(b-1), 2^(b-1)) as int64."""
        v = x.astype(np.int64)
        half = 1 << (self.bits - 1)
        v[v >= half] -= self.modulus
        return v
