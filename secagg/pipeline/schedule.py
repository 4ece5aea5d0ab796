"""The pipeline's schedule: which round does which protocol step in which exchange.

Rounds count from 1. After a two-exchange bootstrap a training round costs 2 exchanges
(honest-but-curious) or 3 (active); round r+1's key sharing rides on round r's TRAIN
exchange and round r+2's key advertisement on round r's UNMASK exchange
(docs/pipeline.md).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from secagg.errors import ConfigError, ProtocolUsageError

MAX_ROUNDS = 1 << 20


class ExchangeKind(enum.Enum):
    """What one exchange of the pipeline is for."""

    BOOT_KEYS = "boot_keys"  # advertise keys for rounds 1 and 2
    BOOT_SHARES = "boot_shares"  # share keys for round 1
    TRAIN = "train"  # model down; masked input r, shares r+1 up
    CHECK = "check"  # active: consistency signatures of round r
    UNMASK = "unmask"  # unmasking shares of round r, keys of round r+2


@dataclass(frozen=True)
class Schedule:
    """Which round does which step in which exchange (rounds count from 1)."""

    rounds: int
    active: bool

    def __post_init__(self) -> None:
        if isinstance(self.rounds, bool) or not isinstance(self.rounds, int):
            raise ConfigError(f"rounds must be an int, got {self.rounds!r}")
        if not 1 <= self.rounds <= MAX_ROUNDS:
            raise ConfigError(f"rounds must be in 1..{MAX_ROUNDS}, got {self.rounds}")

    @property
    def per_round(self) -> int:
        """Exchanges per training round after the bootstrap: 2, or 3 when active."""
        return 3 if self.active else 2

    @property
    def num_exchanges(self) -> int:
        """All exchanges of the session: the 2-exchange bootstrap plus every round's."""
        return 2 + self.per_round * self.rounds

    def kind(self, g: int) -> ExchangeKind:
        """The kind of exchange ``g`` (0-based)."""
        self._check(g)
        if g < 2:
            return ExchangeKind.BOOT_KEYS if g == 0 else ExchangeKind.BOOT_SHARES
        j = (g - 2) % self.per_round
        if j == 0:
            return ExchangeKind.TRAIN
        if self.active and j == 1:
            return ExchangeKind.CHECK
        return ExchangeKind.UNMASK

    def train_round(self, g: int) -> int | None:
        """The training round exchange ``g`` belongs to (None in the bootstrap)."""
        self._check(g)
        return None if g < 2 else (g - 2) // self.per_round + 1

    def steps(self, r: int) -> list[int]:
        """The exchanges in which round ``r``'s server collects, one per protocol step."""
        e = self.per_round
        base = 2 + e * (r - 1)
        advertise = 0 if r <= 2 else base - 2 * e + (e - 1)
        share = 1 if r == 1 else base - e
        return [advertise, share] + [base + j for j in range(e)]

    def collecting(self, g: int) -> list[int]:
        """Rounds whose server collects a step in exchange ``g``."""
        self._check(g)
        return [r for r in self._near(g) if g in self.steps(r)]

    def starts(self, g: int) -> list[int]:
        """Rounds whose keys are advertised in exchange ``g``."""
        self._check(g)
        return [r for r in self._near(g) if self.steps(r)[0] == g]

    def _near(self, g: int) -> range:
        t = self.train_round(g) or 0
        return range(max(1, t - 1), min(self.rounds, t + 2) + 1)

    def _check(self, g: int) -> None:
        if not 0 <= g < self.num_exchanges:
            raise ProtocolUsageError(f"exchange {g} outside 0..{self.num_exchanges - 1}")


def describe_schedule(rounds: int, active: bool) -> list[dict[str, Any]]:
    """The schedule as rows (exchange, kind, training round, rounds collecting/started)."""
    s = Schedule(rounds, active)
    return [
        {
            "exchange": g,
            "kind": s.kind(g).value,
            "train_round": s.train_round(g),
            "collecting": s.collecting(g),
            "starts": s.starts(g),
        }
        for g in range(s.num_exchanges)
    ]
