"""Helpers shared by the protocol tests: configs, exact expected sums, outcome checks."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from secagg import SecAggConfig
from secagg.encoding import FixedPointEncoder
from secagg.graph import component_of
from secagg.simulate import DROPOUT_POINTS, InProcessRound

ORDER = {p: i for i, p in enumerate(DROPOUT_POINTS)}


def exact_config(
    n: int, setting: str = "active", graph: str | None = None, **kw: object
) -> SecAggConfig:
    """The default config for n clients with deterministic rounding (exact sums)."""
    return SecAggConfig.default(n, setting=setting, graph=graph, rounding="nearest", **kw)  # type: ignore[arg-type]


def expected_sum(
    cfg: SecAggConfig, xs: npt.NDArray[np.float64], survivors: tuple[int, ...]
) -> npt.NDArray[np.float64]:
    """The decoded ring sum of the survivors' encodings (what the server must output)."""
    enc = FixedPointEncoder(cfg.encoding, rounding="nearest")
    total = cfg.encoding.ring.sum([enc.encode(xs[u]) for u in survivors])
    return enc.decode_sum(total, len(survivors))


def reached(plan: dict[int, str], c: int, step: str) -> bool:
    """Whether client c sends in ``step`` under the dropout plan."""
    when = plan.get(c)
    return when is None or ORDER.get(step, len(ORDER)) <= ORDER[when]


def abort_is_justified(rnd: InProcessRound, plan: dict[int, str]) -> bool:
    """Recompute, from the dropout plan alone, that the round could not complete."""
    cfg = rnd.config
    n, t = cfg.num_clients, cfg.threshold
    u1 = {c for c in range(n) if reached(plan, c, "advertise_keys")}
    u2 = {c for c in u1 if reached(plan, c, "share_keys")}
    u3 = {c for c in u2 if reached(plan, c, "masked_input")}
    step_unmask = "consistency_check" if cfg.active else "unmasking"
    u4 = {c for c in u3 if reached(plan, c, step_unmask)} if cfg.active else set(u3)
    u5 = {c for c in u4 if reached(plan, c, "unmasking")}
    if min(len(u1), len(u2), len(u3), len(u4), len(u5)) < t:
        return True
    topo = rnd.server._topology
    assert topo is not None
    ma = cfg.min_aggregate or 0
    responders = {c for c in u5 if len(component_of(c, u3, topo.adjacency)) >= ma and len(u3) >= ma}
    for owner in u2:
        holders = set(topo.holders(owner)) & responders
        if len(holders) < t:
            return True
    return False
