"""Helpers shared by the protocol tests: configs, exact expected sums, outcome checks."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from secagg import SecAggConfig
from secagg.encoding import FixedPointEncoder
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
    """Recompute, from the dropout plan and the rules alone (an independent model of an
    honest server and honest clients), that the round could not complete."""
    cfg, g = rnd.config, rnd.server.graph
    n, t = cfg.num_clients, cfg.threshold
    u1 = {c for c in range(n) if reached(plan, c, "advertise_keys")}
    # a client needs t - 1 present neighbours to deal, t - 1 sharing ones to mask
    u2 = {
        c for c in u1 if reached(plan, c, "share_keys") and len(set(g.neighbours(c)) & u1) + 1 >= t
    }
    u3 = {
        c
        for c in u2
        if reached(plan, c, "masked_input") and len(set(g.neighbours(c)) & u2) + 1 >= t
    }
    u4 = {c for c in u3 if reached(plan, c, "consistency_check")} if cfg.active else set(u3)
    u5 = {c for c in u4 if reached(plan, c, "unmasking")}
    if min(len(u1), len(u2), len(u3), len(u4), len(u5)) < t or len(u3) < cfg.min_summed:
        return True
    if cfg.active:
        u5 = {h for h in u5 if _own_budget_ok(cfg, g, h, u3)}
    for owner in u2:
        releasers = {
            h for h in set(g.holders(owner)) & u5 if owner == h or owner in g.neighbours(h)
        }
        if cfg.active:
            releasers = {h for h in releasers if _releases(cfg, g, h, owner, u2, u3, u4)}
        if len(releasers) < t:
            return True
    return False


def _sides(g: object, c: int) -> list[tuple[int, ...]]:
    if g.complete:  # type: ignore[attr-defined]
        return [g.neighbours(c)]  # type: ignore[attr-defined]
    return [g.side_of(c, -1), g.side_of(c, 1)]  # type: ignore[attr-defined]


def _own_budget_ok(cfg: SecAggConfig, g: object, h: int, u3: set[int]) -> bool:
    return all(sum(v not in u3 for v in side) <= cfg.dropout_cap for side in _sides(g, h))


def _certified(g: object, v: int, u3: set[int], u4: set[int], alive: bool, t: int) -> bool:
    attesters = set(g.neighbours(v)) & u4  # type: ignore[attr-defined]
    if alive:
        return len(attesters) + (v in u4) >= t if v in u3 else False
    return len(attesters) >= t if v not in u3 else False


def _releases(
    cfg: SecAggConfig, g: object, h: int, owner: int, u2: set[int], u3: set[int], u4: set[int]
) -> bool:
    t = cfg.threshold
    if owner not in u3:
        return _certified(g, owner, u3, u4, False, t)
    if not _certified(g, owner, u3, u4, True, t):
        return False
    side = g.side(owner, h)  # type: ignore[attr-defined]
    sides = _sides(g, owner) if side == 0 or g.complete else [g.side_of(owner, side)]  # type: ignore[attr-defined]
    for members in sides:
        gone = sum(v not in u2 or not _certified(g, v, u3, u4, True, t) for v in members)
        if gone > cfg.dropout_cap:
            return False
    return True
