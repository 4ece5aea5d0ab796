"""Bad input from one client gets that client dropped; the server never crashes and never
returns a silently wrong sum. Also: the graph is fixed by the registry, not by anything
the server sends."""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from secagg import SecAggConfig
from secagg.client import SecAggClient
from secagg.errors import (
    DealerMisbehaviourError,
    DuplicateSenderError,
    ProtocolViolationError,
    SecAggError,
)
from secagg.server import SecAggServer, ServerStep
from secagg.simulate import InProcessRound, Provisioning

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
    "bitflip": lambda b: b[: len(b) // 2] + bytes([b[len(b) // 2] ^ 1]) + b[len(b) // 2 + 1 :],
    "extra": lambda b: b + b"\x00",
    "garbage": lambda b: os.urandom(len(b)),
    "empty": lambda b: b"",
}


@pytest.mark.parametrize("step", ["advertise_keys", "share_keys", "masked_input"])
@pytest.mark.parametrize("how", sorted(MANGLERS))
def test_bad_message_drops_only_that_client(step: str, how: str) -> None:
    """Exact sum over the others, or an abort that names the bad client: never a wrong
    sum."""
    cfg = SecAggConfig.default(N, setting="honest_but_curious", rounding="nearest")
    xs = np.random.default_rng(1).uniform(-1, 1, (N, D))
    bad = 3
    server, _ = _drive(cfg, xs, bad, step, MANGLERS[how])
    if step == "masked_input" and how == "bitflip":
        # a flipped bit in the vector itself is just another input from that client
        # (secure aggregation does not vouch for the integrity of a client's own input)
        assert bad in server.result().survivors
        return
    if server.error is not None:
        # a corrupted key or box reaches its receivers, whose complaint proves the
        # sender dealt what it did not commit: the round aborts naming it
        assert isinstance(server.error, DealerMisbehaviourError) and server.error.owner == bad
        assert (step, how) in {("advertise_keys", "bitflip"), ("share_keys", "bitflip")}
        return
    res = server.result()
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


def test_the_graph_is_fixed_by_the_registry() -> None:
    """Every client computes its neighbourhood from the registry's graph seed: the same in
    every round and session, whoever advertises, whatever session id or round index the
    server picks; another registry (another sealed seed) gives another graph."""
    cfg = SecAggConfig.default(60, rounding="nearest")
    assert cfg.graph == "secagg+"
    prov = Provisioning.make(cfg)
    lists = []
    for r, drops in ((0, {}), (7, {1: "start", 2: "start", 30: "start"})):
        rnd = InProcessRound(np.zeros((60, 2)), cfg, drops, provisioning=prov, round_index=r)
        rnd.run()
        lists.append({c: cl.st.order for c, cl in rnd.clients.items()})
    assert all(lists[0][c] == lists[1][c] for c in lists[1])
    assert all(
        set(v) == set(prov.registry.ring(cfg.neighbours).neighbours(c)) for c, v in lists[0].items()
    )
    other = Provisioning.make(cfg).registry.ring(cfg.neighbours)
    assert any(
        other.neighbours(c) != prov.registry.ring(cfg.neighbours).neighbours(c) for c in range(60)
    )
