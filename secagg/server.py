"""The server of one secure-aggregation round, as a sans-I/O state machine.

A driver calls ``receive(sender, data)`` for every message that arrives and
``close_step()`` when the step's deadline has passed (or ``pending()`` is empty); the
latter returns the messages to send, keyed by client id. The server never touches
sockets, threads or clocks.

A malformed or rule-breaking message from a client gets that client dropped (its error
is kept in ``rejected``), never a crash and never a silently wrong sum. Fewer than t
clients at any step aborts the round: every remaining client gets an Abort message and
``result()`` raises :class:`TooFewSurvivorsError`.

Memory stays O(d) in the number of clients: masked vectors are folded into one running
sum as they arrive (unless transcript recording, on by default for simulations and
attack suites, keeps the raw bytes).
"""

from __future__ import annotations

import enum
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from secagg import crypto, shamir
from secagg.config import SecAggConfig
from secagg.context import RoundContext
from secagg.encoding import FixedPointEncoder
from secagg.errors import (
    ConfigError,
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
    SignatureError,
    TooFewSurvivorsError,
)
from secagg.messages import (
    SERVER_ID,
    Abort,
    AdvertiseKeys,
    ConsistencySignature,
    Expect,
    Header,
    KeyDirectory,
    KeyEntry,
    MaskedInput,
    Message,
    MsgType,
    ShareDelivery,
    ShareKeys,
    ShareKind,
    SignatureList,
    SurvivorList,
    UnmaskShares,
    decode,
    encode,
)
from secagg.prg import MaskTerm, apply_masks
from secagg.result import Transcript
from secagg.ring import RingArray
from secagg.roundspec import (
    Topology,
    mask_sign,
    pairwise_mask_term,
    pairwise_seed,
    self_mask_term,
)


class ServerStep(enum.Enum):
    """The step whose messages the server is collecting."""

    ADVERTISE_KEYS = "advertise_keys"
    SHARE_KEYS = "share_keys"
    MASKED_INPUT = "masked_input"
    CONSISTENCY_CHECK = "consistency_check"
    UNMASKING = "unmasking"
    DONE = "done"
    ABORTED = "aborted"


_ACCEPTS: dict[ServerStep, MsgType] = {
    ServerStep.ADVERTISE_KEYS: MsgType.ADVERTISE_KEYS,
    ServerStep.SHARE_KEYS: MsgType.SHARE_KEYS,
    ServerStep.MASKED_INPUT: MsgType.MASKED_INPUT,
    ServerStep.CONSISTENCY_CHECK: MsgType.CONSISTENCY_SIGNATURE,
    ServerStep.UNMASKING: MsgType.UNMASK_SHARES,
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
        registry: client id -> Ed25519 verification key (active setting).
        extra_context: the context the server expects clients to sign in ConsistencyCheck
            (e.g. the hash of the model it sent); clients whose signature does not verify
            against it are dropped.
        advert_context: what key advertisements are signed with (default: the same as
            ``extra_context``; see :class:`SecAggClient`).
        record_transcript: keep every received message (the server's view) in
            ``transcript``; off, the server's memory stays O(d).
        threads: cores for regenerating masks at unmasking (default: all of them).
    """

    def __init__(
        self,
        config: SecAggConfig,
        *,
        session_id: bytes,
        round_index: int,
        dimension: int,
        registry: Mapping[int, bytes] | None = None,
        extra_context: bytes = b"",
        advert_context: bytes | None = None,
        record_transcript: bool = True,
        threads: int | None = None,
    ) -> None:
        if isinstance(dimension, bool) or not isinstance(dimension, int) or dimension < 1:
            raise ConfigError(f"dimension must be a positive int, got {dimension!r}")
        if config.active and registry is None:
            raise ConfigError("the active setting needs the registry of client identity keys")
        self.config = config
        self.threads = threads if threads is not None else max(1, os.cpu_count() or 1)
        self.ctx = RoundContext(session_id, round_index)
        self.dimension = dimension
        self.registry = dict(registry or {})
        self.extra_context = bytes(extra_context)
        self.advert_context = bytes(extra_context if advert_context is None else advert_context)
        self.ring = config.encoding.ring
        self.encoder = FixedPointEncoder(config.encoding, rounding=config.rounding)
        self._expect = Expect(session_id, round_index, config.num_clients, self.ring, dimension)
        self.step = ServerStep.ADVERTISE_KEYS
        self.transcript: Transcript | None = Transcript() if record_transcript else None
        self.rejected: dict[int, SecAggError] = {}
        self.timings: dict[str, float] = {}
        self.error: RoundAbortedError | None = None
        # per-step state
        self._accepted: dict[int, Message] = {}
        self._directory: dict[int, KeyEntry] = {}
        self._topology: Topology | None = None
        self._u1: frozenset[int] = frozenset()
        self._u2: frozenset[int] = frozenset()
        self._u3: frozenset[int] = frozenset()
        self._u4: frozenset[int] = frozenset()
        self._boxes: dict[int, list[tuple[int, bytes]]] = {}
        self._running_sum: RingArray = self.ring.zeros(dimension)
        self._shares: dict[tuple[int, ShareKind], list[shamir.Share]] = {}
        self._parsed_shares: dict[int, list[tuple[int, ShareKind, shamir.Share]]] = {}
        self._unmasking_senders: set[int] = set()
        self._outcome: ServerOutcome | None = None

    # -- driver API ---------------------------------------------------------------------

    def bind_context(self, extra_context: bytes) -> None:
        """Set the context ConsistencyCheck signatures must cover (e.g. the model hash)."""
        if self.step in (ServerStep.CONSISTENCY_CHECK, ServerStep.UNMASKING, ServerStep.DONE):
            raise ProtocolUsageError("the context can only be bound before the consistency check")
        self.extra_context = bytes(extra_context)

    def expected(self) -> frozenset[int]:
        """Clients allowed to send in the current step."""
        s = self.step
        if s is ServerStep.ADVERTISE_KEYS:
            return frozenset(range(self.config.num_clients))
        if s is ServerStep.SHARE_KEYS:
            return self._u1
        if s is ServerStep.MASKED_INPUT:
            return self._u2
        if s is ServerStep.CONSISTENCY_CHECK:
            return self._u3
        if s is ServerStep.UNMASKING:
            return self._u4 if self.config.active else self._u3
        return frozenset()

    def pending(self) -> frozenset[int]:
        """Clients of this step the server is still waiting for."""
        return self.expected() - self._accepted.keys() - self.rejected.keys()

    def receive(self, sender: int, data: bytes) -> None:
        """Take one message from client ``sender`` (the transport's authenticated id).

        A bad message drops the sender (recorded in ``rejected``); it never raises for
        a client's fault.
        """
        t0 = time.perf_counter()
        if self.step is ServerStep.UNMASKING:
            self._unmasking_senders.add(sender)
        if self.transcript is not None:
            kind = _peek_kind(data)
            self.transcript.add(self.step.value, sender, kind, data)
        try:
            self._receive(sender, data)
        except SecAggError as exc:  # any named failure of the client's message
            self.rejected[sender] = exc
            self._accepted.pop(sender, None)
        finally:
            self._tick(self.step.value, t0)

    def close_step(self) -> dict[int, bytes]:
        """End the current step (deadline passed); return the messages to send."""
        if self.step in (ServerStep.DONE, ServerStep.ABORTED):
            raise ProtocolUsageError(f"the round is already {self.step.value}")
        t0 = time.perf_counter()
        step = self.step
        try:
            return self._close()
        except RoundAbortedError as exc:
            return self._abort(exc)
        finally:
            self._tick(step.value, t0)

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
        msg = decode(data, self._expect, (_ACCEPTS[self.step],))
        if msg.header.sender != sender:
            raise ProtocolViolationError(
                f"message claims sender {msg.header.sender}, transport says {sender}"
            )
        if isinstance(msg, AdvertiseKeys):
            self._check_advertisement(msg)
        elif isinstance(msg, ShareKeys):
            self._check_share_keys(msg)
        elif isinstance(msg, MaskedInput):
            np.add(self._running_sum, msg.vector, out=self._running_sum)  # fold, keep O(d)
            msg = MaskedInput(msg.header, msg.bits, self.ring.zeros(0))
        elif isinstance(msg, ConsistencySignature):
            payload = crypto.consistency_payload(
                self.ctx, tuple(sorted(self._u3)), self.extra_context
            )
            crypto.verify_signature(self.registry[sender], msg.signature, payload)
        elif isinstance(msg, UnmaskShares):
            self._check_unmask(msg)
        self._accepted[sender] = msg

    def _check_advertisement(self, msg: AdvertiseKeys) -> None:
        sender = msg.header.sender
        if self.config.active:
            ident = self.registry.get(sender)
            if ident is None:
                raise SignatureError(f"client {sender} has no registered identity key")
            crypto.verify_signature(
                ident,
                msg.signature,
                crypto.advertisement_payload(
                    self.ctx, sender, msg.channel_public, msg.mask_public, self.advert_context
                ),
            )
        elif msg.signature:
            raise MessageFormatError("signature present in the honest-but-curious setting")
        crypto.load_x25519_public(msg.channel_public)
        crypto.load_x25519_public(msg.mask_public)
        for other in self._accepted.values():
            assert isinstance(other, AdvertiseKeys)
            if {other.channel_public, other.mask_public} & {msg.channel_public, msg.mask_public}:
                raise ProtocolViolationError(f"client {sender} re-uses another client's key")

    def _check_share_keys(self, msg: ShareKeys) -> None:
        assert self._topology is not None
        sender = msg.header.sender
        receivers = {r for r, _ in msg.boxes}
        if receivers != set(self._topology.adjacency[sender]):
            raise ProtocolViolationError(
                f"client {sender} sent share boxes to other clients than its neighbours"
            )

    def _check_unmask(self, msg: UnmaskShares) -> None:
        """Validate every share; keep the parsed ones until the step closes."""
        assert self._topology is not None
        parsed: list[tuple[int, ShareKind, shamir.Share]] = []
        sender = msg.header.sender
        held = self._topology.adjacency[sender] | {sender}
        for owner, kind, raw in msg.shares:
            if owner not in held or owner not in self._u2:
                raise ProtocolViolationError(f"client {sender} holds no share of {owner}")
            want = ShareKind.SELF_MASK if owner in self._u3 else ShareKind.MASK_KEY
            if kind is not want:
                raise ProtocolViolationError(
                    f"client {sender} sent a {kind.name} share of {owner}; expected {want.name}"
                )
            share = shamir.Share.from_bytes(raw)
            if share.index != self._topology.share_index(owner, sender):
                raise ProtocolViolationError(f"share of {owner} from {sender} has a wrong index")
            if share.threshold != self.config.threshold:
                raise ProtocolViolationError(f"share of {owner} has threshold {share.threshold}")
            parsed.append((owner, kind, share))
        self._parsed_shares[sender] = parsed

    # -- closing steps ------------------------------------------------------------------

    def _close(self) -> dict[int, bytes]:
        cfg = self.config
        accepted = self._accepted
        self._accepted = {}
        step = self.step
        if step is ServerStep.ADVERTISE_KEYS:
            self._u1 = self._need(accepted.keys(), "advertised keys")
            entries = []
            for c in sorted(self._u1):
                m = accepted[c]
                assert isinstance(m, AdvertiseKeys)
                entries.append(KeyEntry(c, m.channel_public, m.mask_public, m.signature))
            self._directory = {e.client: e for e in entries}
            self._topology = Topology.build(cfg, self.ctx, entries)
            self.step = ServerStep.SHARE_KEYS
            out = encode(KeyDirectory(self._header(), tuple(entries)))
            return {c: out for c in self._u1}
        if step is ServerStep.SHARE_KEYS:
            self._u2 = self._need(accepted.keys(), "shared keys")
            boxes: dict[int, list[tuple[int, bytes]]] = {c: [] for c in self._u2}
            for sender in sorted(self._u2):
                m = accepted[sender]
                assert isinstance(m, ShareKeys)
                for receiver, box in m.boxes:
                    if receiver in boxes:
                        boxes[receiver].append((sender, box))
            self.step = ServerStep.MASKED_INPUT
            shared = tuple(sorted(self._u2))
            return {
                c: encode(ShareDelivery(self._header(), shared, tuple(boxes[c]))) for c in self._u2
            }
        if step is ServerStep.MASKED_INPUT:
            self._u3 = self._need(accepted.keys(), "masked inputs")
            self.step = ServerStep.CONSISTENCY_CHECK if cfg.active else ServerStep.UNMASKING
            out = encode(SurvivorList(self._header(), tuple(sorted(self._u3))))
            return {c: out for c in self._u3}
        if step is ServerStep.CONSISTENCY_CHECK:
            self._u4 = self._need(accepted.keys(), "consistency signatures")
            sigs = []
            for c in sorted(self._u4):
                m = accepted[c]
                assert isinstance(m, ConsistencySignature)
                sigs.append((c, m.signature))
            self.step = ServerStep.UNMASKING
            out = encode(SignatureList(self._header(), tuple(sigs)))
            return {c: out for c in self._u4}
        assert step is ServerStep.UNMASKING
        self._need(accepted.keys(), "unmasking responses")
        for sender in sorted(accepted):
            for owner, kind, share in self._parsed_shares.pop(sender):
                self._shares.setdefault((owner, kind), []).append(share)
        self._finish()
        self.step = ServerStep.DONE
        return {}

    def _need(self, clients: Iterable[int], what: str) -> frozenset[int]:
        got = frozenset(clients)
        if len(got) < self.config.threshold:
            raise TooFewSurvivorsError(
                f"{len(got)} {what} in step {self.step.value}, fewer than t={self.config.threshold}"
            )
        return got

    def _finish(self) -> None:
        """Rebuild the survivors' self masks and the dropped clients' pairwise masks."""
        assert self._topology is not None
        total = self._running_sum
        seeds: dict[int, bytes] = {}
        keys: dict[int, bytes] = {}
        terms: list[MaskTerm] = []
        for u in sorted(self._u3):
            seeds[u] = self._rebuild(u, ShareKind.SELF_MASK)
            terms.append(self_mask_term(seeds[u], u, sign=-1))
        for w in sorted(self._u2 - self._u3):
            keys[w] = self._rebuild(w, ShareKind.MASK_KEY)
            try:
                key_w = crypto.AgreementKeyPair.from_private_bytes(keys[w])
            except KeyFormatError as exc:  # pragma: no cover - 32 bytes by construction
                raise ReconstructionError(f"rebuilt mask key of client {w} is malformed") from exc
            if key_w.public_bytes != self._directory[w].mask_public:
                raise ReconstructionError(f"rebuilt mask key of client {w} does not match its key")
            for v in sorted(self._topology.adjacency[w] & self._u3):
                seed = pairwise_seed(self.ctx, w, key_w, v, self._directory[v].mask_public)
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
        shares = self._shares.get((owner, kind), [])
        if len(shares) < self.config.threshold:
            raise ReconstructionError(
                f"{len(shares)} {kind.name} shares of client {owner}, fewer than "
                f"t={self.config.threshold}"
            )
        try:
            return shamir.combine(shares)
        except InconsistentSharesError as exc:
            raise ReconstructionError(f"{kind.name} shares of client {owner} disagree") from exc
        except ShamirError as exc:  # pragma: no cover - validated on receipt
            raise ReconstructionError(str(exc)) from exc

    def _abort(self, exc: RoundAbortedError) -> dict[int, bytes]:
        still_in = self.expected() | self._accepted.keys()
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
