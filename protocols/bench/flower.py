"""``secagg bench flower``: per-round wall time on a real Flower deployment (loopback).

A :class:`~protocols.flower.deploy.LocalDeployment` (a SuperLink and ``nodes``
SuperNodes as separate processes; every message to a client starts a fresh ClientApp
process; the active mode on its own deployment of provisioned nodes) runs each mode
at each model size ``d`` for ``rounds`` rounds. A *mode* is a Flower app plus its run
config (:class:`FlowerMode`); built in are ``plain`` (FedAvg, one
exchange per round) and ``flower_secaggplus`` (Flower's own ``SecAggPlusWorkflow`` +
``secaggplus_mod``, four exchanges). Others register with :func:`register_mode`.

Per mode and ``d`` the figures are what the ServerApp measured through its metering
Grid: the median round wall time (rounds after the first when there are several: the
first also pays each SuperNode's first app install), exchanges per round (counted
``send_and_receive`` calls; the most in any round), payload bytes per client per round
each way, the ServerApp process's peak RSS, and the aggregate's worst error against the
exact mean.
``<mode>_vs_plain_d<d>`` is the ratio of median round times to ``plain`` at the same
``d``; ``flower_vs_plain_d<d>`` is the one for ``flower_secaggplus``.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

NodeConfigValue = str | int | float | bool


@dataclass(frozen=True)
class FlowerMode:
    """A benchmark mode: a Flower app project (name under
    ``protocols/flower/apps/projects/`` or a directory) and run-config overrides.
    ``dim``, ``num-rounds``, ``num-nodes`` and ``exchange-timeout`` are set by the
    benchmark; the app must write the result JSON of :mod:`protocols.flower.apps.plain`
    (``rounds`` with ``wall_s``, ``exchanges``, ``bytes_*_per_client``, ...)."""

    name: str
    app: str | Path
    run_config: Mapping[str, NodeConfigValue] = field(default_factory=dict)

    def app_dir(self) -> Path:
        """The app project directory."""
        if isinstance(self.app, Path):
            return self.app
        from protocols.flower.apps import app_dir

        return app_dir(self.app)


MODES: dict[str, FlowerMode] = {
    "plain": FlowerMode("plain", "plain"),
    # Flower's example app uses 3 shares, threshold 2; the same here, at any n.
    "flower_secaggplus": FlowerMode(
        "flower_secaggplus",
        "flower_secaggplus",
        {"num-shares": 3, "reconstruction-threshold": 2},
    ),
    # this project's pipelined SecAgg+ (2 exchanges per round) and its active setting (3)
    "ours_hbc": FlowerMode("ours_hbc", "secagg_sum", {"setting": "honest_but_curious"}),
    "ours_active": FlowerMode("ours_active", "secagg_sum", {"setting": "active"}),
}


def register_mode(mode: FlowerMode) -> None:
    """Add (or replace) a mode, e.g. ``ours_hbc`` with its app and config."""
    MODES[mode.name] = mode


def _summarise(mode: str, d: int, result: Mapping[str, Any], run_s: float) -> dict[str, Any]:
    rounds = list(result["rounds"])
    timed = rounds[1:] if len(rounds) > 1 else rounds
    errors = [r["mean_max_abs_error"] for r in rounds if r["mean_max_abs_error"] is not None]
    return {
        "mode": mode,
        "d": d,
        "round_s_median": statistics.median(r["wall_s"] for r in timed),
        "round1_s": rounds[0]["wall_s"],
        "exchanges_per_round": max(r["exchanges"] for r in rounds),
        "exchange_s_median": statistics.median(
            [s for r in timed for s in r.get("exchange_s", [])] or [float("nan")]
        ),
        "bytes_up_per_client": statistics.median(r["bytes_up_per_client"] for r in timed),
        "bytes_down_per_client": statistics.median(r["bytes_down_per_client"] for r in timed),
        "server_peak_rss_mb": result["peak_rss_bytes"] / 2**20,
        "max_abs_error": max(errors) if errors else float("nan"),
        "replies_min": min(r["replies"] for r in rounds),
        "run_s": run_s,
    }


def run_flower_bench(
    d_values: Iterable[int] = (10**5, 10**6),
    nodes: int = 10,
    rounds: int = 3,
    modes: Iterable[str] = ("plain", "flower_secaggplus", "ours_hbc", "ours_active"),
    *,
    exchange_timeout: float = 600.0,
    progress: bool = False,
    run_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Run every mode at every ``d`` on ``nodes`` SuperNodes: one deployment for the modes
    without identities, one provisioned deployment for the active setting.

    Returns ``{"results": [row per (mode, d)], "startup_s": ..., "<mode>_vs_plain_d<d>":
    ...}``; see the module docstring for the row's figures.
    """

    chosen = [MODES[m] for m in modes]
    d_list = list(d_values)
    out: dict[str, Any] = {"nodes": nodes, "rounds": rounds}
    rows: list[dict[str, Any]] = []
    import tempfile

    from protocols.flower.records import provision_identities

    keys = Path(tempfile.mkdtemp(prefix="secagg-bench-keys-"))
    files, registry = provision_identities(keys, nodes)  # used by the active setting only

    def node_config(i: int) -> dict[str, NodeConfigValue]:
        return {"secagg-identity": str(files[i]), "secagg-registry": str(registry)}

    # a node provisioned with an identity runs its registry's (active) policy and refuses
    # an honest-but-curious session: the active mode gets its own provisioned deployment
    groups = [
        ([m for m in chosen if m.name != "ours_active"], None),
        ([m for m in chosen if m.name == "ours_active"], node_config),
    ]
    for group, cfg_of in groups:
        if not group:
            continue
        rows += _run_group(
            group,
            d_list,
            nodes,
            rounds,
            cfg_of,
            registry,
            exchange_timeout,
            progress,
            run_dir,
            out,
        )
    _ratios(rows, d_list, out)
    out["results"] = rows
    return out


def _run_group(
    chosen: list[Any],
    d_list: list[int],
    nodes: int,
    rounds: int,
    node_config: Any,
    registry: Path,
    exchange_timeout: float,
    progress: bool,
    run_dir: str | Path | None,
    out: dict[str, Any],
) -> list[dict[str, Any]]:
    """Every mode of ``chosen`` at every d on one deployment."""
    from protocols.flower.deploy import LocalDeployment

    rows: list[dict[str, Any]] = []
    with LocalDeployment(nodes, run_dir=run_dir, node_config=node_config) as dep:
        out.setdefault("startup_s", dep.startup_s)
        for d in d_list:
            for mode in chosen:
                config: dict[str, NodeConfigValue] = {
                    **mode.run_config,
                    **({"registry-file": str(registry)} if mode.name == "ours_active" else {}),
                    "dim": d,
                    "num-rounds": rounds,
                    "num-nodes": nodes,
                    "exchange-timeout": exchange_timeout,
                }
                if progress:
                    print(f"flower bench: {mode.name} d={d} ...", file=sys.stderr, flush=True)
                t0 = time.perf_counter()
                result = dep.run(
                    mode.app_dir(), config, timeout=exchange_timeout * 4 * rounds + 120
                )
                row = _summarise(mode.name, d, result, time.perf_counter() - t0)
                rows.append(row)
                if progress:
                    print(
                        f"  round {row['round_s_median']:.2f} s, "
                        f"{row['exchanges_per_round']} exchanges",
                        file=sys.stderr,
                        flush=True,
                    )
    return rows


def _ratios(rows: list[dict[str, Any]], d_list: list[int], out: dict[str, Any]) -> None:
    """Each mode's round time over plain FedAvg's at the same d, and the headlines."""
    for d in d_list:
        base = next((r for r in rows if r["mode"] == "plain" and r["d"] == d), None)
        for r in rows:
            if r["d"] != d or base is None:
                continue
            r["vs_plain"] = r["round_s_median"] / base["round_s_median"]
            if r["mode"] != "plain":
                out[f"{r['mode']}_vs_plain_d{d}"] = r["vs_plain"]
            if r["mode"] == "flower_secaggplus":
                out[f"flower_vs_plain_d{d}"] = r["vs_plain"]
            if r["mode"] in ("ours_hbc", "ours_active"):
                setting = r["mode"].removeprefix("ours_")
                out[f"ours_vs_plain_{setting}_d{d}"] = r["vs_plain"]
    for key in ("ours_vs_plain_hbc", "ours_vs_plain_active", "flower_vs_plain"):
        at = [k for k in out if k.startswith(key + "_d")]
        if at:  # the headline: the largest d measured
            out[key] = out[max(at, key=lambda k: int(k.rsplit("_d", 1)[1]))]


def run(quick: bool = False, progress: bool = False) -> dict[str, Any]:
    """The ``secagg bench flower`` entry: 10 nodes at d = 1e5 and 1e6, 2 rounds (round 2
    timed: round 1 also pays each node's first app install);
    ``--quick``: 3 nodes at d = 1e4, 2 rounds."""
    if quick:
        return run_flower_bench((10**4,), nodes=3, rounds=2, progress=progress)
    return run_flower_bench((10**5, 10**6), nodes=10, rounds=2, progress=progress)
