"""The peer check: the same server attacks against Flower's own SecAgg+ client code.

Only runs when the optional ``flwr`` package is installed. It drives the four stage
functions of Flower 1.42's ``secaggplus_mod`` (setup, share keys, collect masked
vectors, unmask) in-process, as a malicious server would, and reports side by side with
this project's protocol:

* **share mixing (dropout lie):** the server lists the victim both as active and as dead
  in the unmask request. Flower's clients answer with the victim's self-mask seed share
  *and* its mask-key share (they do not check that the two lists are disjoint), so with
  t answers the server rebuilds both secrets, strips every mask and reads the victim's
  input. Our clients decide per peer from one signed survivor list and answer once.
* **seed entropy:** Flower seeds its masks with a 32-bit fold of the 32-byte key (a
  Mersenne Twister seeded with the XOR of its eight words). Two different keys with the
  same fold give the same mask: the mask carries at most 32 bits of entropy.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any

import numpy as np


def flower_available() -> bool:
    """True when ``flwr`` can be imported."""
    return importlib.util.find_spec("flwr") is not None


def flower_share_mixing(
    n: int = 5, threshold: int = 3, d: int = 16, victim: int = 0, seed: int = 0
) -> dict[str, Any]:
    """Run the share-mixing attack on Flower's client code; report what leaked."""
    from flwr.client.mod.secure_aggregation.secaggplus_mod import (
        SecAggPlusState,
        _collect_masked_vectors,
        _setup,
        _share_keys,
        _unmask,
    )
    from flwr.common import bytes_to_ndarray, ndarrays_to_parameters
    from flwr.common.secure_aggregation.crypto.shamir import combine_shares
    from flwr.common.secure_aggregation.crypto.symmetric_encryption import generate_shared_key
    from flwr.common.secure_aggregation.ndarrays_arithmetic import (
        parameters_mod,
        parameters_subtraction,
    )
    from flwr.common.secure_aggregation.quantization import dequantize
    from flwr.common.secure_aggregation.secaggplus_constants import Key
    from flwr.common.secure_aggregation.secaggplus_utils import pseudo_rand_gen
    from flwr.supercore.primitives.asymmetric import bytes_to_private_key, bytes_to_public_key

    rng = np.random.default_rng(seed)
    clip, target, mod = 8.0, 1 << 22, 1 << 32
    xs = rng.uniform(-1, 1, (n, d)).astype(np.float32)
    setup = {
        Key.SAMPLE_NUMBER: n,
        Key.SHARE_NUMBER: n,
        Key.THRESHOLD: threshold,
        Key.CLIPPING_RANGE: clip,
        Key.TARGET_RANGE: target,
        Key.MOD_RANGE: mod,
        Key.MAX_WEIGHT: 1.0,
    }
    states = {c: SecAggPlusState(nid=c) for c in range(n)}
    pks = {c: _setup(states[c], dict(setup)) for c in range(n)}
    directory = {str(c): (pks[c][Key.PUBLIC_KEY_1], pks[c][Key.PUBLIC_KEY_2]) for c in range(n)}
    boxes: dict[int, list[tuple[int, bytes]]] = {c: [] for c in range(n)}
    for c in range(n):
        out = _share_keys(states[c], dict(directory))
        for dst, ct in zip(out[Key.DESTINATION_LIST], out[Key.CIPHERTEXT_LIST], strict=True):
            boxes[dst].append((c, ct))
    masked: dict[int, list[np.ndarray]] = {}
    for c in range(n):
        cfg = {
            Key.CIPHERTEXT_LIST: [ct for _, ct in boxes[c]],
            Key.SOURCE_LIST: [s for s, _ in boxes[c]],
        }
        out = _collect_masked_vectors(states[c], cfg, 1, ndarrays_to_parameters([xs[c]]))
        masked[c] = [bytes_to_ndarray(b) for b in out[Key.MASKED_PARAMETERS]]

    # the malicious unmask request: the victim is listed both as active and as dead
    others = [c for c in range(n) if c != victim]
    active = list(range(n))  # Flower wants at least t active ids
    seed_shares, key_shares = [], []
    for c in others:
        req = {Key.ACTIVE_NODE_ID_LIST: active, Key.DEAD_NODE_ID_LIST: [victim]}
        out = _unmask(states[c], req)
        shares = out[Key.SHARE_LIST]
        seed_shares.append(shares[active.index(victim)])
        key_shares.append(shares[len(active)])
    rd_seed = combine_shares(seed_shares[:threshold])
    sk1 = combine_shares(key_shares[:threshold])
    vec = masked[victim]  # [weight factor (1,), parameters (d,)]
    shapes = [a.shape for a in vec]
    vec = parameters_subtraction(vec, pseudo_rand_gen(rd_seed, mod, shapes))
    for c in others:
        shared = generate_shared_key(
            bytes_to_private_key(sk1), bytes_to_public_key(directory[str(c)][0])
        )
        mask = pseudo_rand_gen(shared, mod, shapes)
        # the victim added the mask if its id is larger, subtracted it otherwise
        if victim > c:
            vec = parameters_subtraction(vec, mask)
        else:
            vec = [v + m for v, m in zip(vec, mask, strict=True)]
    vec = parameters_mod(vec, mod)
    got = dequantize(vec[1:], clip, target)[0]
    err = float(np.max(np.abs(got - xs[victim])))
    return {
        "recovered": err < 2 * clip / target * 4,
        "max_error": err,
        "seed_shares_released": len(seed_shares),
        "key_shares_released": len(key_shares),
    }


def flower_seed_entropy(d: int = 64) -> dict[str, Any]:
    """Two different 32-byte keys with the same 32-bit fold give Flower the same mask."""
    from flwr.common.secure_aggregation.secaggplus_utils import pseudo_rand_gen

    a = bytearray(os.urandom(32))
    b = bytearray(os.urandom(32))
    # make b fold to the same 32-bit value as a: fix its last word
    fold = 0
    for i in range(0, 28, 4):
        fold ^= int.from_bytes(a[i : i + 4], "little") ^ int.from_bytes(b[i : i + 4], "little")
    fold ^= int.from_bytes(a[28:32], "little")
    b[28:32] = fold.to_bytes(4, "little")
    ma = pseudo_rand_gen(bytes(a), 1 << 32, [(d,)])[0]
    mb = pseudo_rand_gen(bytes(b), 1 << 32, [(d,)])[0]
    return {"different_keys": bytes(a) != bytes(b), "same_mask": bool(np.array_equal(ma, mb))}
