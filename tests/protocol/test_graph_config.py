"""Neighbour graphs, SecAgg+ parameter choice and SecAggConfig's threshold rules."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from secagg import SecAggConfig
from secagg.errors import ConfigError
from secagg.graph import Graph, component_of, min_covered, neighbours, ring_components
from secagg.parameters import (
    active_bounds,
    choose_parameters,
    failure_bounds,
    hypergeom_tail,
    tail_bound,
)


@given(st.integers(3, 300), st.integers(1, 40), st.binary(min_size=32, max_size=32))
def test_secagg_plus_graph_is_k_regular_and_symmetric(n: int, half: int, seed: bytes) -> None:
    k = 2 * half
    adj = neighbours(range(n), k, seed)
    for u, nb in adj.items():
        assert u not in nb
        for v in nb:
            assert u in adj[v]
        assert len(nb) == (n - 1 if k >= n - 1 else k)


def test_graph_depends_only_on_the_seed() -> None:
    a = neighbours(range(50), 6, b"a" * 32)
    assert a == neighbours(list(reversed(range(50))), 6, b"a" * 32)
    assert a != neighbours(range(50), 6, b"b" * 32)


def test_graph_on_a_subset_of_ids_and_complete_graph() -> None:
    ids = [3, 8, 9, 20, 41, 42]
    adj = neighbours(ids, None, b"x" * 32)
    assert adj[3] == frozenset({8, 9, 20, 41, 42})
    assert set(neighbours(ids, 2, b"x" * 32)) == set(ids)
    with pytest.raises(ConfigError):
        neighbours(range(10), 3, b"x" * 32)


def test_component_of() -> None:
    adj = neighbours(range(20), 2, b"s" * 32)  # a cycle
    assert component_of(0, range(20), adj) == set(range(20))
    assert component_of(0, [1], adj) == set()
    order = [0]
    while len(order) < 20:  # walk the cycle
        order.append(next(v for v in adj[order[-1]] if v not in order))
    alive = set(range(20)) - {order[5], order[12]}
    part = component_of(order[0], alive, adj)
    assert part == set(order[:5] + order[13:])


def test_hypergeometric_tail_matches_scipy() -> None:
    for pop, marked, draws in ((100, 10, 20), (1000, 300, 70), (50, 49, 10)):
        for at_least in range(0, draws + 2, 3):
            want = stats.hypergeom.sf(at_least - 1, pop, marked, draws)
            assert math.isclose(
                hypergeom_tail(pop, marked, draws, at_least), want, rel_tol=1e-6, abs_tol=1e-300
            )


@pytest.mark.parametrize("n", [10, 100, 500, 1000])
def test_honest_but_curious_parameters_meet_their_bounds(n: int) -> None:
    p = choose_parameters(
        n, corrupt_fraction=0.1, dropout_fraction=0.2, setting="honest_but_curious"
    )
    assert p.privacy_failure <= 2.0**-40 and p.correctness_failure <= 2.0**-20
    priv, corr = failure_bounds(n, p.k, p.threshold, p.corrupt, p.dropouts)
    assert (priv, corr) == (p.privacy_failure, p.correctness_failure)
    if p.kind == "secagg+":
        assert p.k < n - 1 and p.k % 2 == 0
        if p.k > 2:  # one step sparser is not enough (smallest k)
            smaller = [failure_bounds(n, p.k - 2, t, p.corrupt, p.dropouts) for t in range(2, p.k)]
            assert not any(a <= 2.0**-40 and b <= 2.0**-20 for a, b in smaller)


@pytest.mark.parametrize("n", [100, 530, 1000, 2000, 10_000])
def test_active_parameters_meet_their_rules(n: int) -> None:
    """2t > k + 1 + c_full, t > k/2 + 1 + c_side, t <= k - d_full with the tails at
    2^-sigma / 2^-eta; the smallest such k; the guaranteed sum covers min_summed."""
    p = choose_parameters(n, min_summed_fraction=0.25)
    assert (
        p.setting == "active"
        and p.privacy_failure <= 2.0**-40
        and p.correctness_failure <= 2.0**-20
    )
    assert p.min_summed >= 0.25 * n
    if p.kind == "complete":
        assert 2 * p.threshold > n + p.corrupt and p.threshold <= n - p.dropouts
        return
    b = active_bounds(n, p.k, p.corrupt, p.dropouts, 40, 20)
    assert 2 * p.threshold > p.k + 1 + b.c_full and p.threshold > p.k // 2 + 1 + b.c_side
    assert p.threshold <= p.k - b.d_full and p.dropout_cap == b.d_side
    assert p.min_summed == min_covered(n, p.k, b.c_side + b.d_side)
    k = p.k - 2  # one step sparser fails a rule or the sum size
    b2 = active_bounds(n, k, p.corrupt, p.dropouts, 40, 20)
    t2 = b2.threshold(k)
    assert t2 > k - b2.d_full or min_covered(n, k, b2.c_side + b2.d_side) < 0.25 * n


def test_tail_bounds_match_scipy() -> None:
    for pop, marked, draws in ((999, 100, 272), (9999, 2000, 193)):
        for target in (2.0**-40 / 1000, 2.0**-20 / 1000):
            c, tail = tail_bound(pop, marked, draws, target)
            assert tail <= target < stats.hypergeom.sf(c - 1, pop, marked, draws) * (1 + 1e-9)
            assert math.isclose(
                tail, stats.hypergeom.sf(c, pop, marked, draws), rel_tol=1e-6, abs_tol=1e-300
            )


def test_min_covered_is_a_lower_bound_on_gap_free_sets() -> None:
    """No set the adversary can leave (each member missing at most beta outsiders per
    side) is smaller than min_covered: brute force over periodic patterns on small rings."""
    n, k = 60, 10
    g = Graph(n, k, b"s" * 32)
    for beta in range(0, k // 2):
        bound = min_covered(n, k, beta)
        for period in range(1, 12):
            for holes in range(0, period):
                members = {g.at(p) for p in range(n) if p % period >= holes}
                if not members:
                    continue
                ok = all(
                    sum(v not in members for v in g.side_of(o, s)) <= beta
                    for o in members
                    for s in (-1, 1)
                )
                if ok:
                    assert len(members) >= bound, (beta, period, holes)


def test_ring_components() -> None:
    g = Graph(20, 4, b"r" * 32)
    assert ring_components(g, range(20)) == [list(range(20))]
    gap = {g.at(p) for p in (5, 6)}  # two consecutive missing: k/2 = 2 cuts the ring once
    parts = ring_components(g, set(range(20)) - gap)
    assert len(parts) == 1
    gap |= {g.at(p) for p in (12, 13)}  # a second cut: two components
    parts = ring_components(g, set(range(20)) - gap)
    assert sorted(len(p) for p in parts) == [5, 11]


def test_sparse_graph_pays_off_at_scale() -> None:
    assert choose_parameters(1000, setting="honest_but_curious").k < 100
    assert choose_parameters(10_000, setting="honest_but_curious").k < 100


def test_impossible_requests_are_refused() -> None:
    with pytest.raises(ConfigError, match="no \\(k, t\\)"):
        choose_parameters(10, corrupt_fraction=0.45, dropout_fraction=0.5)
    with pytest.raises(ConfigError):
        choose_parameters(10, corrupt_fraction=0.6, dropout_fraction=0.5)
    with pytest.raises(ConfigError):
        choose_parameters(2)
    with pytest.raises(ConfigError):
        choose_parameters(100, sigma=0)
    with pytest.raises(ConfigError):
        choose_parameters(100, setting="paranoid")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        choose_parameters(5, graph="secagg+", corrupt_fraction=0.2, dropout_fraction=0.2)


@pytest.mark.parametrize("n", [3, 5, 10, 37, 100, 500, 1000])
@pytest.mark.parametrize("setting", ["active", "honest_but_curious"])
def test_default_config_tolerates_20pct_dropouts_and_10pct_corrupt(n: int, setting: str) -> None:
    cfg = SecAggConfig.default(n, setting=setting)  # type: ignore[arg-type]
    assert cfg.setting == setting and cfg.clip_min <= -1 and cfg.clip_max >= 1
    assert SecAggConfig.default(n).active
    assert cfg.tolerated_corrupt == math.floor(0.1 * n)
    assert cfg.dropout_fraction == 0.2
    assert cfg.privacy_failure <= 2.0**-40 and cfg.correctness_failure <= 2.0**-20
    d = cfg.describe()
    assert d["threshold"] == cfg.threshold and d["k"] >= 2
    assert "privacy_failure_bound" in d and "min_summed" in d and "dropout_cap" in d
    if setting == "active":
        assert cfg.min_summed >= 0.25 * n


def test_active_threshold_rule_is_enforced() -> None:
    SecAggConfig(num_clients=10, threshold=6, setting="active", tolerated_corrupt=1)
    with pytest.raises(ConfigError, match="2t > n \\+ n_C"):
        SecAggConfig(num_clients=10, threshold=5, setting="active", tolerated_corrupt=0)
    with pytest.raises(ConfigError, match="2t > n \\+ n_C"):
        SecAggConfig(num_clients=10, threshold=6, setting="active", tolerated_corrupt=2)
    # the honest-but-curious setting only needs t > n_C
    SecAggConfig(num_clients=10, threshold=3, setting="honest_but_curious", tolerated_corrupt=2)


def test_secagg_plus_threshold_rule_within_neighbourhoods() -> None:
    cfg = SecAggConfig.default(1000)
    assert cfg.neighbours is not None
    with pytest.raises(ConfigError, match="within some neighbourhood"):
        SecAggConfig(
            num_clients=1000,
            threshold=cfg.threshold - 1,
            neighbours=cfg.neighbours,
            setting="active",
            tolerated_corrupt=100,
            dropout_fraction=0.2,
        )
    with pytest.raises(ConfigError, match="rebuild its mask key"):
        SecAggConfig(
            num_clients=1000,
            threshold=cfg.neighbours - 10,
            neighbours=cfg.neighbours,
            setting="active",
            tolerated_corrupt=100,
            dropout_fraction=0.2,
        )


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(num_clients=2, threshold=2),
        dict(num_clients=10, threshold=1),
        dict(num_clients=10, threshold=11),
        dict(num_clients=10, threshold=6, neighbours=3),
        dict(num_clients=10, threshold=6, neighbours=0),
        dict(num_clients=10, threshold=6, tolerated_corrupt=6),
        dict(num_clients=10, threshold=6, tolerated_corrupt=-1),
        dict(num_clients=10, threshold=6, setting="paranoid"),
        dict(num_clients=10, threshold=6, min_summed_fraction=1.0),
        dict(num_clients=10, threshold=6, dropout_fraction=0.5),
        dict(num_clients=10, threshold=6, bits=4),
        dict(num_clients=10, threshold=6, clip_min=1.0, clip_max=-1.0),
        dict(num_clients=10, threshold=6, rounding="up"),
        dict(num_clients=10, threshold=6, sigma=0),
        dict(num_clients=10, threshold=6, dropout_fraction=1.0),
        dict(num_clients=10_000, threshold=6, bits=12),
    ],
)
def test_bad_config_values(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        SecAggConfig(**kwargs)  # type: ignore[arg-type]


def test_k_at_least_n_minus_1_is_the_complete_graph() -> None:
    cfg = SecAggConfig(num_clients=10, threshold=6, neighbours=10)
    assert cfg.neighbours is None and cfg.graph == "complete"
    assert cfg.min_summed == 10  # no corrupt, no dropout tolerated: everyone is summed
