"""The session descriptor: what every client of a pipelined session must agree on.

The server sends it; a client accepts it only if its parameters are exactly what the
client's own policy derives (:meth:`~secagg.policy.SecurityPolicy.check`), and only for
a session counter it has not gone past (:class:`~secagg.client_records.ClientRecords`),
so neither weaker parameters nor a replayed bootstrap get through. Parsing is bounded:
4 KiB, no nesting beyond the fixed layout (a deeply nested document is refused by name,
never a ``RecursionError``), dimensions that fit the saved-state format.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from typing import Any

from secagg.client_state import MAX_DIMENSION
from secagg.config import SecAggConfig
from secagg.context import check_session_id
from secagg.errors import ConfigError, ContextError, MessageFormatError
from secagg.pipeline.envelope import MAX_DESCRIPTOR
from secagg.pipeline.schedule import MAX_ROUNDS, Schedule

CONFIG_FIELDS = tuple(f.name for f in fields(SecAggConfig) if f.init)
_FIELDS = {"session_id", "counter", "rounds", "dimension", "config"}
MAX_COUNTER = (1 << 63) - 1


@dataclass(frozen=True)
class SessionDescriptor:
    """Session id, its counter (strictly increasing per client), config, rounds, d."""

    session_id: bytes
    config: SecAggConfig
    rounds: int
    dimension: int
    counter: int = 1

    def __post_init__(self) -> None:
        for name, v, hi in (
            ("rounds", self.rounds, MAX_ROUNDS),
            ("dimension", self.dimension, MAX_DIMENSION),
            ("counter", self.counter, MAX_COUNTER),
        ):
            if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= hi:
                raise ConfigError(f"session {name} must be an int in [1, {hi}], got {v!r}")

    @property
    def schedule(self) -> Schedule:
        """The exchange schedule of this session."""
        return Schedule(self.rounds, self.config.active)

    def to_bytes(self) -> bytes:
        """Canonical JSON (sorted keys): the descriptor travels inside the envelope."""
        body = {
            "session_id": self.session_id.hex(),
            "counter": self.counter,
            "rounds": self.rounds,
            "dimension": self.dimension,
            "config": {k: getattr(self.config, k) for k in CONFIG_FIELDS},
        }
        return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> SessionDescriptor:
        """Parse and validate; raises :class:`MessageFormatError` for anything bad."""
        if not isinstance(data, bytes | bytearray) or len(data) > MAX_DESCRIPTOR:
            raise MessageFormatError("session descriptor too long or not bytes")
        try:
            body = json.loads(bytes(data).decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise MessageFormatError(
                f"session descriptor is not JSON: {type(exc).__name__}"
            ) from exc
        if not isinstance(body, dict) or set(body) != _FIELDS:
            raise MessageFormatError("session descriptor has the wrong fields")
        cfg = body["config"]
        if not isinstance(cfg, dict) or not set(cfg) <= set(CONFIG_FIELDS):
            raise MessageFormatError("session descriptor config has unknown fields")
        if any(isinstance(v, dict | list) for v in cfg.values()):
            raise MessageFormatError("session descriptor config values must be scalars")
        if not isinstance(body["session_id"], str):
            raise MessageFormatError("session id must be hex")
        try:
            session = check_session_id(bytes.fromhex(body["session_id"]))
            return cls(session, _config(cfg), body["rounds"], body["dimension"], body["counter"])
        except (TypeError, ValueError, ContextError) as exc:
            raise MessageFormatError(f"session descriptor does not load: {exc}") from exc


def _config(raw: dict[str, Any]) -> SecAggConfig:
    return SecAggConfig(**raw)
