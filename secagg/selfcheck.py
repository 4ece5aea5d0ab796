"""A fast end-to-end check of the primitives: a tiny masked aggregation done by hand.

Three clients encode vectors, agree pairwise seeds over X25519, add self masks and
cancelling pairwise masks; the masked sum minus the self masks decodes to the true sum.
A Shamir sharing, an AES-GCM share box and an Ed25519 signature round-trip alongside.
Used by ``secagg selfcheck`` and the README's first command.
"""

from __future__ import annotations

import os
import time

import numpy as np

from secagg import crypto, shamir
from secagg.context import RoundContext
from secagg.encoding import FixedPointConfig, FixedPointEncoder
from secagg.errors import DecryptionError, SecAggError, SignatureError
from secagg.prg import expand_mask
from secagg.ring import Ring, RingArray


class SelfCheckError(SecAggError):
    """A primitive gave a wrong answer on this machine."""


def run_selfcheck(d: int = 1000, n: int = 3) -> str:
    """Run the check; return a one-line summary or raise :class:`SelfCheckError`."""
    t0 = time.perf_counter()
    ctx = RoundContext(os.urandom(16), 0)
    enc = FixedPointEncoder(FixedPointConfig(bits=32, clip_min=-1.0, clip_max=1.0, num_clients=n))
    ring = enc.ring
    rng = np.random.default_rng()
    xs = [rng.uniform(-1, 1, d).astype(np.float32) for _ in range(n)]
    keys = [crypto.AgreementKeyPair.generate() for _ in range(n)]
    self_seeds = [os.urandom(32) for _ in range(n)]
    masked = []
    for u in range(n):
        y = enc.encode(xs[u])
        ring.add(y, _mask(self_seeds[u], d, ring, ctx, u, u, "self"), out=y)
        for v in range(n):
            if v == u:
                continue
            seed = crypto.derive_pairwise_seed(keys[u].exchange(keys[v].public_bytes), ctx, u, v)
            m = _mask(seed, d, ring, ctx, min(u, v), max(u, v), "pair")
            (ring.add if u < v else ring.sub)(y, m, out=y)
        masked.append(y)
    total = ring.sum(masked)
    for u in range(n):
        ring.sub(total, _mask(self_seeds[u], d, ring, ctx, u, u, "self"), out=total)
    got = enc.decode_sum(total, n)
    err = float(np.max(np.abs(got - np.sum(xs, axis=0, dtype=np.float64))))
    if err > n * enc.config.quantum:
        raise SelfCheckError(f"masked sum off by {err:.3g} (> {n} quanta)")

    secret = os.urandom(32)
    shares = shamir.split(secret, 5, 3)
    if shamir.combine(shares[2:]) != secret or shamir.combine(shares[:3]) != secret:
        raise SelfCheckError("Shamir 3-of-5 did not reconstruct")

    key = crypto.derive_channel_key(keys[0].exchange(keys[1].public_bytes), ctx, 0, 1)
    aad = crypto.share_aad(ctx, 0, 1)
    box = crypto.seal(key, shares[0].to_bytes(), aad)
    if crypto.open_sealed(key, box, aad) != shares[0].to_bytes():
        raise SelfCheckError("AES-GCM round trip failed")
    try:
        crypto.open_sealed(key, box, crypto.share_aad(ctx, 1, 0))
        raise SelfCheckError("AES-GCM accepted a ciphertext under the wrong direction")
    except DecryptionError:
        pass

    ident = crypto.SigningKey.generate()
    payload = crypto.advertisement_payload(ctx, 0, keys[0].public_bytes, keys[1].public_bytes)
    sig = ident.sign(payload)
    crypto.verify_signature(ident.public_bytes, sig, payload)
    try:
        crypto.verify_signature(ident.public_bytes, sig, payload + b"x")
        raise SelfCheckError("Ed25519 accepted a signature on a different payload")
    except SignatureError:
        pass

    ms = (time.perf_counter() - t0) * 1e3
    return (
        f"selfcheck ok: {n} clients x {d} floats masked and summed exactly "
        f"(max error {err:.2g} <= {n} quanta), Shamir 3-of-5, X25519+HKDF, AES-256-GCM, "
        f"Ed25519 ({ms:.0f} ms)"
    )


def _mask(
    seed: bytes, d: int, ring: Ring, ctx: RoundContext, a: int, b: int, label: str
) -> RingArray:
    return expand_mask(
        seed,
        d,
        ring,
        session_id=ctx.session_id,
        round_index=ctx.round_index,
        parties=(a, b),
        label=label,
    )
