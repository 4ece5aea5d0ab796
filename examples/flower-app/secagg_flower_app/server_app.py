"""The ServerApp: pipelined SecAgg+ FedAvg (:class:`protocols.flower.workflow.SecAggWorkflow`).

Every round the workflow sends the global model to every node, gets back only masked
vectors, unmasks their sum and applies the weighted mean update. Before a round's
masked inputs are sent, the server's privacy ledger must accept the round's DP-SGD cost
(an upper bound over clients, as ``secagg run`` charges it); after each round the model
is evaluated on the held-out test set. Each round's row is printed, appended to
run-config ``progress-file``, and the whole run (rows, final model, secure-aggregation
parameters) written to ``result-file``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from protocols.flower.apps.common import write_result
from protocols.flower.example import OUT_DIR_KEY, PROGRESS_KEY, TABLE_HEADER, format_row
from protocols.flower.records import flatten
from protocols.flower.sync import ExchangeHook
from protocols.flower.workflow import RoundRow, SecAggWorkflow
from secagg.server import ServerOutcome
from secagg_flower_app.task import experiment, to_arrays

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Train ``experiment.rounds`` secure rounds; write the result file."""
    import torch

    from protocols.fedavg import build
    from protocols.params import flatten_model

    rc = dict(context.run_config)
    cfg = experiment(rc)
    torch.set_num_threads(1)
    out_dir = str(rc.get(OUT_DIR_KEY, "") or "")
    fa = build(cfg, out_dir=out_dir or None)  # test set, initial model, server ledger
    dp_sgd = cfg.dp.mechanism == "dp_sgd"
    cost = fa._dp_sgd_cost() if dp_sgd else None
    b, c = cfg.backend, cfg.clients
    wf = SecAggWorkflow(
        rounds=cfg.experiment.rounds,
        setting=b.setting,
        bits=b.bits,
        clip=b.clip,
        weighting=c.weighting,
        max_weight=float(c.max_examples or max(fa.data.sizes)),
        timeout=float(rc.get("exchange-timeout", 300.0)),
        min_nodes=c.num_clients,
        node_wait=float(rc.get("node-wait", 120.0)),
        server_lr=cfg.training.server_lr,
        dropout_fraction=b.design_dropout_fraction,
        registry_file=str(rc.get("registry-file", "")) or None,
        ledger=fa.ledger if dp_sgd else None,
        round_cost=(lambda _round: cost) if dp_sgd else None,
        hook=ExchangeHook.from_run_config(rc),
        overrides={} if b.graph == "auto" else {"graph": b.graph},
    )
    progress = str(rc.get(PROGRESS_KEY, "") or "")
    rows: list[dict[str, Any]] = []
    history: list[list[float]] = []
    keep_history = bool(rc.get("keep-history", False))
    print(TABLE_HEADER, flush=True)

    def record(row: dict[str, Any]) -> None:
        rows.append(row)
        print(format_row(row), flush=True)
        if progress:
            with Path(progress).open("a") as f:
                f.write(json.dumps(row) + "\n")

    def on_round(row: RoundRow, model: list[np.ndarray], outcome: ServerOutcome | None) -> None:
        t0 = time.perf_counter()
        vector = flatten(model)
        acc, loss = fa.evaluate(vector)
        if keep_history:
            history.append(vector.tolist())
        eps = fa.ledger.epsilon(accountant=cfg.dp.accountant) if dp_sgd else None
        record(
            {
                "round": row.round - 1,  # as secagg run counts (the workflow from 1)
                "status": row.status,
                "survivors": len(row.survivors),
                "survivor_nodes": [wf.nodes[i] for i in row.survivors],
                "accuracy": acc,
                "loss": loss,
                "epsilon": eps,
                "seconds": row.seconds,
                "evaluate_s": time.perf_counter() - t0,
                "exchanges": row.exchanges,
                "bytes_up": row.bytes_up_per_client,
                "bytes_down": row.bytes_down_per_client,
                "released_shares": row.released_shares,
                "error": row.error,
            }
        )

    t0 = time.perf_counter()
    initial = to_arrays(fa, flatten_model(fa.model))
    if keep_history:
        history.append(flatten(initial).tolist())
    report = wf.run(grid, initial, on_round=on_round)
    total = time.perf_counter() - t0
    final = flatten(report.final)
    acc, loss = fa.evaluate(final)
    for row in report.rows:  # a round the budget refused never reached on_round
        if row.status == "budget_exhausted":
            record(
                {
                    "round": row.round - 1,
                    "status": row.status,
                    "survivors": 0,
                    "survivor_nodes": [],
                    "accuracy": acc,
                    "loss": loss,
                    "epsilon": fa.ledger.epsilon(accountant=cfg.dp.accountant),
                    "seconds": 0.0,
                    "evaluate_s": 0.0,
                    "exchanges": 0,
                    "bytes_up": 0.0,
                    "bytes_down": 0.0,
                    "released_shares": False,
                    "error": row.error,
                }
            )
    if fa.ledger is not None:
        fa.ledger.close()
    write_result(
        rc,
        {
            "config": cfg.to_dict(),
            "setting": report.setting,
            "secagg": report.config,
            "nodes": {str(i): nid for i, nid in report.nodes.items()},
            "rounds": rows,
            "exchanges": report.exchanges,
            "final_accuracy": acc,
            "final_loss": loss,
            "final_epsilon": rows[-1]["epsilon"] if rows else None,
            "final_model": final.tolist(),
            "history": history,  # with keep-history: the initial model, then each round's
            "bootstrap_s": report.bootstrap_seconds,
            "total_s": total,
            "server_peak_rss_mib": report.peak_rss_mib,
        },
    )
