"""A curious server with its whole final state cannot isolate any client's input, and
each deliberately broken protocol variant makes that same test fail (the attack wins)."""

from __future__ import annotations

import numpy as np
import pytest

from secagg import SecAggConfig, attestation
from secagg.attestation import Status
from secagg.client import SecAggClient
from secagg.errors import UnexpectedMessageError
from secagg.messages import SERVER_ID, Header, StatusList, encode
from secagg.simulate import InProcessRound

from .curious import NoBothSharesCheck, ReusedSeed, Seed32, SelfMasksOnly, recover_inputs

N, D = 6, 24
#: default suite: the honest protocol faces a 2^24 slice of the weak-seed search; the full
#: 2^32 sweep runs in the slow suite (test_honest_protocol_resists_full_32_bit_search).
HONEST_SEARCH_BITS = 24


def _config() -> SecAggConfig:
    # no minimum sum beyond t: the attack must stand on the masking alone
    return SecAggConfig(
        num_clients=N,
        threshold=2,
        setting="honest_but_curious",
        tolerated_corrupt=1,
        min_summed_fraction=0.0,
        rounding="nearest",
    )


def _inputs(seed: int = 0) -> np.ndarray:  # type: ignore[type-arg]
    return np.random.default_rng(seed).uniform(-1, 1, (N, D))


def _run(
    client_factory: type[SecAggClient] = SecAggClient, dropouts: dict[int, str] | None = None
) -> tuple[InProcessRound, np.ndarray]:  # type: ignore[type-arg]
    xs = _inputs()
    rnd = InProcessRound(xs, _config(), dropouts, client_factory=client_factory)
    rnd.run()
    return rnd, xs


def _assert_recovers(
    rnd: InProcessRound,
    xs: np.ndarray,
    victims: set[int],
    weak_prg: bool = False,  # type: ignore[type-arg]
) -> None:
    got = recover_inputs(rnd, brute_force_bits=32, weak_prg=weak_prg)
    assert victims <= set(got), (
        f"attack recovered {sorted(got)}, expected at least {sorted(victims)}"
    )
    q = rnd.config.encoding.quantum
    for v in victims:
        assert np.allclose(got[v], xs[v], atol=q), v


@pytest.mark.parametrize(
    "dropouts",
    [
        None,
        {2: "share_keys"},
        {2: "masked_input"},
        {2: "advertise_keys", 4: "share_keys"},
        {1: "share_keys", 2: "share_keys", 3: "share_keys", 4: "share_keys"},
    ],
    ids=["none", "drop-before-input", "drop-after-input", "two-steps", "one-peer-left"],
)
def test_honest_protocol_leaks_no_single_input(dropouts: dict[int, str] | None) -> None:
    rnd, _ = _run(dropouts=dropouts)
    assert rnd.server.result().survivors  # the round itself worked
    assert recover_inputs(rnd, brute_force_bits=HONEST_SEARCH_BITS) == {}


def test_broken_self_masks_only() -> None:
    rnd, xs = _run(SelfMasksOnly)
    _assert_recovers(rnd, xs, set(range(N)))


def test_broken_reused_seed() -> None:
    rnd, xs = _run(ReusedSeed, {3: "share_keys"})
    _assert_recovers(rnd, xs, set(rnd.server.result().survivors))


def test_broken_32_bit_seed() -> None:
    # the victim has one peer left: a single unknown mask, from a 32-bit seed
    plan = dict.fromkeys((1, 2, 3, 4), "advertise_keys")
    rnd, xs = _run(Seed32, plan)
    res = rnd.server.result()
    assert res.survivors == (0, 5)
    assert np.allclose(res.sum, xs[0] + xs[5], atol=2 * rnd.config.encoding.quantum)
    _assert_recovers(rnd, xs, {0, 5}, weak_prg=True)


def _second_unmask_request(rnd: InProcessRound, victim: int) -> list[Exception]:
    """A server that, after unmasking, claims ``victim`` dropped and asks again."""
    srv = rnd.server
    assert srv.transcript is not None
    survivors = tuple(c for c in srv.result().survivors if c != victim)
    refusals: list[Exception] = []
    for c in survivors:
        order = srv.graph.neighbours(c)
        st = [Status.DROPPED if v == victim else Status.ALIVE for v in order]
        msg = encode(
            StatusList(
                Header(rnd.session_id, rnd.round_index, SERVER_ID), attestation.pack_statuses(st)
            )
        )
        try:
            reply = rnd.clients[c].handle(msg)
        except UnexpectedMessageError as exc:
            refusals.append(exc)
            continue
        assert reply is not None
        srv.transcript.add("unmasking", c, "unmask_shares", reply)
    return refusals


def test_honest_clients_refuse_a_second_unmasking_request() -> None:
    rnd, _ = _run()
    refusals = _second_unmask_request(rnd, victim=0)
    assert len(refusals) == N - 1
    assert recover_inputs(rnd, brute_force_bits=HONEST_SEARCH_BITS) == {}


def test_broken_both_shares_check_removed() -> None:
    rnd, xs = _run(NoBothSharesCheck)
    assert _second_unmask_request(rnd, victim=0) == []
    _assert_recovers(rnd, xs, {0})


@pytest.mark.slow
def test_honest_protocol_resists_full_32_bit_search() -> None:
    rnd, _ = _run(dropouts={1: "share_keys", 2: "share_keys", 3: "share_keys", 4: "share_keys"})
    assert recover_inputs(rnd, brute_force_bits=32) == {}
