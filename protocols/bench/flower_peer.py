"""The peer to beat: Flower's SecAgg+ server unmasking, run with Flower's own primitives.

Only used when the optional ``flwr`` package is installed. It replays the unmask stage of
Flower 1.42's ``SecAggPlusWorkflow`` (combine the shares each owner's surviving holders
sent with ``combine_shares``; regenerate survivors' self masks and dropped clients'
pairwise masks with ``pseudo_rand_gen``; add them into the int64 aggregate) for the same
n, d, k, t and dropouts as our benchmark, and times it in this process. Shares and keys
are prepared beforehand and not timed, as in the workflow.
"""

from __future__ import annotations

import importlib.util
import os
import time
from typing import Any

import numpy as np

from secagg.graph import neighbours


def flower_available() -> bool:
    """True when ``flwr`` can be imported."""
    return importlib.util.find_spec("flwr") is not None


def flower_server_unmask_s(n: int, d: int, k: int, t: int, dropped: set[int]) -> float:
    """Seconds Flower's unmask stage takes for this configuration (one run)."""
    from flwr.common.secure_aggregation.crypto.shamir import combine_shares, create_shares
    from flwr.common.secure_aggregation.crypto.symmetric_encryption import generate_shared_key
    from flwr.common.secure_aggregation.ndarrays_arithmetic import (
        parameters_addition,
        parameters_subtraction,
    )
    from flwr.common.secure_aggregation.secaggplus_utils import pseudo_rand_gen
    from flwr.supercore.primitives.asymmetric import (
        bytes_to_private_key,
        bytes_to_public_key,
        generate_key_pairs,
        private_key_to_bytes,
        public_key_to_bytes,
    )

    mod_range = 2**32
    adj = neighbours(range(n), k if k < n - 1 else None, os.urandom(32))
    keys: dict[int, Any] = {c: generate_key_pairs() for c in range(n)}
    pub = {c: public_key_to_bytes(keys[c][1]) for c in range(n)}
    alive = [c for c in range(n) if c not in dropped]
    collected: dict[int, list[bytes]] = {}
    for owner in range(n):
        holders = sorted(adj[owner] | {owner})
        secret = os.urandom(32) if owner not in dropped else private_key_to_bytes(keys[owner][0])
        shares = create_shares(secret, t, len(holders))
        collected[owner] = [s for h, s in zip(holders, shares, strict=True) if h in alive]
    masked = [np.zeros(d, dtype=np.int64)]
    shape: list[tuple[int, ...]] = [(d,)]

    t0 = time.perf_counter()
    for owner, share_list in collected.items():
        secret = combine_shares(share_list)
        if owner not in dropped:
            masked = parameters_subtraction(masked, pseudo_rand_gen(secret, mod_range, shape))
        else:
            for nb in adj[owner]:
                shared = generate_shared_key(
                    bytes_to_private_key(secret), bytes_to_public_key(pub[nb])
                )
                mask = pseudo_rand_gen(shared, mod_range, shape)
                if owner > nb:
                    masked = parameters_addition(masked, mask)
                else:
                    masked = parameters_subtraction(masked, mask)
    return time.perf_counter() - t0
