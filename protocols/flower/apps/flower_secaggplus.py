"""Baseline 2: the same rounds through Flower's own SecAgg+ (the peer to beat).

Server: Flower's legacy stack as Flower 1.42 ships it -- ``LegacyContext`` + a
``FedAvg`` strategy + ``DefaultWorkflow(fit_workflow=SecAggPlusWorkflow(...))``, four
exchanges per round (setup, share keys, collect masked vectors, unmask). Client: a
``NumPyClient`` behind ``secaggplus_mod``, whose ``fit`` returns the synthetic update of
its ``partition-id`` with weight (``num_examples``) 1.

Timing: a round runs from the strategy's ``configure_fit`` (first thing the SecAgg+
setup stage does) to the end of ``aggregate_fit`` (after unmasking), measured by the
:class:`_TimedFedAvg` subclass; exchanges and bytes are counted by the
:class:`~protocols.flower.apps.common.MeteredGrid` the workflow is given. The aggregate
checked is what SecAgg+ itself produced (the dequantised mean it hands to
``aggregate_fit``), against the exact mean of the partitions whose results it used.

``max-weight`` defaults to 1.0 here, not Flower's 1000: Flower scales each update by
``weight / max_weight`` before quantising with step ``2 * clipping / quantization``, so
with weight 1 and ``max_weight`` 1000 the mean would carry errors near 4e-3.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np
from flwr.app import Context
from flwr.client import Client, ClientApp, NumPyClient
from flwr.client.mod import secaggplus_mod
from flwr.common import (
    FitRes,
    NDArrays,
    Parameters,
    Scalar,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)
from flwr.server import LegacyContext, ServerConfig
from flwr.server.client_manager import ClientManager
from flwr.server.client_proxy import ClientProxy
from flwr.server.strategy import FedAvg
from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow
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

server_app = ServerApp()


def _share_param(value: Any) -> int | float:
    """``num-shares`` / ``reconstruction-threshold``: an int is a count, a float a
    fraction (Flower's convention)."""
    return value if isinstance(value, int) else float(value)


class _TimedFedAvg(FedAvg):
    """FedAvg that records each round's wall time and checks SecAgg+'s aggregate."""

    def __init__(self, *, metered: MeteredGrid, seed: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.metered = metered
        self.seed = seed
        self.rounds: list[dict[str, Any]] = []
        self._t0: dict[int, float] = {}

    def configure_fit(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> Any:
        """Start the round's clock and attribute exchanges to it."""
        self.metered.current_round = server_round
        self._t0[server_round] = time.perf_counter()
        return super().configure_fit(server_round, parameters, client_manager)

    def aggregate_fit(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, FitRes]],
        failures: list[tuple[ClientProxy, FitRes] | BaseException],
    ) -> tuple[Parameters | None, dict[str, Scalar]]:
        """FedAvg's aggregation, then the round's figures."""
        out = super().aggregate_fit(server_round, results, failures)
        wall = time.perf_counter() - self._t0[server_round]
        partitions = [int(res.metrics["partition-id"]) for _, res in results]
        # Every result's parameters were replaced by SecAgg+'s unmasked mean.
        mean = parameters_to_ndarrays(results[0][1].parameters)[0] if results else None
        self.rounds.append(
            round_summary(
                self.metered,
                server_round,
                wall_s=wall,
                partitions=partitions,
                aggregate=mean,
                aggregate_is_mean=True,
                seed=self.seed,
                extra={"failures": len(failures)},
            )
        )
        return out


@server_app.main()
def server_main(grid: Grid, context: Context) -> None:
    """``num-rounds`` SecAgg+ rounds; writes the result JSON to ``result-file``."""
    cfg = context.run_config
    dim, rounds = int(cfg["dim"]), int(cfg["num-rounds"])
    num_nodes, seed = int(cfg["num-nodes"]), int(cfg["seed"])
    timeout = float(cfg["exchange-timeout"])
    metered = MeteredGrid(grid, ExchangeHook.from_run_config(cfg))
    t_start = time.perf_counter()
    wait_for_nodes(metered, num_nodes, timeout, error=TimeoutError)
    wait_nodes_s = time.perf_counter() - t_start
    strategy = _TimedFedAvg(
        metered=metered,
        seed=seed,
        fraction_fit=1.0,
        fraction_evaluate=0.0,
        min_fit_clients=num_nodes,
        min_evaluate_clients=0,
        min_available_clients=num_nodes,
        initial_parameters=ndarrays_to_parameters([np.zeros(dim, dtype=np.float32)]),
        on_fit_config_fn=lambda server_round: {"server-round": server_round},
    )
    legacy = LegacyContext(
        context=context, config=ServerConfig(num_rounds=rounds), strategy=strategy
    )
    workflow = DefaultWorkflow(
        fit_workflow=SecAggPlusWorkflow(
            num_shares=_share_param(cfg["num-shares"]),
            reconstruction_threshold=_share_param(cfg["reconstruction-threshold"]),
            max_weight=float(cfg["max-weight"]),
            clipping_range=float(cfg["clipping-range"]),
            quantization_range=int(cfg["quantization-range"]),
            timeout=timeout,
        )
    )
    workflow(metered, legacy)
    write_result(
        cfg,
        {
            "mode": "flower_secaggplus",
            "dim": dim,
            "num_nodes": num_nodes,
            "num_rounds": rounds,
            "wait_nodes_s": wait_nodes_s,
            "total_s": time.perf_counter() - t_start,
            "rounds": strategy.rounds,
            "exchanges": exchanges_as_dicts(metered),
            "peak_rss_bytes": peak_rss_bytes(),
            "server_pid": os.getpid(),
        },
    )


class _SyntheticClient(NumPyClient):
    """Returns this partition's synthetic update for the round, weight 1."""

    def __init__(self, partition: int, seed: int) -> None:
        self.partition = partition
        self.seed = seed

    def fit(
        self, parameters: NDArrays, config: dict[str, Scalar]
    ) -> tuple[NDArrays, int, dict[str, Scalar]]:
        """The update; ``partition-id`` goes back in the (unmasked) metrics."""
        server_round = int(config["server-round"])
        dim = int(parameters[0].size)
        update = synthetic_update(self.partition, server_round, dim, self.seed)
        return [update], 1, {"partition-id": self.partition}


def client_fn(context: Context) -> Client:
    """A fresh NumPyClient per message (Flower calls this in each ClientApp process)."""
    partition = int(context.node_config["partition-id"])
    seed = int(context.run_config.get("seed", 0))
    return _SyntheticClient(partition, seed).to_client()


client_app = ClientApp(client_fn=client_fn, mods=[secaggplus_mod])
