"""Dropouts: the mean is over survivors and training goes on; a round below the threshold
fails, leaves the model unchanged, and lands in the ledger at zero cost when it failed
before any unmasking share was released (counted otherwise)."""

from __future__ import annotations

import numpy as np
import pytest

import dp
from protocols.errors import AggregationAbortedError
from protocols.fedavg import build
from protocols.privacy_layer import PrivacyLayer
from tests.protocols.conftest import tiny_config

HASH = b"\x11" * 32


def _updates(n: int, d: int = 20, seed: int = 0) -> dict[int, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {c: rng.uniform(-0.5, 0.5, d) for c in range(n)}


def _dp_layer(setting: str = "active") -> PrivacyLayer:
    mech = dp.DPFedAvg(clip_norm=1.0, noise_multiplier=1.0, expected_clients=10, sample_rate=1.0)
    ledger = dp.PrivacyLedger.in_memory(delta=1e-5)
    return PrivacyLayer(
        backend="masking",
        backend_params={"setting": setting},
        dp=mech,
        ledger=ledger,
        noise_seed=0,
    )


@pytest.mark.parametrize("backend", ["masking", "plaintext"])
def test_mean_is_weighted_over_survivors(backend: str) -> None:
    ups = _updates(10)
    weights = {c: float(10 + 5 * c) for c in ups}
    layer = PrivacyLayer(backend=backend, weighting="examples", max_weight=100.0)
    out = layer.aggregate(ups, model_hash=HASH, weights=weights, dropouts=[2, 5])
    assert out.status == "committed"
    assert out.survivors == (0, 1, 3, 4, 6, 7, 8, 9) and out.dropped == (2, 5)
    expect = sum(weights[c] * ups[c] for c in out.survivors) / sum(
        weights[c] for c in out.survivors
    )
    assert out.update is not None
    np.testing.assert_allclose(out.update, expect, atol=1e-6)
    assert out.total_weight == pytest.approx(sum(weights[c] for c in out.survivors) / 100.0)


def test_failure_before_unmasking_is_recorded_at_zero_cost() -> None:
    layer = _dp_layer()
    out = layer.aggregate(_updates(10), model_hash=HASH, dropouts=range(7))  # t > 3 survivors
    assert out.status == "failed" and out.update is None
    assert not out.released_shares
    assert isinstance(out.error, AggregationAbortedError)
    entry = out.ledger_entry
    assert entry.status == "aborted_unreleased" and not entry.counted
    assert layer.ledger.epsilon() == 0.0
    ok = layer.aggregate(_updates(10, seed=1), model_hash=b"\x22" * 32)
    assert ok.status == "committed" and ok.ledger_entry.counted
    assert layer.ledger.epsilon() > 0.0


@pytest.mark.parametrize(
    ("setting", "step"), [("active", "consistency_check"), ("honest_but_curious", "masked_input")]
)
def test_failure_during_unmasking_is_counted(setting: str, step: str) -> None:
    layer = _dp_layer(setting)
    # these clients send their masked input (and signature) and vanish before unmasking
    out = layer.aggregate(_updates(10), model_hash=HASH, dropouts=dict.fromkeys(range(8), step))
    assert out.status == "failed" and out.released_shares
    assert out.ledger_entry.status == "aborted_released" and out.ledger_entry.counted
    assert layer.ledger.epsilon() > 0.0


def test_fedavg_continues_through_dropouts_and_failed_rounds() -> None:
    cfg = tiny_config(
        experiment={"rounds": 4},
        clients={"num_clients": 10, "per_round": 6, "dropout_fraction": 0.2},
    )
    # round 1: four of six participants' training raises; 2 are left, below the threshold
    failures: dict[int, set[int]] = {}

    def fail(rnd: int, client: int) -> bool:
        if rnd != 1:
            return False
        bucket = failures.setdefault(rnd, set())
        if len(bucket) < 4:
            bucket.add(client)
            return True
        return False

    fed = build(cfg, keep_history=True, fail=fail)
    res = fed.run()
    statuses = [r.status for r in res.records]
    assert statuses == ["ok", "failed", "ok", "ok"]
    r0, r1 = res.records[0], res.records[1]
    assert len(r0.survivors) == 5 and len(r0.participants) == 6  # one simulated dropout
    assert sorted(r1.failed_training) == sorted(failures[1])
    np.testing.assert_array_equal(res.history[2], res.history[1])  # model unchanged
    assert not np.array_equal(res.history[3], res.history[2])  # and training goes on


def test_dp_sgd_round_failure_lands_in_the_server_ledger() -> None:
    cfg = tiny_config(
        experiment={"rounds": 2},
        clients={"num_clients": 8, "dropout_fraction": 0.7, "dropout_step": "share_keys"},
        dp={"mechanism": "dp_sgd", "noise_multiplier": 1.0, "delta": 1e-4},
    )
    res = build(cfg).run()
    assert [r.status for r in res.records] == ["failed", "failed"]
    assert all(not r.released_shares for r in res.records)
    assert all(r.epsilon_bound == 0.0 for r in res.records)  # server ledger: zero cost
    # the clients trained (their own sample-level ledgers count it): epsilon > 0
    assert all((r.epsilon or 0.0) > 0.0 for r in res.records)
