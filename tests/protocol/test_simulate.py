"""The whole protocol through real messages: exact sums under every dropout schedule,
aborts with named errors, and what simulate returns."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from secagg import SecAggConfig, simulate
from secagg.errors import (
    ConfigError,
    DropoutBudgetExceededError,
    EncodingError,
    RoundAbortedError,
    SurvivorSetTooSmallError,
    TooFewSurvivorsError,
)
from secagg.messages import MsgType
from secagg.simulate import DROPOUT_POINTS, InProcessRound, LazyInputs, Provisioning

from .harness import abort_is_justified, exact_config, expected_sum, reached


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[SecAggConfig, np.ndarray, dict[int, str]]:  # type: ignore[type-arg]
    # mostly small rounds (fast), one draw in five up to n = 100
    n = draw(st.one_of(*[st.integers(3, 12)] * 3, st.integers(13, 40), st.integers(41, 100)))
    setting = draw(st.sampled_from(["honest_but_curious", "active"]))
    graph = draw(st.sampled_from([None, "complete"]))
    cfg = exact_config(n, setting, graph)
    d = draw(st.integers(1, 6))
    xs = np.asarray(
        draw(
            st.lists(st.lists(st.floats(-1.5, 1.5), min_size=d, max_size=d), min_size=n, max_size=n)
        )
    )
    ndrop = draw(st.integers(0, max(0, n // 3)))
    who = draw(st.permutations(range(n)))[:ndrop]
    plan = {c: draw(st.sampled_from(DROPOUT_POINTS)) for c in who}
    return cfg, xs, plan


@settings(max_examples=30, deadline=None)
@given(scenarios())
def test_exact_sum_under_random_dropout_schedules(
    case: tuple[SecAggConfig, np.ndarray, dict[int, str]],
) -> None:  # type: ignore[type-arg]
    cfg, xs, plan = case
    rnd = InProcessRound(xs, cfg, plan, record_transcript=False)
    try:
        res = rnd.run()
    except RoundAbortedError:
        assert abort_is_justified(rnd, plan)
        return
    want_survivors = tuple(c for c in range(cfg.num_clients) if reached(plan, c, "masked_input"))
    assert res.survivors == want_survivors
    assert set(res.dropped) == set(range(cfg.num_clients)) - set(want_survivors)
    assert np.array_equal(res.sum, expected_sum(cfg, xs, res.survivors))
    assert np.allclose(res.mean, res.sum / len(res.survivors))


@pytest.mark.parametrize("setting", ["honest_but_curious", "active"])
@pytest.mark.parametrize("graph", [None, "complete"])
def test_n100_with_dropouts_at_every_step(setting: str, graph: str | None) -> None:
    n = 100
    cfg = exact_config(n, setting, graph)
    xs = np.random.default_rng(0).uniform(-1, 1, (n, 32))
    plan = {
        0: "start",
        1: "advertise_keys",
        2: "share_keys",
        3: "masked_input",
        4: "consistency_check",
        5: "share_keys",
        6: "masked_input",
    }
    res = simulate(xs, cfg, plan, record_transcript=False)
    survivors = tuple(c for c in range(n) if c not in (0, 1, 2, 5))
    assert res.survivors == survivors
    assert np.array_equal(res.sum, expected_sum(cfg, xs, survivors))
    assert res.params["graph"] == ("complete" if graph else cfg.graph)


def test_stochastic_rounding_sum_within_n_quanta() -> None:
    xs = np.random.default_rng(1).uniform(-1, 1, (12, 50))
    res = simulate(xs, dropouts=[4, 7], seed=3)  # 2 of 12: the default budget (20%)
    want = xs[list(res.survivors)].sum(axis=0)
    q = res.params["encoding_quantum"]
    assert np.all(np.abs(res.sum - want) <= len(res.survivors) * q)
    assert res.survivors == tuple(c for c in range(12) if c not in (4, 7))


def test_result_shape_and_accounting() -> None:
    n, d = 10, 64
    xs = np.random.default_rng(2).uniform(-1, 1, (n, d)).astype(np.float32)
    res = simulate(xs)
    for attr in (
        "sum",
        "mean",
        "survivors",
        "dropped",
        "timings",
        "bytes_sent",
        "transcript",
        "params",
    ):
        assert hasattr(res, attr)
    assert res.sum.shape == (d,) and res.dropped == ()
    assert set(res.bytes_sent) == {"server"} | {f"client/{c}" for c in range(n)}
    assert all(v > 0 for v in res.bytes_sent.values())
    assert {"advertise_keys/server", "unmasking/server", "masked_input/client"} <= set(res.timings)
    assert (
        res.params["threshold"] >= 2 and "k" in res.params and "privacy_failure_bound" in res.params
    )
    masked = res.transcript.by_phase("masked_input")
    assert len(masked) == n and all(r.kind == "masked_input" for r in masked)
    # 4 bytes per element uploaded at b = 32, plus O(k) bytes of edges and tags (active)
    k = res.params["k"]
    assert all(len(r.payload) < 4 * d + 64 + (k + 7) // 8 + 20 * k for r in masked)
    # per-client messages down: O(k) (keys, a box with digests, statuses, evidence)
    assert all(0 < v < 400 * k + 200 for v in res.params["bytes_down"].values())
    assert simulate(xs, record_transcript=False).transcript is None


@pytest.mark.parametrize("setting", ["honest_but_curious", "active"])
@pytest.mark.parametrize(
    "point", ["start", "advertise_keys", "share_keys", "masked_input", "consistency_check"]
)
def test_fewer_than_t_aborts_on_both_sides_and_releases_nothing(setting: str, point: str) -> None:
    n = 10
    cfg = exact_config(n, setting, "complete")
    t = cfg.threshold
    plan = dict.fromkeys(range(n - t + 1), point)  # t - 1 clients left after `point`
    rnd = InProcessRound(np.zeros((n, 4)), cfg, plan)
    with pytest.raises(TooFewSurvivorsError):
        rnd.run()
    unmask = [
        r for r in rnd.server.transcript or [] if r.kind == MsgType.UNMASK_SHARES.name.lower()
    ]
    if point not in ("masked_input", "consistency_check"):
        assert unmask == []  # aborted before any unmasking share was released
    for c, cl in rnd.clients.items():
        if reached(plan, c, "unmasking"):
            assert cl.aborted, c  # every remaining client heard of the abort
    assert rnd.server.error is not None


def test_dropouts_beyond_the_budget_get_a_named_refusal() -> None:
    """Active: more dropouts around a client than its policy's cap make it refuse to
    unmask (a server cutting the graph would look like this); within the cap the round
    completes. Honest-but-curious: the honest server unmasks no sum over fewer than
    ``min_summed`` survivors."""
    n = 30
    cfg = exact_config(n, "active")
    xs = np.random.default_rng(3).uniform(-1, 1, (n, 4))
    prov = Provisioning.make(cfg)  # one registry: one graph for both rounds
    side = prov.registry.ring(cfg.neighbours).side_of(0, 1)
    within = dict.fromkeys(side[: cfg.dropout_cap], "share_keys")
    res = InProcessRound(xs, cfg, within, provisioning=prov).run()
    assert res.survivors == tuple(c for c in range(n) if c not in within)
    beyond = dict.fromkeys(side[: cfg.dropout_cap + 1], "share_keys")
    rnd = InProcessRound(xs, cfg, beyond, provisioning=prov)
    with pytest.raises(RoundAbortedError):
        rnd.run()
    assert isinstance(rnd.clients[0].error, DropoutBudgetExceededError)
    hbc = SecAggConfig.default(n, setting="honest_but_curious", rounding="nearest")
    few = dict.fromkeys(range(n - hbc.min_summed + 1), "share_keys")
    with pytest.raises(SurvivorSetTooSmallError):
        simulate(xs, hbc, few)


def test_lazy_inputs_give_the_same_sum() -> None:
    """Inputs made on demand (one vector at a time) sum as the matrix does."""
    n, d = 20, 8
    xs = np.random.default_rng(4).uniform(-1, 1, (n, d))
    cfg = exact_config(n, "active")
    res = simulate(LazyInputs(n, d, lambda c: xs[c]), cfg, [3])
    assert np.array_equal(res.sum, expected_sum(cfg, xs, res.survivors))


def test_bad_arguments() -> None:
    with pytest.raises(ConfigError):
        simulate(np.zeros((2, 3)))
    with pytest.raises(EncodingError):
        simulate([np.zeros(3), np.zeros(4), np.zeros(3)])
    with pytest.raises(ConfigError):
        simulate(np.zeros((5, 3)), SecAggConfig.default(6))
    with pytest.raises(ConfigError):
        simulate(np.zeros((5, 3)), dropouts={9: "share_keys"})
    with pytest.raises(ConfigError):
        simulate(np.zeros((5, 3)), dropouts={1: "lunch"})
    with pytest.raises(EncodingError):
        simulate(np.full((5, 3), np.nan))
