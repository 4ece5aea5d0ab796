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
from tests.flower.inprocess import App, InProcessGrid, server_identity, withhold  # noqa: F401

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


def test_dp_fedavg_accounted_with_sampling_is_refused() -> None:
    """Issue 13, item 1: the workflow asks every node in every round, so a mechanism
    accounted at sample_rate 0.1 would claim amplification that never happens (main
    accepted it and the ledger under-charged each round about tenfold)."""
    from dp import DPFedAvg, PrivacyLedger
    from protocols.participation import AccountingAssumptionError

    sampled = DPFedAvg(clip_norm=0.5, noise_multiplier=1.0, expected_clients=N, sample_rate=0.1)
    with pytest.raises(AccountingAssumptionError, match="amplification"):
        SecAggWorkflow(
            rounds=1, min_nodes=N, dp=sampled, ledger=PrivacyLedger.in_memory(delta=1e-5)
        )
    # a fixed denominator other than the population is refused once the nodes are known
    wrong = DPFedAvg(clip_norm=0.5, noise_multiplier=1.0, expected_clients=N + 3, sample_rate=1.0)
    ledger = PrivacyLedger.in_memory(delta=1e-5)
    wf = SecAggWorkflow(rounds=1, min_nodes=N, dp=wrong, ledger=ledger)
    with pytest.raises(AccountingAssumptionError, match="fixed denominator"):
        wf.run(_grid(), [np.zeros(D, dtype=np.float32)])
    assert not ledger.entries  # refused before any round began


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

    # z = 1e-6, not 1e-9: secure noise (dp.secure_noise) refuses a std so far below the
    # values that fewer than 30 grid bits would remain; the mean check below is unchanged
    mech = DPFedAvg(clip_norm=0.5, noise_multiplier=1e-6, expected_clients=N, sample_rate=1.0)
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
    # z = 1e-6 makes the mean checkable exactly, and the ledger says what it costs: the
    # noise itself is checked in test_dp_fedavg_through_the_workflow_releases_the_...
    assert all(
        e.status == "committed" and e.params.noise_multiplier == 1e-6 for e in ledger.entries
    )
    assert ledger.epsilon() > 1e9  # almost no noise: almost no privacy, and accounted so
    # round 1: the mean of the L2-clipped updates (the noise is negligible at z = 1e-6)
    want = np.zeros(D)
    for c in range(N):
        u = synthetic_update(wf.nodes[c], 1, D).astype(np.float64)
        want += u * min(1.0, 0.5 / np.linalg.norm(u))
    assert np.allclose(models[0], want / N, atol=1e-5)
    # the weight element is gone: the masked vectors are exactly the model's length
    assert all(np.linalg.norm(m) <= 0.5 + 1e-5 for m in models[:1])


# -- a ledger attached, an abort at every point -------------------------------------------

ROUNDS = 3
_STEPS = {
    "honest_but_curious": ("advertise", "share", "input", "unmask"),
    "active": ("advertise", "share", "input", "check", "unmask"),
}


def _abort_points() -> list[Any]:
    points = []
    for setting, steps in _STEPS.items():
        for r in range(1, ROUNDS + 1):
            for i, step in enumerate(steps):
                for answering in (0, 1) if step == "unmask" else (0,):
                    tag = f"{setting[:6]}-r{r}-{step}" + ("-one_answer" if answering else "")
                    points.append(pytest.param(setting, r, i, answering, id=tag))
    return points


def _ledgered_workflow(setting: str, tmp_path: Path) -> tuple[SecAggWorkflow, InProcessGrid, Path]:
    """A DP-FedAvg workflow over N in-process nodes with a ledger file attached."""
    from dp import DPFedAvg, PrivacyLedger

    node_config: dict[int, dict[str, Any]] = {}
    registry = None
    if setting == "active":
        files, reg = provision_identities(tmp_path, N)
        registry = str(reg)
        # a failed round's model comes again: active nodes contribute to it again only
        # with fresh noise charged to their own ledgers (issue 13, item 2)
        noise = tmp_path / "repeat-noise.json"
        noise.write_text('{"repeat_noise_multiplier": 1.0, "clip_norm": 0.5}')
        node_config = {
            i: {
                "secagg-identity": str(files[i]),
                "secagg-registry": str(reg),
                "secagg-contribution-policy": str(noise),
                "secagg-client-ledger": str(tmp_path / f"client-{i}.jsonl"),
            }
            for i in range(N)
        }
    mech = DPFedAvg(clip_norm=0.5, noise_multiplier=1.0, expected_clients=N, sample_rate=1.0)
    path = tmp_path / "server.jsonl"
    ledger = PrivacyLedger.create(path, delta=1e-5)
    wf = SecAggWorkflow(
        rounds=ROUNDS,
        setting=setting,
        registry_file=registry,
        min_nodes=N,
        dp=mech,
        ledger=ledger,
    )
    return wf, _grid(node_config), path


def _check_ledger_matches_rows(rows: list[RoundRow], path: Path) -> None:
    """Every round is in the ledger exactly once, in order, with the row's outcome."""
    from dp import read_ledger, verify_ledger

    entries = read_ledger(path).entries
    assert [e.round for e in entries] == list(range(1, ROUNDS + 1))
    by_round = {row.round: row for row in rows}
    assert sorted(by_round) == list(range(1, ROUNDS + 1))
    for e in entries:
        row = by_round[e.round]
        want = (
            "committed"
            if row.status == "ok"
            else ("aborted_released" if row.released_shares else "aborted_unreleased")
        )
        assert e.status == want, (e.round, row)
    report = verify_ledger(path)
    assert report.rounds_counted == sum(1 for e in entries if e.counted)


@pytest.mark.parametrize(("setting", "r", "step", "answering"), _abort_points())
def test_a_ledger_survives_an_abort_at_every_point(
    setting: str, r: int, step: int, answering: int, tmp_path: Path
) -> None:
    """Round r loses one protocol step (for every node, or all but one at unmasking):
    the session goes on, round r is in the ledger at zero cost (counted when a share
    went out) and every other round is committed. Before the fix an abort before round
    r's TRAIN exchange (advertise, share: they ride on earlier exchanges) crashed the
    workflow with LedgerStateError."""
    from secagg.pipeline import Schedule

    wf, grid, path = _ledgered_workflow(setting, tmp_path)
    g = Schedule(ROUNDS, setting == "active").steps(r)[step]
    for nid, (ctx, app) in list(grid.nodes.items()):
        grid.nodes[nid] = (ctx, withhold(app, exchange=g, rounds={r}, answering=answering))
    report = wf.run(grid, [np.zeros(D, dtype=np.float32)])
    wf.ledger.close()
    rows = {row.round: row for row in report.rows}
    assert rows[r].status == "aborted" and rows[r].released_shares == bool(answering)
    assert all(rows[k].status == "ok" for k in rows if k != r)
    _check_ledger_matches_rows(report.rows, path)
    from dp import read_ledger

    statuses = {e.round: e.status for e in read_ledger(path).entries}
    assert statuses[r] == ("aborted_released" if answering else "aborted_unreleased")


@pytest.mark.parametrize("setting", list(_STEPS))
def test_a_ledger_survives_losing_every_reply_of_any_exchange(setting: str, tmp_path: Path) -> None:
    """Every node's reply to exchange g is emptied: each round collecting in g aborts
    there (two at once in most exchanges); the ledger records every round once, in
    order, and verifies."""
    from secagg.pipeline import Schedule

    for g in range(Schedule(ROUNDS, setting == "active").num_exchanges):
        where = tmp_path / f"g{g}"
        where.mkdir()
        wf, grid, path = _ledgered_workflow(setting, where)
        for nid, (ctx, app) in list(grid.nodes.items()):
            grid.nodes[nid] = (ctx, withhold(app, exchange=g))
        report = wf.run(grid, [np.zeros(D, dtype=np.float32)])
        wf.ledger.close()
        assert any(row.status == "aborted" for row in report.rows), g
        _check_ledger_matches_rows(report.rows, path)


# -- DP-FedAvg: the noise is there, with the accounted variance ----------------------------


_DP_D, _DP_CLIP = 10_000, 0.5


def _dp_session(
    mech: Any, path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[SecAggWorkflow, list[tuple[RoundRow, np.ndarray, np.ndarray]], list[Any]]:
    """Two DP-FedAvg rounds over d coordinates with a ledger file; returns the workflow,
    (row, new model, secure sum) per round, and the ledger's last entry on disk at the
    moment of each release."""
    from dp import PrivacyLedger, read_ledger

    ledger = PrivacyLedger.create(path, delta=1e-5)
    on_disk: list[Any] = []
    release = mech.release

    def watched(total: Any, **kw: Any) -> Any:
        on_disk.append(read_ledger(path).entries[-1])  # what a crash now would leave
        return release(total, **kw)

    monkeypatch.setattr(mech, "release", watched)
    wf = SecAggWorkflow(rounds=2, min_nodes=N, dp=mech, ledger=ledger)
    seen: list[tuple[RoundRow, np.ndarray, np.ndarray]] = []

    def on_round(row: RoundRow, new: list[np.ndarray], out: ServerOutcome | None) -> None:
        assert out is not None
        seen.append((row, new[0].astype(np.float64), np.asarray(out.sum, dtype=np.float64)))

    wf.run(_grid(), [np.zeros(_DP_D, dtype=np.float32)], on_round=on_round)
    ledger.close()
    return wf, seen, on_disk


def _check_dp_rounds(
    wf: SecAggWorkflow, seen: list[tuple[RoundRow, np.ndarray, np.ndarray]], path: Path
) -> list[np.ndarray]:
    """The clip holds and each round's noise has the variance its ledger entry accounts;
    returns the residuals (released - secure sum / m)."""
    from dp import read_ledger
    from tests.dp.stats import assert_noise

    before = np.zeros(_DP_D)
    residuals = []
    for (row, new, total), entry in zip(seen, read_ledger(path).entries, strict=True):
        raw = [synthetic_update(wf.nodes[c], row.round, _DP_D).astype(np.float64) for c in range(N)]
        assert min(np.linalg.norm(u) for u in raw) > 10 * _DP_CLIP  # the clip binds
        clipped = sum(u * (_DP_CLIP / np.linalg.norm(u)) for u in raw)
        np.testing.assert_allclose(total, clipped, atol=1e-6)
        p = entry.params
        sigma = p.noise_multiplier * p.sensitivity / float(p.extra["expected_clients"])
        residuals.append(new - before - total / N)
        assert_noise(residuals[-1], sigma)
        before = new
    return residuals


def test_dp_fedavg_through_the_workflow_releases_the_accounted_noise_after_the_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At z = 1 over d = 10 000 coordinates: (1) the clip holds: the secure sum is the
    sum of the L2-clipped updates (every raw update is far above C); (2) the noise is
    there with the variance the ledger accounts: released - sum/m is N(0, (z S / m)^2)
    per coordinate (chi^2 test at confidence 1 - 1e-6, tests/dp/stats.py), fresh each
    round; (3) epsilon is charged before release: when the mechanism releases a round,
    that round's committed entry is already in the ledger file and its head file."""
    from dp import DPFedAvg

    mech = DPFedAvg(clip_norm=_DP_CLIP, noise_multiplier=1.0, expected_clients=N, sample_rate=1.0)
    path = tmp_path / "server.jsonl"
    wf, seen, on_disk = _dp_session(mech, path, monkeypatch)
    assert [row.status for row, _, _ in seen] == ["ok", "ok"]
    assert [(e.round, e.status) for e in on_disk] == [(1, "committed"), (2, "committed")]
    residuals = _check_dp_rounds(wf, seen, path)
    # fresh noise each round: |corr| of independent draws is ~0.01 here, 6 sigma is 0.06
    assert abs(np.corrcoef(residuals[0], residuals[1])[0, 1]) < 0.06


def test_the_noise_check_fails_a_workflow_that_accounts_noise_it_does_not_add(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Control: a mechanism that charges z = 1 to the ledger but releases the bare mean
    passes every check the z = 1e-9 test above makes, and fails the noise check."""
    from dp import DPFedAvg

    class Noiseless(DPFedAvg):
        def release(self, clipped_sum: object, **kw: Any) -> Any:
            return np.asarray(clipped_sum, dtype=np.float64) / self.expected_clients

    mech = Noiseless(clip_norm=_DP_CLIP, noise_multiplier=1.0, expected_clients=N, sample_rate=1.0)
    path = tmp_path / "server.jsonl"
    wf, seen, _ = _dp_session(mech, path, monkeypatch)
    assert [row.status for row, _, _ in seen] == ["ok", "ok"]
    with pytest.raises(AssertionError, match="chi"):
        _check_dp_rounds(wf, seen, path)


# -- the differencing rule on the node (issue 13, item 2) ----------------------------------


def _still(msg: Message, context: Context) -> Message:
    """A train function whose update is zero: the next round's model is the same."""
    model = msg.content["arrays"].to_numpy_ndarrays()[0]  # type: ignore[union-attr]
    out = RecordDict(
        {
            "arrays": ArrayRecord([model.astype(np.float64)]),
            "metrics": MetricRecord({"num-examples": 1}),
        }
    )
    return Message(out, reply_to=msg)


def _still_grid(tmp_path: Path, extra: dict[str, Any]) -> tuple[InProcessGrid, str]:
    files, reg = provision_identities(tmp_path, N)
    nodes: dict[int, tuple[Context, App]] = {}
    for i in range(N):
        cfg = {
            "partition-id": i,
            "secagg-identity": str(files[i]),
            "secagg-registry": str(reg),
            **{k: (v.format(i=i) if isinstance(v, str) else v) for k, v in extra.items()},
        }
        nodes[100 + i] = (
            Context(7, 100 + i, cfg, RecordDict(), {}),
            lambda m, c: secagg_mod(m, c, _still),
        )
    return InProcessGrid(nodes), str(reg)


def test_active_nodes_refuse_a_second_contribution_for_the_same_model(tmp_path: Path) -> None:
    grid, reg = _still_grid(tmp_path, {})
    wf = SecAggWorkflow(rounds=2, setting="active", registry_file=reg, min_nodes=N)
    rows = wf.run(grid, [np.zeros(D, dtype=np.float32)]).rows
    assert rows[0].status == "ok" and rows[1].status != "ok"  # nobody contributes again


def test_the_control_and_the_noised_repeat(tmp_path: Path) -> None:
    """Control: nodes provisioned to allow repeats contribute twice for one model. With
    repeats allowed only under fresh noise, each node charges its own ledger once."""
    allow = tmp_path / "allow.json"
    allow.write_text('{"allow_repeats": true}')
    grid, reg = _still_grid(tmp_path / "a", {"secagg-contribution-policy": str(allow)})
    wf = SecAggWorkflow(rounds=2, setting="active", registry_file=reg, min_nodes=N)
    assert [r.status for r in wf.run(grid, [np.zeros(D, dtype=np.float32)]).rows] == ["ok"] * 2
    noise = tmp_path / "noise.json"
    noise.write_text('{"repeat_noise_multiplier": 1.0, "clip_norm": 0.5}')
    ledgers = tmp_path / "ledgers"
    ledgers.mkdir()
    extra = {
        "secagg-contribution-policy": str(noise),
        "secagg-client-ledger": str(ledgers / "node-{i}.jsonl"),
    }
    grid, reg = _still_grid(tmp_path / "n", extra)
    wf = SecAggWorkflow(rounds=2, setting="active", registry_file=reg, min_nodes=N)
    assert [r.status for r in wf.run(grid, [np.zeros(D, dtype=np.float32)]).rows] == ["ok"] * 2
    from dp import read_ledger

    for i in range(N):
        entries = read_ledger(ledgers / f"node-{i}.jsonl").entries
        assert [e.mechanism for e in entries] == ["client_repeat_gaussian"]
