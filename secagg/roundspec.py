"""What the client and the server of one round must compute identically.

The graph of a session, the sign of a pairwise mask, the plaintext layout of a share
box and the mask derivations live here, so the two state machines (which never import
each other) cannot drift apart.
"""

from __future__ import annotations

import hashlib
import struct

from secagg import crypto
from secagg.config import SecAggConfig
from secagg.context import RoundContext
from secagg.errors import ProtocolViolationError
from secagg.graph import Graph
from secagg.messages import SHARE_BOX_PLAINTEXT
from secagg.prg import MaskTerm
from secagg.shamir import SHARE_BYTES

SELF_MASK_LABEL = "self-mask"
PAIR_MASK_LABEL = "pairwise-mask"


def session_graph_seed(ctx: RoundContext) -> bytes:
    """The honest-but-curious graph seed: derived from the session, chosen by the (honest)
    server. The active setting never uses it: its seed is provisioned with the registry
    (:meth:`secagg.registry.Registry.ring`)."""
    return hashlib.sha256(ctx.encode("graph-seed")).digest()


def round_graph(config: SecAggConfig, seed: bytes) -> Graph:
    """The neighbour graph of a session: degree ``config.neighbours`` over the population."""
    return Graph.build(config.num_clients, config.neighbours, seed)


def mask_sign(u: int, v: int) -> int:
    """+1 if client ``u`` adds the (u, v) pairwise mask, -1 if it subtracts it."""
    return 1 if u < v else -1


def pack_box(owner: int, holder: int, key_share: bytes, mask_share: bytes) -> bytes:
    """Plaintext of the share box from ``owner`` to ``holder``."""
    out = struct.pack(">II", owner, holder) + key_share + mask_share
    if len(out) != SHARE_BOX_PLAINTEXT:
        raise ProtocolViolationError("share box plaintext of the wrong length")
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
