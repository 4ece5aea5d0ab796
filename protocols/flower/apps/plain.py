"""Baseline 1: plain FedAvg on Flower's Message API, one exchange per round.

Each round the ServerApp sends the current model (``dim`` float32 parameters, one
``ArrayRecord``) to every connected node in a single ``send_and_receive``; each
ClientApp answers with its synthetic update (:func:`~protocols.flower.apps.common.
synthetic_update` of its ``partition-id`` and the round); the server sums what came back,
checks the sum against the exact one, and the mean becomes the next model. Nodes that
do not answer within ``exchange-timeout`` seconds are left out of that round.

Run config (``protocols/flower/apps/projects/plain/pyproject.toml``): ``dim``,
``num-rounds``, ``num-nodes`` (wait for this many before round 1),
``exchange-timeout``, ``seed``, plus the harness keys ``result-file`` and ``sync-dir``.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp

from protocols.flower.apps.common import (
    MeteredGrid,
    exchanges_as_dicts,
    peak_rss_bytes,
    round_summary,
    synthetic_update,
    wait_for_nodes,
    write_result,
)
from protocols.flower.sync import ExchangeHook

STATE_KEY = "plain-client"

server_app = ServerApp()
client_app = ClientApp()


@server_app.main()
def server_main(grid: Grid, context: Context) -> None:
    """FedAvg rounds; writes the result JSON (per-round figures) to ``result-file``."""
    cfg = context.run_config
    dim, rounds = int(cfg["dim"]), int(cfg["num-rounds"])
    num_nodes, seed = int(cfg["num-nodes"]), int(cfg["seed"])
    timeout = float(cfg["exchange-timeout"])
    metered = MeteredGrid(grid, ExchangeHook.from_run_config(cfg))
    t_start = time.perf_counter()
    wait_for_nodes(metered, num_nodes, timeout, error=TimeoutError)
    wait_nodes_s = time.perf_counter() - t_start
    model = np.zeros(dim, dtype=np.float32)
    per_round: list[dict[str, Any]] = []
    for server_round in range(1, rounds + 1):
        metered.current_round = server_round
        t0 = time.perf_counter()
        nodes = sorted(metered.get_node_ids())
        content = RecordDict(
            {
                "model": ArrayRecord([model]),
                "config": ConfigRecord({"server-round": server_round}),
            }
        )
        msgs = [Message(content, nid, "train", group_id=str(server_round)) for nid in nodes]
        replies = list(metered.send_and_receive(msgs, timeout=timeout))
        good = [m for m in replies if not m.has_error()]
        partitions = [int(m.content["meta"]["partition-id"]) for m in good]  # type: ignore[arg-type]
        served = [int(m.content["meta"]["served"]) for m in good]  # type: ignore[arg-type]
        total: np.ndarray | None = None
        for m in good:
            update = m.content["update"].to_numpy_ndarrays()[0]  # type: ignore[union-attr]
            total = update.copy() if total is None else total + update
        if total is not None:
            model = (total / np.float32(len(good))).astype(np.float32)
        per_round.append(
            round_summary(
                metered,
                server_round,
                wall_s=time.perf_counter() - t0,
                partitions=partitions,
                aggregate=total,
                aggregate_is_mean=False,
                seed=seed,
                extra={"nodes": nodes, "client_messages_served": served},
            )
        )
    write_result(
        cfg,
        {
            "mode": "plain",
            "dim": dim,
            "num_nodes": num_nodes,
            "num_rounds": rounds,
            "wait_nodes_s": wait_nodes_s,
            "total_s": time.perf_counter() - t_start,
            "rounds": per_round,
            "exchanges": exchanges_as_dicts(metered),
            "peak_rss_bytes": peak_rss_bytes(),
            "server_pid": os.getpid(),
        },
    )


@client_app.train()
def client_train(msg: Message, context: Context) -> Message:
    """Reply with this partition's update for the round (and how many messages this
    node's persistent ``context.state`` has seen, to show that it persists)."""
    partition = int(context.node_config["partition-id"])
    server_round = int(msg.content["config"]["server-round"])  # type: ignore[arg-type]
    model = msg.content["model"].to_numpy_ndarrays()[0]  # type: ignore[union-attr]
    seed = int(context.run_config.get("seed", 0))
    state = context.state.config_records.get(STATE_KEY)
    served = (int(state["served"]) if state is not None else 0) + 1  # type: ignore[arg-type]
    context.state.config_records[STATE_KEY] = ConfigRecord({"served": served})
    update = synthetic_update(partition, server_round, model.size, seed)
    reply = RecordDict(
        {
            "update": ArrayRecord([update]),
            "meta": ConfigRecord({"partition-id": partition, "served": served, "pid": os.getpid()}),
        }
    )
    return Message(reply, reply_to=msg)
