"""Packed encoding: many fixed-point values per Paillier plaintext (BatchCrypt-style).

Each float is clipped and quantised to a signed fixed-point integer (the shared
:class:`secagg.encoding.FixedPointEncoder`, sized for ``value_bits``), then offset to a
non-negative integer below ``2^value_bits``. ``slots`` such values are laid side by side
in one plaintext, each in a slot of ``slot_bits = value_bits + ceil(log2(max_clients)) +
guard_bits`` bits. Adding the plaintexts of up to ``max_clients`` clients (multiplying
their ciphertexts) adds slot-wise, and a slot sum is at most ``max_clients * (2^value_bits
- 1) < 2^slot_bits``, so nothing ever carries into the next slot. The packed plaintext
stays below ``2^(slots * slot_bits) <= 2^(key_bits - 1) < n``, so it never wraps mod n.

Zhang et al., "BatchCrypt", USENIX ATC 2020, report 23-93x from this idea.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from secagg.encoding import FixedPointConfig, FixedPointEncoder, Rounding
from secagg.errors import ConfigError, EncodingError
from secagg.paillier.errors import (
    DecodeRangeError,
    LengthMismatchError,
    PaillierConfigError,
    SlotOverflowError,
)
from secagg.paillier.keys import ALLOWED_KEY_BITS, DEFAULT_KEY_BITS, TEST_KEY_BITS

MIN_VALUE_BITS = 8
MAX_VALUE_BITS = 32
#: Slot sums are handled as exact int64 numbers.
MAX_SLOT_BITS = 62
MAX_ELEMENTS = 2**32 - 1

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


def _check_int(name: str, value: object, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise PaillierConfigError(f"{name} must be an int in [{lo}, {hi}], got {value!r}")
    return value


@dataclass(frozen=True)
class PackingConfig:
    """Quantisation and slot layout, validated so that no slot can overflow.

    Args:
        key_bits: Paillier modulus size the plaintexts must fit under.
        value_bits: bits of one quantised value (the fixed-point resolution).
        max_clients: the most contributions that will ever be summed.
        guard_bits: extra zero bits on top of each slot (head-room; at least 0).
        clip_min, clip_max: each element is clipped to this range first.
        scale: fixed-point scale; ``None`` picks the largest that fits ``value_bits``.
    """

    key_bits: int = DEFAULT_KEY_BITS
    value_bits: int = 16
    max_clients: int = 1000
    guard_bits: int = 1
    clip_min: float = -1.0
    clip_max: float = 1.0
    scale: float | None = None
    fixed_point: FixedPointConfig = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.key_bits not in ALLOWED_KEY_BITS + TEST_KEY_BITS:
            raise PaillierConfigError(
                f"key_bits must be one of {ALLOWED_KEY_BITS + TEST_KEY_BITS}, got {self.key_bits!r}"
            )
        _check_int("value_bits", self.value_bits, MIN_VALUE_BITS, MAX_VALUE_BITS)
        _check_int("max_clients", self.max_clients, 1, 2**32 - 1)
        _check_int("guard_bits", self.guard_bits, 0, MAX_SLOT_BITS)
        if self.slot_bits > MAX_SLOT_BITS:
            raise SlotOverflowError(
                f"slot of {self.slot_bits} bits (value {self.value_bits} + client "
                f"{self.client_bits} + guard {self.guard_bits}) exceeds {MAX_SLOT_BITS} bits; "
                "use fewer value bits, guard bits or clients"
            )
        # The invariant the whole backend rests on: the largest slot sum fits its slot.
        if self.max_clients * self.max_value >= 1 << self.slot_bits:
            raise SlotOverflowError(
                f"{self.max_clients} clients x {self.max_value} can reach 2^{self.slot_bits}: "
                "a slot would carry into its neighbour"
            )
        if self.slots < 1:
            raise SlotOverflowError(
                f"a {self.slot_bits}-bit slot does not fit a {self.key_bits}-bit plaintext"
            )
        try:
            fp = FixedPointConfig(
                bits=self.value_bits,
                clip_min=self.clip_min,
                clip_max=self.clip_max,
                num_clients=1,
                scale=self.scale,
            )
        except ConfigError as exc:
            raise PaillierConfigError(f"fixed-point parameters rejected: {exc}") from exc
        object.__setattr__(self, "fixed_point", fp)

    @property
    def client_bits(self) -> int:
        """ceil(log2(max_clients)): head-room for summing that many values."""
        return max(0, (self.max_clients - 1).bit_length())

    @property
    def slot_bits(self) -> int:
        """Width of one slot: value bits + client bits + guard bits."""
        return self.value_bits + self.client_bits + self.guard_bits

    @property
    def slots(self) -> int:
        """Values per plaintext: slots * slot_bits <= key_bits - 1 keeps it below n."""
        return (self.key_bits - 1) // self.slot_bits

    @property
    def max_value(self) -> int:
        """Largest offset value of one element, 2^value_bits - 1."""
        return (1 << self.value_bits) - 1

    @property
    def offset(self) -> int:
        """Added to every signed quantised value to make it non-negative."""
        return (1 << (self.value_bits - 1)) - 1

    @property
    def resolved_scale(self) -> float:
        """Fixed-point scale actually used (one quantum is 1/scale)."""
        return self.fixed_point.resolved_scale

    def num_plaintexts(self, num_elements: int) -> int:
        """Plaintexts (hence ciphertexts) needed for a vector of ``num_elements``."""
        return -(-num_elements // self.slots)

    def describe(self) -> dict[str, Any]:
        """A JSON-friendly summary of the resolved parameters."""
        return {
            "key_bits": self.key_bits,
            "value_bits": self.value_bits,
            "max_clients": self.max_clients,
            "guard_bits": self.guard_bits,
            "slot_bits": self.slot_bits,
            "slots_per_plaintext": self.slots,
            "clip_range": [self.clip_min, self.clip_max],
            "scale": self.resolved_scale,
            "quantum": 1.0 / self.resolved_scale,
            "offset": self.offset,
        }


class PackedEncoder:
    """Quantises, packs and unpacks vectors for one :class:`PackingConfig`."""

    def __init__(self, config: PackingConfig, *, rounding: Rounding = "stochastic") -> None:
        self.config = config
        self._fixed = FixedPointEncoder(config.fixed_point, rounding=rounding)

    # -- client side ------------------------------------------------------------------

    def quantize(self, x: npt.ArrayLike, *, rng: np.random.Generator | None = None) -> IntArray:
        """Clip, quantise and offset ``x`` to integers in [0, 2^value_bits).

        Raises :class:`secagg.errors.NonFiniteInputError` on NaN/Inf and
        :class:`secagg.errors.EncodingError` on anything that is not a 1-D real vector.
        """
        signed = self._fixed.quantize(x, rng=rng)
        if signed.shape[0] == 0 or signed.shape[0] > MAX_ELEMENTS:
            raise EncodingError(f"vector length must be in [1, {MAX_ELEMENTS}]")
        out = signed + self.config.offset
        if out.min() < 0 or out.max() > self.config.max_value:  # cannot happen after the clip
            raise EncodingError("quantised value outside the packing's slot range")
        return out

    def pack(self, values: IntArray) -> list[int]:
        """Lay ``values`` (each in [0, 2^value_bits)) into plaintexts, slot 0 lowest."""
        v = np.asarray(values)
        cfg = self.config
        if v.ndim != 1 or v.dtype.kind not in "iu":
            raise EncodingError("packed values must be a 1-D integer vector")
        if v.size and (v.min() < 0 or v.max() > cfg.max_value):
            raise EncodingError(f"packed values must lie in [0, {cfg.max_value}]")
        return _pack_slots(v.astype(np.uint64), cfg.slots, cfg.slot_bits)

    def encode(self, x: npt.ArrayLike, *, rng: np.random.Generator | None = None) -> list[int]:
        """Quantise and pack one client's vector."""
        return self.pack(self.quantize(x, rng=rng))

    # -- after decryption -------------------------------------------------------------

    def unpack_sums(self, plaintexts: list[int], num_elements: int, count: int) -> IntArray:
        """Split decrypted plaintexts into the slot sums of ``count`` contributions.

        Checks every slot lies in what ``count`` contributions can produce and that the
        padding slots are zero; anything else raises :class:`DecodeRangeError` (a wrong
        count, a wrong key, or a tampered sum).
        """
        cfg = self.config
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise DecodeRangeError(f"contribution count must be a positive int, got {count!r}")
        if count > cfg.max_clients:
            raise SlotOverflowError(
                f"a sum of {count} contributions exceeds the {cfg.max_clients} the slots were "
                "sized for"
            )
        if len(plaintexts) != cfg.num_plaintexts(num_elements):
            raise LengthMismatchError(
                f"{len(plaintexts)} plaintexts for {num_elements} elements; expected "
                f"{cfg.num_plaintexts(num_elements)}"
            )
        limit = 1 << (cfg.slots * cfg.slot_bits)
        if any(not 0 <= p < limit for p in plaintexts):
            raise DecodeRangeError("a decrypted plaintext exceeds the packed width")
        sums = _unpack_slots(plaintexts, cfg.slots, cfg.slot_bits).astype(np.int64)
        if np.any(sums[num_elements:] != 0):
            raise DecodeRangeError("padding slots of the decrypted sum are not zero")
        sums = sums[:num_elements]
        if sums.size and sums.max() > count * cfg.max_value:
            raise DecodeRangeError(f"a slot sum exceeds what {count} contributions can reach")
        return sums

    def decode_sums(self, sums: IntArray, count: int) -> FloatArray:
        """Undo the offsets and the scale: the float sum of ``count`` contributions."""
        signed = sums - np.int64(count) * np.int64(self.config.offset)
        return signed.astype(np.float64) / self.config.resolved_scale

    def signed_sums(self, sums: IntArray, count: int) -> IntArray:
        """Slot sums minus the offsets: the sum of the signed quantised values."""
        return sums - np.int64(count) * np.int64(self.config.offset)


def _pack_slots(values: npt.NDArray[np.uint64], slots: int, slot_bits: int) -> list[int]:
    """Bit-pack ``values`` into ``ceil(len / slots)`` integers of ``slots`` slots each."""
    m = -(-values.size // slots)
    padded = np.zeros(m * slots, dtype="<u8")
    padded[: values.size] = values
    bits = np.unpackbits(padded.view(np.uint8).reshape(-1, 8), axis=1, bitorder="little")
    bits = bits[:, :slot_bits]  # slot_bits <= MAX_SLOT_BITS < 64
    rows = np.packbits(bits.reshape(m, slots * slot_bits), axis=1, bitorder="little")
    return [int.from_bytes(row.tobytes(), "little") for row in rows]


def _unpack_slots(plaintexts: list[int], slots: int, slot_bits: int) -> npt.NDArray[np.uint64]:
    """Inverse of :func:`_pack_slots` for slot values below 2^64."""
    width = (slots * slot_bits + 7) // 8
    raw = np.frombuffer(b"".join(p.to_bytes(width, "little") for p in plaintexts), np.uint8)
    bits = np.unpackbits(raw.reshape(len(plaintexts), width), axis=1, bitorder="little")
    bits = bits[:, : slots * slot_bits].reshape(-1, slot_bits)
    bits = np.pad(bits, ((0, 0), (0, 64 - slot_bits)))
    return np.packbits(bits, axis=1, bitorder="little").view("<u8").reshape(-1)
