"""The client of one secure-aggregation round, as a sans-I/O state machine.

``SecAggClient.advertise()`` returns the first message; ``handle(data)`` takes each server
message (bytes) and returns the reply (bytes), until the round is done. The client never
touches sockets, threads or clocks; a driver moves the bytes.

Everything a client receives and keeps concerns its neighbourhood only: its k
neighbours' keys, the boxes addressed to it, its neighbours' statuses and, in the active
setting, the O(k) evidence of :mod:`secagg.attestation`. Its cost is O(k) public-key
operations and O(k d) masking, whatever n is.

What an honest client enforces (each a named exception, after which it is aborted and
releases nothing more):

* every message is for this session and round, of the type expected now, well formed;
* active setting: its parameters are exactly those its provisioned policy derives
  (:class:`~secagg.errors.PolicyViolationError` otherwise, before any key leaves it);
  its neighbourhood is the registry's graph, every neighbour listed exactly once, present
  or absent (:class:`~secagg.errors.NeighbourhoodError`); a neighbour whose relayed keys
  do not carry its MAC for this client is treated as absent;
* every share it holds matches its owner's committed digests, or it complains with a
  proof that names the owner (:class:`~secagg.messages.Complaint`);
* later lists contradict no earlier one (absent stays absent, only neighbours that
  shared can be alive or dropped);
* active setting: it releases an owner's self-mask share only if the owner is certified
  alive and the side rule holds, a mask-key share only if the owner is certified not
  alive (:class:`~secagg.attestation.Evidence`); never both shares of one peer; one
  unmasking answer per round; and it refuses when more of its own neighbours on a side
  are not alive than the policy's dropout cap.
"""

from __future__ import annotations

import os
import secrets
from typing import Any, ClassVar, cast

import numpy as np
import numpy.typing as npt

from secagg import attestation, commitments, crypto, shamir
from secagg.attestation import Binding, Evidence, Status
from secagg.client_state import MAX_DIMENSION, ClientPhase, RoundState
from secagg.config import SecAggConfig
from secagg.context import RoundContext, check_party
from secagg.encoding import FixedPointEncoder
from secagg.errors import (
    BothSharesRequestedError,
    ConfigError,
    ConsistencyCheckError,
    DecryptionError,
    DropoutBudgetExceededError,
    NeighbourhoodError,
    ProtocolUsageError,
    ProtocolViolationError,
    RoundAbortedError,
    SecAggError,
    TooFewSurvivorsError,
    UnexpectedMessageError,
)
from secagg.graph import Graph
from secagg.messages import (
    Abort,
    AdvertiseKeys,
    Attestations,
    Complaint,
    Expect,
    Header,
    MaskedInput,
    MsgType,
    NeighbourKeys,
    ShareDelivery,
    ShareKeys,
    ShareKind,
    StatusList,
    Tags,
    UnmaskShares,
    ViewReport,
    decode,
    encode,
)
from secagg.policy import SecurityPolicy
from secagg.prg import apply_masks
from secagg.registry import Trust
from secagg.ring import RingArray
from secagg.roundspec import (
    mask_sign,
    pack_box,
    pairwise_mask_term,
    pairwise_seed,
    self_mask_term,
    unpack_box,
)
from secagg.validation import require


class SecAggClient:
    """One client's side of one round.

    Args:
        config: the session's :class:`SecAggConfig`.
        client_id: this client's id, 0..n-1 (its registered index when active).
        session_id, round_index: what every derivation and message is bound to.
        dimension: length d of the input vector.
        trust: active setting: this client's :class:`~secagg.registry.Trust` (identity,
            sealed registry with policy and graph seed, pairwise MAC keys). The config
            must be exactly what the registry's policy derives.
        policy: honest-but-curious: an optional policy the config must match.
        extra_context: bound into every view and edge MAC (e.g. the hash of the model
            this client received), so different models to different clients leave no
            valid evidence between them.
        advert_context: bound into the key advertisement (default: ``extra_context``);
            the pipeline advertises before the model exists and binds it later with
            :meth:`bind_context`.
        rng: drives stochastic rounding only (keys and seeds always come from the OS).
    """

    def __init__(
        self,
        config: SecAggConfig,
        client_id: int,
        *,
        session_id: bytes,
        round_index: int,
        dimension: int,
        trust: Trust | None = None,
        policy: SecurityPolicy | None = None,
        extra_context: bytes = b"",
        advert_context: bytes | None = None,
        rng: np.random.Generator | None = None,
    ) -> None:
        check_party(client_id, "client")
        if client_id >= config.num_clients:
            raise ConfigError(f"client id {client_id} >= num_clients {config.num_clients}")
        if isinstance(dimension, bool) or not isinstance(dimension, int) or dimension < 1:
            raise ConfigError(f"dimension must be a positive int, got {dimension!r}")
        self.graph: Graph | None = None
        if config.active and trust is None:
            raise ConfigError("the active setting needs this client's provisioned trust")
        if trust is not None:  # a provisioned client runs its registry's policy, always
            if trust.index != client_id:
                raise ConfigError(f"this client is registered as {trust.index}, not {client_id}")
            trust.registry.policy.check(config, trust.registry.size)
            self.graph = trust.registry.ring(config.neighbours)
        elif policy is not None:
            policy.check(config)
        if dimension > MAX_DIMENSION:
            raise ConfigError(f"dimension must be at most {MAX_DIMENSION}, got {dimension}")
        self.config = config
        self.id = client_id
        self.trust = trust
        self.ctx = RoundContext(session_id, round_index)
        self.dimension = dimension
        self.encoder = FixedPointEncoder(config.encoding, rounding=config.rounding)
        self.ring = config.encoding.ring
        self._rng = rng
        self.st = RoundState(
            client_id,
            self.ctx.session_id,
            round_index,
            dimension,
            bytes(extra_context),
            bytes(extra_context if advert_context is None else advert_context),
        )
        self._expect = self._expectations()
        self._input: RingArray | None = None
        self._channel_keys: dict[int, bytes] = {}
        self._binding: Binding | None = None
        self.withheld: dict[int, str] = {}  # owner -> why its share was not released
        self.error: SecAggError | None = None

    @property
    def phase(self) -> ClientPhase:
        """Where the client is in the round."""
        return self.st.phase

    @property
    def extra_context(self) -> bytes:
        """What views and edge tags bind (the model hash)."""
        return self.st.extra_context

    @property
    def advert_context(self) -> bytes:
        """What the key advertisement binds."""
        return self.st.advert_context

    # -- persistence -------------------------------------------------------------------

    def export_state(self) -> bytes:
        """This round's state as bytes (secret: keep it on the client); see
        :mod:`secagg.client_state`. Not while an input is set: the plaintext never
        leaves the process."""
        if self._input is not None:
            raise ProtocolUsageError(
                "export the state after the masked input, not with an input set"
            )
        self.st.error = str(self.error or "")
        return self.st.to_bytes()

    @classmethod
    def from_state(
        cls,
        data: bytes,
        config: SecAggConfig,
        *,
        trust: Trust | None = None,
        policy: SecurityPolicy | None = None,
        rng: np.random.Generator | None = None,
    ) -> SecAggClient:
        """Rebuild a client from :meth:`export_state` bytes; the config and trust come
        from the session and the provisioning, as when it was made."""
        st = RoundState.from_bytes(data, config.num_clients, config.degree)
        client = cls(
            config,
            st.client,
            session_id=st.session_id,
            round_index=st.round_index,
            dimension=st.dimension,
            trust=trust,
            policy=policy,
            rng=rng,
        )
        client.st = st
        client._expect = client._expectations()
        if st.phase is ClientPhase.ABORTED:
            client.error = ProtocolUsageError(st.error or "aborted before the state was saved")
        return client

    def _expectations(self) -> Expect:
        g = self.graph
        # without a graph (honest-but-curious) the server's neighbour list fixes the degree
        degree = len(self.st.order) if g is None and self.st.order else self.config.degree
        window = base = 0
        if g is not None:
            window = len(g.window(self.id, attestation.attester_radius(g)))
            base = len(attestation.base_positions(g, self.id, attestation.base_radius(g)))
        return Expect(
            self.ctx.session_id,
            self.ctx.round_index,
            self.config.num_clients,
            self.ring,
            self.dimension,
            degree,
            window,
            base,
        )

    @property
    def binding(self) -> Binding:
        """What this round's tags are bound to (registry digest, model hash)."""
        b = self._binding
        if b is None or b.extra != self.extra_context:
            reg = self.trust.registry.digest if self.trust is not None else b""
            b = self._binding = Binding(self.ctx, reg, self.extra_context)
        return b

    # -- public API ---------------------------------------------------------------------

    def set_input(self, x: npt.ArrayLike) -> None:
        """Give the client its input vector (floats; clipped and encoded here)."""
        if self.phase not in (ClientPhase.INIT, ClientPhase.ADVERTISED, ClientPhase.SHARED):
            raise ProtocolUsageError("the input can only be set before the masked input is sent")
        encoded = self.encoder.encode(x, rng=self._rng)
        if encoded.shape != (self.dimension,):
            raise ProtocolUsageError(
                f"input has length {encoded.shape[0]}, the round expects {self.dimension}"
            )
        self._input = encoded

    def set_ring_input(self, y: RingArray) -> None:
        """Give the client an input already in Z_(2^b) (e.g. distributed-DP output)."""
        if self.phase not in (ClientPhase.INIT, ClientPhase.ADVERTISED, ClientPhase.SHARED):
            raise ProtocolUsageError("the input can only be set before the masked input is sent")
        self._input = self.ring.validate(np.array(y, dtype=self.ring.dtype), self.dimension)

    def bind_context(self, extra_context: bytes) -> None:
        """Set what views and edge tags bind (e.g. the model hash) once it is known.

        Only before the masked input is sent: afterwards the context is fixed.
        """
        if self.phase not in (ClientPhase.INIT, ClientPhase.ADVERTISED, ClientPhase.SHARED):
            raise ProtocolUsageError("the context can only be bound before the masked input")
        self.st.extra_context = bytes(extra_context)

    def advertise(self) -> bytes:
        """Start the round: fresh key pairs, and the AdvertiseKeys message (active:
        signed with the identity key, MAC'd for every neighbour)."""
        if self.phase is not ClientPhase.INIT:
            raise ProtocolUsageError("advertise() is the first step and runs once")
        self.st.channel_key = crypto.AgreementKeyPair.generate()
        self.st.mask_key = self._generate_mask_key()
        c_pk, s_pk = self.st.channel_key.public_bytes, self.st.mask_key.public_bytes
        sig, tags = b"", cast(Tags, ())
        if self.trust is not None and self.graph is not None:
            reg = self.trust.registry.digest
            ad = commitments.SignedAdvertisement(self.id, c_pk, s_pk, b"")
            sig = self.trust.identity.signing.sign(
                commitments.advertisement_payload(self.ctx, reg, ad)
            )
            b = Binding(self.ctx, reg, self.advert_context)
            tags = tuple(
                (
                    v,
                    attestation.tag(
                        self.trust.keyring.key(v), b.payload("advert", self.id, v, c_pk + s_pk)
                    ),
                )
                for v in self.graph.neighbours(self.id)
            )
        self.st.phase = ClientPhase.ADVERTISED
        return encode(AdvertiseKeys(self._header(), c_pk, s_pk, sig, tags))

    def handle(self, data: bytes) -> bytes | None:
        """Process one server message; return the reply to send (None: nothing to send).

        Any protocol violation aborts this client for the round and is re-raised as a
        named :class:`ProtocolError`; an aborted client refuses every later message.
        """
        if self.phase is ClientPhase.ABORTED:
            raise UnexpectedMessageError(f"client {self.id} aborted the round; no more messages")
        try:
            return self._dispatch(data)
        except SecAggError as exc:  # every named failure (protocol, crypto, sharing)
            self._abort(exc)
            raise

    @property
    def aborted(self) -> bool:
        """True once the client has aborted the round."""
        return self.phase is ClientPhase.ABORTED

    @property
    def held_shares(self) -> int:
        """How many owners' shares this client holds right now (O(k))."""
        return len(self.st.held)

    # -- dispatch -----------------------------------------------------------------------

    _EXPECTED: ClassVar[dict[ClientPhase, tuple[MsgType, ...]]] = {
        ClientPhase.INIT: (),
        ClientPhase.ADVERTISED: (MsgType.NEIGHBOUR_KEYS, MsgType.ABORT),
        ClientPhase.SHARED: (MsgType.SHARE_DELIVERY, MsgType.ABORT),
        ClientPhase.MASKED: (MsgType.STATUS_LIST, MsgType.ABORT),
        ClientPhase.REPORTED: (MsgType.ATTESTATIONS, MsgType.ABORT),
        # after unmasking the client only learns whether the round failed
        ClientPhase.DONE: (MsgType.ABORT,),
    }

    def _dispatch(self, data: bytes) -> bytes | None:
        msg = decode(data, self._expect, self._EXPECTED[self.phase])
        if isinstance(msg, Abort):
            raise RoundAbortedError(f"server aborted the round: {msg.reason}")
        handlers: dict[type, Any] = {
            NeighbourKeys: self._on_neighbours,
            ShareDelivery: self._on_delivery,
            StatusList: self._on_statuses,
            Attestations: self._on_attestations,
        }
        return handlers[type(msg)](msg)  # type: ignore[no-any-return]

    # -- step 1: neighbours' keys -> ShareKeys --------------------------------------------

    def _on_neighbours(self, msg: NeighbourKeys) -> bytes:
        listed = [e.client for e in msg.entries]
        if self.graph is not None:
            if tuple(listed) != self.graph.neighbours(self.id):
                raise NeighbourhoodError(
                    "the neighbour list is not this client's neighbourhood in the registry's "
                    "graph (an entry outside it, or one inside it neither present nor absent)"
                )
            self.st.order = attestation.view_clients(self.graph, self.id)
        else:
            if self.id in listed or len(listed) > self.config.degree:
                raise NeighbourhoodError("the neighbour list holds this client or too many")
            self.st.order = tuple(listed)
            self._expect = self._expectations()
        self.st.listed = frozenset(e.client for e in msg.entries if e.present)
        self.st.keys = self._accept_keys(msg)
        self.st.holders = tuple(sorted((*listed, self.id)))
        if len(self.st.keys) + 1 < self.config.threshold:
            raise TooFewSurvivorsError(
                f"{len(self.st.keys)} neighbours advertised keys: fewer than t - 1 = "
                f"{self.config.threshold - 1} could hold this client's shares"
            )
        return encode(self._deal())

    def _accept_keys(self, msg: NeighbourKeys) -> dict[int, tuple[bytes, bytes]]:
        mine = {
            require(self.st.channel_key, "the channel key").public_bytes,
            require(self.st.mask_key, "the mask key").public_bytes,
        }
        seen = set(mine)
        out: dict[int, tuple[bytes, bytes]] = {}
        for e in msg.entries:
            if not e.present:
                continue
            if {e.channel_public, e.mask_public} & seen or e.channel_public == e.mask_public:
                raise ProtocolViolationError(f"client {e.client} re-uses another client's key")
            seen |= {e.channel_public, e.mask_public}  # 32 bytes each (the decoder checks)
            if self.trust is not None:
                b = Binding(self.ctx, self.trust.registry.digest, self.advert_context)
                body = b.payload("advert", e.client, self.id, e.channel_public + e.mask_public)
                if not attestation.tag_ok(self.trust.keyring.key(e.client), body, e.tag):
                    self.withheld[e.client] = (
                        "its relayed keys carry no valid MAC: treated as absent"
                    )
                    continue
            out[e.client] = (e.channel_public, e.mask_public)
        return out

    def _deal(self) -> ShareKeys:
        """Shamir-share the mask key and a fresh self-mask seed over all holders; box the
        present ones' shares; commit to every share and the seed."""
        cfg = self.config
        mask_key, channel_key = (
            require(self.st.mask_key, "the mask key"),
            require(self.st.channel_key, "the channel key"),
        )
        self.st.self_seed = self._generate_self_mask_seed()
        m = len(self.st.holders)
        key_shares = shamir.split(mask_key.private_bytes(), m, cfg.threshold)
        mask_shares = shamir.split(self.st.self_seed, m, cfg.threshold)
        boxes, leaves, leaf_objs = [], [], []
        for holder, ks, ms in zip(self.st.holders, key_shares, mask_shares, strict=True):
            if holder != self.id and holder not in self.st.keys:
                continue  # absent: its share is never dealt
            kb, mb = ks.to_bytes(), ms.to_bytes()
            kd = commitments.share_digest(self.ctx, self.id, holder, ShareKind.MASK_KEY, kb)
            md = commitments.share_digest(self.ctx, self.id, holder, ShareKind.SELF_MASK, mb)
            leaves.append((holder, kd, md))
            if holder == self.id:
                self.st.held[self.id] = (kb, mb)
                leaf_objs.append(commitments.Leaf(holder, b"", kd, md))
                continue
            box = self._seal_box(holder, pack_box(self.id, holder, kb, mb))
            boxes.append((holder, box))
            leaf_objs.append(commitments.Leaf(holder, self.st.keys[holder][0], kd, md))
        seed_d = commitments.seed_digest(self.ctx, self.id, self.st.self_seed)
        sig = b""
        if self.trust is not None:
            c = commitments.Commitment(
                self.id,
                channel_key.public_bytes,
                mask_key.public_bytes,
                seed_d,
                tuple(leaf_objs),
                dict(boxes),
            )
            sig = self.trust.identity.signing.sign(c.payload(self.ctx, self.trust.registry.digest))
        self.st.phase = ClientPhase.SHARED
        return ShareKeys(self._header(), tuple(boxes), seed_d, tuple(leaves), sig)

    # -- step 2: share delivery -> MaskedInput (or a Complaint) ---------------------------

    def _on_delivery(self, msg: ShareDelivery) -> bytes:
        if self._input is None:
            raise ProtocolUsageError("set_input() must be called before the masked input step")
        if frozenset(e.sender for e in msg.entries) != self.st.listed:
            raise NeighbourhoodError(
                "the share delivery must list exactly the neighbours said to be present, "
                "each with its box or marked absent"
            )
        peers = []
        for e in msg.entries:
            if not e.shared or e.sender not in self.st.keys:
                continue  # absent, or a neighbour this client refused at the key step
            complaint = self._open_box(e.sender, e.box, e.key_digest, e.mask_digest)
            if complaint is not None:
                return complaint
            peers.append(e.sender)
        if len(peers) + 1 < self.config.threshold:
            raise TooFewSurvivorsError(
                f"{len(peers)} neighbours shared keys with this client, fewer than t - 1"
            )
        self.st.peers = frozenset(peers)
        y = self._mask(self._input, sorted(peers))
        self._input = None  # the plaintext is not kept past this point
        edges, tags = b"", cast(Tags, ())
        if self.trust is not None:
            flags = [v in self.st.peers for v in self.st.order]
            edges = attestation.pack_bits(flags)
            tags = tuple(
                (
                    h,
                    attestation.tag(
                        self.trust.keyring.key(h), self.binding.payload("edges", self.id, h, edges)
                    ),
                )
                for h in sorted(self.st.keys)
            )
        self.st.phase = ClientPhase.MASKED
        return encode(MaskedInput(self._header(), self.ring.bits, y, edges, tags))

    def _open_box(self, sender: int, box: bytes, kd: bytes, md: bytes) -> bytes | None:
        """Open one box and check its shares; a Complaint (bytes) if they are wrong."""
        try:
            plain = crypto.open_sealed(
                self._channel_key_with(sender), box, crypto.share_aad(self.ctx, sender, self.id)
            )
            key_share, mask_share = unpack_box(plain, sender, self.id)
        except (DecryptionError, ProtocolViolationError):
            return self._complain(sender)
        if not commitments.holder_shares_ok(
            self.ctx, sender, self.id, key_share, mask_share, kd, md
        ):
            return self._complain(sender)
        if self.graph is not None and not commitments.shares_have_header(
            (key_share, mask_share), self.graph.share_index(sender, self.id), self.config.threshold
        ):  # shares committed for another index or threshold: the dealer is at fault
            return self._complain(sender)
        self.st.held[sender] = (key_share, mask_share)
        return None

    def _complain(self, owner: int) -> bytes:
        """Name a dealer whose box does not match its digests, revealing this round's
        channel key so anyone can check; this client then leaves the round."""
        key = require(self.st.channel_key, "the channel key")
        out = encode(Complaint(self._header(), owner, key.private_bytes()))
        self._forget_shares()
        self._input = None
        self.st.phase = ClientPhase.DONE
        return out

    def _mask(self, x: RingArray, peers: list[int]) -> RingArray:
        """y = x + self mask + sum over peers of +-pairwise masks, in Z_(2^b)."""
        terms = [self_mask_term(require(self.st.self_seed, "the self-mask seed"), self.id)]
        terms += [
            pairwise_mask_term(self._pairwise_seed(v), self.id, v, mask_sign(self.id, v))
            for v in peers
        ]
        return apply_masks(
            x.copy(),
            self.ring,
            terms,
            session_id=self.ctx.session_id,
            round_index=self.ctx.round_index,
        )

    def _pairwise_seed(self, v: int) -> bytes:
        key = require(self.st.mask_key, "the mask key")
        return pairwise_seed(self.ctx, self.id, key, v, self.st.keys[v][1])

    # -- step 3: statuses -> view (active) or unmasking (honest-but-curious) --------------

    def _on_statuses(self, msg: StatusList) -> bytes:
        st = attestation.unpack_statuses(msg.statuses, len(self.st.order))
        statuses = {v: Status(int(s)) for v, s in zip(self.st.order, st, strict=True)}
        for v, s in statuses.items():
            if (v in self.st.peers) == (s is Status.ABSENT):
                raise NeighbourhoodError(
                    f"neighbour {v} is {s.name} now, but it "
                    f"{'shared' if v in self.st.peers else 'did not share'} keys with this client"
                )
        self.st.statuses = statuses
        if self.graph is None or self.trust is None:
            return self._unmask_honest_but_curious()
        self._check_own_budget()
        radius = attestation.attester_radius(self.graph)
        body = msg.statuses
        tags = tuple(
            (
                w,
                attestation.tag(
                    self.trust.keyring.key(w), self.binding.payload("view", self.id, w, body)
                ),
            )
            for w in self.graph.window(self.id, radius)
            if w != self.id
        )
        self.st.phase = ClientPhase.REPORTED
        return encode(ViewReport(self._header(), body, tags))

    def _check_own_budget(self) -> None:
        g = require(self.graph, "the registry's graph")
        for side in (-1, 1) if not g.complete else (0,):
            members = g.side_of(self.id, side)
            gone = sum(self.st.statuses[v] is not Status.ALIVE for v in members)
            if gone > self.config.dropout_cap:
                raise DropoutBudgetExceededError(
                    f"{gone} of this client's neighbours on one side are not alive, above the "
                    f"policy's cap of {self.config.dropout_cap}: a cut graph would look like this"
                )

    def _unmask_honest_but_curious(self) -> bytes:
        out = []
        for owner in sorted(self.st.held):
            s = Status.ALIVE if owner == self.id else self.st.statuses[owner]
            out.append((owner, ShareKind.SELF_MASK if s is Status.ALIVE else ShareKind.MASK_KEY))
        return self._release(out)

    # -- step 4 (active): attestations -> unmasking ---------------------------------------

    def _on_attestations(self, msg: Attestations) -> bytes:
        g = require(self.graph, "the registry's graph")
        ev = self._evidence(msg)
        out = []
        for owner in sorted(self.st.held):
            s = Status.ALIVE if owner == self.id else self.st.statuses[owner]
            if s is Status.ALIVE:
                if not ev.certified_alive(owner):
                    self.withheld[owner] = "not certified alive by t of its holders"
                elif not ev.sides_ok(owner, g.side(owner, self.id)):
                    self.withheld[owner] = "too many of its neighbours not certified alive"
                else:
                    out.append((owner, ShareKind.SELF_MASK))
            elif ev.certified_not_alive(owner):
                out.append((owner, ShareKind.MASK_KEY))
            else:
                self.withheld[owner] = "not certified dropped by t of its holders"
        return self._release(out)

    def _evidence(self, msg: Attestations) -> Evidence:
        """Verify the views and edge lists of ``msg`` against this client's own."""
        g = require(self.graph, "the registry's graph")
        keys, bind = require(self.trust, "the provisioned trust").keyring, self.binding
        positions = attestation.base_positions(g, self.id, attestation.base_radius(g))
        base = np.full(g.size, 255, dtype=np.uint8)
        base[positions] = attestation.unpack_statuses(msg.base, positions.size)
        mine = np.array([self.st.statuses[v] for v in self.st.order], dtype=np.uint8)
        if base[g.position(self.id)] != Status.ALIVE or not np.array_equal(
            base[attestation.view_positions(g, self.id)], mine
        ):
            raise ConsistencyCheckError("the attestation base contradicts this client's own view")
        window = set(g.window(self.id, attestation.attester_radius(g)))
        for w, _, _ in msg.views:
            if w not in window or w == self.id:
                raise NeighbourhoodError(f"a view from client {w}, outside this client's window")
        for o, _, _ in msg.edges:
            if o not in self.st.held or o == self.id:
                raise NeighbourhoodError(
                    f"an edge list from client {o}, whose shares it does not hold"
                )
        # a view or edge list not sent explicitly is the base at its signer's positions:
        # rebuild all of them in one gather
        derived = (
            base[np.stack([g.view_positions(w) for w, _, _ in msg.views])] if msg.views else None
        )
        bodies = attestation.pack_status_rows(derived) if derived is not None else []
        views = {self.id: mine}
        for i, (w, explicit, tag) in enumerate(msg.views):
            body = explicit or bodies[i]
            if attestation.tag_ok(keys.key(w), bind.payload("view", w, self.id, body), tag):
                views[w] = (
                    attestation.unpack_statuses(body, g.degree) if explicit else derived[i]  # type: ignore[index]
                )
        mine_edges = np.array([v in self.st.peers for v in self.st.order], dtype=bool)
        edges = {self.id: mine_edges}
        flags = (
            base[np.stack([g.view_positions(o) for o, _, _ in msg.edges])] != Status.ABSENT
            if msg.edges
            else None
        )
        edge_bodies = attestation.pack_bit_rows(flags) if flags is not None else []
        for i, (o, explicit, tag) in enumerate(msg.edges):
            body = explicit or edge_bodies[i]
            if attestation.tag_ok(keys.key(o), bind.payload("edges", o, self.id, body), tag):
                edges[o] = attestation.unpack_bits(body, g.degree) if explicit else flags[i]  # type: ignore[index]
        return Evidence(g, self.config.threshold, self.config.dropout_cap, views, edges)

    # -- releasing ------------------------------------------------------------------------

    def _release(self, out: list[tuple[int, ShareKind]]) -> bytes:
        shares = []
        for owner, kind in out:
            self._guard_release(owner, kind)
            key_share, mask_share = self.st.held[owner]
            shares.append((owner, kind, mask_share if kind is ShareKind.SELF_MASK else key_share))
        self._forget_shares()  # answered once; nothing left to release for this round
        self.st.phase = ClientPhase.DONE
        return encode(UnmaskShares(self._header(), tuple(shares)))

    def _guard_release(self, owner: int, kind: ShareKind) -> None:
        """Refuse to release the second kind of share of one peer."""
        previous = self.st.released.get(owner)
        if previous is not None and previous is not kind:
            raise BothSharesRequestedError(
                f"releasing the {kind.name} share of client {owner} after its {previous.name} "
                "share would unmask its input"
            )
        self.st.released[owner] = kind

    # -- helpers (small on purpose: tests override some to build broken variants) ---------

    def _seal_box(self, holder: int, plaintext: bytes) -> bytes:
        return crypto.seal(
            self._channel_key_with(holder), plaintext, crypto.share_aad(self.ctx, self.id, holder)
        )

    def _forget_shares(self) -> None:
        self.st.held.clear()
        self._channel_keys.clear()

    def _generate_mask_key(self) -> crypto.AgreementKeyPair:
        return crypto.AgreementKeyPair.generate()

    def _generate_self_mask_seed(self) -> bytes:
        return os.urandom(32)

    def _channel_key_with(self, peer: int) -> bytes:
        key = self._channel_keys.get(peer)
        if key is None:
            shared = require(self.st.channel_key, "the channel key").exchange(self.st.keys[peer][0])
            key = self._channel_keys[peer] = crypto.derive_channel_key(
                shared, self.ctx, self.id, peer
            )
        return key

    def _header(self) -> Header:
        return Header(self.ctx.session_id, self.ctx.round_index, self.id)

    def _abort(self, exc: SecAggError) -> None:
        self.st.phase = ClientPhase.ABORTED
        self.error = exc
        self.st.held.clear()
        self._channel_keys.clear()
        self._input = None
        self.st.self_seed = None


def new_session_id() -> bytes:
    """A fresh random 16-byte session id."""
    return secrets.token_bytes(16)
