"""A curious server's best effort, and deliberately broken clients to prove it has teeth.

``recover_inputs(rnd)`` gets the server's whole final state after a round (every message
it received, the public keys, every seed and key it rebuilt, every share it was sent)
and tries to isolate single clients' inputs:

1. remove the victim's self mask (rebuilt for every survivor, legitimately);
2. remove pairwise masks with peers whose mask key it knows (rebuilt for dropped peers);
3. rebuild any secret of which it holds t shares (e.g. both shares of one client);
4. try every secret it knows as the victim's mask key (a reused seed gives it away);
5. brute-force a low-entropy pairwise seed when only one unknown mask is left.

A candidate counts as recovered when it decodes inside the clip range and equals the
victim's true (quantised) input. The broken variants below must each fall to it.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import numpy.typing as npt

from secagg import crypto, shamir
from secagg.client import SecAggClient
from secagg.client_state import ClientPhase
from secagg.context import RoundContext
from secagg.errors import ProtocolError
from secagg.messages import (
    AdvertiseKeys,
    Expect,
    MaskedInput,
    MsgType,
    ShareKeys,
    ShareKind,
    UnmaskShares,
    decode,
)
from secagg.prg import MaskTerm, apply_masks
from secagg.ring import Ring, RingArray
from secagg.roundspec import mask_sign, pairwise_mask_term, pairwise_seed, self_mask_term
from secagg.simulate import InProcessRound

GOLDEN = np.uint32(0x9E3779B9)
_C1, _C2 = np.uint32(0x7FEB352D), np.uint32(0x846CA68B)


# --- the weak generator of the "32-bit seed" variant ------------------------------------


def fold32(seed: bytes) -> int:
    """A 32-bit fold of a 32-byte seed (what a weak implementation seeds its PRG with)."""
    words = np.frombuffer(seed, dtype="<u4")
    return int(np.bitwise_xor.reduce(words))


def _lowbias32(x: npt.NDArray[np.uint32], tmp: npt.NDArray[np.uint32]) -> None:
    """In-place 32-bit integer hash (a fast, non-cryptographic mixer)."""
    np.right_shift(x, 16, out=tmp)
    np.bitwise_xor(x, tmp, out=x)
    np.multiply(x, _C1, out=x)
    np.right_shift(x, 15, out=tmp)
    np.bitwise_xor(x, tmp, out=x)
    np.multiply(x, _C2, out=x)
    np.right_shift(x, 16, out=tmp)
    np.bitwise_xor(x, tmp, out=x)


def weak_mask(seed32: int, d: int) -> RingArray:
    """d elements of the weak generator: hash(seed + i * golden) (Z_2^32)."""
    x = (np.uint32(seed32) + np.arange(d, dtype=np.uint32) * GOLDEN).astype(np.uint32)
    _lowbias32(x, np.empty_like(x))
    return x


def _first_element_pass(
    z0: np.uint32, sign: int, m_abs: np.uint32, m_two: np.uint32, start: int, stop: int
) -> npt.NDArray[np.uint32]:
    """Seeds in [start, stop) whose first mask element leaves a plausible value.

    Sub-chunks of 2^16 seeds stay in cache; this pass costs one hash per seed.
    """
    sub = min(1 << 16, stop - start)
    base = np.arange(sub, dtype=np.uint32)
    x = np.empty(sub, dtype=np.uint32)
    tmp = np.empty(sub, dtype=np.uint32)
    ok = np.empty(sub, dtype=bool)
    found = []
    for lo in range(start, stop, sub):
        np.add(base, np.uint32(lo), out=x)
        _lowbias32(x, tmp)
        if sign > 0:
            np.subtract(z0, x, out=x)
        else:
            np.add(z0, x, out=x)
        np.add(x, m_abs, out=x)
        np.less_equal(x, m_two, out=ok)
        idx = np.flatnonzero(ok)
        if idx.size:
            found.append(idx.astype(np.uint32) + np.uint32(lo))
    return np.concatenate(found) if found else np.empty(0, dtype=np.uint32)


def brute_force_seed32(
    z: RingArray, sign: int, max_abs: int, *, limit_bits: int = 32
) -> Iterator[int]:
    """Seeds s with z - sign * weak_mask(s) plausible (|value| <= max_abs) everywhere.

    Vectorised over candidate seeds: the first element filters all 2^limit_bits seeds,
    each further element filters the survivors of the previous one.
    """
    m_abs, m_two = np.uint32(max_abs), np.uint32(2 * max_abs)
    step = 1 << min(limit_bits, 22)
    for start in range(0, 1 << limit_bits, step):
        seeds = _first_element_pass(np.uint32(z[0]), sign, m_abs, m_two, start, start + step)
        for i in range(1, z.shape[0]):
            if seeds.size == 0:
                break
            x = seeds + np.uint32((i * int(GOLDEN)) & 0xFFFFFFFF)
            _lowbias32(x, np.empty_like(x))
            x = (z[i] - x) if sign > 0 else (z[i] + x)
            x += m_abs
            seeds = seeds[x <= m_two]
        yield from (int(s) for s in seeds)


# --- broken clients ------------------------------------------------------------------------


class SelfMasksOnly(SecAggClient):
    """Broken: pairwise masks switched off (only the self mask hides the input)."""

    def _mask(self, x: RingArray, peers: list[int]) -> RingArray:
        return super()._mask(x, [])


class ReusedSeed(SecAggClient):
    """Broken: one secret for two purposes; the self-mask seed is the mask private key."""

    def _generate_self_mask_seed(self) -> bytes:
        assert self.st.mask_key is not None
        return self.st.mask_key.private_bytes()


class Seed32(SecAggClient):
    """Broken: pairwise masks from a 32-bit fold of the seed and a non-cryptographic PRG."""

    def _mask(self, x: RingArray, peers: list[int]) -> RingArray:
        y = super()._mask(x, [])  # input + self mask, as usual
        for v in peers:
            m = weak_mask(fold32(self._pairwise_seed(v)), self.dimension)
            (np.add if mask_sign(self.id, v) > 0 else np.subtract)(y, m, out=y)
        return y


class Colluding(SecAggClient):
    """A corrupt client: it follows the protocol but keeps every share for the server."""

    def _forget_shares(self) -> None:
        self._kept_for_collusion = dict(self.st.held)
        super()._forget_shares()


class NoBothSharesCheck(SecAggClient):
    """Broken: answers every unmasking request, whatever it released before."""

    _EXPECTED: ClassVar[dict[ClientPhase, tuple[MsgType, ...]]] = {
        **SecAggClient._EXPECTED,
        ClientPhase.DONE: (MsgType.STATUS_LIST, MsgType.ABORT),
    }

    def _guard_release(self, owner: int, kind: ShareKind) -> None:
        pass

    def _forget_shares(self) -> None:
        pass


# --- the attack ----------------------------------------------------------------------------


@dataclass
class ServerView:
    """What the server received, parsed from its transcript alone."""

    masked: dict[int, RingArray]
    shares: dict[tuple[int, ShareKind], list[shamir.Share]]
    mask_public: dict[int, bytes]
    boxes_to: dict[int, set[int]]  # sender -> who it sent a share box to

    def peers(self, c: int) -> list[int]:
        """The clients ``c`` masked with: those it exchanged boxes with."""
        return sorted(v for v in self.boxes_to.get(c, set()) if c in self.boxes_to.get(v, set()))


def _server_view(rnd: InProcessRound) -> ServerView:
    """Masked inputs, shares and public keys the server received, from its transcript."""
    srv = rnd.server
    assert srv.transcript is not None
    cfg = rnd.config
    expect = Expect(
        rnd.session_id,
        rnd.round_index,
        cfg.num_clients,
        srv.ring,
        rnd.dimension,
        cfg.degree,
        cfg.num_clients,
        0,
    )
    view = ServerView({}, {}, {}, {})
    shares: dict[tuple[int, ShareKind], dict[int, shamir.Share]] = defaultdict(dict)
    for rec in srv.transcript:
        try:
            msg = decode(rec.payload, expect, tuple(MsgType))
        except ProtocolError:  # malformed
            continue
        if isinstance(msg, MaskedInput):
            view.masked[rec.sender] = msg.vector.copy()
        elif isinstance(msg, AdvertiseKeys):
            view.mask_public[rec.sender] = msg.mask_public
        elif isinstance(msg, ShareKeys):
            view.boxes_to[rec.sender] = {r for r, _ in msg.boxes}
        elif isinstance(msg, UnmaskShares):
            for owner, kind, raw in msg.shares:
                s = shamir.Share.from_bytes(raw)
                shares[(owner, kind)][s.index] = s
    view.shares = {k: list(v.values()) for k, v in shares.items()}
    return view


def recover_inputs(
    rnd: InProcessRound,
    *,
    brute_force_bits: int = 32,
    weak_prg: bool = False,
    colluders: tuple[int, ...] = (),
) -> dict[int, npt.NDArray[np.float64]]:
    """Every client input the curious server can isolate from its final state.

    ``weak_prg``: the server knows the clients run the weak (32-bit seed) generator and
    removes known pairwise masks with it (Kerckhoffs: the code is public).
    ``colluders``: clients that hand the server every share they hold (both kinds).
    """
    srv = rnd.server
    cfg = rnd.config
    ring: Ring = srv.ring
    ctx = RoundContext(rnd.session_id, rnd.round_index)
    view = _server_view(rnd)
    masked, shares = view.masked, view.shares
    for c in colluders:  # corrupt clients give away both shares of every peer
        for owner, (key_share, mask_share) in rnd.clients[c]._kept_for_collusion.items():
            for kind, raw in ((ShareKind.MASK_KEY, key_share), (ShareKind.SELF_MASK, mask_share)):
                sh = shamir.Share.from_bytes(raw)
                have = shares.setdefault((owner, kind), [])
                if all(x.index != sh.index for x in have):
                    have.append(sh)
    max_abs = cfg.encoding.max_element

    # every secret the server can rebuild from the shares it holds
    self_seeds: dict[int, bytes] = {}
    mask_keys: dict[int, crypto.AgreementKeyPair] = {}
    known_secrets: list[bytes] = []
    for (owner, kind), got in shares.items():
        if len(got) < cfg.threshold:
            continue
        secret = shamir.combine(got, check=False)
        known_secrets.append(secret)
        if kind is ShareKind.SELF_MASK:
            self_seeds[owner] = secret
        else:
            mask_keys[owner] = crypto.AgreementKeyPair.from_private_bytes(secret)
    # a reused seed: any known secret that is someone's mask private key
    for secret in known_secrets:
        kp = crypto.AgreementKeyPair.from_private_bytes(secret)
        for c, pub in view.mask_public.items():
            if pub == kp.public_bytes:
                mask_keys[c] = kp

    def strip(v: RingArray, term: MaskTerm) -> None:
        """Remove one mask from ``v`` in place, with the server's own mask code."""
        apply_masks(v, ring, [term], session_id=ctx.session_id, round_index=ctx.round_index)

    recovered: dict[int, npt.NDArray[np.float64]] = {}
    for victim, y in masked.items():
        if victim not in self_seeds:
            continue
        base = y.copy()
        strip(base, self_mask_term(self_seeds[victim], victim, sign=-1))
        unknown: list[int] = []
        removed = base.copy()
        for p in view.peers(victim):  # the peers the victim masked with
            if victim in mask_keys:
                key_side, other = victim, p
            elif p in mask_keys:
                key_side, other = p, victim
            else:
                unknown.append(p)
                continue
            seed = pairwise_seed(ctx, key_side, mask_keys[key_side], other, view.mask_public[other])
            if not weak_prg:  # the victim added sign * mask: take it out
                strip(removed, pairwise_mask_term(seed, victim, p, -mask_sign(victim, p)))
            elif mask_sign(victim, p) > 0:
                np.subtract(removed, weak_mask(fold32(seed), rnd.dimension), out=removed)
            else:
                np.add(removed, weak_mask(fold32(seed), rnd.dimension), out=removed)
        cands = [ring.reduce(removed)]  # with and without the pairwise masks it knows
        if not np.array_equal(removed, base):
            cands.append(ring.reduce(base))
        hit = next((c for c in cands if _plausible(c, ring, max_abs)), None)
        if hit is None and len(unknown) == 1 and ring.bits == 32:
            sign = mask_sign(victim, unknown[0])
            for z in cands:
                for s in brute_force_seed32(z, sign, max_abs, limit_bits=brute_force_bits):
                    hit = (z - np.uint32(sign & 0xFFFFFFFF) * weak_mask(s, rnd.dimension)).astype(
                        np.uint32
                    )
                    break
                if hit is not None:
                    break
        if hit is not None:
            recovered[victim] = srv.encoder.decode(hit)
    return recovered


def _plausible(x: RingArray, ring: Ring, max_abs: int) -> bool:
    return bool(np.all(np.abs(ring.to_signed(x)) <= max_abs))


def digest(x: npt.NDArray[np.float64]) -> str:
    """Short fingerprint of a vector, for assertion messages."""
    return hashlib.sha256(np.ascontiguousarray(x).tobytes()).hexdigest()[:12]
