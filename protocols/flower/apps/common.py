"""What the benchmark apps share: synthetic updates, a metering Grid, the result file.

The "model" is ``d`` float32 parameters. Client ``p``'s update in round ``r`` is a
pseudo-random vector drawn from ``(seed, p, r)`` whose entries are multiples of 1/256
in [-1, 1], so any float32 sum of up to 2^15 of them is exact whatever the order: the
server can check its aggregate against the expected sum with zero tolerance (plain) or
with the quantisation step (secure aggregation).

:class:`MeteredGrid` wraps the Grid a ServerApp gets: it counts exchanges (one per
``send_and_receive`` call, or per ``push_messages`` for apps that push and pull
themselves), measures payload bytes each way and time, and calls the
:class:`~protocols.flower.sync.ExchangeHook` before and after each exchange, so every app
run through it is measured the same way and can be paused for failure injection.
"""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import Message, RecordDict
from flwr.proto.node_pb2 import NodeInfo
from flwr.serverapp import Grid
from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects
from flwr.supercore.run import Run

from protocols.flower.sync import ExchangeHook, write_json_atomic
from protocols.flower.workflow import wait_for_nodes

__all__ = ["wait_for_nodes"]  # shared with the workflows; the apps import it from here

RESULT_FILE_KEY = "result-file"
UPDATE_SCALE = 256


def synthetic_update(partition_id: int, server_round: int, dim: int, seed: int = 0) -> np.ndarray:
    """Client ``partition_id``'s float32 update in round ``server_round`` (deterministic)."""
    rng = np.random.default_rng([seed, partition_id, server_round])
    ints = rng.integers(-UPDATE_SCALE, UPDATE_SCALE + 1, size=dim, dtype=np.int32)
    return ints.astype(np.float32) / np.float32(UPDATE_SCALE)


def expected_sum(
    partitions: Iterable[int], server_round: int, dim: int, seed: int = 0
) -> np.ndarray:
    """The exact (float64) sum of the listed clients' updates."""
    total = np.zeros(dim, dtype=np.float64)
    for p in partitions:
        total += synthetic_update(p, server_round, dim, seed)
    return total


def payload_bytes(msg: Message) -> int:
    """Bytes of a message's content as Flower serialises it (every distinct object:
    arrays, chunks, records), 0 for an error reply."""
    if msg.has_error() or not msg.has_content():
        return 0
    objects = get_all_nested_objects(msg.content)
    return sum(len(obj.deflate()) for obj in objects.values())


def peak_rss_bytes() -> int:
    """Peak resident set size of this process (the ServerApp), in bytes."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


@dataclass
class Exchange:
    """One server->clients->server exchange as the metering grid saw it."""

    round: int
    index: int
    message_type: str
    nodes: list[int]
    replied: list[int] = field(default_factory=list)
    errors: int = 0
    bytes_down: int = 0
    bytes_up: int = 0
    seconds: float = 0.0
    hook_seconds: float = 0.0


class MeteredGrid(Grid):
    """A Grid that delegates to Flower's and records every exchange (see module doc).

    Set ``current_round`` before each round; exchanges are attributed to it.
    """

    def __init__(self, inner: Grid, hook: ExchangeHook | None = None) -> None:
        self.inner = inner
        self.hook = hook if hook is not None else ExchangeHook(None)
        self.current_round = 0
        self.exchanges: list[Exchange] = []
        self._pending: dict[str, Exchange] = {}

    # -- delegation

    def set_run(self, run: Run) -> None:
        """Delegate."""
        self.inner.set_run(run)

    @property
    def run(self) -> Run:
        """Delegate."""
        return self.inner.run

    def create_message(
        self,
        content: RecordDict,
        message_type: str,
        dst_node_id: int,
        group_id: str,
        ttl: float | None = None,
    ) -> Message:
        """Delegate."""
        return self.inner.create_message(content, message_type, dst_node_id, group_id, ttl)

    def get_node_ids(self) -> Iterable[int]:
        """Delegate."""
        return self.inner.get_node_ids()

    def get_nodes(self) -> Iterable[NodeInfo]:
        """Delegate."""
        return self.inner.get_nodes()

    # -- metered calls

    def _begin(self, msgs: list[Message]) -> Exchange:
        index = sum(1 for e in self.exchanges if e.round == self.current_round)
        ex = Exchange(
            round=self.current_round,
            index=index,
            message_type=msgs[0].metadata.message_type if msgs else "",
            nodes=[m.metadata.dst_node_id for m in msgs],
        )
        self.exchanges.append(ex)
        t0 = time.perf_counter()
        self.hook.before_exchange(self._event(ex))
        ex.hook_seconds += time.perf_counter() - t0
        ex.bytes_down = sum(payload_bytes(m) for m in msgs)
        return ex

    def _end(self, ex: Exchange, replies: list[Message]) -> None:
        ex.replied += [m.metadata.src_node_id for m in replies if not m.has_error()]
        ex.errors += sum(1 for m in replies if m.has_error())
        ex.bytes_up += sum(payload_bytes(m) for m in replies)
        t0 = time.perf_counter()
        self.hook.after_exchange({**self._event(ex), "replied": ex.replied, "errors": ex.errors})
        ex.hook_seconds += time.perf_counter() - t0

    @staticmethod
    def _event(ex: Exchange) -> dict[str, Any]:
        return {
            "round": ex.round,
            "index": ex.index,
            "exchange": ex.message_type,
            "nodes": ex.nodes,
        }

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        """Delegate, as one metered exchange (hook before and after)."""
        msgs = list(messages)
        ex = self._begin(msgs)
        t0 = time.perf_counter()
        replies = list(self.inner.send_and_receive(msgs, timeout=timeout))
        ex.seconds += time.perf_counter() - t0
        self._end(ex, replies)
        return replies

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        """Delegate; each call starts a metered exchange (replies: ``pull_messages``)."""
        msgs = list(messages)
        ex = self._begin(msgs)
        t0 = time.perf_counter()
        ids = list(self.inner.push_messages(msgs))
        ex.seconds += time.perf_counter() - t0
        for mid in ids:
            self._pending[mid] = ex
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        """Delegate; replies count towards the exchange that pushed their request."""
        t0 = time.perf_counter()
        replies = list(self.inner.pull_messages(message_ids))
        elapsed = time.perf_counter() - t0
        by_ex: dict[int, tuple[Exchange, list[Message]]] = {}
        for m in replies:
            ex = self._pending.pop(m.metadata.reply_to_message_id, None)
            if ex is not None:
                by_ex.setdefault(id(ex), (ex, []))[1].append(m)
        for ex, ms in by_ex.values():
            ex.seconds += elapsed / len(by_ex)
            ex.replied += [m.metadata.src_node_id for m in ms if not m.has_error()]
            ex.errors += sum(1 for m in ms if m.has_error())
            ex.bytes_up += sum(payload_bytes(m) for m in ms)
        return replies

    # -- summaries

    def round_exchanges(self, server_round: int) -> list[Exchange]:
        """The exchanges attributed to ``server_round``."""
        return [e for e in self.exchanges if e.round == server_round]


def round_summary(
    grid: MeteredGrid,
    server_round: int,
    *,
    wall_s: float,
    partitions: list[int],
    aggregate: np.ndarray | None,
    aggregate_is_mean: bool,
    seed: int,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One round's figures: wall time, exchanges, bytes per client each way, and the
    aggregate's error against the exact sum and mean of the clients heard from.
    ``aggregate`` is the server's sum (plain) or mean (``aggregate_is_mean``)."""
    exs = grid.round_exchanges(server_round)
    contacted = {n for e in exs for n in e.nodes}
    heard = {n for e in exs for n in e.replied}
    out: dict[str, Any] = {
        "round": server_round,
        "wall_s": wall_s,
        "hook_s": sum(e.hook_seconds for e in exs),
        "exchanges": len(exs),
        "exchange_s": [e.seconds for e in exs],
        "replies": len(partitions),
        "errors": sum(e.errors for e in exs),
        "partitions": sorted(partitions),
        "bytes_down_per_client": sum(e.bytes_down for e in exs) / max(1, len(contacted)),
        "bytes_up_per_client": sum(e.bytes_up for e in exs) / max(1, len(heard)),
        "sum_max_abs_error": None,
        "mean_max_abs_error": None,
    }
    if aggregate is not None and partitions:
        n = len(partitions)
        want = expected_sum(partitions, server_round, aggregate.size, seed)
        got = aggregate.astype(np.float64)
        total, mean = (got * n, got) if aggregate_is_mean else (got, got / n)
        out["sum_max_abs_error"] = float(np.max(np.abs(total - want)))
        out["mean_max_abs_error"] = float(np.max(np.abs(mean - want / n)))
    if extra:
        out.update(extra)
    return out


def write_result(run_config: Mapping[str, Any], result: Mapping[str, Any]) -> Path | None:
    """Write the run's JSON result where the harness asked (run-config ``result-file``);
    nothing when the key is empty (a run started by hand)."""
    target = str(run_config.get(RESULT_FILE_KEY, "") or "")
    if not target:
        return None
    path = Path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, dict(result))
    return path


def exchanges_as_dicts(grid: MeteredGrid) -> list[dict[str, Any]]:
    """Every exchange, for the result file."""
    return [asdict(e) for e in grid.exchanges]
