"""Our pipelined SecAgg on Flower, on the benchmark's synthetic updates.

The ServerApp runs :class:`~protocols.flower.workflow.SecAggWorkflow`; the ClientApp's
train function returns model + its synthetic update (float64, so the mod's difference is
exact) behind :func:`~protocols.flower.mod.secagg_mod`. Updates are keyed by the Flower
node id, which the server knows for every survivor, so it checks each round's unmasked
sum against the exact sum of the survivors' updates without any client revealing more.

Run config (``projects/secagg_sum/pyproject.toml``): ``dim``, ``num-rounds``,
``num-nodes``, ``exchange-timeout``, ``seed``, ``setting`` (honest_but_curious or
active), ``registry-file`` (active), ``threshold``/``neighbours`` (0: automatic),
plus the harness keys ``result-file``, ``sync-dir``, ``sync-timeout``. A node started
with ``--node-config 'secagg-misbehave="garbage"'`` answers with garbage bytes from its
first TRAIN exchange on (tests: the server must drop it and go on).
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.clientapp.typing import ClientAppCallable
from flwr.serverapp import Grid, ServerApp

from protocols.flower.apps.common import (
    MeteredGrid,
    exchanges_as_dicts,
    peak_rss_bytes,
    synthetic_update,
    write_result,
)
from protocols.flower.mod import secagg_mod
from protocols.flower.records import SECAGG_KEY
from protocols.flower.sync import ExchangeHook
from protocols.flower.workflow import RoundRow, SecAggWorkflow
from secagg.server import ServerOutcome

server_app = ServerApp()
MISBEHAVE = "secagg-misbehave"


def _key(node_id: int) -> int:
    return int(node_id) % (1 << 31)


@server_app.main()
def server_main(grid: Grid, context: Context) -> None:
    """Pipelined secure FedAvg rounds; writes the result JSON to ``result-file``."""
    cfg = context.run_config
    dim, rounds, seed = int(cfg["dim"]), int(cfg["num-rounds"]), int(cfg["seed"])
    setting = str(cfg.get("setting", "honest_but_curious"))
    overrides: dict[str, Any] = {}
    for key in ("threshold", "neighbours"):
        if int(cfg.get(key, 0) or 0) > 0:
            overrides[key] = int(cfg[key])
    hook = ExchangeHook.from_run_config(cfg)
    metered = MeteredGrid(grid, None)
    wf = SecAggWorkflow(
        rounds=rounds,
        setting=setting,
        clip=1.0,
        timeout=float(cfg["exchange-timeout"]),
        min_nodes=int(cfg["num-nodes"]),
        registry_file=str(cfg.get("registry-file", "")) or None,
        hook=hook,
        poll_interval=float(str(cfg["poll-interval"]))
        if float(str(cfg.get("poll-interval", 0))) > 0
        else None,
        overrides=overrides,
    )
    rows: list[dict[str, Any]] = []
    node_of = wf.nodes  # filled by run() before the first round ends

    def on_round(row: RoundRow, model: list[np.ndarray], out: ServerOutcome | None) -> None:
        err = mean_err = None
        if out is not None:
            want = np.zeros(dim)
            for c in out.survivors:
                want += synthetic_update(_key(node_of[c]), row.round, dim, seed)
            err = float(np.max(np.abs(out.sum[:-1] - want)))
            mean_err = err / max(1, len(out.survivors))
            weight_ok = abs(float(out.sum[-1]) - len(out.survivors)) < 1e-3
            row.extra.update({"weight_ok": weight_ok})
        rows.append(
            {
                "round": row.round,
                "status": row.status,
                "survivor_nodes": [node_of[c] for c in row.survivors],
                "dropped_nodes": [node_of[c] for c in row.dropped if c in node_of],
                "wall_s": row.seconds,
                "exchanges": row.exchanges,
                "bytes_up_per_client": row.bytes_up_per_client,
                "bytes_down_per_client": row.bytes_down_per_client,
                "sum_max_abs_error": err,
                "mean_max_abs_error": mean_err,
                "replies": len(row.survivors),
                "exchange_s": row.extra.get("exchange_s", []),
                "released_shares": row.released_shares,
                "error": row.error,
                **row.extra,
            }
        )

    t0 = time.perf_counter()
    initial = [np.zeros(dim, dtype=np.float32)]
    report = wf.run(metered, initial, on_round=on_round)
    write_result(
        cfg,
        {
            "mode": f"ours_{'active' if setting == 'active' else 'hbc'}",
            "dim": dim,
            "num_nodes": len(report.nodes),
            "num_rounds": rounds,
            "setting": setting,
            "config": report.config,
            "bootstrap_s": report.bootstrap_seconds,
            "total_s": time.perf_counter() - t0,
            "rounds": rows,
            "exchanges": report.exchanges,
            "metered_exchanges": exchanges_as_dicts(metered),
            "peak_rss_bytes": peak_rss_bytes(),
            "server_pid": os.getpid(),
        },
    )


def garbage_mod(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """Test-only: a node configured to misbehave answers TRAIN exchanges with garbage."""
    out = call_next(msg, context)
    rec = msg.content.config_records.get(SECAGG_KEY)
    if (
        context.node_config.get(MISBEHAVE) == "garbage"
        and rec is not None
        and rec.get("kind") == "train"
        and not out.has_error()
    ):
        junk = ConfigRecord({"bundle": os.urandom(64)})
        return Message(RecordDict({SECAGG_KEY: junk}), reply_to=msg)
    return out


client_app = ClientApp()


@client_app.train(mods=[garbage_mod, secagg_mod])
def client_train(msg: Message, context: Context) -> Message:
    """Return model + this node's synthetic update for the round (float64: exact)."""
    server_round = int(str(msg.content["config"]["server-round"]))
    model = msg.content["arrays"].to_numpy_ndarrays()[0]  # type: ignore[union-attr]
    seed = int(str(context.run_config.get("seed", 0)))
    update = synthetic_update(_key(context.node_id), server_round, model.size, seed)
    new = model.astype(np.float64) + update.astype(np.float64)
    reply = RecordDict({"arrays": ArrayRecord([new]), "metrics": MetricRecord({"num-examples": 1})})
    return Message(reply, reply_to=msg)
