"""What an aggregation backend returns, and the server's view it was computed from.

Every backend's ``simulate`` (pairwise masking, Paillier) returns an
:class:`AggregationResult` with the same attribute names, so drivers, the FedAvg loop and
the attack suites can switch backends without special cases. The :class:`Transcript`
records every message the server (or aggregator) received, byte for byte, as it saw
them: the attack suites work on that view, never on the clients' private state.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class TranscriptRecord:
    """One message as the server received it."""

    phase: str  # protocol step, e.g. "advertise_keys", "masked_input", "ciphertexts"
    sender: int  # client index
    kind: str  # message type name
    payload: bytes  # the exact bytes received


@dataclass
class Transcript:
    """Every message the server received, in arrival order (the server's whole view)."""

    records: list[TranscriptRecord] = field(default_factory=list)

    def add(self, phase: str, sender: int, kind: str, payload: bytes) -> None:
        """Append one received message."""
        self.records.append(TranscriptRecord(phase, sender, kind, bytes(payload)))

    def by_phase(self, phase: str) -> list[TranscriptRecord]:
        """The records of one protocol step."""
        return [r for r in self.records if r.phase == phase]

    def __iter__(self) -> Iterator[TranscriptRecord]:
        return iter(self.records)

    def __len__(self) -> int:
        return len(self.records)

    @property
    def total_bytes(self) -> int:
        """Bytes the server received in all."""
        return sum(len(r.payload) for r in self.records)


@dataclass
class AggregationResult:
    """The outcome of one aggregation round, identical in shape across backends.

    Attributes:
        sum: exact decoded sum of the contributing clients' (clipped, quantised) inputs.
        mean: ``sum / len(survivors)``.
        survivors: sorted indices of the clients whose inputs are in ``sum``.
        dropped: sorted indices of the clients that are not.
        timings: seconds per protocol phase (wall-clock, this process).
        bytes_sent: bytes sent per party, keyed ``"server"`` and ``"client/<i>"``.
        transcript: the server's view, or ``None`` when recording was switched off.
        params: the parameters actually used (threshold, neighbours, bits, key size...).
    """

    sum: npt.NDArray[np.float64]
    mean: npt.NDArray[np.float64]
    survivors: tuple[int, ...]
    dropped: tuple[int, ...]
    timings: dict[str, float]
    bytes_sent: dict[str, int]
    transcript: Transcript | None
    params: dict[str, Any]


def client_key(index: int) -> str:
    """The ``bytes_sent`` key of client ``index``."""
    return f"client/{index}"
