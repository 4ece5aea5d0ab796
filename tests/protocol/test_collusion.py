"""Collusion through the protocol: the server plus t-1 clients of the victim's SecAgg+
neighbourhood learn nothing about the victim; with t they recover its input (which is
exactly what the threshold means)."""

from __future__ import annotations

import numpy as np
import pytest

from secagg import SecAggConfig
from secagg.client import SecAggClient
from secagg.simulate import InProcessRound

from .curious import Colluding, recover_inputs

N, D, VICTIM = 30, 16, 7


def _round(colluders: set[int]) -> tuple[InProcessRound, np.ndarray]:  # type: ignore[type-arg]
    cfg = SecAggConfig.default(N, setting="honest_but_curious", rounding="nearest")
    assert cfg.graph == "secagg+"
    xs = np.random.default_rng(5).uniform(-1, 1, (N, D))

    def factory(config: SecAggConfig, cid: int, **kw: object) -> SecAggClient:
        cls = Colluding if cid in colluders else SecAggClient
        return cls(config, cid, **kw)  # type: ignore[arg-type]

    rnd = InProcessRound(xs, cfg, client_factory=factory)
    rnd.run()
    return rnd, xs


@pytest.mark.parametrize("extra", [-1, 0], ids=["t-1 colluders", "t colluders"])
def test_threshold_of_colluders(extra: int) -> None:
    # the graph is redrawn every round (it hashes fresh keys), so pick the colluders from
    # the victim's neighbourhood of this round: run with everybody colluding-capable and
    # hand the attack exactly the chosen ones
    cfg = SecAggConfig.default(N, setting="honest_but_curious", rounding="nearest")
    t = cfg.threshold
    rnd, xs = _round(set(range(N)))
    neighbours = sorted(rnd.server.graph.neighbours(VICTIM))
    assert len(neighbours) >= t
    chosen = tuple(neighbours[: t + extra])
    got = recover_inputs(rnd, brute_force_bits=0, colluders=chosen)
    if extra < 0:
        assert VICTIM not in got
        assert got == {}
    else:
        assert VICTIM in got
        assert np.allclose(got[VICTIM], xs[VICTIM], atol=cfg.encoding.quantum)
