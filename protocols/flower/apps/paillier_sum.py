"""Paillier on Flower, on the benchmark's synthetic updates.

The ServerApp runs :class:`~protocols.flower.paillier.PaillierWorkflow`; the ClientApp's
train function returns model + its synthetic update (float64, so the mod's difference is
exact) behind :func:`~protocols.flower.paillier.paillier_mod`. Updates are keyed by the
Flower node id, which the server knows for every contributor, so it checks each round's
decrypted sum against the exact sum of the contributors' updates.

Run config (``projects/paillier_sum/pyproject.toml``): ``dim``, ``num-rounds``,
``num-nodes`` (client nodes plus the key holder's), ``exchange-timeout``, ``seed``,
``params-file`` and ``registry-file`` (public provisioning files, see
:func:`~protocols.flower.paillier.provision_paillier`), plus the harness keys
``result-file``, ``sync-dir``, ``sync-timeout``. Fault injection for tests:
``bad-partition`` (the client node with that ``partition-id`` corrupts its signed
contribution; -1: none) and ``tamper-round`` (the ServerApp, as a cheating aggregator,
drops one contribution from that round's decryption request, so the key holder must
refuse; 0: none).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
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
from protocols.flower.paillier import (
    PAILLIER_KEY,
    STEP_CONTRIBUTE,
    STEP_DECRYPT,
    PaillierWorkflow,
    paillier_mod,
)
from protocols.flower.sync import ExchangeHook
from protocols.flower.workflow import RoundRow
from secagg.paillier.codec import DecryptionRequest, decode_request, encode_request
from secagg.paillier.roles import AggregateOutcome

server_app = ServerApp()


def _key(node_id: int) -> int:
    return int(node_id) % (1 << 31)


class TamperingGrid(MeteredGrid):
    """Test-only: a cheating aggregator that drops the last contribution from the
    decryption request of round ``tamper_round`` (the key holder must refuse)."""

    def __init__(self, inner: Grid, tamper_round: int) -> None:
        super().__init__(inner, None)
        self.tamper_round = tamper_round

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        """Tamper with the chosen decryption request, then delegate."""
        out = []
        for m in messages:
            rec = m.content.config_records.get(PAILLIER_KEY)
            request = rec.get("request") if rec is not None else None
            if (
                rec is not None
                and rec.get("step") == STEP_DECRYPT
                and rec.get("round") == self.tamper_round
                and isinstance(request, bytes)
            ):
                req = decode_request(request)
                cut = DecryptionRequest(
                    req.session_id, req.round_index, req.product, req.contributions[:-1]
                )
                rec["request"] = encode_request(cut)
            out.append(m)
        return super().send_and_receive(out, timeout=timeout)


@server_app.main()
def server_main(grid: Grid, context: Context) -> None:
    """Paillier FedAvg rounds; writes the result JSON to ``result-file``."""
    cfg = context.run_config
    dim, rounds, seed = int(cfg["dim"]), int(cfg["num-rounds"]), int(cfg["seed"])
    tamper = int(cfg.get("tamper-round", 0) or 0)
    metered = TamperingGrid(grid, tamper)
    wf = PaillierWorkflow(
        rounds=rounds,
        params_file=str(cfg["params-file"]),
        registry_file=str(cfg["registry-file"]),
        clip=1.0,
        timeout=float(cfg["exchange-timeout"]),
        min_nodes=int(cfg["num-nodes"]),
        hook=ExchangeHook.from_run_config(cfg),
    )
    quantum = float(wf.params.packing.describe()["quantum"])
    rows: list[dict[str, Any]] = []
    node_of = wf.nodes  # filled by run() after the hello

    def on_round(row: RoundRow, model: list[np.ndarray], out: AggregateOutcome | None) -> None:
        err = None
        if out is not None:
            want = np.zeros(dim)
            for c in out.contributors:
                want += synthetic_update(_key(node_of[c]), row.round, dim, seed)
            err = float(np.max(np.abs(out.sum[:-1] - want)))
            row.extra["weight_ok"] = abs(float(out.sum[-1]) - len(out.contributors)) < 1e-9
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
                "error": row.error,
                **{k: v for k, v in row.extra.items() if k != "rejected"},
                "rejected": {str(node_of[c]): why for c, why in row.extra["rejected"].items()},
            }
        )

    t0 = time.perf_counter()
    report = wf.run(metered, [np.zeros(dim, dtype=np.float32)], on_round=on_round)
    write_result(
        cfg,
        {
            "mode": "paillier",
            "dim": dim,
            "num_nodes": len(report.nodes),
            "num_rounds": rounds,
            "quantum": quantum,
            "config": report.config,
            "key_holder_node": report.key_holder_node,
            "bootstrap_s": report.bootstrap_seconds,
            "total_s": time.perf_counter() - t0,
            "rounds": rows,
            "exchanges": report.exchanges,
            "metered_exchanges": exchanges_as_dicts(metered),
            "peak_rss_bytes": peak_rss_bytes(),
            "server_pid": os.getpid(),
        },
    )


def corrupt_mod(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """Test-only: the node whose partition-id is run-config ``bad-partition`` flips the
    last byte (inside the signature) of its contribution."""
    out = call_next(msg, context)
    rec = msg.content.config_records.get(PAILLIER_KEY)
    bad = context.run_config.get("bad-partition", -1)
    if (
        rec is None
        or rec.get("step") != STEP_CONTRIBUTE
        or out.has_error()
        or context.node_config.get("partition-id") != bad
    ):
        return out
    payload = out.content.config_records[PAILLIER_KEY].get("contribution")
    if isinstance(payload, bytes) and payload:
        bent = payload[:-1] + bytes([payload[-1] ^ 1])
        return Message(
            RecordDict({PAILLIER_KEY: ConfigRecord({"contribution": bent})}), reply_to=msg
        )
    return out


client_app = ClientApp()


@client_app.train(mods=[corrupt_mod, paillier_mod])
def client_train(msg: Message, context: Context) -> Message:
    """Return model + this node's synthetic update for the round (float64: exact)."""
    server_round = int(msg.content["config"]["server-round"])  # type: ignore[arg-type]
    model = msg.content["arrays"].to_numpy_ndarrays()[0]  # type: ignore[union-attr]
    seed = int(context.run_config.get("seed", 0))
    update = synthetic_update(_key(context.node_id), server_round, model.size, seed)
    new = model.astype(np.float64) + update.astype(np.float64)
    reply = RecordDict({"arrays": ArrayRecord([new]), "metrics": MetricRecord({"num-examples": 1})})
    return Message(reply, reply_to=msg)
