"""The client of one secure-aggregation round, as a sans-I/O state machine.

``SecAggClient.advertise()`` returns the first message; ``handle(data)`` takes each server
message (bytes) and returns the reply (bytes), until the round is done. The client never
touches sockets, threads or clocks; a driver moves the bytes.

What an honest client enforces (each a named exception, after which it is aborted and
releases nothing more):

* every message is for this session and round, of the type expected now, well formed;
* its own keys appear unchanged in the key directory; no two clients share a key; in
  the active setting every advertisement is signed by the sender's registered identity;
* each survivor list is a subset of the previous one and holds at least t clients;
* active setting: at least t valid consistency signatures over the same survivor set and
  this client's extra context (e.g. the hash of the model it received), none invalid;
* it never releases both the mask-key share and the self-mask share of one peer, and
  answers one unmasking request per round;
* it refuses to unmask when its connected part of the survivor set is smaller than
  ``min_aggregate``.
"""

from __future__ import annotations

import enum
import os
import secrets
from collections.abc import Mapping
from typing import ClassVar

import numpy as np
import numpy.typing as npt

from secagg import crypto, shamir
from secagg.config import SecAggConfig
from secagg.context import RoundContext, check_party
from secagg.encoding import FixedPointEncoder
from secagg.errors import (
    BothSharesRequestedError,
    ConfigError,
    ConsistencyCheckError,
    DecryptionError,
    ProtocolUsageError,
    ProtocolViolationError,
    RoundAbortedError,
    SecAggError,
    SignatureError,
    SurvivorSetTooSmallError,
    TooFewSurvivorsError,
    UnexpectedMessageError,
)
from secagg.graph import component_of
from secagg.messages import (
    Abort,
    AdvertiseKeys,
    ConsistencySignature,
    Expect,
    Header,
    KeyDirectory,
    KeyEntry,
    MaskedInput,
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
from secagg.prg import apply_masks
from secagg.ring import RingArray
from secagg.roundspec import (
    Topology,
    mask_sign,
    pack_box,
    pairwise_mask_term,
    pairwise_seed,
    self_mask_term,
    unpack_box,
)


class ClientPhase(enum.Enum):
    """Where the client is in the round."""

    INIT = "init"
    ADVERTISED = "advertised"  # sent AdvertiseKeys, waiting for the key directory
    SHARED = "shared"  # sent ShareKeys, waiting for the share delivery
    MASKED = "masked"  # sent MaskedInput, waiting for the survivor list
    SIGNED = "signed"  # active: sent its consistency signature
    DONE = "done"  # sent its unmasking shares
    ABORTED = "aborted"


class SecAggClient:
    """One client's side of one round.

    Args:
        config: the session's :class:`SecAggConfig` (shared by everyone).
        client_id: this client's id, 0..n-1.
        session_id, round_index: what every derivation and message is bound to.
        dimension: length d of the input vector.
        identity: this client's Ed25519 key (active setting).
        registry: client id -> Ed25519 verification key of every client (active).
        extra_context: bytes every client signs in ConsistencyCheck besides the survivor
            set, e.g. a hash of the model this client received from the server.
        advert_context: bytes signed with the key advertisement (default: the same as
            ``extra_context``). The multi-round pipeline advertises keys before the
            round's model exists, so it signs an empty advertisement context and binds
            the model hash later with :meth:`bind_context`.
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
        identity: crypto.SigningKey | None = None,
        registry: Mapping[int, bytes] | None = None,
        extra_context: bytes = b"",
        advert_context: bytes | None = None,
        rng: np.random.Generator | None = None,
    ) -> None:
        check_party(client_id, "client")
        if client_id >= config.num_clients:
            raise ConfigError(f"client id {client_id} >= num_clients {config.num_clients}")
        if isinstance(dimension, bool) or not isinstance(dimension, int) or dimension < 1:
            raise ConfigError(f"dimension must be a positive int, got {dimension!r}")
        if config.active and (identity is None or registry is None):
            raise ConfigError("the active setting needs an identity key and a registry")
        if (
            config.active
            and registry is not None
            and registry.get(client_id) != (identity.public_bytes if identity else None)
        ):
            raise ConfigError("this client's identity key is not the one in the registry")
        self.config = config
        self.id = client_id
        self.ctx = RoundContext(session_id, round_index)
        self.dimension = dimension
        self.identity = identity
        self.registry = dict(registry or {})
        self.extra_context = bytes(extra_context)
        self.advert_context = bytes(extra_context if advert_context is None else advert_context)
        self.encoder = FixedPointEncoder(config.encoding, rounding=config.rounding)
        self.ring = config.encoding.ring
        self._rng = rng
        self.phase = ClientPhase.INIT
        self._expect = Expect(session_id, round_index, config.num_clients, self.ring, dimension)
        self._input: RingArray | None = None
        # round state
        self._channel_key: crypto.AgreementKeyPair | None = None
        self._mask_key: crypto.AgreementKeyPair | None = None
        self._self_seed: bytes | None = None
        self._directory: dict[int, KeyEntry] = {}
        self._topology: Topology | None = None
        self._shared: frozenset[int] = frozenset()
        self._survivors: tuple[int, ...] = ()
        self._held: dict[int, tuple[bytes, bytes]] = {}  # owner -> (key share, mask share)
        self._channel_keys: dict[int, bytes] = {}
        self._released: dict[int, ShareKind] = {}
        self.error: SecAggError | None = None

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

    def bind_context(self, extra_context: bytes) -> None:
        """Set what ConsistencyCheck signs (e.g. the model hash) once it is known.

        Only before the masked input is sent: afterwards the signed context is fixed.
        """
        if self.phase not in (ClientPhase.INIT, ClientPhase.ADVERTISED, ClientPhase.SHARED):
            raise ProtocolUsageError("the context can only be bound before the masked input")
        self.extra_context = bytes(extra_context)

    def advertise(self) -> bytes:
        """Start the round: fresh key pairs, and the (signed) AdvertiseKeys message."""
        if self.phase is not ClientPhase.INIT:
            raise ProtocolUsageError("advertise() is the first step and runs once")
        self._channel_key = crypto.AgreementKeyPair.generate()
        self._mask_key = self._generate_mask_key()
        c_pk, s_pk = self._channel_key.public_bytes, self._mask_key.public_bytes
        sig = b""
        if self.config.active:
            assert self.identity is not None
            payload = crypto.advertisement_payload(
                self.ctx, self.id, c_pk, s_pk, self.advert_context
            )
            sig = self.identity.sign(payload)
        self.phase = ClientPhase.ADVERTISED
        return encode(AdvertiseKeys(self._header(), c_pk, s_pk, sig))

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

    # -- dispatch -----------------------------------------------------------------------

    _EXPECTED: ClassVar[dict[ClientPhase, tuple[MsgType, ...]]] = {
        ClientPhase.INIT: (),
        ClientPhase.ADVERTISED: (MsgType.KEY_DIRECTORY, MsgType.ABORT),
        ClientPhase.SHARED: (MsgType.SHARE_DELIVERY, MsgType.ABORT),
        ClientPhase.MASKED: (MsgType.SURVIVOR_LIST, MsgType.ABORT),
        ClientPhase.SIGNED: (MsgType.SIGNATURE_LIST, MsgType.ABORT),
        # after unmasking the client only learns whether the round failed
        ClientPhase.DONE: (MsgType.ABORT,),
    }

    def _dispatch(self, data: bytes) -> bytes | None:
        msg = decode(data, self._expect, self._EXPECTED[self.phase])
        if isinstance(msg, Abort):
            raise RoundAbortedError(f"server aborted the round: {msg.reason}")
        if isinstance(msg, KeyDirectory):
            return self._on_directory(msg)
        if isinstance(msg, ShareDelivery):
            return self._on_delivery(msg)
        if isinstance(msg, SurvivorList):
            return self._on_survivors(msg)
        assert isinstance(msg, SignatureList)
        return self._on_signatures(msg)

    # -- step 1: key directory -> ShareKeys -----------------------------------------------

    def _on_directory(self, msg: KeyDirectory) -> bytes:
        cfg = self.config
        entries = {e.client: e for e in msg.entries}
        mine = entries.get(self.id)
        assert self._channel_key is not None and self._mask_key is not None
        if mine is None or (mine.channel_public, mine.mask_public) != (
            self._channel_key.public_bytes,
            self._mask_key.public_bytes,
        ):
            raise ProtocolViolationError("the key directory does not carry this client's keys")
        keys = [e.channel_public for e in msg.entries] + [e.mask_public for e in msg.entries]
        if len(set(keys)) != len(keys):
            raise ProtocolViolationError("two advertisements share a public key (replay?)")
        if cfg.active:
            for e in msg.entries:
                ident = self.registry.get(e.client)
                if ident is None:
                    raise SignatureError(f"client {e.client} has no registered identity key")
                payload = crypto.advertisement_payload(
                    self.ctx, e.client, e.channel_public, e.mask_public, self.advert_context
                )
                crypto.verify_signature(ident, e.signature, payload)
        if len(entries) < cfg.threshold:
            raise TooFewSurvivorsError(
                f"{len(entries)} clients advertised keys, fewer than t={cfg.threshold}"
            )
        self._directory = entries
        self._topology = Topology.build(cfg, self.ctx, msg.entries)
        holders = self._topology.holders(self.id)
        if len(holders) < cfg.threshold:
            raise TooFewSurvivorsError(
                f"only {len(holders)} share holders for this client, fewer than t={cfg.threshold}"
            )
        self._self_seed = self._generate_self_mask_seed()
        key_shares = shamir.split(self._mask_key.private_bytes(), len(holders), cfg.threshold)
        mask_shares = shamir.split(self._self_seed, len(holders), cfg.threshold)
        boxes = []
        for holder, ks, ms in zip(holders, key_shares, mask_shares, strict=True):
            if holder == self.id:
                self._held[self.id] = (ks.to_bytes(), ms.to_bytes())
                continue
            plain = pack_box(self.id, holder, ks.to_bytes(), ms.to_bytes())
            key = self._channel_key_with(holder)
            boxes.append(
                (holder, crypto.seal(key, plain, crypto.share_aad(self.ctx, self.id, holder)))
            )
        self.phase = ClientPhase.SHARED
        return encode(ShareKeys(self._header(), tuple(boxes)))

    # -- step 2: share delivery -> MaskedInput ---------------------------------------------

    def _on_delivery(self, msg: ShareDelivery) -> bytes:
        cfg = self.config
        if self._input is None:
            raise ProtocolUsageError("set_input() must be called before the masked input step")
        shared = frozenset(msg.shared)
        if not shared <= self._directory.keys():
            raise ProtocolViolationError("shared-keys list is not a subset of the key directory")
        if self.id not in shared:
            raise ProtocolViolationError("server says this client did not share its keys")
        if len(shared) < cfg.threshold:
            raise TooFewSurvivorsError(
                f"{len(shared)} clients shared keys, fewer than t={cfg.threshold}"
            )
        assert self._topology is not None
        peers = self._topology.adjacency[self.id] & shared
        senders = {s for s, _ in msg.boxes}
        if senders != peers:
            raise ProtocolViolationError(
                "share boxes do not come from exactly this client's neighbours that shared keys"
            )
        for sender, box in msg.boxes:
            key = self._channel_key_with(sender)
            try:
                plain = crypto.open_sealed(key, box, crypto.share_aad(self.ctx, sender, self.id))
            except DecryptionError as exc:
                raise ProtocolViolationError(
                    f"share box from client {sender} does not open"
                ) from exc
            self._held[sender] = unpack_box(plain, sender, self.id)
        self._shared = shared
        y = self._mask(self._input, sorted(peers))
        self._input = None  # the plaintext is not kept past this point
        self.phase = ClientPhase.MASKED
        return encode(MaskedInput(self._header(), self.ring.bits, y))

    def _mask(self, x: RingArray, peers: list[int]) -> RingArray:
        """y = x + self mask + sum over peers of +-pairwise masks, in Z_(2^b)."""
        assert self._self_seed is not None
        terms = [self_mask_term(self._self_seed, self.id)]
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
        assert self._mask_key is not None
        return pairwise_seed(self.ctx, self.id, self._mask_key, v, self._directory[v].mask_public)

    # -- step 3: survivor list -> signature (active) or unmasking (honest-but-curious) -------

    def _on_survivors(self, msg: SurvivorList) -> bytes:
        cfg = self.config
        survivors = frozenset(msg.survivors)
        if not survivors <= self._shared:
            raise ProtocolViolationError("survivor list is not a subset of the shared-keys list")
        if self.id not in survivors:
            raise ProtocolViolationError("server says this client's masked input did not arrive")
        if len(survivors) < cfg.threshold:
            raise TooFewSurvivorsError(
                f"{len(survivors)} masked inputs arrived, fewer than t={cfg.threshold}"
            )
        self._survivors = tuple(sorted(survivors))
        if not cfg.active:
            return self._unmask()
        assert self.identity is not None
        payload = crypto.consistency_payload(self.ctx, self._survivors, self.extra_context)
        self.phase = ClientPhase.SIGNED
        return encode(ConsistencySignature(self._header(), self.identity.sign(payload)))

    # -- step 4 (active): signature list -> unmasking ---------------------------------------

    def _on_signatures(self, msg: SignatureList) -> bytes:
        cfg = self.config
        payload = crypto.consistency_payload(self.ctx, self._survivors, self.extra_context)
        for signer, sig in msg.signatures:
            if signer not in self._survivors:
                raise ConsistencyCheckError(f"signature from client {signer}, not a survivor")
            try:
                crypto.verify_signature(self.registry[signer], sig, payload)
            except SignatureError as exc:
                raise ConsistencyCheckError(
                    f"client {signer} signed a different survivor set or context"
                ) from exc
        if len(msg.signatures) < cfg.threshold:
            raise ConsistencyCheckError(
                f"{len(msg.signatures)} consistency signatures, fewer than t={cfg.threshold}"
            )
        return self._unmask()

    # -- unmasking ------------------------------------------------------------------------

    def _unmask(self) -> bytes:
        cfg = self.config
        assert self._topology is not None
        survivors = set(self._survivors)
        if len(survivors) < (cfg.min_aggregate or 0):
            raise SurvivorSetTooSmallError(
                f"{len(survivors)} survivors, below min_aggregate={cfg.min_aggregate}"
            )
        part = component_of(self.id, survivors, self._topology.adjacency)
        if len(part) < (cfg.min_aggregate or 0):
            raise SurvivorSetTooSmallError(
                f"this client's connected part of the survivors has {len(part)} members, "
                f"below min_aggregate={cfg.min_aggregate}: its sum would leak a small group"
            )
        shares: list[tuple[int, ShareKind, bytes]] = []
        for owner in sorted(self._held):
            key_share, mask_share = self._held[owner]
            if owner in survivors:
                kind, share = ShareKind.SELF_MASK, mask_share
            elif owner in self._shared:
                kind, share = ShareKind.MASK_KEY, key_share
            else:  # pragma: no cover - held shares only come from clients in U2
                continue
            self._guard_release(owner, kind)
            shares.append((owner, kind, share))
        self._forget_shares()  # answered once; nothing left to release for this round
        self.phase = ClientPhase.DONE
        return encode(UnmaskShares(self._header(), tuple(shares)))

    def _guard_release(self, owner: int, kind: ShareKind) -> None:
        """Refuse to release the second kind of share of one peer."""
        previous = self._released.get(owner)
        if previous is not None and previous is not kind:
            raise BothSharesRequestedError(
                f"releasing the {kind.name} share of client {owner} after its {previous.name} "
                "share would unmask its input"
            )
        self._released[owner] = kind

    # -- helpers (small on purpose: tests override some to build broken variants) ---------

    def _forget_shares(self) -> None:
        self._held.clear()
        self._channel_keys.clear()

    def _generate_mask_key(self) -> crypto.AgreementKeyPair:
        return crypto.AgreementKeyPair.generate()

    def _generate_self_mask_seed(self) -> bytes:
        return os.urandom(32)

    def _channel_key_with(self, peer: int) -> bytes:
        key = self._channel_keys.get(peer)
        if key is None:
            assert self._channel_key is not None
            shared = self._channel_key.exchange(self._directory[peer].channel_public)
            key = self._channel_keys[peer] = crypto.derive_channel_key(
                shared, self.ctx, self.id, peer
            )
        return key

    def _header(self) -> Header:
        return Header(self.ctx.session_id, self.ctx.round_index, self.id)

    def _abort(self, exc: SecAggError) -> None:
        self.phase = ClientPhase.ABORTED
        self.error = exc
        self._held.clear()
        self._channel_keys.clear()
        self._input = None
        self._self_seed = None


def new_session_id() -> bytes:
    """A fresh random 16-byte session id."""
    return secrets.token_bytes(16)
