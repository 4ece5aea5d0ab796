"""The ClientApp: one SuperNode is one client of the experiment (``partition-id``).

Its train function does exactly what ``secagg run`` does for that client in that round
(:meth:`protocols.fedavg.FedAvg._train_client`: same data, batch order and DP-SGD noise
seeds, :class:`dp.DPSGDClient` with its own ledger) and returns the trained weights;
:func:`~protocols.flower.mod.secagg_mod` turns them into the clipped, weighted update
and masks it, so the reply carries only the masked vector. Flower starts a fresh
process per message, so the client's DP ledger lives in a node-local directory
(node-config ``secagg-node-dir``; default under the system's temporary directory),
one per run, next to a cache of the built data split and model (only in a directory the
node config names); torch is imported only by messages that train.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from protocols.flower.example import NODE_DIR_KEY
from protocols.flower.mod import secagg_mod
from protocols.flower.records import flatten
from secagg_flower_app.task import experiment, fedavg

app = ClientApp()


def _node_dir(context: Context) -> tuple[Path, bool]:
    """This node's directory, and whether the operator chose it (node config)."""
    given = context.node_config.get(NODE_DIR_KEY)
    if given:
        return Path(str(given)), True
    return Path(tempfile.gettempdir(), "secagg-flower-app", f"node-{context.node_id}"), False


@app.train(mods=[secagg_mod])
def train(msg: Message, context: Context) -> Message:
    """Local DP-SGD on this node's partition, from the global model in ``msg``."""
    cfg = experiment(dict(context.run_config))
    client = int(context.node_config["partition-id"])
    partitions = int(context.node_config["num-partitions"])
    if partitions != cfg.clients.num_clients:
        raise ValueError(
            f"{partitions} SuperNodes, but the experiment has {cfg.clients.num_clients} clients"
        )
    server_round = int(msg.content.config_records["config"]["server-round"])  # type: ignore[arg-type]
    start = flatten(msg.content["arrays"].to_numpy_ndarrays())  # type: ignore[union-attr]
    node_dir, _ = _node_dir(context)
    fa = fedavg(cfg)
    fa.out_dir = node_dir / f"run-{context.run_id}"  # FedAvg's DPSGDClient keeps its ledger here
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*Secure RNG turned off.*")
            fa._train_client(client, server_round - 1, start)  # FedAvg counts rounds from 0
    finally:
        dp_client = fa._dp_clients.pop(client, None)
        if dp_client is not None:
            dp_client.close()
    new = [p.detach().numpy().copy() for p in fa.worker.parameters()]
    reply = RecordDict(
        {
            "arrays": ArrayRecord(new),
            "metrics": MetricRecord({"num-examples": len(fa.data.clients[client])}),
        }
    )
    return Message(reply, reply_to=msg)
