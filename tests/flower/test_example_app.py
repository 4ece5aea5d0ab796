"""The example Flower app (``examples/flower-app``) trains what ``secagg run`` trains.

``secagg flower-demo`` (the documented command) runs the app for 2 rounds on 5
SuperNodes (active setting, DP-SGD on every client); the same config then runs in
process (``run_experiment``: masking backend, no dropouts, same seeds). Local training
is identical (same data, batch order and DP-SGD noise seeds), so the per-round test
accuracy, loss and epsilons agree exactly, and the models differ only by:

* stochastic rounding of the masking encoder: each client rounds each element up or
  down at random (the Flower client from the OS, ``secagg run`` from its seed), so a
  round's sum differs by less than one quantum q per client, the mean update by less
  than ``n q (1 + |update|) / W`` (W: the survivors' total weight);
* the global model's precision: Flower carries it as float32 (half an ulp per round),
  ``secagg run`` keeps a float64 vector and rounds only when loading it for training;
* the next round's training from a start point that differs by the above (end to end).

So each Flower round is checked against ``FedAvg.run_round`` from the *same* start
model with the tight bound of the first two points (measured: at most 1.03 q beyond half
an ulp, bound about 2 q), and the end-to-end difference against 1e-6: measured 6e-8
(16-18 q) against n q R = 10 q (q = 2^-28, n = 5, R = 2), because float32 rounding and
its propagation through the next round's training dominate, not the quantisation; a
wrong round index in the clients gives differences of order 0.1.
About 2 minutes on 2 cores (each Flower exchange starts one process per node).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("flwr")

from protocols import cli
from protocols.experiment import ExperimentConfig

pytestmark = [pytest.mark.flower, pytest.mark.timeout(900)]

NODES, ROUNDS = 5, 2
END_TO_END_TOL = 1e-6


@pytest.fixture(scope="module")
def flower_result(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("flower-demo") / "report"
    code = cli.main(
        [
            "flower-demo",
            "--nodes",
            str(NODES),
            "--rounds",
            str(ROUNDS),
            "--out",
            str(out),
            "--keep-history",
        ]
    )
    assert code == 0
    result: dict = json.loads((out / "results.json").read_text())
    result["out"] = str(out)
    return result


@pytest.fixture(scope="module")
def torch_one_thread() -> Iterator[Any]:
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # as the ClientApp processes: the same float reductions
    yield torch
    torch.set_num_threads(before)


def test_report(flower_result: dict) -> None:
    out = Path(flower_result["out"])
    assert flower_result["setting"] == "active" and flower_result["num_nodes"] == NODES
    assert [r["round"] for r in flower_result["rounds"]] == list(range(ROUNDS))
    for r in flower_result["rounds"]:
        assert r["status"] == "ok" and r["survivors"] == NODES
        assert r["exchanges"] == 3  # active: TRAIN, CHECK, UNMASK
    assert (out / "ledger.jsonl").exists() and (out / "config.toml").exists()
    ledgers = sorted(out.glob("nodes/node-*/run-*/client_ledgers/client-*.jsonl"))
    assert len(ledgers) == NODES
    assert len(flower_result["history"]) == ROUNDS + 1


def test_same_result_as_secagg_run(flower_result: dict, torch_one_thread: Any) -> None:
    from protocols.fedavg import run_experiment

    cfg = ExperimentConfig.from_dict(flower_result["config"])
    assert cfg.clients.num_clients == NODES and cfg.experiment.rounds == ROUNDS
    assert cfg.clients.dropout_fraction == 0.0 and cfg.backend.name == "masking"
    ref = run_experiment(cfg, keep_history=True)
    for got, want in zip(flower_result["rounds"], ref.records, strict=True):
        assert got["accuracy"] == want.accuracy
        assert got["loss"] == pytest.approx(want.loss, rel=1e-6)
        assert got["epsilon"] == pytest.approx(want.epsilon_bound, rel=1e-12)  # server ledger
        assert got["client_epsilon"] == pytest.approx(want.epsilon, rel=1e-12)  # max client
    final = np.asarray(flower_result["final_model"])
    assert np.array_equal(np.asarray(flower_result["history"][0]), ref.history[0])
    diff = float(np.max(np.abs(final - ref.history[-1])))
    assert diff <= END_TO_END_TOL, diff


def test_each_round_within_quantisation(flower_result: dict, torch_one_thread: Any) -> None:
    from protocols.fedavg import build
    from protocols.params import load_flat, model_hash

    cfg = ExperimentConfig.from_dict(flower_result["config"])
    fa = build(cfg)
    n = cfg.clients.num_clients
    q = fa.layer.backend.quantum(n, fa.layer.element_clip())
    cap = float(cfg.clients.max_examples or max(fa.data.sizes))
    total_weight = sum(min(s, cap) for s in fa.data.sizes) / cap
    lr = cfg.training.server_lr
    history = [np.asarray(h) for h in flower_result["history"]]
    for rnd in range(ROUNDS):
        start = history[rnd]
        load_flat(fa.model, start)
        rec, mine = fa.run_round(rnd, start, model_hash(fa.model))
        assert rec.status == "ok" and len(rec.survivors) == n
        theirs = history[rnd + 1]
        update = np.abs(mine - start) / lr
        half_ulp = np.spacing(np.abs(theirs).astype(np.float32)).astype(np.float64) / 2
        bound = lr * n * q * (1 + update) / total_weight * (1 + 1e-6) + half_ulp
        excess = np.abs(theirs - mine) - bound
        assert float(excess.max()) <= 0.0, (rnd, float(excess.max()))
