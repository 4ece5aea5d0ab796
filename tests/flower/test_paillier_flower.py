"""Paillier on Flower: the client mod, the key holder node and the server workflow.

The in-process tests drive :class:`PaillierWorkflow` against :func:`paillier_mod` through
a Grid that calls the mod directly (no processes; seconds): exact sums, a bad
contribution excluded, a key holder refusal aborting one round, the key holder's
once-per-round record in ``context.state``, impersonation of the key holder, plain
messages untouched. The ``flower`` tests run the real thing: a SuperLink, 4 client
SuperNodes and 1 key-holder SuperNode on loopback, 2 rounds with exact sums (about 50 s
on 2 cores); the ``slow`` one repeats it with a corrupted contribution and a cheating
aggregator.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("flwr")
pytest.importorskip("gmpy2")

from flwr.app import (
    ArrayRecord,
    ConfigRecord,
    Context,
    Message,
    MetricRecord,
    RecordDict,
)

from protocols.flower.apps.common import synthetic_update
from protocols.flower.paillier import (
    HOLDER_STATE_KEY,
    PAILLIER_KEY,
    STEP_CONTRIBUTE,
    STEP_DECRYPT,
    PaillierProvisioning,
    PaillierWorkflow,
    PaillierWorkflowError,
    load_key_holder,
    load_params,
    paillier_mod,
    provision_paillier,
)
from protocols.flower.workflow import RoundRow
from secagg.paillier.codec import DecryptionRequest, decode_request, encode_request
from secagg.paillier.roles import AggregateOutcome
from tests.flower.inprocess import App, InProcessGrid, server_identity  # noqa: F401

N_CLIENTS = 4
DIM = 40
SEED = 3
SERVER_NODE = 1


def _train(msg: Message, context: Context) -> Message:
    """Model + the node's synthetic update (as the paillier_sum app does)."""
    r = int(msg.content["config"]["server-round"])  # type: ignore[arg-type]
    model = msg.content["arrays"].to_numpy_ndarrays()[0]  # type: ignore[union-attr]
    update = synthetic_update(context.node_id, r, model.size, SEED).astype(np.float64)
    out = RecordDict(
        {
            "arrays": ArrayRecord([model.astype(np.float64) + update]),
            "metrics": MetricRecord({"num-examples": 1}),
        }
    )
    return Message(out, reply_to=msg)


def _app(msg: Message, context: Context) -> Message:
    return paillier_mod(msg, context, _train)


def _corrupting_app(msg: Message, context: Context) -> Message:
    out = _app(msg, context)
    rec = out.content.config_records.get(PAILLIER_KEY) if not out.has_error() else None
    payload = rec.get("contribution") if rec is not None else None
    if isinstance(payload, bytes):
        bent = payload[:-1] + bytes([payload[-1] ^ 1])
        return Message(
            RecordDict({PAILLIER_KEY: ConfigRecord({"contribution": bent})}), reply_to=msg
        )
    return out


@pytest.fixture(scope="module")
def prov(tmp_path_factory: pytest.TempPathFactory) -> PaillierProvisioning:
    return provision_paillier(
        tmp_path_factory.mktemp("paillier"),
        num_clients=N_CLIENTS,
        key_bits=512,
        insecure_test_key=True,
    )


def _grid(
    prov: PaillierProvisioning, apps: dict[int, App] | None = None, holder: bool = True
) -> InProcessGrid:
    """Client i is node 100 + i; the key holder is node 900."""
    nodes: dict[int, tuple[Context, App]] = {}
    for i in range(N_CLIENTS):
        nid = 100 + i
        cfg: dict[str, Any] = {"partition-id": i, **prov.client_node_config(i)}
        ctx = Context(7, nid, cfg, RecordDict(), {})
        nodes[nid] = (ctx, (apps or {}).get(i, _app))
    if holder:
        ctx = Context(7, 900, dict(prov.key_holder_node_config()), RecordDict(), {})
        nodes[900] = (ctx, _app)
    return InProcessGrid(nodes)


def _workflow(prov: PaillierProvisioning, rounds: int = 2) -> PaillierWorkflow:
    return PaillierWorkflow(
        rounds=rounds,
        params_file=str(prov.params_file),
        registry_file=str(prov.registry_file),
        min_nodes=N_CLIENTS,
        node_wait=1.0,
    )


def _want(wf: PaillierWorkflow, contributors: Iterable[int], r: int) -> np.ndarray:
    total = np.zeros(DIM)
    for c in contributors:
        total += synthetic_update(wf.nodes[c], r, DIM, SEED)
    return total


def _run(
    wf: PaillierWorkflow, grid: InProcessGrid
) -> tuple[Any, list[tuple[RoundRow, AggregateOutcome | None]]]:
    seen: list[tuple[RoundRow, AggregateOutcome | None]] = []
    report = wf.run(
        grid, [np.zeros(DIM, dtype=np.float32)], on_round=lambda r, m, o: seen.append((r, o))
    )
    return report, seen


def test_provisioning_files_and_defaults(prov: PaillierProvisioning) -> None:
    params = load_params(prov.params_file)
    assert params.min_contributors == 2 and params.num_clients == N_CLIENTS
    assert params.packing.key_bits == 512 and params.packing.max_clients == N_CLIENTS
    assert prov.key_file.stat().st_mode & 0o077 == 0  # secret
    keypair, _ = load_key_holder(prov.key_file, params)
    assert keypair.public == params.public_key
    secret = json.loads(prov.key_file.read_text())
    assert secret["p"] not in prov.params_file.read_text()  # public file, no factors
    assert set(prov.client_node_config(0)) == {
        "secagg-identity",
        "secagg-registry",
        "secagg-paillier-params",
    }
    assert "secagg-paillier-key" in prov.key_holder_node_config()


def test_two_rounds_exact_sums_in_process(prov: PaillierProvisioning) -> None:
    wf, grid = _workflow(prov), _grid(prov)
    report, seen = _run(wf, grid)
    assert report.key_holder_node == 900 and sorted(report.nodes) == list(range(N_CLIENTS))
    quantum = float(load_params(prov.params_file).packing.describe()["quantum"])
    for r, (row, out) in enumerate(seen, start=1):
        assert row.status == "ok" and row.exchanges == 2 and out is not None
        assert list(out.contributors) == list(range(N_CLIENTS))
        assert np.max(np.abs(out.sum[:-1] - _want(wf, out.contributors, r))) <= quantum
        assert out.sum[-1] == pytest.approx(N_CLIENTS)
        assert row.extra["rejected"] == {}
    assert [e["kind"] for e in report.exchanges] == ["hello"] + ["contribute", "decrypt"] * 2
    # the decrypt exchange goes to the key holder only; the model to clients only
    decrypts = [m for m in grid.sent if m.content.config_records[PAILLIER_KEY]["step"] == "decrypt"]
    assert {m.metadata.dst_node_id for m in decrypts} == {900}
    contributes = [m for m in grid.sent if "arrays" in m.content.array_records]
    assert 900 not in {m.metadata.dst_node_id for m in contributes}
    # the global model moved by the mean update of both rounds
    want = (_want(wf, range(N_CLIENTS), 1) + _want(wf, range(N_CLIENTS), 2)) / N_CLIENTS
    assert np.max(np.abs(report.final[0] - want)) <= 2 * quantum
    holder_state = grid.nodes[900][0].state.config_records[HOLDER_STATE_KEY]
    assert holder_state["last-round"] == 2


def test_bad_contribution_excludes_that_client_only(prov: PaillierProvisioning) -> None:
    wf, grid = _workflow(prov), _grid(prov, apps={1: _corrupting_app})
    _, seen = _run(wf, grid)
    for r, (row, out) in enumerate(seen, start=1):
        assert row.status == "ok" and out is not None
        assert list(out.contributors) == [0, 2, 3] and row.dropped == [1]
        assert "ContributionSignatureError" in row.extra["rejected"][1]
        assert np.max(np.abs(out.sum[:-1] - _want(wf, [0, 2, 3], r))) < 1e-3


def test_key_holder_refusal_aborts_the_round_cleanly(prov: PaillierProvisioning) -> None:
    wf, grid = _workflow(prov, rounds=3), _grid(prov)

    def drop_one(m: Message) -> None:  # a cheating aggregator in round 2
        rec = m.content.config_records[PAILLIER_KEY]
        if rec["step"] == STEP_DECRYPT and rec["round"] == 2:
            req = decode_request(rec["request"])  # type: ignore[arg-type]
            rec["request"] = encode_request(
                DecryptionRequest(req.session_id, 2, req.product, req.contributions[:-1])
            )

    grid.tamper = drop_one
    report, seen = _run(wf, grid)
    assert [row.status for row, _ in seen] == ["ok", "aborted", "ok"]
    aborted = seen[1][0]
    assert "ProductMismatchError" in (aborted.error or "") and seen[1][1] is None
    assert aborted.survivors == [] and aborted.exchanges == 2
    assert seen[2][1] is not None
    assert np.max(np.abs(seen[2][1].sum[:-1] - _want(wf, range(N_CLIENTS), 3))) < 1e-3
    # the aborted round left the model alone: rounds 1 and 3 only
    want = (_want(wf, range(N_CLIENTS), 1) + _want(wf, range(N_CLIENTS), 3)) / N_CLIENTS
    assert np.max(np.abs(report.final[0] - want)) < 1e-3


def test_key_holder_decrypts_each_round_once(prov: PaillierProvisioning) -> None:
    """The record lives in the node's context.state, so a replayed request for a round
    already decrypted is refused even by a fresh mod invocation (a new process)."""
    wf, grid = _workflow(prov, rounds=1), _grid(prov)
    requests: list[Message] = []
    grid.tamper = lambda m: requests.append(m) if m.metadata.dst_node_id == 900 else None
    _run(wf, grid)
    replay = requests[-1]
    ctx = grid.nodes[900][0]
    again = _app(replay, ctx)
    assert again.has_error() and "RoundAlreadyDecryptedError" in again.error.reason
    # a client refuses to contribute twice to one round
    contribute = next(
        m
        for m in grid.sent
        if m.metadata.dst_node_id == 100
        and m.content.config_records[PAILLIER_KEY]["step"] == STEP_CONTRIBUTE
    )
    twice = _app(contribute, grid.nodes[100][0])
    assert twice.has_error() and "already answered" in twice.error.reason


def test_no_key_holder_or_impersonated_key_holder(prov: PaillierProvisioning) -> None:
    with pytest.raises(PaillierWorkflowError, match="key holder"):
        _run(_workflow(prov), _grid(prov, holder=False))

    def impostor(msg: Message, context: Context) -> Message:
        out = _app(msg, context)
        rec = out.content.config_records.get(PAILLIER_KEY) if not out.has_error() else None
        if rec is not None and "index" in rec:
            rec["key-holder"] = True
            rec["signature"] = bytes(64)
        return out

    with pytest.raises(PaillierWorkflowError, match="key holder"):
        _run(_workflow(prov), _grid(prov, apps={0: impostor}, holder=False))


def test_plain_messages_pass_through(prov: PaillierProvisioning) -> None:
    msg = Message(RecordDict({"config": ConfigRecord({"x": 1})}), 100, "train")
    ctx = Context(7, 100, dict(prov.client_node_config(0)), RecordDict(), {})
    seen: list[Message] = []

    def inner(m: Message, c: Context) -> Message:
        seen.append(m)
        return Message(RecordDict({"config": ConfigRecord({"y": 2})}), reply_to=m)

    out = paillier_mod(msg, ctx, inner)
    assert seen == [msg] and out.content["config"]["y"] == 2
    assert len(ctx.state.config_records) == 0


def test_workflow_refuses_a_clip_beyond_the_provisioned_one(
    prov: PaillierProvisioning,
) -> None:
    with pytest.raises(PaillierWorkflowError, match="clip"):
        PaillierWorkflow(
            rounds=1,
            params_file=str(prov.params_file),
            registry_file=str(prov.registry_file),
            clip=4.0,
        )


# -- the real deployment -------------------------------------------------------------------


def _deployment_setup(tmp_path: Path) -> tuple[PaillierProvisioning, dict[str, Any]]:
    prov = provision_paillier(
        tmp_path / "prov", num_clients=N_CLIENTS, key_bits=1024, insecure_test_key=True
    )
    run_config = {
        "dim": 200,
        "num-rounds": 2,
        "num-nodes": N_CLIENTS + 1,
        "exchange-timeout": 60.0,
        "params-file": str(prov.params_file),
        "registry-file": str(prov.registry_file),
    }
    return prov, run_config


def _node_config(prov: PaillierProvisioning) -> Callable[[int], dict[str, str]]:
    """SuperNodes 0..3 are clients, SuperNode 4 is the key holder."""

    def config(i: int) -> dict[str, str]:
        return prov.client_node_config(i) if i < N_CLIENTS else prov.key_holder_node_config()

    return config


@pytest.mark.flower
@pytest.mark.timeout(300)
def test_paillier_on_a_flower_deployment(tmp_path: Path) -> None:
    """4 client SuperNodes + 1 key-holder SuperNode, 2 rounds: exact sums."""
    from protocols.flower.apps import app_dir
    from protocols.flower.deploy import LocalDeployment, marked_pids

    t_start = time.perf_counter()
    prov, run_config = _deployment_setup(tmp_path)
    with LocalDeployment(N_CLIENTS + 1, node_config=_node_config(prov)) as dep:
        ids = dep.node_ids()
        t_run = time.perf_counter()
        res = dep.run(app_dir("paillier_sum"), run_config, timeout=180)
        run_s = time.perf_counter() - t_run
        token = dep.token
    assert marked_pids(token) == []
    clients = sorted(ids[i] for i in range(N_CLIENTS))
    assert res["key_holder_node"] == ids[N_CLIENTS]
    for r in res["rounds"]:
        assert r["status"] == "ok" and r["exchanges"] == 2
        assert sorted(r["survivor_nodes"]) == clients
        assert r["sum_max_abs_error"] <= res["quantum"] and r["weight_ok"]
    kinds = [e["kind"] for e in res["exchanges"]]
    assert kinds == ["hello", "contribute", "decrypt", "contribute", "decrypt"]
    per = {f"{e['kind']}/{e['round']}": round(e["seconds"], 2) for e in res["exchanges"]}
    print(
        f"\npaillier on flower: test {time.perf_counter() - t_start:.1f} s, flwr run "
        f"{run_s:.1f} s (ServerApp {res['total_s']:.1f} s, hello {res['bootstrap_s']:.1f} s)"
        f"\nper exchange (s): {per}"
    )


@pytest.mark.flower
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_paillier_faults_on_a_flower_deployment(tmp_path: Path) -> None:
    """Client 1 corrupts its contribution in both rounds, the aggregator cheats in round
    1: round 1 is refused by the key holder, round 2 sums the 3 other clients."""
    from protocols.flower.apps import app_dir
    from protocols.flower.deploy import LocalDeployment

    prov, run_config = _deployment_setup(tmp_path)
    with LocalDeployment(N_CLIENTS + 1, node_config=_node_config(prov)) as dep:
        ids = dep.node_ids()
        res = dep.run(
            app_dir("paillier_sum"),
            run_config | {"bad-partition": 1, "tamper-round": 1},
            timeout=180,
        )
    clients = {ids[i] for i in range(N_CLIENTS)}
    r1, r2 = res["rounds"]
    assert r1["status"] == "aborted" and "ProductMismatchError" in r1["error"]
    assert r2["status"] == "ok" and set(r2["survivor_nodes"]) == clients - {ids[1]}
    assert "ContributionSignatureError" in r2["rejected"][str(ids[1])]
    assert r2["sum_max_abs_error"] <= res["quantum"] and r2["weight_ok"]
