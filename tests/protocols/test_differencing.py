"""Multi-round differencing (So et al., AAAI 2023): no client contributes twice for the same
model hash in one session unless its update carries fresh DP noise."""

from __future__ import annotations

import numpy as np
import pytest

from protocols.differencing import ContributionGuard
from protocols.errors import RepeatedContributionError
from protocols.fedavg import build
from protocols.privacy_layer import PrivacyLayer
from tests.protocols.conftest import tiny_config

H1, H2 = b"\x01" * 32, b"\x02" * 32


def test_guard_refuses_a_repeat_for_the_same_model_hash() -> None:
    g = ContributionGuard(b"s" * 16)
    g.check(H1, [1, 2, 3], fresh_noise=False)
    g.record(H1, [1, 2, 3])
    with pytest.raises(RepeatedContributionError) as info:
        g.check(H1, [3, 4], fresh_noise=False)
    assert info.value.clients == [3]
    g.check(H1, [3, 4], fresh_noise=True)  # fresh DP noise: allowed
    g.check(H2, [1, 2, 3], fresh_noise=False)  # a new model: allowed
    assert g.eligible(H1, range(6), fresh_noise=False) == [0, 4, 5]


def test_retry_of_a_failed_round_with_the_same_model_is_refused() -> None:
    rng = np.random.default_rng(0)
    ups = {c: rng.uniform(-1, 1, 8) for c in range(10)}
    layer = PrivacyLayer(backend="masking", backend_params={"setting": "active"})
    # clients 0-7 send their masked input and vanish before unmasking: the round fails
    failed = layer.aggregate(
        ups, model_hash=H1, dropouts=dict.fromkeys(range(8), "consistency_check")
    )
    assert failed.status == "failed"
    # the server retries the same model with a survivor set that differs by one client
    with pytest.raises(RepeatedContributionError):
        layer.aggregate({c: ups[c] for c in range(1, 10)}, model_hash=H1)
    # with a new model, or with fresh DP noise in every update, the round may go ahead
    assert layer.aggregate(ups, model_hash=H2).status == "committed"
    assert layer.aggregate(ups, model_hash=H1, fresh_noise=True).status == "committed"


def test_fedavg_never_resamples_a_contributor_of_a_failed_round_without_dp() -> None:
    cfg = tiny_config(
        experiment={"rounds": 2},
        clients={
            "num_clients": 12,
            "per_round": 6,
            "dropout_fraction": 0.85,
            "dropout_step": "masked_input",
        },
        backend={"name": "masking", "setting": "honest_but_curious"},
    )
    fed = build(cfg)
    res = fed.run()
    first, second = res.records
    assert first.status == "failed" and first.released_shares
    assert not set(first.participants) & set(second.participants)


def test_fedavg_with_dp_sgd_may_resample_after_a_failed_round() -> None:
    cfg = tiny_config(
        experiment={"rounds": 2},
        clients={"num_clients": 8, "dropout_fraction": 0.7, "dropout_step": "masked_input"},
        dp={"mechanism": "dp_sgd", "noise_multiplier": 1.0, "delta": 1e-4},
    )
    res = build(cfg).run()
    assert res.records[0].status == "failed"
    assert res.records[1].participants == res.records[0].participants  # fresh noise each round
