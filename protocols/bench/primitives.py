"""``secagg bench primitives``: mask expansion vs the raw keystream, encoding, Shamir.

Every figure is measured in this process, in one run; the ratio ``mask_vs_keystream``
(mask expansion throughput / raw AES-CTR keystream throughput of the same cipher, same
size, same buffer discipline) is the one to compare across machines.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from secagg import shamir
from secagg.encoding import FixedPointConfig, FixedPointEncoder
from secagg.prg import KEY_BYTES, MaskExpander, keystream_into
from secagg.ring import Ring


def _best(fn: Callable[[], object], reps: int) -> float:
    """Fastest of ``reps`` timed calls, in seconds (the least disturbed measurement)."""
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def run(quick: bool = False, progress: bool = False) -> dict[str, Any]:
    """Measure and return the figures (see module docstring)."""
    from tqdm import tqdm

    d = 100_000 if quick else 1_000_000
    reps = 10 if quick else 30
    n, t = 100, 51
    steps = tqdm(total=5, desc="bench primitives", disable=not progress, leave=False)
    out: dict[str, Any] = {"d": d, "reps": reps, "cipher": "AES-128-CTR (OpenSSL)"}
    session = os.urandom(16)

    # 1. raw keystream vs mask expansion, b = 32 (no reduction) and b = 20 (reduction)
    for bits in (32, 20):
        ring = Ring(bits)
        nbytes = d * ring.itemsize
        key = os.urandom(KEY_BYTES)
        buf = np.empty(nbytes + 32, dtype=np.uint8)
        exp = MaskExpander(ring, d)
        seed = os.urandom(32)

        def raw(key: bytes = key, buf: npt.NDArray[np.uint8] = buf, nbytes: int = nbytes) -> None:
            keystream_into(key, buf, nbytes)

        def mask(exp: MaskExpander = exp, seed: bytes = seed) -> None:
            exp.expand(seed, session_id=session, round_index=1, parties=(3, 7), label="pair")

        raw()  # warm up caches and the zero buffer
        mask()
        t_raw = t_mask = float("inf")
        for _ in range(reps):  # interleave so both see the same machine load
            t_raw = min(t_raw, _best(raw, 1))
            t_mask = min(t_mask, _best(mask, 1))
        suffix = "" if bits == 32 else f"_b{bits}"
        out[f"keystream_gbps{suffix}"] = nbytes / t_raw / 1e9
        out[f"mask_gbps{suffix}"] = nbytes / t_mask / 1e9
        out[f"mask_vs_keystream{suffix}"] = t_raw / t_mask
        steps.update()

    # 2. encode + mask + sum for d elements (b = 32, 100 clients' worth of head-room)
    ring = Ring(32)
    enc = FixedPointEncoder(FixedPointConfig(bits=32, clip_min=-1.0, clip_max=1.0, num_clients=n))
    x = np.random.default_rng(0).uniform(-1, 1, d).astype(np.float32)
    exp = MaskExpander(ring, d)
    acc = ring.zeros(d)
    seed = os.urandom(32)
    rng = np.random.default_rng(1)
    t_enc = _best(lambda: enc.encode(x, rng=rng), reps)
    y = enc.encode(x, rng=rng)

    def add_mask() -> None:
        m = exp.expand(seed, session_id=session, round_index=1, parties=(3, 3), label="self")
        np.add(y, m, out=y)

    t_mask = _best(add_mask, reps)
    t_sum = _best(lambda: np.add(acc, y, out=acc), reps)
    out["encode_ms"] = t_enc * 1e3
    out["mask_add_ms"] = t_mask * 1e3
    out["sum_add_ms"] = t_sum * 1e3
    out["encode_mask_sum_ms"] = (t_enc + t_mask + t_sum) * 1e3
    steps.update()

    # 3. Shamir, n = 100, t = 51
    secret = os.urandom(32)
    shamir_reps = 5 if quick else 20
    t_split = _best(lambda: shamir.split(secret, n, t), shamir_reps)
    shares = shamir.split(secret, n, t)
    shamir.clear_caches()

    def combine_cold() -> None:
        shamir.clear_caches()
        shamir.combine(shares[:t])

    t_comb_cold = _best(combine_cold, shamir_reps)
    shamir.combine(shares[:t])
    t_comb_warm = _best(lambda: shamir.combine(shares[:t]), shamir_reps)
    t_comb_checked = _best(lambda: shamir.combine(shares), max(1, shamir_reps // 4))
    out.update(
        shamir_n=n,
        shamir_t=t,
        shamir_split_ms=t_split * 1e3,
        shamir_combine_ms=t_comb_cold * 1e3,
        shamir_combine_cached_ms=t_comb_warm * 1e3,
        shamir_combine_all_checked_ms=t_comb_checked * 1e3,
    )
    steps.update(2)
    steps.close()
    return out
