"""Parameters of one simulated Paillier round, with sound defaults.

``PaillierConfig()`` means: a 2048-bit key, 16-bit values clipped to [-1, 1], one guard
bit, slots sized for exactly the clients of the round, a key holder that decrypts only
sums of at least half the clients (and never fewer than 2), standard DCR randomness, no
precomputation, and every core for encryption when the work is large enough to pay for
starting a pool.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from secagg.encoding import Rounding
from secagg.paillier.encrypt import RANDOMNESS_MODES, Randomness
from secagg.paillier.errors import PaillierConfigError, SlotOverflowError
from secagg.paillier.keys import DEFAULT_KEY_BITS, check_key_bits
from secagg.paillier.packing import PackingConfig
from secagg.paillier.roles import MIN_CONTRIBUTORS_FLOOR

#: Below this many ciphertexts in a round, a process pool costs more than it saves.
POOL_MIN_CIPHERTEXTS = 64


@dataclass(frozen=True)
class PaillierConfig:
    """Round parameters for :func:`secagg.paillier.simulate`.

    Args:
        key_bits: modulus size (2048 or 3072; 512/1024 with ``insecure_test_key``).
        value_bits, guard_bits, clip_min, clip_max, scale: see :class:`PackingConfig`.
        max_clients: slot head-room; ``None`` sizes the slots for the round's clients.
        min_contributors: the key holder's floor; ``None`` is ``max(2, ceil(n / 2))``.
        rounding: ``"stochastic"`` (unbiased) or ``"nearest"`` quantisation.
        workers: encryption processes; ``None`` uses every core when worthwhile.
        randomness: ``"standard"`` or the optional ``"short_exponent"`` (DJN) mode.
        precompute: compute obfuscators offline, before the updates are encrypted.
        key_holder: ``None`` for a separate key authority, or the index of the
            designated client that holds the key (it still contributes).
        record_transcript: keep the aggregator's view in the result.
        insecure_test_key: admit 512/1024-bit keys (tests only).
    """

    key_bits: int = DEFAULT_KEY_BITS
    value_bits: int = 16
    max_clients: int | None = None
    guard_bits: int = 1
    clip_min: float = -1.0
    clip_max: float = 1.0
    scale: float | None = None
    min_contributors: int | None = None
    rounding: Rounding = "stochastic"
    workers: int | None = None
    randomness: Randomness = "standard"
    precompute: bool = False
    key_holder: int | None = None
    record_transcript: bool = True
    insecure_test_key: bool = False

    def __post_init__(self) -> None:
        check_key_bits(self.key_bits, insecure_test_key=self.insecure_test_key)
        if self.randomness not in RANDOMNESS_MODES:
            raise PaillierConfigError(f"randomness must be one of {RANDOMNESS_MODES}")
        if self.rounding not in ("stochastic", "nearest"):
            raise PaillierConfigError("rounding must be 'stochastic' or 'nearest'")

    def packing(self, num_clients: int) -> PackingConfig:
        """The packing layout for a round of ``num_clients`` clients."""
        max_clients = num_clients if self.max_clients is None else self.max_clients
        if max_clients < num_clients:
            raise SlotOverflowError(
                f"{num_clients} clients but slots sized for max_clients={max_clients}"
            )
        return PackingConfig(
            key_bits=self.key_bits,
            value_bits=self.value_bits,
            max_clients=max_clients,
            guard_bits=self.guard_bits,
            clip_min=self.clip_min,
            clip_max=self.clip_max,
            scale=self.scale,
        )

    def resolved_min_contributors(self, num_clients: int) -> int:
        """The key holder's floor for a round of ``num_clients`` clients."""
        if self.min_contributors is not None:
            return self.min_contributors
        return max(MIN_CONTRIBUTORS_FLOOR, -(-num_clients // 2))

    def resolved_workers(self, num_ciphertexts: int, cpu_count: int) -> int:
        """Processes to encrypt with: the configured number, or all cores if worthwhile."""
        if self.workers is not None:
            return self.workers
        return cpu_count if num_ciphertexts >= POOL_MIN_CIPHERTEXTS else 1

    def describe(self) -> dict[str, Any]:
        """The round-level settings, JSON-friendly."""
        return {
            "randomness": self.randomness,
            "precompute": self.precompute,
            "rounding": self.rounding,
            "key_holder": "authority" if self.key_holder is None else f"client/{self.key_holder}",
        }
