"""SecAggWorkflow and secagg_mod end to end in this process (no Flower processes): every
node's ClientApp runs through an in-process Grid with its own persistent Context, as a
SuperNode would keep it between the ClientApp processes Flower starts per message."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict

from protocols.flower.apps.common import synthetic_update
from protocols.flower.mod import ERROR_CODE, secagg_mod
from protocols.flower.records import (
    STATE_KEY,
    model_hash,
    prepare_input,
    provision_identities,
)
from protocols.flower.workflow import RoundRow, SecAggWorkflow, WorkflowError
from secagg.server import ServerOutcome
from tests.flower.inprocess import App, InProcessGrid, server_identity  # noqa: F401

D, N = 40, 6


def _train(msg: Message, context: Context) -> Message:
    r = int(str(msg.content["config"]["server-round"]))
    model = msg.content["arrays"].to_numpy_ndarrays()[0]  # type: ignore[union-attr]
    update = synthetic_update(context.node_id, r, model.size).astype(np.float64)
    out = RecordDict(
        {
            "arrays": ArrayRecord([model.astype(np.float64) + update]),
            "metrics": MetricRecord({"num-examples": 1}),
        }
    )
    return Message(out, reply_to=msg)


def _app(msg: Message, context: Context) -> Message:
    return secagg_mod(msg, context, _train)


def _grid(node_config: dict[int, dict[str, Any]] | None = None) -> InProcessGrid:
    nodes: dict[int, tuple[Context, App]] = {}
    for i in range(N):
        nid = 100 + i
        cfg = {"partition-id": i, **(node_config or {}).get(i, {})}
        nodes[nid] = (Context(7, nid, cfg, RecordDict(), {}), _app)
    return InProcessGrid(nodes)


def _run(wf: SecAggWorkflow, grid: InProcessGrid) -> tuple[list[RoundRow], list[Any]]:
    rows: list[RoundRow] = []
    sums: list[Any] = []

    def on_round(row: RoundRow, model: list[np.ndarray], out: ServerOutcome | None) -> None:
        rows.append(row)
        if out is not None:
            want = sum(
                synthetic_update(wf.nodes[c], row.round, D).astype(np.float64)
                for c in out.survivors
            )
            sums.append(float(np.max(np.abs(out.sum[:-1] - want))))

    wf.run(grid, [np.zeros(D, dtype=np.float32)], on_round=on_round)
    return rows, sums


@pytest.mark.parametrize("setting", ["honest_but_curious", "active"])
def test_workflow_and_mod_sum_exactly_in_2_or_3_exchanges(setting: str, tmp_path: Path) -> None:
    node_config: dict[int, dict[str, Any]] = {}
    registry = None
    if setting == "active":
        files, reg = provision_identities(tmp_path, N)
        registry = str(reg)
        node_config = {
            i: {"secagg-identity": str(files[i]), "secagg-registry": str(reg)} for i in range(N)
        }
    grid = _grid(node_config)
    wf = SecAggWorkflow(rounds=3, setting=setting, registry_file=registry, min_nodes=N)
    rows, errs = _run(wf, grid)
    assert [r.status for r in rows] == ["ok"] * 3
    assert all(len(r.survivors) == N for r in rows)
    assert all(r.exchanges == (3 if setting == "active" else 2) for r in rows)
    assert max(errs) < 1e-6
    # what the server got from clients: bundles only, never a plaintext update or count
    kinds = {m.metadata.message_type for m in grid.sent}
    assert kinds == {"train"}
    for ctx, _ in grid.nodes.values():
        assert STATE_KEY in ctx.state.config_records  # the pipeline state persisted


def test_a_node_that_goes_silent_is_a_dropout_and_rounds_stay_exact() -> None:
    grid = _grid()
    calls = {"n": 0}
    silent = 103

    def flaky(msg: Message, context: Context) -> Message:
        calls["n"] += 1
        out = _app(msg, context)
        if calls["n"] > 2:  # its first two exchanges are the bootstrap
            return Message(
                RecordDict({"secagg": ConfigRecord({"bundle": b"\x00junk"})}), reply_to=msg
            )
        return out

    ctx, _ = grid.nodes[silent]
    grid.nodes[silent] = (ctx, flaky)
    wf = SecAggWorkflow(rounds=2, min_nodes=N)
    rows, errs = _run(wf, grid)
    assert [r.status for r in rows] == ["ok", "ok"]
    assert all(wf.nodes[c] != silent for r in rows for c in r.survivors)
    assert max(errs) < 1e-6


def test_plain_messages_pass_through_the_mod_untouched() -> None:
    msg = Message(RecordDict({"config": ConfigRecord({"x": 1})}), 100, "train")
    ctx = Context(7, 100, {}, RecordDict(), {})
    seen: list[Message] = []

    def inner(m: Message, c: Context) -> Message:
        seen.append(m)
        return Message(RecordDict({"config": ConfigRecord({"y": 2})}), reply_to=m)

    out = secagg_mod(msg, ctx, inner)
    assert seen == [msg] and out.content["config"]["y"] == 2
    assert len(ctx.state.config_records) == 0


def test_the_mod_refuses_a_bundle_it_cannot_place() -> None:
    msg = Message(RecordDict({"secagg": ConfigRecord({"bundle": b"SAGP-nonsense"})}), 100, "train")
    out = secagg_mod(msg, Context(7, 100, {}, RecordDict(), {}), _train)
    assert out.has_error() and out.error.code == ERROR_CODE


def test_the_active_setting_needs_a_registry() -> None:
    with pytest.raises(WorkflowError):
        SecAggWorkflow(rounds=1, setting="active")


def test_prepare_input_clips_weights_and_appends_the_weight() -> None:
    old = [np.zeros(3, dtype=np.float32)]
    new = [np.array([0.5, -3.0, 2.0])]
    v = prepare_input(new, old, clip=1.0, weighting="examples", max_weight=10, num_examples=5)
    assert np.allclose(v, [0.25, -0.5, 0.5, 0.5])
    with pytest.raises(ValueError):
        prepare_input(
            [np.array([np.nan, 0, 0])],
            old,
            clip=1.0,
            weighting="uniform",
            max_weight=1,
            num_examples=None,
        )
    assert model_hash(old) != model_hash(new) and len(model_hash(old)) == 32


def test_dp_fedavg_through_the_workflow_clips_noises_and_accounts_every_round() -> None:
    from dp import DPFedAvg, PrivacyLedger

    mech = DPFedAvg(clip_norm=0.5, noise_multiplier=1e-9, expected_clients=N, sample_rate=1.0)
    ledger = PrivacyLedger.in_memory(delta=1e-5)
    wf = SecAggWorkflow(rounds=2, min_nodes=N, dp=mech, ledger=ledger)
    grid = _grid()
    models: list[np.ndarray] = []
    wf.run(
        grid,
        [np.zeros(D, dtype=np.float32)],
        on_round=lambda row, model, out: models.append(model[0].copy()),
    )
    assert len(ledger.entries) == 2 and ledger.epsilon() > 0
    # round 1: the mean of the L2-clipped updates (the noise is negligible at z = 1e-9)
    want = np.zeros(D)
    for c in range(N):
        u = synthetic_update(wf.nodes[c], 1, D).astype(np.float64)
        want += u * min(1.0, 0.5 / np.linalg.norm(u))
    assert np.allclose(models[0], want / N, atol=1e-5)
    # the weight element is gone: the masked vectors are exactly the model's length
    assert all(np.linalg.norm(m) <= 0.5 + 1e-5 for m in models[:1])
