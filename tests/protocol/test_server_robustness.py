"""Bad input from one client gets that client dropped; the server never crashes and never
returns a silently wrong sum. Also: the graph is fixed by the advertised keys."""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from secagg import SecAggConfig
from secagg.client import SecAggClient
from secagg.context import RoundContext
from secagg.errors import DuplicateSenderError, ProtocolViolationError, SecAggError
from secagg.messages import KeyEntry
from secagg.roundspec import Topology, graph_seed
from secagg.server import SecAggServer, ServerStep

from .harness import expected_sum

N, D = 8, 16


class GarbageAt(SecAggClient):
    """Sends mangled bytes in one chosen step (set ``bad_step``/``mangle`` on the class)."""

    bad_step = "share_keys"
    mangle: object = staticmethod(lambda b: b[: len(b) // 2])

    def advertise(self) -> bytes:
        out = super().advertise()
        return self.mangle(out) if self.bad_step == "advertise_keys" else out  # type: ignore[operator]

    def handle(self, data: bytes) -> bytes | None:
        step = {"advertised": "share_keys", "shared": "masked_input", "masked": "unmasking"}.get(
            self.phase.value
        )
        out = super().handle(data)
        if out is not None and step == self.bad_step:
            return self.mangle(out)  # type: ignore[operator,no-any-return]
        return out


def _drive(
    cfg: SecAggConfig, xs: np.ndarray, bad: int, step: str, mangle
) -> tuple[SecAggServer, dict[int, SecAggClient]]:  # type: ignore[no-untyped-def,type-arg]
    session = os.urandom(16)
    server = SecAggServer(cfg, session_id=session, round_index=0, dimension=D)
    clients: dict[int, SecAggClient] = {}
    for c in range(N):
        cls = (
            type("Bad", (GarbageAt,), {"bad_step": step, "mangle": staticmethod(mangle)})
            if c == bad
            else SecAggClient
        )
        cl = cls(cfg, c, session_id=session, round_index=0, dimension=D)
        cl.set_input(xs[c])
        clients[c] = cl
        server.receive(c, cl.advertise())
    while server.step not in (ServerStep.DONE, ServerStep.ABORTED):
        for c, msg in server.close_step().items():
            try:
                reply = clients[c].handle(msg)
            except SecAggError:
                continue
            if reply is not None:
                server.receive(c, reply)
    return server, clients


MANGLERS = {
    "truncate": lambda b: b[: len(b) // 2],
    "bitflip": lambda b: b[:-1] + bytes([b[-1] ^ 1]),
    "extra": lambda b: b + b"\x00",
    "garbage": lambda b: os.urandom(len(b)),
    "empty": lambda b: b"",
}


@pytest.mark.parametrize("step", ["advertise_keys", "share_keys", "masked_input"])
@pytest.mark.parametrize("how", sorted(MANGLERS))
def test_bad_message_drops_only_that_client(step: str, how: str) -> None:
    cfg = SecAggConfig.default(N, setting="honest_but_curious", rounding="nearest")
    xs = np.random.default_rng(1).uniform(-1, 1, (N, D))
    bad = 3
    server, _ = _drive(cfg, xs, bad, step, MANGLERS[how])
    res = server.result()
    if step == "masked_input" and how == "bitflip":
        # a flipped bit in the vector itself is just another input from that client
        # (secure aggregation does not vouch for the integrity of a client's own input)
        assert bad in res.survivors
        return
    if step == "share_keys" and how == "bitflip":
        # a corrupted share box passes the server (it cannot open it); its receiver
        # detects it, aborts, and is treated as a dropout: the sum stays exact
        assert len(res.survivors) == N - 1 and bad in res.survivors
    else:
        assert bad in server.rejected and bad not in res.survivors
    assert np.array_equal(res.sum, expected_sum(cfg, xs, res.survivors))


def test_garbage_unmasking_shares_abort_cleanly_or_are_dropped() -> None:
    cfg = SecAggConfig.default(N, setting="honest_but_curious", rounding="nearest")
    xs = np.random.default_rng(2).uniform(-1, 1, (N, D))
    server, _ = _drive(cfg, xs, 5, "unmasking", MANGLERS["garbage"])
    assert 5 in server.rejected
    res = server.result()
    assert np.array_equal(res.sum, expected_sum(cfg, xs, res.survivors))


def test_duplicate_and_impersonated_senders() -> None:
    cfg = SecAggConfig.default(N, setting="honest_but_curious")
    session = os.urandom(16)
    server = SecAggServer(cfg, session_id=session, round_index=0, dimension=D)
    a = SecAggClient(cfg, 0, session_id=session, round_index=0, dimension=D)
    msg = a.advertise()
    server.receive(0, msg)
    server.receive(0, msg)  # the same client twice
    assert isinstance(server.rejected[0], DuplicateSenderError)
    b = SecAggClient(cfg, 1, session_id=session, round_index=0, dimension=D)
    server.receive(2, b.advertise())  # transport says 2, message says 1
    assert isinstance(server.rejected[2], ProtocolViolationError)
    server.receive(N + 5, b"whatever")  # not a client of this session
    assert N + 5 in server.rejected


@settings(max_examples=40, deadline=None)
@given(
    st.binary(max_size=300),
    st.sampled_from(["advertise_keys", "share_keys", "masked_input", "unmasking"]),
)
def test_server_survives_random_bytes_in_any_step(blob: bytes, step: str) -> None:
    cfg = SecAggConfig.default(N, setting="honest_but_curious", rounding="nearest")
    xs = np.random.default_rng(3).uniform(-1, 1, (N, D))
    server, _ = _drive(cfg, xs, 6, step, lambda b: blob)
    res = server.result()
    assert 6 in server.rejected
    assert np.array_equal(res.sum, expected_sum(cfg, xs, res.survivors))


def test_graph_is_fixed_by_the_advertised_keys() -> None:
    cfg = SecAggConfig.default(60, setting="honest_but_curious")
    assert cfg.graph == "secagg+"
    ctx = RoundContext(b"graph-session-01", 0)
    entries = [KeyEntry(c, os.urandom(32), os.urandom(32), b"") for c in range(60)]
    t1 = Topology.build(cfg, ctx, entries)
    assert Topology.build(cfg, ctx, list(reversed(entries))).adjacency == t1.adjacency
    changed = list(entries)
    changed[17] = KeyEntry(17, os.urandom(32), entries[17].mask_public, b"")
    assert graph_seed(ctx, changed) != graph_seed(ctx, entries)
    assert Topology.build(cfg, ctx, changed).adjacency != t1.adjacency
    assert graph_seed(RoundContext(b"graph-session-01", 1), entries) != graph_seed(ctx, entries)
