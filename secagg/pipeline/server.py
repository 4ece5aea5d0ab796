"""The server side of a pipelined session: one :class:`~secagg.server.SecAggServer` per
round in flight, multiplexed into one envelope per exchange and client."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from secagg.config import SecAggConfig
from secagg.errors import (
    ConfigError,
    DealerMisbehaviourError,
    ProtocolUsageError,
    ProtocolViolationError,
    RoundAbortedError,
    SecAggError,
    WrongSessionError,
)
from secagg.pipeline.descriptor import SessionDescriptor
from secagg.pipeline.envelope import TO_CLIENT, TO_SERVER, Bundle, max_part_bytes
from secagg.pipeline.schedule import ExchangeKind
from secagg.registry import Registry
from secagg.server import SecAggServer, ServerOutcome, ServerStep
from secagg.validation import require


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
        counter: int | None = None,
        registry: Registry | None = None,
        record_transcript: bool = False,
        keep_finished: bool = False,
        threads: int | None = None,
    ) -> None:
        self.descriptor = SessionDescriptor(
            session_id if session_id is not None else os.urandom(16),
            config,
            rounds,
            dimension,
            time.time_ns() if counter is None else counter,  # above every earlier session's
        )
        if config.active and registry is None:
            raise ConfigError("the active setting needs the sealed registry")
        self.schedule = self.descriptor.schedule
        self.config = config
        self.registry = registry
        self.excluded: set[int] = set()  # dealers proven to cheat: out of later rounds
        self.record_transcript = record_transcript
        self.keep_finished = keep_finished
        self.threads = threads
        self.exchange = 0
        self.rounds: dict[int, SecAggServer] = {}
        self.rejected: dict[tuple[int, int], SecAggError] = {}  # (exchange, client) -> error
        self._pending: dict[int, dict[int, bytes]] = {}  # round -> client -> next message
        self._contexts: dict[int, bytes] = {}
        self._max_part = max_part_bytes(dimension, config.degree)
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
        clients -= self.excluded
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
            if client in self.excluded:
                raise ProtocolViolationError(f"client {client} was excluded as a cheating dealer")
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
                err = require(server.error, "the aborted round's error")
                if isinstance(err, DealerMisbehaviourError):
                    self.excluded.add(err.owner)
                ended.append(RoundEnd(r, None, err, bool(server.unmasking_senders)))
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
                registry=self.registry,
                extra_context=self._contexts.get(r, b""),
                advert_context=b"",
                record_transcript=self.record_transcript,
                threads=self.threads,
            )


def _running(server: SecAggServer) -> bool:
    return server.step not in (ServerStep.DONE, ServerStep.ABORTED)
