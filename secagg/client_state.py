"""Saving and restoring one client's round state, for drivers that restart the client.

Flower starts a fresh ClientApp process for every message, so a client that takes part
in several exchanges of a round must carry its state (key pairs, the self-mask seed, the
shares it holds, what it already released) from one process to the next. This module
turns a :class:`SecAggClient` into bytes and back with the project's bounded wire
format: no pickle, every field checked on the way in. The bytes hold secrets: they
belong in the client's own storage (Flower's node state), never on the wire.

The config, the identity key and the registry are not stored: the caller passes them to
:func:`restore_client` (they come from the session and the node's provisioning).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from secagg import crypto
from secagg.client import ClientPhase, SecAggClient
from secagg.config import SecAggConfig
from secagg.errors import MessageFormatError, ProtocolUsageError, SecAggError
from secagg.messages import KeyEntry, ShareKind
from secagg.roundspec import Topology
from secagg.wire import Reader, Writer

MAGIC = b"SAGS"
VERSION = 1
_PHASES = tuple(ClientPhase)
_MAX_CONTEXT = 1 << 12
_MAX_SECRET = 64
_MAX_SHARE = 1 << 10
_MAX_SIG = 128


class ClientStateError(SecAggError, ValueError):
    """Saved client state that is malformed or does not fit the session."""


def export_client(client: SecAggClient) -> bytes:
    """The client's round state as bytes (secret: keep it on the client)."""
    if client._input is not None:
        raise ProtocolUsageError("export the state after the masked input, not with an input set")
    w = Writer().raw(MAGIC).u8(VERSION)
    w.u8(_PHASES.index(client.phase)).u16(client.id).blob(client.ctx.session_id)
    w.u32(client.ctx.round_index).u32(client.dimension)
    w.blob(client.extra_context).blob(client.advert_context)
    w.blob(client._channel_key.private_bytes() if client._channel_key else b"")
    w.blob(client._mask_key.private_bytes() if client._mask_key else b"")
    w.blob(client._self_seed or b"")
    entries = sorted(client._directory.values(), key=lambda e: e.client)
    w.u32(len(entries))
    for e in entries:
        w.u16(e.client).blob(e.channel_public).blob(e.mask_public).blob(e.signature)
    for group in (sorted(client._shared), list(client._survivors)):
        w.u32(len(group))
        for c in group:
            w.u16(c)
    w.u32(len(client._held))
    for owner in sorted(client._held):
        key_share, mask_share = client._held[owner]
        w.u16(owner).blob(key_share).blob(mask_share)
    w.u32(len(client._released))
    for owner in sorted(client._released):
        w.u16(owner).u8(int(client._released[owner]))
    w.blob(str(client.error or "").encode()[:_MAX_CONTEXT])
    return w.getvalue()


def restore_client(
    data: bytes,
    config: SecAggConfig,
    *,
    identity: crypto.SigningKey | None = None,
    registry: Mapping[int, bytes] | None = None,
    rng: np.random.Generator | None = None,
) -> SecAggClient:
    """Rebuild a client from :func:`export_client` bytes; raises :class:`ClientStateError`."""
    try:
        return _restore(data, config, identity, registry, rng)
    except ClientStateError:
        raise
    except (MessageFormatError, ValueError, IndexError, SecAggError) as exc:
        raise ClientStateError(f"saved client state does not load: {exc}") from exc


def _restore(
    data: bytes,
    config: SecAggConfig,
    identity: crypto.SigningKey | None,
    registry: Mapping[int, bytes] | None,
    rng: np.random.Generator | None,
) -> SecAggClient:
    if not isinstance(data, bytes | bytearray):
        raise ClientStateError(f"client state must be bytes, got {type(data).__name__}")
    r = Reader(bytes(data))
    if r.remaining < 5 or r.raw(4) != MAGIC or r.u8() != VERSION:
        raise ClientStateError("not a saved secagg client state (magic or version)")
    phase = _PHASES[r.u8()]
    cid = r.u16()
    session = r.blob(64)
    round_index = r.u32()
    dimension = r.u32()
    extra = r.blob(_MAX_CONTEXT)
    advert = r.blob(_MAX_CONTEXT)
    client = SecAggClient(
        config,
        cid,
        session_id=session,
        round_index=round_index,
        dimension=dimension,
        identity=identity,
        registry=registry,
        extra_context=extra,
        advert_context=advert,
        rng=rng,
    )
    channel, mask, seed = (r.blob(_MAX_SECRET) for _ in range(3))
    client._channel_key = crypto.AgreementKeyPair.from_private_bytes(channel) if channel else None
    client._mask_key = crypto.AgreementKeyPair.from_private_bytes(mask) if mask else None
    client._self_seed = seed or None
    n = config.num_clients
    entries = []
    for _ in range(r.count(n, "directory entries")):
        c = _party(r.u16(), n)
        entries.append(KeyEntry(c, r.blob(64), r.blob(64), r.blob(_MAX_SIG)))
    client._directory = {e.client: e for e in entries}
    if entries:
        client._topology = Topology.build(config, client.ctx, entries)
    client._shared = frozenset(_party(r.u16(), n) for _ in range(r.count(n, "shared")))
    client._survivors = tuple(_party(r.u16(), n) for _ in range(r.count(n, "survivors")))
    for _ in range(r.count(n, "held shares")):
        owner = _party(r.u16(), n)
        client._held[owner] = (r.blob(_MAX_SHARE), r.blob(_MAX_SHARE))
    for _ in range(r.count(n, "released shares")):
        owner = _party(r.u16(), n)
        client._released[owner] = ShareKind(r.u8())
    error = r.blob(_MAX_CONTEXT).decode("utf-8", "replace")
    r.end()
    if phase is not ClientPhase.INIT and client._channel_key is None:
        raise ClientStateError(f"a client in phase {phase.value} must hold its key pairs")
    client.phase = phase
    if phase is ClientPhase.ABORTED:
        client.error = ProtocolUsageError(error or "aborted before the state was saved")
    return client


def _party(c: int, n: int) -> int:
    if c >= n:
        raise ClientStateError(f"client id {c} out of range for {n} clients")
    return c
