"""SecAgg+ at thousands of clients: every message a client gets is O(k), the sum is exact.

The default suite runs one honest-but-curious round at n = 2000 (seconds); the n = 10^4
rounds of both settings are in the slow suite (``scripts/test.sh --slow``) and in
``secagg bench secagg``.
"""

from __future__ import annotations

import numpy as np
import pytest

from secagg import SecAggConfig
from secagg.simulate import InProcessRound, LazyInputs

#: bytes a client receives per neighbour: its keys and MAC (89), its box with two digests
#: (185), a status, the evidence's base entry, view and edge tags (active)
PER_NEIGHBOUR_BYTES = 400


def _round(n: int, d: int, setting: str) -> tuple[InProcessRound, dict[int, str]]:
    cfg = SecAggConfig.default(n, setting=setting, rounding="nearest")  # type: ignore[arg-type]
    rng = np.random.default_rng(n)
    drops = {int(c): "share_keys" for c in rng.choice(n, n // 20, replace=False)}
    inputs = LazyInputs(n, d, lambda c: np.full(d, ((c * 37) % 101 - 50) / 64.0))
    return InProcessRound(inputs, cfg, drops, record_transcript=False), drops


def _check(rnd: InProcessRound, drops: dict[int, str], d: int) -> None:
    res = rnd.run()
    survivors = [c for c in range(rnd.config.num_clients) if c not in drops]
    assert list(res.survivors) == survivors
    want = sum(((c * 37) % 101 - 50) / 64.0 for c in survivors)
    assert np.allclose(res.sum, want, atol=len(survivors) * rnd.config.encoding.quantum)
    k = rnd.config.degree
    down = res.params["bytes_down"]
    # O(k) per client, however large n is: no directory, no global survivor list
    assert max(down.values()) <= PER_NEIGHBOUR_BYTES * k + 1000, max(down.values())
    # a survivor forgets every share once it has answered (a dropout keeps only its own)
    assert all(rnd.clients[c].held_shares == 0 for c in survivors)


def test_two_thousand_clients_honest_but_curious() -> None:
    rnd, drops = _round(2000, 100, "honest_but_curious")
    assert rnd.config.graph == "secagg+" and rnd.config.degree < 100
    _check(rnd, drops, 100)


@pytest.mark.slow
@pytest.mark.parametrize("setting", ["honest_but_curious", "active"])
def test_ten_thousand_clients(setting: str) -> None:
    rnd, drops = _round(10_000, 1000, setting)
    _check(rnd, drops, 1000)
