"""The client side of a pipelined session; survives restarts through ``save()``.

What it accepts is decided by what was provisioned to it, never by the server: in the
active setting its :class:`~secagg.registry.Trust` (the registry's policy fixes the
parameters, its index is its identity), otherwise a
:class:`~secagg.policy.SecurityPolicy` (by default the honest-but-curious one). Its
durable :class:`~secagg.client_records.ClientRecords` refuse a replayed bootstrap or an
old exchange, even after its round state is lost.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from secagg.client import SecAggClient
from secagg.client_records import ClientRecords
from secagg.client_state import ClientPhase, ClientStateError
from secagg.errors import (
    MessageFormatError,
    PolicyViolationError,
    ProtocolUsageError,
    ProtocolViolationError,
    SecAggError,
    WrongSessionError,
)
from secagg.messages import MsgType
from secagg.pipeline.descriptor import SessionDescriptor
from secagg.pipeline.envelope import (
    MAX_DESCRIPTOR,
    MAX_PARTS,
    TO_CLIENT,
    TO_SERVER,
    VERSION,
    Bundle,
    digest,
    max_part_bytes,
)
from secagg.policy import SecurityPolicy
from secagg.registry import Trust
from secagg.validation import require
from secagg.wire import Reader, Writer

_STATE_MAGIC = b"SAPS"


class RoundClosedError(SecAggError):
    """A request about a round this client already answered (or never joined)."""


class StateLostError(RoundClosedError):
    """A request about an earlier round reached a client without saved state."""


@dataclass
class ClientReport:
    """What one exchange did on the client: rounds it advanced, refused or aborted."""

    exchange: int
    replied: list[int] = field(default_factory=list)
    refused: dict[int, SecAggError] = field(default_factory=dict)


class PipelineClient:
    """The client side of a pipelined session.

    ``handle(data, inputs=..., contexts=...)`` takes the server's bundle for one exchange
    and returns the reply bundle. ``inputs`` maps a round to this client's input vector
    (needed in that round's TRAIN exchange), ``contexts`` maps a round to the context its
    views bind (the model hash). Protocol errors of one round abort that round only;
    they are reported, never raised, so the other rounds go on.
    """

    def __init__(
        self,
        *,
        trust: Trust | None = None,
        policy: SecurityPolicy | None = None,
        records: ClientRecords | None = None,
    ) -> None:
        self.trust = trust
        self.policy = (
            trust.registry.policy
            if trust is not None
            else (policy or SecurityPolicy.honest_but_curious())
        )
        if trust is None and self.policy.active:
            raise PolicyViolationError(
                "an active-setting policy needs this client's identity and registry"
            )
        self.records = records if records is not None else ClientRecords()
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
        h = digest(bytes(data))
        if self._last is not None and self._last[0] == h:
            return self._last[1]  # a redelivered request: the same answer, nothing new
        b = self._accept(data)
        desc, me = require(self.descriptor, "the session"), require(self.client_id, "the index")
        report = ClientReport(b.exchange)
        out: list[tuple[int, bytes]] = []
        for r in b.starts:
            if r <= self.started_up_to or r > desc.rounds:
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
        reply_bundle = Bundle(TO_SERVER, desc.session_id, b.exchange, me, tuple(out)).encode()
        self.last_exchange = b.exchange
        self._last = (h, reply_bundle)
        self.last_report = report
        return reply_bundle

    def peek(self, data: bytes) -> Bundle:
        """Decode a bundle without acting on it (to see which round trains)."""
        return Bundle.decode(data, TO_CLIENT, self._max_part(data))

    def _max_part(self, data: bytes) -> int:
        # before the descriptor is known, bound parts by the whole bundle's size
        d = self.descriptor
        return max_part_bytes(d.dimension, d.config.degree) if d else max(1, len(data))

    def _accept(self, data: bytes) -> Bundle:
        b = Bundle.decode(data, TO_CLIENT, self._max_part(data))
        desc = self.descriptor
        if b.descriptor:
            offered = SessionDescriptor.from_bytes(b.descriptor)
            if offered.session_id != b.session_id:
                raise WrongSessionError("descriptor and bundle name different sessions")
            if desc is not None and offered != desc:
                raise ProtocolViolationError("the server changed the session's parameters")
            self._check_policy(offered, b.client)
            desc = offered
        if desc is None:
            raise StateLostError(
                "no session state on this client (lost or never set up): it answers nothing "
                "about rounds in flight and rejoins at the next key advertisement"
            )
        if b.session_id != desc.session_id:
            raise WrongSessionError("bundle for another session")
        if self.client_id is not None and b.client != self.client_id:
            raise ProtocolViolationError(f"bundle for client {b.client}, this is {self.client_id}")
        if b.exchange <= self.last_exchange or b.exchange >= desc.schedule.num_exchanges:
            raise ProtocolViolationError(f"exchange {b.exchange} is out of order or past the end")
        off = sorted(set(b.starts) - set(desc.schedule.starts(b.exchange)))
        if off:  # e.g. a bootstrap bundle replayed under a later exchange number
            raise ProtocolViolationError(
                f"exchange {b.exchange} does not start rounds {off} in this session's schedule"
            )
        self.records.admit(desc.counter, desc.session_id, b.exchange)  # durable replay guard
        if self.descriptor is None:
            self.descriptor, self.client_id = desc, b.client
        return b

    def _check_policy(self, desc: SessionDescriptor, client: int) -> None:
        """The server's parameters must be exactly the ones this client's policy fixes."""
        cfg = desc.config
        if self.trust is not None:
            reg = self.trust.registry
            if cfg.num_clients != reg.size or client != self.trust.index:
                raise PolicyViolationError(
                    f"the session is for {cfg.num_clients} clients with this one as {client}; "
                    f"the registry has {reg.size}, this client is {self.trust.index}"
                )
            self.policy.check(cfg, reg.size)
        else:
            if client >= cfg.num_clients:
                raise ProtocolViolationError(f"client index {client} >= n={cfg.num_clients}")
            self.policy.check(cfg)

    def _part(
        self,
        r: int,
        msg: bytes,
        inputs: Mapping[int, npt.ArrayLike],
        contexts: Mapping[int, bytes],
    ) -> bytes | None:
        if r in self.answered:
            req, reply = self.answered[r]
            if req == digest(msg):
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
            self.answered[r] = (digest(msg), answer)
            del self.rounds[r]
        return answer

    def _new_round(self, r: int) -> SecAggClient:
        desc, me = require(self.descriptor, "the session"), require(self.client_id, "the index")
        return SecAggClient(
            desc.config,
            me,
            session_id=desc.session_id,
            round_index=r,
            dimension=desc.dimension,
            trust=self.trust,
            policy=None if self.trust is not None else self.policy,
            advert_context=b"",
            rng=np.random.default_rng(int.from_bytes(os.urandom(8), "big")),
        )

    # -- persistence -----------------------------------------------------------------------

    def save(self) -> bytes:
        """The client's pipeline state as bytes (secret: keep it on the client). The
        durable records are separate: store ``records.to_bytes()`` too."""
        w = Writer().raw(_STATE_MAGIC).u8(VERSION)
        w.blob(self.descriptor.to_bytes() if self.descriptor else b"")
        w.u32(self.client_id if self.client_id is not None else 0xFFFFFFFF)
        w.u32(self.started_up_to).u32(self.last_exchange + 1)
        w.blob(self._last[0] if self._last else b"").blob(self._last[1] if self._last else b"")
        w.u32(len(self.rounds))
        for r in sorted(self.rounds):
            w.u32(r).blob(self.rounds[r].export_state())
        w.u32(len(self.answered))
        for r in sorted(self.answered):
            w.u32(r).blob(self.answered[r][0]).blob(self.answered[r][1])
        return w.getvalue()

    @classmethod
    def load(
        cls,
        data: bytes,
        *,
        trust: Trust | None = None,
        policy: SecurityPolicy | None = None,
        records: ClientRecords | None = None,
    ) -> PipelineClient:
        """Rebuild from :meth:`save` bytes; :class:`ClientStateError` if they are bad or
        contradict themselves (rounds saved without a session, another identity)."""
        self = cls(trust=trust, policy=policy, records=records)
        try:
            self._load(bytes(data))
        except ClientStateError:
            raise
        except (MessageFormatError, ValueError, SecAggError) as exc:
            raise ClientStateError(f"saved pipeline state does not load: {exc}") from exc
        self.restored = True
        return self

    def _load(self, data: bytes) -> None:
        r = Reader(data)
        if r.remaining < 5 or r.raw(4) != _STATE_MAGIC or r.u8() != VERSION:
            raise ClientStateError("not a saved pipeline client state")
        desc = r.blob(MAX_DESCRIPTOR)
        cid = r.u32()
        self.started_up_to, self.last_exchange = r.u32(), r.u32() - 1
        if desc:
            self.descriptor = SessionDescriptor.from_bytes(desc)
            self._check_policy(self.descriptor, cid)
            self.client_id = cid
        limit = self._max_part(b"") * MAX_PARTS
        last_h, last_reply = r.blob(32), r.blob(limit)
        self._last = (last_h, last_reply) if last_h else None
        count = r.count(MAX_PARTS, "saved rounds")
        if count and self.descriptor is None:
            raise ClientStateError("saved rounds without a session descriptor")
        for _ in range(count):
            rnd, blob = r.u32(), r.blob(limit)
            d = require(self.descriptor, "the session", ClientStateError)
            client = SecAggClient.from_state(
                blob, d.config, trust=self.trust, policy=None if self.trust else self.policy
            )
            if client.id != self.client_id or client.ctx.round_index != rnd:
                raise ClientStateError(f"saved round {rnd} belongs to another client or round")
            self.rounds[rnd] = client
        for _ in range(r.count(MAX_PARTS, "answered rounds")):
            rnd = r.u32()
            self.answered[rnd] = (r.blob(32), r.blob(limit))
        r.end()
