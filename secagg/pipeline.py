"""Multi-round secure aggregation in fewer exchanges: the pipelined mode.

One SecAgg round needs four client-server steps (advertise keys, share keys, masked
input, unmasking; five with the active setting's consistency check). On an engine where
every exchange costs seconds whatever it carries (Flower starts a process per message),
the steps, not the crypto, set the round time. The pipeline overlaps consecutive rounds:
round r+1's key sharing rides on round r's training exchange, round r+2's key
advertisement on round r's unmasking exchange, and the masked input rides on the
training reply. After a two-exchange bootstrap a training round costs

* honest-but-curious: TRAIN (model down; masked input r and shares r+1 up), UNMASK
  (survivor list r down; unmasking shares r and keys r+2 up): **2 exchanges**;
* active: TRAIN, CHECK (survivor list r down, consistency signature up), UNMASK
  (signature list r down; shares r and keys r+2 up): **3 exchanges**.

Every round is a separate instance of the one-round protocol (:class:`SecAggClient`,
:class:`SecAggServer`) with its own round index, fresh X25519 channel and mask key
pairs and a fresh self-mask seed, Shamir-shared anew: nothing whose shares exist feeds
another round's derivation, so rebuilding a dropped client's mask key in round r says
nothing about its masks in any other round. The pipeline only multiplexes the rounds'
messages into one envelope (``SAGP``) per exchange and client. Per round a client
answers one unmasking request (the per-round state machine refuses a second), releases
no share before that round's survivor list is fixed (and signed, in the active
setting), and forgets the round's shares once it has answered; the answered record
stays in the client's state with the reply, so a redelivered identical request gets the
same bytes and any other request for that round is refused.

A client that misses an exchange drops out of the rounds in flight and rejoins by
advertising keys in the next UNMASK exchange (the bootstrap path); a client that lost
its saved state refuses every request about earlier rounds. Security argument and
schedule: docs/pipeline.md.
"""

from __future__ import annotations

import enum
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import numpy.typing as npt

from secagg import crypto
from secagg.client import ClientPhase, SecAggClient
from secagg.client_state import export_client, restore_client
from secagg.config import SecAggConfig
from secagg.errors import (
    ConfigError,
    MessageFormatError,
    ProtocolUsageError,
    ProtocolViolationError,
    RoundAbortedError,
    SecAggError,
    WrongSessionError,
)
from secagg.messages import MsgType
from secagg.server import SecAggServer, ServerOutcome, ServerStep
from secagg.wire import Reader, Writer

MAGIC = b"SAGP"
VERSION = 1
TO_CLIENT, TO_SERVER = 0, 1
MAX_ROUNDS = 1 << 20
_MAX_PARTS = 8
_MAX_STARTS = 2
_MAX_DESCRIPTOR = 1 << 12


class ExchangeKind(enum.Enum):
    """What one exchange of the pipeline is for."""

    BOOT_KEYS = "boot_keys"  # advertise keys for rounds 1 and 2
    BOOT_SHARES = "boot_shares"  # share keys for round 1
    TRAIN = "train"  # model down; masked input r, shares r+1 up
    CHECK = "check"  # active: consistency signatures of round r
    UNMASK = "unmask"  # unmasking shares of round r, keys of round r+2


class RoundClosedError(SecAggError):
    """A request about a round this client already answered (or never joined)."""


class StateLostError(RoundClosedError):
    """A request about an earlier round reached a client without saved state."""


# -- the schedule ---------------------------------------------------------------------


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


# -- the session descriptor -----------------------------------------------------------

_CONFIG_FIELDS = tuple(f.name for f in fields(SecAggConfig) if f.init)


@dataclass(frozen=True)
class SessionDescriptor:
    """What every client must agree on: session id, config, rounds, dimension."""

    session_id: bytes
    config: SecAggConfig
    rounds: int
    dimension: int

    @property
    def schedule(self) -> Schedule:
        """The exchange schedule of this session."""
        return Schedule(self.rounds, self.config.active)

    def to_bytes(self) -> bytes:
        """Canonical JSON (sorted keys): the descriptor travels inside the envelope."""
        body = {
            "session_id": self.session_id.hex(),
            "rounds": self.rounds,
            "dimension": self.dimension,
            "config": {k: getattr(self.config, k) for k in _CONFIG_FIELDS},
        }
        return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> SessionDescriptor:
        """Parse and validate; raises :class:`MessageFormatError` or :class:`ConfigError`."""
        if len(data) > _MAX_DESCRIPTOR:
            raise MessageFormatError("session descriptor too long")
        try:
            body = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise MessageFormatError(f"session descriptor is not JSON: {exc}") from exc
        if not isinstance(body, dict) or set(body) != {
            "session_id",
            "rounds",
            "dimension",
            "config",
        }:
            raise MessageFormatError("session descriptor has the wrong fields")
        cfg = body["config"]
        if not isinstance(cfg, dict) or not set(cfg) <= set(_CONFIG_FIELDS):
            raise MessageFormatError("session descriptor config has unknown fields")
        for key in ("rounds", "dimension"):
            v = body[key]
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise MessageFormatError(f"session descriptor {key} must be a positive int")
        if not isinstance(body["session_id"], str):
            raise MessageFormatError("session id must be hex")
        try:
            session = bytes.fromhex(body["session_id"])
            config = SecAggConfig(**cfg)
        except (TypeError, ValueError) as exc:
            raise MessageFormatError(f"session descriptor does not load: {exc}") from exc
        out = cls(session, config, body["rounds"], body["dimension"])
        out.schedule  # noqa: B018 - validates rounds
        return out


# -- the envelope ---------------------------------------------------------------------


@dataclass(frozen=True)
class Bundle:
    """One exchange's messages for (or from) one client, across rounds in flight."""

    direction: int
    session_id: bytes
    exchange: int
    client: int
    parts: tuple[tuple[int, bytes], ...] = ()
    starts: tuple[int, ...] = ()
    live_rounds: tuple[int, ...] = ()
    descriptor: bytes = b""

    def encode(self) -> bytes:
        """The ``SAGP`` wire form."""
        w = Writer().raw(MAGIC).u8(VERSION).u8(self.direction).blob(self.session_id)
        w.u32(self.exchange).u16(self.client).blob(self.descriptor)
        for group in (self.starts, self.live_rounds):
            w.u32(len(group))
            for r in group:
                w.u32(r)
        w.u32(len(self.parts))
        for r, msg in self.parts:
            w.u32(r).blob(msg)
        return w.getvalue()

    @classmethod
    def decode(cls, data: bytes, direction: int, max_part: int) -> Bundle:
        """Parse strictly (bounded counts and sizes); raises :class:`MessageFormatError`."""
        if not isinstance(data, bytes | bytearray | memoryview):
            raise MessageFormatError(f"a bundle must be bytes, got {type(data).__name__}")
        r = Reader(bytes(data))
        if r.remaining < 6 or r.raw(4) != MAGIC:
            raise MessageFormatError("not a secagg pipeline bundle (bad magic)")
        if r.u8() != VERSION:
            raise MessageFormatError("unsupported pipeline bundle version")
        if r.u8() != direction:
            raise MessageFormatError("bundle sent in the wrong direction")
        session = r.blob(64)
        exchange = r.u32()
        client = r.u16()
        descriptor = r.blob(_MAX_DESCRIPTOR)
        starts = tuple(r.u32() for _ in range(r.count(_MAX_STARTS, "started rounds")))
        live = tuple(r.u32() for _ in range(r.count(_MAX_PARTS, "live rounds")))
        parts = []
        for _ in range(r.count(_MAX_PARTS, "bundle parts")):
            rnd = r.u32()
            parts.append((rnd, r.blob(max_part)))
        r.end()
        if len({p for p, _ in parts}) != len(parts):
            raise MessageFormatError("two parts for the same round")
        return cls(direction, session, exchange, client, tuple(parts), starts, live, descriptor)


def max_part_bytes(dimension: int) -> int:
    """An upper bound on one protocol message of a session (masked input dominates)."""
    return 8 * dimension + (1 << 20)


def _digest(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


# -- the server ----------------------------------------------------------------------


@dataclass
class RoundEnd:
    """One round that finished in the last exchange: its outcome or why it aborted."""

    round: int
    outcome: ServerOutcome | None
    error: RoundAbortedError | None
    released_shares: bool


class PipelineServer:
    """The server side of a pipelined session (sans-I/O, like :class:`SecAggServer`).

    Drive it exchange by exchange: ``outgoing()`` gives the bundle for every client,
    ``receive(client, data)`` takes each reply, ``close()`` ends the exchange and
    returns the rounds that finished in it. ``keep_finished`` keeps finished rounds'
    servers in ``rounds`` (transcripts for the attack suites); off, memory stays O(d)
    per round in flight. ``bind_context(r, ...)`` sets what round r's
    consistency signatures must cover (the hash of the model sent in its TRAIN exchange).
    """

    def __init__(
        self,
        config: SecAggConfig,
        *,
        rounds: int,
        dimension: int,
        session_id: bytes | None = None,
        registry: Mapping[int, bytes] | None = None,
        record_transcript: bool = False,
        keep_finished: bool = False,
        threads: int | None = None,
    ) -> None:
        self.descriptor = SessionDescriptor(
            session_id if session_id is not None else os.urandom(16), config, rounds, dimension
        )
        self.schedule = self.descriptor.schedule
        self.config = config
        self.registry = dict(registry or {})
        self.record_transcript = record_transcript
        self.keep_finished = keep_finished
        self.threads = threads
        self.exchange = 0
        self.rounds: dict[int, SecAggServer] = {}
        self.rejected: dict[tuple[int, int], SecAggError] = {}  # (exchange, client) -> error
        self._pending: dict[int, dict[int, bytes]] = {}  # round -> client -> next message
        self._contexts: dict[int, bytes] = {}
        self._max_part = max_part_bytes(dimension)
        self._received: set[int] = set()
        self._start_rounds(self.schedule.starts(0))

    @property
    def done(self) -> bool:
        """True once every exchange of the session has been closed."""
        return self.exchange >= self.schedule.num_exchanges

    @property
    def kind(self) -> ExchangeKind:
        """The kind of the current exchange."""
        return self.schedule.kind(self.exchange)

    @property
    def train_round(self) -> int | None:
        """The training round of the current exchange."""
        return self.schedule.train_round(self.exchange)

    def bind_context(self, r: int, context: bytes) -> None:
        """Round ``r``'s consistency signatures must cover ``context`` (e.g. a model hash)."""
        self._contexts[r] = bytes(context)
        server = self.rounds.get(r)
        if server is not None:
            server.bind_context(context)

    def outgoing(self) -> dict[int, bytes]:
        """This exchange's bundle for every client that has something to do in it."""
        g = self.exchange
        starts = tuple(self.schedule.starts(g))
        live = tuple(r for r, s in sorted(self.rounds.items()) if _running(s))
        parts: dict[int, list[tuple[int, bytes]]] = {}
        for r in self.schedule.collecting(g):
            for c, msg in self._pending.get(r, {}).items():
                parts.setdefault(c, []).append((r, msg))
        clients = set(parts) | (set(range(self.config.num_clients)) if starts else set())
        descriptor = self.descriptor.to_bytes() if starts else b""
        return {
            c: Bundle(
                TO_CLIENT,
                self.descriptor.session_id,
                g,
                c,
                tuple(parts.get(c, ())),
                starts,
                live,
                descriptor,
            ).encode()
            for c in sorted(clients)
        }

    def trained(self, r: int) -> frozenset[int]:
        """Clients asked for round ``r``'s masked input (they get the model to train)."""
        s = self.rounds.get(r)
        return frozenset(self._pending.get(r, {})) if s is not None and _running(s) else frozenset()

    def receive(self, client: int, data: bytes) -> None:
        """Take one client's reply bundle; a bad one drops the client from this exchange."""
        g = self.exchange
        try:
            if client in self._received:
                raise ProtocolViolationError(f"client {client} already replied in exchange {g}")
            self._received.add(client)
            b = Bundle.decode(data, TO_SERVER, self._max_part)
            if b.session_id != self.descriptor.session_id:
                raise WrongSessionError("reply bundle for another session")
            if b.exchange != g or b.client != client:
                raise ProtocolViolationError(
                    f"reply claims exchange {b.exchange} / client {b.client}, "
                    f"expected {g} / {client}"
                )
            allowed = set(self.schedule.collecting(g))
            for r, _ in b.parts:
                if r not in allowed:
                    raise ProtocolViolationError(f"round {r} collects nothing in exchange {g}")
        except SecAggError as exc:
            self.rejected[(g, client)] = exc
            return
        for r, msg in b.parts:
            server = self.rounds.get(r)
            if server is not None and _running(server):
                server.receive(client, msg)

    def close(self) -> list[RoundEnd]:
        """End the current exchange; return the rounds that finished (done or aborted)."""
        if self.done:
            raise ProtocolUsageError("the session is over")
        g = self.exchange
        ended: list[RoundEnd] = []
        for r in self.schedule.collecting(g):
            server = self.rounds.get(r)
            if server is None or not _running(server):
                continue
            self._pending[r] = server.close_step()
            if server.step is ServerStep.DONE:
                ended.append(RoundEnd(r, server.result(), None, True))
            elif server.step is ServerStep.ABORTED:
                assert server.error is not None
                released = bool(server.unmasking_senders)
                ended.append(RoundEnd(r, None, server.error, released))
            if not _running(server):
                self._pending.pop(r, None)
                if not self.keep_finished:  # the outcome travels in RoundEnd; free O(d)
                    del self.rounds[r]
        self.exchange += 1
        self._received = set()
        if not self.done:
            self._start_rounds(self.schedule.starts(self.exchange))
        return ended

    def _start_rounds(self, rounds: list[int]) -> None:
        for r in rounds:
            self.rounds[r] = SecAggServer(
                self.config,
                session_id=self.descriptor.session_id,
                round_index=r,
                dimension=self.descriptor.dimension,
                registry=self.registry if self.config.active else None,
                extra_context=self._contexts.get(r, b""),
                advert_context=b"",
                record_transcript=self.record_transcript,
                threads=self.threads,
            )


def _running(server: SecAggServer) -> bool:
    return server.step not in (ServerStep.DONE, ServerStep.ABORTED)


# -- the client ----------------------------------------------------------------------


@dataclass
class ClientReport:
    """What one exchange did on the client: rounds it advanced, refused or aborted."""

    exchange: int
    replied: list[int] = field(default_factory=list)
    refused: dict[int, SecAggError] = field(default_factory=dict)


class PipelineClient:
    """The client side of a pipelined session; survives restarts through ``save()``.

    ``handle(data, inputs=..., contexts=...)`` takes the server's bundle for one exchange
    and returns the reply bundle. ``inputs`` maps a round to this client's input vector
    (needed in that round's TRAIN exchange), ``contexts`` maps a round to the context
    its consistency signature covers (the model hash). Protocol errors of one round
    abort that round only; they are reported, never raised, so the other rounds go on.
    """

    def __init__(
        self,
        *,
        identity: crypto.SigningKey | None = None,
        registry: Mapping[int, bytes] | None = None,
        min_threshold_fraction: float = 0.0,
    ) -> None:
        self.identity = identity
        self.registry = dict(registry or {})
        self.min_threshold_fraction = min_threshold_fraction
        self.descriptor: SessionDescriptor | None = None
        self.client_id: int | None = None
        self.rounds: dict[int, SecAggClient] = {}
        self.answered: dict[int, tuple[bytes, bytes]] = {}  # round -> (request hash, reply)
        self.started_up_to = 0
        self.last_exchange = -1
        self._last: tuple[bytes, bytes] | None = None  # (request hash, reply bundle)
        self.restored = False
        self.last_report: ClientReport | None = None

    # -- the exchange --------------------------------------------------------------------

    def handle(
        self,
        data: bytes,
        *,
        inputs: Mapping[int, npt.ArrayLike] | None = None,
        contexts: Mapping[int, bytes] | None = None,
    ) -> bytes:
        """Answer one exchange's bundle (see the class docs); raises for a bad bundle."""
        h = _digest(bytes(data))
        if self._last is not None and self._last[0] == h:
            return self._last[1]  # a redelivered request: the same answer, nothing new
        b = self._accept(data)
        assert self.descriptor is not None and self.client_id is not None
        report = ClientReport(b.exchange)
        out: list[tuple[int, bytes]] = []
        for r in b.starts:
            if r <= self.started_up_to or r > self.descriptor.rounds:
                report.refused[r] = ProtocolViolationError(f"round {r} cannot start again")
                continue
            self.started_up_to = r
            client = self._new_round(r)
            self.rounds[r] = client
            out.append((r, client.advertise()))
            report.replied.append(r)
        for r, msg in b.parts:
            try:
                reply = self._part(r, msg, inputs or {}, contexts or {})
            except SecAggError as exc:
                report.refused[r] = exc
                self.rounds.pop(r, None)
                continue
            if reply is not None:
                out.append((r, reply))
                report.replied.append(r)
        # rounds the server no longer runs are over for this client too
        keep = set(b.live_rounds) | set(b.starts)
        for r in [r for r in self.rounds if r not in keep]:
            del self.rounds[r]
        for r in [r for r in self.answered if r not in keep]:
            del self.answered[r]
        reply_bundle = Bundle(
            TO_SERVER, self.descriptor.session_id, b.exchange, self.client_id, tuple(out)
        ).encode()
        self.last_exchange = b.exchange
        self._last = (h, reply_bundle)
        self.last_report = report
        return reply_bundle

    def peek(self, data: bytes) -> Bundle:
        """Decode a bundle without acting on it (to see which round trains)."""
        return Bundle.decode(data, TO_CLIENT, max_part_bytes(self._dimension_bound(data)))

    def _accept(self, data: bytes) -> Bundle:
        b = Bundle.decode(data, TO_CLIENT, max_part_bytes(self._dimension_bound(data)))
        if b.descriptor:
            desc = SessionDescriptor.from_bytes(b.descriptor)
            if desc.session_id != b.session_id:
                raise WrongSessionError("descriptor and bundle name different sessions")
            if self.descriptor is not None and desc != self.descriptor:
                raise ProtocolViolationError("the server changed the session's parameters")
            self._check_policy(desc, b.client)
            if self.descriptor is None:
                self.descriptor, self.client_id = desc, b.client
        if self.descriptor is None:
            raise StateLostError(
                "no session state on this client (lost or never set up): it answers nothing "
                "about rounds in flight and rejoins at the next key advertisement"
            )
        if b.session_id != self.descriptor.session_id:
            raise WrongSessionError("bundle for another session")
        if b.client != self.client_id:
            raise ProtocolViolationError(f"bundle for client {b.client}, this is {self.client_id}")
        if b.exchange <= self.last_exchange:
            raise ProtocolViolationError(
                f"exchange {b.exchange} is not after the last one ({self.last_exchange})"
            )
        if b.exchange >= self.descriptor.schedule.num_exchanges:
            raise ProtocolViolationError(f"exchange {b.exchange} is past the session's end")
        return b

    def _check_policy(self, desc: SessionDescriptor, client: int) -> None:
        cfg = desc.config
        if client >= cfg.num_clients:
            raise ProtocolViolationError(f"client index {client} >= n={cfg.num_clients}")
        if cfg.threshold < self.min_threshold_fraction * cfg.num_clients and cfg.neighbours is None:
            raise ConfigError(
                f"threshold {cfg.threshold} is below this client's minimum "
                f"{self.min_threshold_fraction:.2f} * n"
            )
        if cfg.active and (self.identity is None or not self.registry):
            raise ConfigError("the active setting needs this client's identity and a registry")

    def _part(
        self,
        r: int,
        msg: bytes,
        inputs: Mapping[int, npt.ArrayLike],
        contexts: Mapping[int, bytes],
    ) -> bytes | None:
        if r in self.answered:
            req, reply = self.answered[r]
            if req == _digest(msg):
                return reply
            raise RoundClosedError(f"round {r} was answered already; a new request is refused")
        client = self.rounds.get(r)
        if client is None:
            raise RoundClosedError(f"this client holds no state for round {r}")
        if len(msg) > 5 and msg[5] == MsgType.SHARE_DELIVERY:
            if r in contexts:
                client.bind_context(contexts[r])
            if r not in inputs:
                raise ProtocolUsageError(f"round {r} wants the masked input but no input was given")
            client.set_input(inputs[r])
        answer = client.handle(msg)
        if client.phase is ClientPhase.DONE and answer is not None:
            self.answered[r] = (_digest(msg), answer)
            del self.rounds[r]
        return answer

    def _new_round(self, r: int) -> SecAggClient:
        assert self.descriptor is not None and self.client_id is not None
        return SecAggClient(
            self.descriptor.config,
            self.client_id,
            session_id=self.descriptor.session_id,
            round_index=r,
            dimension=self.descriptor.dimension,
            identity=self.identity,
            registry=self.registry if self.descriptor.config.active else None,
            advert_context=b"",
            rng=np.random.default_rng(int.from_bytes(os.urandom(8), "big")),
        )

    def _dimension_bound(self, data: bytes) -> int:
        # before the descriptor is known, bound parts by the whole bundle's size
        return self.descriptor.dimension if self.descriptor else max(1, len(data))

    # -- persistence -----------------------------------------------------------------------

    def save(self) -> bytes:
        """The client's whole pipeline state as bytes (secret: keep it on the client)."""
        w = Writer().raw(b"SAPS").u8(VERSION)
        w.blob(self.descriptor.to_bytes() if self.descriptor else b"")
        w.u32(self.client_id if self.client_id is not None else 0xFFFFFFFF)
        w.u32(self.started_up_to).u32(self.last_exchange + 1)
        w.blob(self._last[0] if self._last else b"").blob(self._last[1] if self._last else b"")
        w.u32(len(self.rounds))
        for r in sorted(self.rounds):
            w.u32(r).blob(export_client(self.rounds[r]))
        w.u32(len(self.answered))
        for r in sorted(self.answered):
            w.u32(r).blob(self.answered[r][0]).blob(self.answered[r][1])
        return w.getvalue()

    @classmethod
    def load(
        cls,
        data: bytes,
        *,
        identity: crypto.SigningKey | None = None,
        registry: Mapping[int, bytes] | None = None,
        min_threshold_fraction: float = 0.0,
    ) -> PipelineClient:
        """Rebuild from :meth:`save` bytes; raises :class:`MessageFormatError` if bad."""
        self = cls(
            identity=identity, registry=registry, min_threshold_fraction=min_threshold_fraction
        )
        r = Reader(bytes(data))
        if r.remaining < 5 or r.raw(4) != b"SAPS" or r.u8() != VERSION:
            raise MessageFormatError("not a saved pipeline client state")
        desc = r.blob(_MAX_DESCRIPTOR)
        cid = r.u32()
        self.started_up_to = r.u32()
        self.last_exchange = r.u32() - 1
        if desc:
            self.descriptor = SessionDescriptor.from_bytes(desc)
            self.client_id = cid
        limit = max_part_bytes(self.descriptor.dimension if self.descriptor else 1) * _MAX_PARTS
        last_h, last_reply = r.blob(32), r.blob(limit)
        self._last = (last_h, last_reply) if last_h else None
        for _ in range(r.count(_MAX_PARTS, "saved rounds")):
            rnd = r.u32()
            assert self.descriptor is not None
            self.rounds[rnd] = restore_client(
                r.blob(limit),
                self.descriptor.config,
                identity=identity,
                registry=registry if self.descriptor.config.active else None,
                rng=np.random.default_rng(int.from_bytes(os.urandom(8), "big")),
            )
        for _ in range(r.count(_MAX_PARTS, "answered rounds")):
            rnd = r.u32()
            self.answered[rnd] = (r.blob(32), r.blob(limit))
        r.end()
        self.restored = True
        return self


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
