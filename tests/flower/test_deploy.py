"""A real Flower deployment on loopback: SuperLink + 3 SuperNodes as processes.

Checks the harness (readiness, runs, results, clean stop), deterministic failure
injection (kill a SuperNode exactly before round 2's exchange), and both benchmark
baselines' aggregates. About 2-3 minutes on 2 cores: each Flower exchange costs
seconds (a fresh ClientApp process per message).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("flwr")

from protocols.flower.apps import app_dir
from protocols.flower.deploy import LocalDeployment, marked_pids

pytestmark = [pytest.mark.flower, pytest.mark.timeout(300)]

DIM = 2000


@pytest.fixture(scope="module")
def deployment() -> Iterator[LocalDeployment]:
    dep = LocalDeployment(3)
    with dep:
        yield dep
    assert marked_pids(dep.token) == []


def test_start_lists_every_node_online(deployment: LocalDeployment) -> None:
    ids = deployment.node_ids()
    assert sorted(ids) == [0, 1, 2] and len(set(ids.values())) == 3
    online = {n["node-id"] for n in deployment.list_nodes() if n["status"] == "online"}
    assert set(ids.values()) <= online
    assert (deployment.flwr_home / "config.toml").exists()


def test_plain_two_rounds_exact_sums(deployment: LocalDeployment) -> None:
    res = deployment.run(
        app_dir("plain"), {"dim": DIM, "num-rounds": 2, "num-nodes": 3}, timeout=180
    )
    assert res["mode"] == "plain" and res["dim"] == DIM
    assert [r["round"] for r in res["rounds"]] == [1, 2]
    for r in res["rounds"]:
        assert r["partitions"] == [0, 1, 2]
        assert r["exchanges"] == 1
        assert r["sum_max_abs_error"] == 0.0  # updates are exactly summable
        assert r["bytes_down_per_client"] > 4 * DIM and r["bytes_up_per_client"] > 4 * DIM
        assert sorted(r["nodes"]) == sorted(deployment.node_ids().values())
    # context.state lives in the SuperNode: each node saw its 1st, then 2nd message
    assert [sorted(r["client_messages_served"]) for r in res["rounds"]] == [[1] * 3, [2] * 3]
    assert res["peak_rss_bytes"] > 0


@pytest.mark.slow  # about 40 s; in scripts/test.sh --flower
def test_flower_secaggplus_one_round(deployment: LocalDeployment) -> None:
    res = deployment.run(
        app_dir("flower_secaggplus"),
        {"dim": DIM, "num-rounds": 1, "num-nodes": 3},
        timeout=240,
    )
    (r,) = res["rounds"]
    assert r["partitions"] == [0, 1, 2]
    assert r["exchanges"] == 4  # setup, share keys, masked input, unmask
    # Flower quantises to 2^18 steps per unit here; our updates are multiples of 2^-8
    assert r["mean_max_abs_error"] < 1e-6


def test_stop_leaves_no_process(deployment: LocalDeployment) -> None:
    assert deployment.pids()  # running
    run_dir = deployment.run_dir
    deployment.stop()
    assert deployment.pids() == []
    assert not run_dir.exists()  # temporary and nothing failed


@pytest.mark.slow  # about 70 s; our SIGKILL tests cover kills in the default suite
def test_kill_node_before_round_two() -> None:
    events: list[dict[str, Any]] = []
    with LocalDeployment(3) as dep:
        killed_id = dep.node_ids()[2]

        def on_event(event: dict[str, Any]) -> None:
            events.append(event)
            if event["phase"] == "before" and event["round"] == 2 and event["index"] == 0:
                assert killed_id in event["nodes"]  # still listed: heartbeat not yet missed
                dep.kill_node(2)

        res = dep.run(
            app_dir("plain"),
            {"dim": DIM, "num-rounds": 2, "num-nodes": 3, "exchange-timeout": 30.0},
            timeout=240,
            on_event=on_event,
        )
        assert dep.killed_nodes == {2}
        assert dep.pids("supernode-2") == []
        assert dep.pids("supernode-0") and dep.pids("supernode-1")
        token = dep.token
    r1, r2 = res["rounds"]
    assert r1["partitions"] == [0, 1, 2]
    assert r2["partitions"] == [0, 1] and r2["replies"] == 2
    assert r2["sum_max_abs_error"] == 0.0  # the sum of the survivors, exactly
    phases = [(e["round"], e["phase"]) for e in events]
    assert phases == [(1, "before"), (1, "after"), (2, "before"), (2, "after")]
    assert killed_id not in events[-1]["replied"]
    assert marked_pids(token) == []
