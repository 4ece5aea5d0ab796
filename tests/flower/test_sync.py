"""The harness's plumbing without Flower processes: event sync, TOML quoting, ports."""

from __future__ import annotations

import threading
import tomllib
from pathlib import Path
from typing import Any

import pytest

from protocols.flower.deploy import (
    NodeConfigValue,
    _cli_config_arg,
    free_ports,
    toml_document,
    toml_value,
)
from protocols.flower.errors import SyncAbortedError, SyncTimeoutError
from protocols.flower.sync import ExchangeHook, SyncWatcher


def test_hook_without_sync_dir_is_a_no_op() -> None:
    hook = ExchangeHook.from_run_config({"sync-dir": ""})
    assert not hook.enabled
    hook.before_exchange({"round": 1})  # returns at once, writes nothing


def test_events_are_answered_in_order(tmp_path: Path) -> None:
    seen: list[tuple[int, str]] = []
    hook = ExchangeHook(tmp_path, timeout=10)
    with SyncWatcher(tmp_path, lambda e: seen.append((e["round"], e["phase"]))) as watcher:
        for r in (1, 2):
            hook.before_exchange({"round": r, "index": 0, "nodes": [7]})
            assert seen[-1] == (r, "before")  # handler ran before the hook returned
            hook.after_exchange({"round": r, "index": 0, "nodes": [7], "replied": [7]})
    assert seen == [(1, "before"), (1, "after"), (2, "before"), (2, "after")]
    assert [e["seq"] for e in watcher.events] == [0, 1, 2, 3]


def test_handler_failure_aborts_the_server_side(tmp_path: Path) -> None:
    def boom(event: dict[str, Any]) -> None:
        raise ValueError("no such node")

    hook = ExchangeHook(tmp_path, timeout=10)
    with (
        SyncWatcher(tmp_path, boom) as watcher,
        pytest.raises(SyncAbortedError, match="no such node"),
    ):
        hook.before_exchange({"round": 1})
    assert isinstance(watcher.error, ValueError)


def test_missing_ack_times_out(tmp_path: Path) -> None:
    with pytest.raises(SyncTimeoutError):
        ExchangeHook(tmp_path, timeout=0.2).before_exchange({"round": 1})


def test_toml_quoting_round_trips() -> None:
    config: dict[str, NodeConfigValue] = {
        "s": 'a "quoted" \\ path\nwith\ttabs \x7f and ünïcode 🙂',
        "i": -3,
        "f": 1e-5,
        "b": True,
        "odd key.x": "v",
    }
    assert tomllib.loads(toml_document(config)) == config
    assert tomllib.loads(f"x = {toml_value(float('inf'))}")["x"] == float("inf")
    with pytest.raises(TypeError):
        toml_value([1, 2])  # type: ignore[arg-type]


def test_node_config_argument() -> None:
    assert _cli_config_arg({"partition-id": 0, "name": "a b"}) == "partition-id=0 name='a b'"
    with pytest.raises(ValueError):
        _cli_config_arg({"x": 'it\'s "both"'})


def test_free_ports_are_distinct_across_calls() -> None:
    got: list[int] = []
    threads = [threading.Thread(target=lambda: got.extend(free_ports(5))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 20 and len(set(got)) == 20


def test_app_config_keys_of_the_baselines() -> None:
    from protocols.flower.apps import app_dir
    from protocols.flower.deploy import app_config_keys

    for name in ("plain", "flower_secaggplus"):
        keys = app_config_keys(app_dir(name))
        assert {"dim", "num-rounds", "num-nodes", "result-file", "sync-dir"} <= set(keys)
