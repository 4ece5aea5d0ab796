"""The server of one secure-aggregation round, as a sans-I/O state machine.

A driver calls ``receive(sender, data)`` for every message that arrives and
``close_step()`` when the step's deadline has passed (or ``pending()`` is empty); the
latter returns the messages to send, keyed by client id. The server never touches
sockets, threads or clocks.

Every message it sends is per client and O(k): the client's neighbours' keys, the boxes
addressed to it, its neighbours' statuses and (active) the evidence about its
neighbourhood. It holds O(n k) bytes of protocol state in compact records
(:mod:`secagg.server_state`) and one running sum: masked vectors are folded in as they
arrive (unless transcript recording, on by default for simulations and attack suites,
keeps the raw bytes).

A malformed or rule-breaking message from a client gets that client dropped (its error
is kept in ``rejected``), never a crash and never a silently wrong sum: every released
share is checked against its owner's committed digest (a bad one names and excludes
its holder), every rebuilt secret against the owner's commitment, and a dealer proven
to have dealt wrong shares aborts the round by name (``DealerMisbehaviourError`` with a
proof). Fewer than t clients at any step aborts the round: every remaining client gets
an Abort message and ``result()`` raises the error.
"""

from __future__ import annotations

import enum
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from secagg import attestation, commitments, crypto, shamir
from secagg.attestation import Status
from secagg.config import SecAggConfig
from secagg.context import RoundContext
from secagg.encoding import FixedPointEncoder
from secagg.errors import (
    BadShareError,
    ConfigError,
    DealerMisbehaviourError,
    DuplicateSenderError,
    InconsistentSharesError,
    KeyFormatError,
    MessageFormatError,
    ProtocolUsageError,
    ProtocolViolationError,
    ReconstructionError,
    RoundAbortedError,
    SecAggError,
    ShamirError,
    SurvivorSetTooSmallError,
    TooFewSurvivorsError,
)
from secagg.graph import Graph, MemberGraph
from secagg.messages import (
    SERVER_ID,
    SHARE_BOX_BYTES,
    Abort,
    AdvertiseKeys,
    Attestations,
    Complaint,
    DeliveryEntry,
    Expect,
    Header,
    MaskedInput,
    MsgType,
    NeighbourEntry,
    NeighbourKeys,
    ShareDelivery,
    ShareKeys,
    ShareKind,
    StatusList,
    UnmaskShares,
    ViewReport,
    decode,
    encode,
)
from secagg.prg import MaskTerm, apply_masks
from secagg.registry import Registry
from secagg.result import Transcript
from secagg.ring import RingArray
from secagg.roundspec import (
    mask_sign,
    pairwise_mask_term,
    pairwise_seed,
    round_graph,
    self_mask_term,
    session_graph_seed,
)
from secagg.server_state import Advert, Dealing, Packed, ShareBins


class ServerStep(enum.Enum):
    """The step whose messages the server is collecting."""

    ADVERTISE_KEYS = "advertise_keys"
    SHARE_KEYS = "share_keys"
    MASKED_INPUT = "masked_input"
    CONSISTENCY_CHECK = "consistency_check"
    UNMASKING = "unmasking"
    DONE = "done"
    ABORTED = "aborted"


_ACCEPTS: dict[ServerStep, tuple[MsgType, ...]] = {
    ServerStep.ADVERTISE_KEYS: (MsgType.ADVERTISE_KEYS,),
    ServerStep.SHARE_KEYS: (MsgType.SHARE_KEYS,),
    ServerStep.MASKED_INPUT: (MsgType.MASKED_INPUT, MsgType.COMPLAINT),
    ServerStep.CONSISTENCY_CHECK: (MsgType.VIEW_REPORT,),
    ServerStep.UNMASKING: (MsgType.UNMASK_SHARES,),
}


@dataclass
class ServerOutcome:
    """What the server learned: the sum over the survivors, and who they are."""

    sum: npt.NDArray[np.float64]
    ring_sum: RingArray
    survivors: tuple[int, ...]
    dropped: tuple[int, ...]
    rebuilt_self_mask_seeds: dict[int, bytes] = field(repr=False)
    rebuilt_mask_keys: dict[int, bytes] = field(repr=False)


class SecAggServer:
    """The server's side of one round.

    Args:
        config: the session's :class:`SecAggConfig`.
        session_id, round_index: what every message must carry.
        dimension: the input vector length d.
        registry: active setting: the sealed registry (identities, policy, graph seed).
        graph_seed: honest-but-curious: the graph's seed (default: from the session).
        extra_context: the model hash every client binds into its views (active): a view
            bound to another one does not match what the server relays.
        advert_context: what advertisements are bound to (default ``extra_context``).
        record_transcript: keep every received message (the server's view) in
            ``transcript``; off, memory stays O(n k + d).
        threads: cores for regenerating masks at unmasking (default: all of them).
    """

    def __init__(
        self,
        config: SecAggConfig,
        *,
        session_id: bytes,
        round_index: int,
        dimension: int,
        registry: Registry | None = None,
        graph_seed: bytes | None = None,
        extra_context: bytes = b"",
        advert_context: bytes | None = None,
        record_transcript: bool = True,
        threads: int | None = None,
    ) -> None:
        if isinstance(dimension, bool) or not isinstance(dimension, int) or dimension < 1:
            raise ConfigError(f"dimension must be a positive int, got {dimension!r}")
        self.ctx = RoundContext(session_id, round_index)
        self._graph_seed = graph_seed or session_graph_seed(self.ctx)
        if config.active:
            if registry is None:
                raise ConfigError("the active setting needs the sealed registry")
            registry.policy.check(config, registry.size)
            self.graph: Graph | MemberGraph = registry.ring(config.neighbours)
        else:  # until the advertisements are in: the ring over the whole population
            self.graph = round_graph(config, self._graph_seed)
        self.config = config
        self.registry = registry
        self.threads = threads if threads is not None else max(1, os.cpu_count() or 1)
        self.dimension = dimension
        self.extra_context = bytes(extra_context)
        self.advert_context = bytes(extra_context if advert_context is None else advert_context)
        self.ring = config.encoding.ring
        self.encoder = FixedPointEncoder(config.encoding, rounding=config.rounding)
        g = self.graph
        self._expect = Expect(
            session_id,
            round_index,
            config.num_clients,
            self.ring,
            dimension,
            g.degree,
            len(g.window(0, attestation.attester_radius(g))),
            0,
        )
        self.step = ServerStep.ADVERTISE_KEYS
        self.transcript: Transcript | None = Transcript() if record_transcript else None
        self.rejected: dict[int, SecAggError] = {}
        self.timings: dict[str, float] = {}
        self.error: RoundAbortedError | None = None
        self.bytes_down: dict[int, int] = {}
        self._accepted: set[int] = set()
        self._ads: dict[int, Advert] = {}
        self._keys_seen: set[bytes] = set()
        self._dealings: dict[int, Dealing] = {}
        self._unsent: dict[int, frozenset[int]] = {}  # sender -> present neighbours it skipped
        self._edges: dict[int, tuple[bytes, Packed]] = {}
        self._views: dict[int, Packed] = {}
        self._everyone = frozenset(range(config.num_clients))
        self._u1: frozenset[int] = frozenset()
        self._u2: frozenset[int] = frozenset()
        self._u3: frozenset[int] = frozenset()
        self._u4: frozenset[int] = frozenset()
        self._status = np.zeros(config.num_clients, dtype=np.uint8)  # by client id
        self._running_sum: RingArray = self.ring.zeros(dimension)
        self._shares = ShareBins.empty(config.threshold)
        self._parsed: dict[int, list[tuple[int, ShareKind, bytes]]] = {}
        self._verified: dict[int, int] = {}  # owner -> shares verified in accepted replies
        self._unmasking_senders: set[int] = set()
        self._dealer_fault: DealerMisbehaviourError | None = None
        self._outcome: ServerOutcome | None = None
        self._explicit: dict[tuple[str, int], bytes] = {}  # what differs from the base

    # -- driver API ---------------------------------------------------------------------

    def bind_context(self, extra_context: bytes) -> None:
        """Set the context the round's views must bind (e.g. the model hash)."""
        if self.step in (ServerStep.CONSISTENCY_CHECK, ServerStep.UNMASKING, ServerStep.DONE):
            raise ProtocolUsageError("the context can only be bound before the consistency check")
        self.extra_context = bytes(extra_context)

    def expected(self) -> frozenset[int]:
        """Clients allowed to send in the current step."""
        return {
            ServerStep.ADVERTISE_KEYS: self._everyone,
            ServerStep.SHARE_KEYS: self._u1,
            ServerStep.MASKED_INPUT: self._u2,
            ServerStep.CONSISTENCY_CHECK: self._u3,
            ServerStep.UNMASKING: self._u4 if self.config.active else self._u3,
        }.get(self.step, frozenset())

    def pending(self) -> frozenset[int]:
        """Clients of this step the server is still waiting for."""
        return self.expected() - self._accepted - self.rejected.keys()

    def receive(self, sender: int, data: bytes) -> None:
        """Take one message from client ``sender`` (the transport's authenticated id).

        A bad message drops the sender (recorded in ``rejected``); it never raises for
        a client's fault.
        """
        t0 = time.perf_counter()
        if self.step is ServerStep.UNMASKING:
            self._unmasking_senders.add(sender)
        if self.transcript is not None:
            self.transcript.add(self.step.value, sender, _peek_kind(data), data)
        try:
            self._receive(sender, data)
        except SecAggError as exc:  # any named failure of the client's message
            self.rejected[sender] = exc
            self._accepted.discard(sender)
        finally:
            self._tick(self.step.value, t0)

    def close_step(self) -> dict[int, bytes]:
        """End the current step (deadline passed); return the messages to send."""
        if self.step in (ServerStep.DONE, ServerStep.ABORTED):
            raise ProtocolUsageError(f"the round is already {self.step.value}")
        t0 = time.perf_counter()
        step = self.step
        try:
            if self._dealer_fault is not None:
                raise self._dealer_fault
            out = self._close()
        except RoundAbortedError as exc:
            out = self._abort(exc)
        finally:
            self._tick(step.value, t0)
        for c, msg in out.items():
            self.bytes_down[c] = self.bytes_down.get(c, 0) + len(msg)
        return out

    def result(self) -> ServerOutcome:
        """The decoded sum and survivor set; raises the abort error if the round failed."""
        if self.error is not None:
            raise self.error
        if self._outcome is None:
            raise ProtocolUsageError("the round has not finished yet")
        return self._outcome

    @property
    def unmasking_senders(self) -> frozenset[int]:
        """Clients that sent anything while the server collected unmasking shares.

        Non-empty means shares may have been released: a round that aborts after that
        point must stay counted in the privacy ledger (conservative accounting).
        """
        return frozenset(self._unmasking_senders)

    @property
    def survivors(self) -> frozenset[int]:
        """U3: clients whose masked inputs are in the running sum."""
        return self._u3

    # -- receiving ----------------------------------------------------------------------

    def _receive(self, sender: int, data: bytes) -> None:
        if self.step in (ServerStep.DONE, ServerStep.ABORTED):
            raise ProtocolViolationError(f"message after the round is {self.step.value}")
        if sender not in self.expected():
            raise ProtocolViolationError(f"client {sender} may not send in step {self.step.value}")
        if sender in self._accepted or sender in self.rejected:
            raise DuplicateSenderError(f"client {sender} already sent in step {self.step.value}")
        msg = decode(data, self._expect, _ACCEPTS[self.step])
        if msg.header.sender != sender:
            raise ProtocolViolationError(
                f"message claims sender {msg.header.sender}, transport says {sender}"
            )
        if isinstance(msg, AdvertiseKeys):
            self._take_advert(sender, msg)
        elif isinstance(msg, ShareKeys):
            self._take_dealing(sender, msg)
        elif isinstance(msg, MaskedInput):
            self._take_masked(sender, msg)
        elif isinstance(msg, Complaint):
            self._take_complaint(sender, msg)
            return  # a complaint is never an accepted masked input
        elif isinstance(msg, ViewReport):
            self._take_view(sender, msg)
        elif isinstance(msg, UnmaskShares):
            self._parsed[sender] = self._check_unmask(sender, msg)
        self._accepted.add(sender)

    def _take_advert(self, sender: int, msg: AdvertiseKeys) -> None:
        keys = (msg.channel_public, msg.mask_public)
        for k in keys:
            crypto.load_x25519_public(k)
        if msg.channel_public == msg.mask_public or self._keys_seen & set(keys):
            raise ProtocolViolationError(f"client {sender} re-uses another client's key")
        if self.registry is not None:
            ad = commitments.SignedAdvertisement(sender, *keys, msg.signature)
            crypto.verify_signature(
                self.registry.identity_key(sender),
                msg.signature,
                commitments.advertisement_payload(self.ctx, self.registry.digest, ad),
            )
            if tuple(p for p, _ in msg.tags) != self.graph.neighbours(sender):
                raise ProtocolViolationError(
                    f"client {sender} did not MAC its keys for each neighbour"
                )
        elif msg.signature or msg.tags:
            raise MessageFormatError("signature or tags in the honest-but-curious setting")
        self._keys_seen |= set(keys)
        self._ads[sender] = Advert(*keys, msg.signature, Packed.of(msg.tags, attestation.TAG_BYTES))

    def _take_dealing(self, sender: int, msg: ShareKeys) -> None:
        present = set(self.graph.neighbours(sender)) & self._u1
        receivers = [r for r, _ in msg.boxes]
        if not set(receivers) <= present:
            raise ProtocolViolationError(f"client {sender} sent share boxes to non-neighbours")
        if [h for h, _, _ in msg.leaves] != sorted((*receivers, sender)):
            raise ProtocolViolationError(f"client {sender}'s commitment does not cover its boxes")
        dealing = Dealing(
            Packed.of(msg.boxes, SHARE_BOX_BYTES),
            msg.seed_digest,
            Packed.of(((h, kd + md) for h, kd, md in msg.leaves), 64),
            msg.signature,
        )
        if self.registry is not None:
            c = dealing.commitment(sender, self._ads[sender], self._channel_keys(receivers))
            crypto.verify_signature(
                self.registry.identity_key(sender),
                msg.signature,
                c.payload(self.ctx, self.registry.digest),
            )
        elif msg.signature:
            raise MessageFormatError("signature in the honest-but-curious setting")
        self._dealings[sender] = dealing
        self._unsent[sender] = frozenset(present - set(receivers))

    def _channel_keys(self, clients: Iterable[int]) -> dict[int, bytes]:
        return {c: self._ads[c].channel_public for c in clients}

    def _take_masked(self, sender: int, msg: MaskedInput) -> None:
        if self.registry is not None:
            want = [self._mutual(sender, v) for v in attestation.view_clients(self._ring, sender)]
            if msg.edges != attestation.pack_bits(want):
                raise ProtocolViolationError(
                    f"client {sender} masked with other neighbours than it got"
                )
            holders = set(self._dealings[sender].receivers())
            if not {p for p, _ in msg.tags} <= holders:
                raise ProtocolViolationError(f"client {sender} tagged its edges for non-holders")
            self._edges[sender] = (msg.edges, Packed.of(msg.tags, attestation.TAG_BYTES))
        elif msg.edges or msg.tags:
            raise MessageFormatError("edges or tags in the honest-but-curious setting")
        np.add(self._running_sum, msg.vector, out=self._running_sum)  # fold, keep O(d)

    def _take_complaint(self, sender: int, msg: Complaint) -> None:
        owner = msg.owner
        if not (self.graph.adjacent(owner, sender) and self._mutual(owner, sender)):
            raise ProtocolViolationError(f"client {sender} complains about a box it never got")
        proof = self._box_proof(owner, sender, msg.channel_private)
        header = (self.graph.share_index(owner, sender), self.config.threshold)
        guilty = (
            commitments.verify_proof(
                proof, self.registry.digest, self.registry.identities(), header
            )
            if self.registry is not None
            else commitments.box_is_bad(proof, header)
        )
        if not guilty:
            raise ProtocolViolationError(f"client {sender}'s complaint about {owner} is false")
        self._dealer_fault = DealerMisbehaviourError(
            f"client {owner} dealt client {sender} a box that does not match its commitment",
            owner=owner,
            proof=proof,
        )
        self.rejected[sender] = RoundAbortedError(f"complained (rightly) about client {owner}")

    def _box_proof(self, owner: int, holder: int, private: bytes) -> commitments.BadBoxProof:
        d = self._dealings[owner]
        c = d.commitment(owner, self._ads[owner], self._channel_keys(d.receivers()))
        ad = self._ads[holder]
        signed = commitments.SignedAdvertisement(
            holder, ad.channel_public, ad.mask_public, ad.signature
        )
        return commitments.BadBoxProof(self.ctx, c, d.signature, signed, private)

    def _take_view(self, sender: int, msg: ViewReport) -> None:
        if msg.statuses != self._statuses_for(sender):
            raise ProtocolViolationError(f"client {sender} reports another view than it was sent")
        window = set(self._ring.window(sender, attestation.attester_radius(self._ring)))
        if not {p for p, _ in msg.tags} <= window - {sender}:
            raise ProtocolViolationError(
                f"client {sender} tagged its view for clients outside its window"
            )
        self._views[sender] = Packed.of(msg.tags, attestation.TAG_BYTES)

    def _check_unmask(self, sender: int, msg: UnmaskShares) -> list[tuple[int, ShareKind, bytes]]:
        """Validate every share's owner and kind; check against its owner's commitment the
        shares the server still needs (t verified shares of an owner suffice: later ones
        are neither checked nor kept) and return those."""
        out = []
        t = self.config.threshold
        for owner, kind, raw in msg.shares:
            if owner != sender and not (
                self.graph.adjacent(owner, sender) and self._mutual(owner, sender)
            ):
                raise ProtocolViolationError(f"client {sender} holds no share of {owner}")
            want = ShareKind.SELF_MASK if owner in self._u3 else ShareKind.MASK_KEY
            if kind is not want or owner not in self._u2:
                raise ProtocolViolationError(
                    f"client {sender} sent a {kind.name} share of {owner}; expected {want.name}"
                )
            if self._verified.get(owner, 0) >= t:
                continue
            share = shamir.Share.from_bytes(raw)
            if share.index != self.graph.share_index(owner, sender) or share.threshold != t:
                raise ProtocolViolationError(f"share of {owner} from {sender} has a wrong index")
            digest = self._dealings[owner].digest(sender, kind is ShareKind.SELF_MASK)
            if digest is None or digest != commitments.share_digest(
                self.ctx, owner, sender, kind, raw
            ):
                raise BadShareError(
                    f"client {sender}'s {kind.name} share of {owner} is not the one it committed"
                )
            out.append((owner, kind, raw))
        for owner, _, _ in out:  # the reply is accepted: its shares count
            self._verified[owner] = self._verified.get(owner, 0) + 1
        return out

    # -- who holds what -----------------------------------------------------------------

    @property
    def _ring(self) -> Graph:
        """The registry's graph: evidence (views, edges) exists in the active setting only."""
        if not isinstance(self.graph, Graph):
            raise ProtocolUsageError("neighbourhood evidence exists only in the active setting")
        return self.graph

    def _mutual(self, a: int, b: int) -> bool:
        """Whether neighbours a and b exchanged share boxes (so each masked with the other).

        Honest clients box every present neighbour, so the exceptions are kept instead of
        the boxes: O(1) per pair.
        """
        ua, ub = self._unsent.get(a), self._unsent.get(b)
        return ua is not None and ub is not None and b not in ua and a not in ub

    def _order(self, c: int) -> tuple[int, ...]:
        """The order of ``c``'s statuses (canonical view order when active)."""
        if self.config.active:
            return attestation.view_clients(self._ring, c)
        return self.graph.neighbours(c)

    def _pair_status(self, c: int, v: int) -> Status:
        if not self._mutual(c, v):
            return Status.ABSENT
        return Status(int(self._status[v]))

    def _statuses_for(self, c: int) -> bytes:
        return attestation.pack_statuses([self._pair_status(c, v) for v in self._order(c)])

    # -- closing steps ------------------------------------------------------------------

    def _close(self) -> dict[int, bytes]:
        accepted, self._accepted = self._accepted, set()
        step = self.step
        if step is ServerStep.ADVERTISE_KEYS:
            self._u1 = self._need(accepted, "advertised keys")
            if not self.config.active:  # the honest server's graph over who showed up
                self.graph = MemberGraph(self._u1, self.config.neighbours, self._graph_seed)
            self.step = ServerStep.SHARE_KEYS
            return {c: encode(self._neighbour_keys(c)) for c in sorted(self._u1)}
        if step is ServerStep.SHARE_KEYS:
            self._u2 = self._need(accepted, "shared keys")
            self._status[list(self._u2)] = Status.DROPPED
            self.step = ServerStep.MASKED_INPUT
            return {c: encode(self._delivery(c)) for c in sorted(self._u2)}
        if step is ServerStep.MASKED_INPUT:
            return self._close_masked(accepted)
        if step is ServerStep.CONSISTENCY_CHECK:
            self._u4 = self._need(accepted, "views")
            self.step = ServerStep.UNMASKING
            return {c: encode(self._attestations(c)) for c in sorted(self._u4)}
        if step is not ServerStep.UNMASKING:  # pragma: no cover - guarded by close_step
            raise ProtocolUsageError(f"no step to close in {step.value}")
        self._need(accepted, "unmasking responses")
        for sender in sorted(accepted):
            for owner, _, raw in self._parsed.pop(sender):
                self._shares.add(owner, sender, raw)
        self._finish()
        self.step = ServerStep.DONE
        return {}

    def _close_masked(self, accepted: set[int]) -> dict[int, bytes]:
        self._u3 = self._need(accepted, "masked inputs")
        if len(self._u3) < self.config.min_summed:
            raise SurvivorSetTooSmallError(
                f"{len(self._u3)} masked inputs, fewer than min_summed={self.config.min_summed}"
            )
        self._status[list(self._u3)] = Status.ALIVE
        self.step = ServerStep.CONSISTENCY_CHECK if self.config.active else ServerStep.UNMASKING
        return {
            c: encode(StatusList(self._header(), self._statuses_for(c))) for c in sorted(self._u3)
        }

    def _neighbour_keys(self, c: int) -> NeighbourKeys:
        entries = []
        for v in self.graph.neighbours(c):
            ad = self._ads.get(v) if v in self._u1 else None
            if ad is None:
                entries.append(NeighbourEntry(v, False))
            else:
                entries.append(
                    NeighbourEntry(
                        v, True, ad.channel_public, ad.mask_public, ad.tags.get(c) or b""
                    )
                )
        return NeighbourKeys(self._header(), tuple(entries))

    def _delivery(self, c: int) -> ShareDelivery:
        entries = []
        for v in self.graph.neighbours(c):
            if v not in self._u1:
                continue  # the client was told it is absent already
            if not self._mutual(c, v):
                entries.append(DeliveryEntry(v, False))
                continue
            d = self._dealings[v]
            box, dig = d.boxes.get(c) or b"", d.digests.get(c) or b""
            entries.append(DeliveryEntry(v, True, box, dig[:32], dig[32:]))
        return ShareDelivery(self._header(), tuple(entries))

    def _attestations(self, c: int) -> Attestations:
        g = self._ring
        positions = attestation.base_positions(g, c, attestation.base_radius(g))
        base = self._status[[g.at(int(q)) for q in positions]]
        edges = []
        for o in g.neighbours(c):
            if o not in self._u3 or o not in self._edges or not self._mutual(o, c):
                continue
            tag = self._edges[o][1].get(c)
            if tag is not None:
                edges.append((o, self._explicit_of("edges", o), tag))
        views = []
        for w in g.window(c, attestation.attester_radius(g)):
            tag = self._views[w].get(c) if w != c and w in self._u4 else None
            if tag is not None:
                views.append((w, self._explicit_of("view", w), tag))
        return Attestations(
            self._header(), attestation.pack_statuses(base), tuple(edges), tuple(views)
        )

    def _explicit_of(self, what: str, c: int) -> bytes:
        """``c``'s edge list or view in full where it differs from what the base implies
        (b"" otherwise: the receiver derives it); computed once per client."""
        key = (what, c)
        cached = self._explicit.get(key)
        if cached is None:
            base = self._status[list(attestation.view_clients(self._ring, c))]
            if what == "edges":
                own, derived = self._edges[c][0], attestation.pack_bits(base != Status.ABSENT)
            else:
                own, derived = self._statuses_for(c), attestation.pack_statuses(base)
            cached = self._explicit[key] = b"" if own == derived else own
        return cached

    def _need(self, clients: Iterable[int], what: str) -> frozenset[int]:
        got = frozenset(clients)
        if len(got) < self.config.threshold:
            raise TooFewSurvivorsError(
                f"{len(got)} {what} in step {self.step.value}, fewer than t={self.config.threshold}"
            )
        return got

    # -- unmasking --------------------------------------------------------------------------

    def _finish(self) -> None:
        """Rebuild the survivors' self masks and the dropped clients' pairwise masks."""
        total = self._running_sum
        seeds: dict[int, bytes] = {}
        keys: dict[int, bytes] = {}
        terms: list[MaskTerm] = []
        for u in sorted(self._u3):
            seeds[u] = self._rebuild(u, ShareKind.SELF_MASK)
            terms.append(self_mask_term(seeds[u], u, sign=-1))
        for w in sorted(self._u2 - self._u3):
            keys[w] = self._rebuild(w, ShareKind.MASK_KEY)
            key_w = crypto.AgreementKeyPair.from_private_bytes(keys[w])
            for v in self.graph.neighbours(w):
                if v in self._u3 and self._mutual(v, w):
                    seed = pairwise_seed(self.ctx, w, key_w, v, self._ads[v].mask_public)
                    # v added sign(v, w) * mask: take it out again
                    terms.append(pairwise_mask_term(seed, v, w, -mask_sign(v, w)))
        apply_masks(
            total,
            self.ring,
            terms,
            session_id=self.ctx.session_id,
            round_index=self.ctx.round_index,
            threads=self.threads,
        )
        self.ring.reduce(total, out=total)
        survivors = tuple(sorted(self._u3))
        dropped = tuple(c for c in range(self.config.num_clients) if c not in self._u3)
        self._outcome = ServerOutcome(
            sum=self.encoder.decode_sum(total, len(survivors)),
            ring_sum=total,
            survivors=survivors,
            dropped=dropped,
            rebuilt_self_mask_seeds=seeds,
            rebuilt_mask_keys=keys,
        )

    def _rebuild(self, owner: int, kind: ShareKind) -> bytes:
        """Interpolate from t verified shares and check the owner's commitment."""
        got = self._shares.get(owner)
        t = self.config.threshold
        if len(got) < t:
            raise ReconstructionError(
                f"{len(got)} verified {kind.name} shares of client {owner}, fewer than t={t}"
            )
        try:
            secret: bytes | None = shamir.combine(
                [shamir.Share.from_bytes(raw) for _, raw in got[:t]]
            )
        except InconsistentSharesError:  # committed shares off one 32-byte secret
            secret = None
        except ShamirError as exc:  # pragma: no cover - validated on receipt
            raise ReconstructionError(str(exc)) from exc
        if secret is not None and self._matches(owner, kind, secret):
            return secret
        d = self._dealings[owner]
        c = d.commitment(owner, self._ads[owner], self._channel_keys(d.receivers()))
        proof = commitments.BadDealingProof(self.ctx, c, d.signature, kind, tuple(got[:t]))
        raise DealerMisbehaviourError(
            f"client {owner}'s verified {kind.name} shares interpolate to another secret than "
            "it committed: it dealt inconsistent shares",
            owner=owner,
            proof=proof,
        )

    def _matches(self, owner: int, kind: ShareKind, secret: bytes) -> bool:
        if kind is ShareKind.SELF_MASK:
            return (
                commitments.seed_digest(self.ctx, owner, secret)
                == self._dealings[owner].seed_digest
            )
        try:
            public = crypto.AgreementKeyPair.from_private_bytes(secret).public_bytes
        except KeyFormatError:
            return False
        return public == self._ads[owner].mask_public

    # -- abort and bookkeeping ---------------------------------------------------------------

    def _abort(self, exc: RoundAbortedError) -> dict[int, bytes]:
        still_in = self.expected() | self._accepted
        self.step = ServerStep.ABORTED
        self.error = exc
        self._shares.clear()
        out = encode(Abort(self._header(), str(exc)))
        return {c: out for c in sorted(still_in)}

    def _header(self) -> Header:
        return Header(self.ctx.session_id, self.ctx.round_index, SERVER_ID)

    def _tick(self, step: str, t0: float) -> None:
        self.timings[step] = self.timings.get(step, 0.0) + time.perf_counter() - t0


def _peek_kind(data: bytes) -> str:
    """The message type name in a header, for the transcript ("malformed" if unreadable)."""
    try:
        return MsgType(data[5]).name.lower() if data[:4] == b"SAGG" else "malformed"
    except (IndexError, ValueError, TypeError):
        return "malformed"
