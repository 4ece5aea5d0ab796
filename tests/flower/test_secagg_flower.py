"""Our pipelined SecAgg on Flower's deployment engine: a SuperLink and SuperNodes as
separate processes on loopback, real SIGKILL dropouts, a garbage-sending client.

Each test starts its own deployment; every exchange costs Flower's polling and a fresh
ClientApp process per node (about 10 s here), so these take minutes: marker ``flower``.
The first runs in the default suite (CI); the other two also carry ``slow`` and run with
``scripts/test.sh --flower`` (every Flower test) or ``--slow``.
Faults are injected at exact points through the workflow's exchange hook: the harness
pauses the ServerApp before/after an exchange, kills (or stops) a SuperNode, resumes.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from protocols.flower.deploy import LocalDeployment
from protocols.flower.records import provision_identities

pytestmark = pytest.mark.flower
APP = Path(__file__).resolve().parents[2] / "protocols/flower/apps/projects/secagg_sum"
QUANTUM_SLACK = 1e-3  # 32-bit ring, clip 1: the quantum is ~2^-27 per element and client


def run_sum(
    dep: LocalDeployment,
    *,
    rounds: int,
    setting: str = "honest_but_curious",
    dim: int = 300,
    timeout: float = 45.0,
    extra: dict[str, Any] | None = None,
    on_event: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "dim": dim,
        "num-rounds": rounds,
        "num-nodes": dep.num_nodes,
        "exchange-timeout": timeout,
        "setting": setting,
    } | (extra or {})
    return dep.run(APP, cfg, timeout=1200, on_event=on_event)


def node_id(dep: LocalDeployment, index: int) -> int:
    return dep.node_ids()[index]


def check_rounds(result: dict[str, Any]) -> None:
    for row in result["rounds"]:
        if row["status"] == "ok":
            assert row["sum_max_abs_error"] is not None
            assert row["sum_max_abs_error"] < QUANTUM_SLACK, row
            assert row["weight_ok"], row


def test_dropouts_at_every_stage_and_a_garbage_client_keep_sums_exact() -> None:
    """8 SuperNodes, 4 rounds, honest-but-curious. Node 7 sends garbage bytes; node 1
    is SIGKILLed during key sharing (after advertising keys, before sharing them: the
    dropout that halts Flower's own SecAgg+ round), node 2 before it sends round 2's
    masked input, node 3 right after it sent round 3's. Every round completes with the
    exact sum over its survivors, and no process is left behind."""
    dep = LocalDeployment(
        8, node_config=lambda i: {"secagg-misbehave": "garbage"} if i == 7 else {}
    )
    kills: dict[tuple[str, int], int] = {
        ("before", 1): 1,  # BOOT_SHARES: node 1 advertised keys, never shares them
        ("before", 4): 2,  # TRAIN of round 2
        ("after", 6): 3,  # TRAIN of round 3: its masked input arrived, then it dies
    }

    def on_event(event: dict[str, Any]) -> None:
        victim = kills.get((event.get("phase", ""), int(event.get("exchange", -1))))
        if victim is not None:
            dep.kill_node(victim)

    with dep:
        result = run_sum(dep, rounds=4, on_event=on_event)
        ids = dep.node_ids()
    assert not dep.pids()  # stop() checked it too: nothing of the deployment is left
    check_rounds(result)
    rows = {r["round"]: r for r in result["rounds"]}
    assert [rows[r]["status"] for r in (1, 2, 3, 4)] == ["ok"] * 4
    assert all(r["exchanges"] == 2 for r in rows.values())
    garbage, k1, k2, k3 = ids[7], ids[1], ids[2], ids[3]
    for r, row in rows.items():
        survivors = set(row["survivor_nodes"])
        assert garbage not in survivors and k1 not in survivors
        assert (k2 in survivors) == (r < 2)
        assert (k3 in survivors) == (r <= 3)  # round 3 unmasks it with its peers' shares
    assert len(rows[4]["survivor_nodes"]) == 4


@pytest.mark.slow  # minutes; scripts/test.sh --flower runs it
def test_a_round_below_threshold_aborts_cleanly_and_stopped_nodes_rejoin() -> None:
    """5 SuperNodes, t = 4. Two nodes are frozen (SIGSTOP) through round 2's TRAIN
    exchange: round 2 (and round 3, whose keys they could not share) abort with nothing
    released; the nodes thaw, advertise keys again and round 4 sums all five."""
    dep = LocalDeployment(5)
    frozen = (3, 4)

    def signal_node(i: int, sig: signal.Signals) -> None:
        for pid in dep.pids(f"supernode-{i}"):
            os.kill(pid, sig)

    def on_event(event: dict[str, Any]) -> None:
        if event.get("exchange") == 4 and event.get("phase") == "before":
            for i in frozen:
                signal_node(i, signal.SIGSTOP)
        if event.get("exchange") == 4 and event.get("phase") == "after":
            for i in frozen:
                signal_node(i, signal.SIGCONT)

    with dep:
        result = run_sum(dep, rounds=4, timeout=30.0, extra={"threshold": 4}, on_event=on_event)
    check_rounds(result)
    rows = {r["round"]: r for r in result["rounds"]}
    assert rows[1]["status"] == "ok" and len(rows[1]["survivor_nodes"]) == 5
    assert rows[2]["status"] == "aborted" and not rows[2]["released_shares"]
    assert "TooFewSurvivors" in rows[2]["error"]
    assert rows[3]["status"] == "aborted"
    assert rows[4]["status"] == "ok" and len(rows[4]["survivor_nodes"]) == 5


@pytest.mark.slow  # minutes; scripts/test.sh --flower runs it
def test_active_setting_three_exchanges_per_round_with_a_dropout(tmp_path: Path) -> None:
    """5 provisioned SuperNodes, active setting (signed keys, consistency check over the
    model hash), 2 rounds; node 4 is killed right after its round-1 masked input."""
    files, registry = provision_identities(tmp_path / "keys", 5)
    dep = LocalDeployment(
        5,
        node_config=lambda i: {"secagg-identity": str(files[i]), "secagg-registry": str(registry)},
    )
    with dep:
        # the identity hello is not a pipeline exchange: TRAIN of round 1 is exchange 2
        def on_event(event: dict[str, Any]) -> None:
            if event.get("exchange") == 2 and event.get("phase") == "after":
                dep.kill_node(4)

        result = run_sum(
            dep,
            rounds=2,
            setting="active",
            extra={"registry-file": str(registry)},
            on_event=on_event,
        )
        ids = dep.node_ids()
    check_rounds(result)
    rows = {r["round"]: r for r in result["rounds"]}
    assert [rows[r]["status"] for r in (1, 2)] == ["ok", "ok"]
    assert all(r["exchanges"] == 3 for r in rows.values())
    assert ids[4] in rows[1]["survivor_nodes"] and ids[4] not in rows[2]["survivor_nodes"]
    kinds = [e["kind"] for e in result["exchanges"]]
    assert kinds[:2] == ["boot_keys", "boot_shares"] and kinds[2:5] == ["train", "check", "unmask"]
    assert np.isfinite(result["bootstrap_s"])
