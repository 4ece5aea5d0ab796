"""What the client and the server of one round must compute identically.

The graph seed, each client's share holders and share indices, the sign of a pairwise
mask, the plaintext layout of a share box and the mask derivations live here, so the two
state machines (which never import each other) cannot drift apart.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field

from secagg import crypto, graph
from secagg.config import SecAggConfig
from secagg.context import RoundContext
from secagg.errors import ProtocolViolationError
from secagg.messages import SHARE_BOX_PLAINTEXT, KeyEntry
from secagg.prg import MaskTerm
from secagg.shamir import SHARE_BYTES

SELF_MASK_LABEL = "self-mask"
PAIR_MASK_LABEL = "pairwise-mask"


def graph_seed(ctx: RoundContext, entries: Iterable[KeyEntry]) -> bytes:
    """Public seed of the neighbour graph: a hash of every advertised key of the round.

    Fixed only once all keys are in, so the server cannot pick the graph before it
    knows which clients (and keys) it would like to surround a victim with.
    """
    fields: list[bytes | int] = []
    for e in sorted(entries, key=lambda e: e.client):
        fields += [e.client, e.channel_public, e.mask_public]
    return hashlib.sha256(ctx.encode("graph-seed", len(fields) // 3, *fields)).digest()


@dataclass(frozen=True)
class Topology:
    """Neighbours and share holders of every client of U1."""

    adjacency: dict[int, frozenset[int]]
    _index: dict[int, dict[int, int]] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def build(
        cls, config: SecAggConfig, ctx: RoundContext, entries: Iterable[KeyEntry]
    ) -> Topology:
        """The graph over the clients that advertised keys."""
        entries = list(entries)
        seed = graph_seed(ctx, entries)
        return cls(graph.neighbours([e.client for e in entries], config.neighbours, seed))

    def holders(self, owner: int) -> tuple[int, ...]:
        """Who holds shares of ``owner``'s secrets: itself and its neighbours, sorted."""
        return tuple(sorted(self.adjacency[owner] | {owner}))

    def share_index(self, owner: int, holder: int) -> int:
        """The Shamir x-coordinate of ``holder``'s share of ``owner``'s secrets."""
        index = self._index.get(owner)
        if index is None:
            index = self._index[owner] = {h: i + 1 for i, h in enumerate(self.holders(owner))}
        try:
            return index[holder]
        except KeyError as exc:
            raise ProtocolViolationError(f"client {holder} holds no share of {owner}") from exc


def mask_sign(u: int, v: int) -> int:
    """+1 if client ``u`` adds the (u, v) pairwise mask, -1 if it subtracts it."""
    return 1 if u < v else -1


def pack_box(owner: int, holder: int, key_share: bytes, mask_share: bytes) -> bytes:
    """Plaintext of the share box from ``owner`` to ``holder``."""
    out = struct.pack(">II", owner, holder) + key_share + mask_share
    assert len(out) == SHARE_BOX_PLAINTEXT
    return out


def unpack_box(plain: bytes, owner: int, holder: int) -> tuple[bytes, bytes]:
    """(key share, self-mask share) from a decrypted box, checking who it is for."""
    if len(plain) != SHARE_BOX_PLAINTEXT:
        raise ProtocolViolationError("share box has the wrong length")
    o, h = struct.unpack(">II", plain[:8])
    if (o, h) != (owner, holder):
        raise ProtocolViolationError(
            f"share box for ({o} -> {h}) delivered as ({owner} -> {holder})"
        )
    return plain[8 : 8 + SHARE_BYTES], plain[8 + SHARE_BYTES :]


def pairwise_seed(
    ctx: RoundContext,
    me: int,
    my_mask_key: crypto.AgreementKeyPair,
    peer: int,
    peer_mask_public: bytes,
) -> bytes:
    """The seed of the (me, peer) pairwise mask, from X25519 + HKDF bound to the round."""
    shared = my_mask_key.exchange(peer_mask_public)
    return crypto.derive_pairwise_seed(shared, ctx, me, peer)


def pairwise_mask_term(seed: bytes, me: int, peer: int, sign: int) -> MaskTerm:
    """The (me, peer) pairwise mask as a term for :func:`secagg.prg.apply_masks`."""
    return MaskTerm(seed, (min(me, peer), max(me, peer)), PAIR_MASK_LABEL, sign)


def self_mask_term(seed: bytes, u: int, sign: int = 1) -> MaskTerm:
    """Client ``u``'s self mask as a term for :func:`secagg.prg.apply_masks`."""
    return MaskTerm(seed, (u, u), SELF_MASK_LABEL, sign)
