"""The committee benchmark: its setting is validated and every cost figure is produced
(no timing is asserted: benchmarks are never timed tests)."""

from __future__ import annotations

import pytest

from protocols.bench.paillier import main, parse_threshold, per_ciphertext_costs
from secagg.paillier import generate_keypair
from secagg.paillier.errors import ThresholdConfigError
from tests.paillier.test_threshold_vectors import deal


def test_parse_threshold() -> None:
    assert parse_threshold("3/5") == (3, 5)
    for bad in ("3", "3/2", "1/5", "a/b", "3/5/7", "-1/5"):
        with pytest.raises(ThresholdConfigError):
            parse_threshold(bad)
    with pytest.raises(ThresholdConfigError):
        main(["--threshold", "6/5", "--quick", "--json"])


def test_per_ciphertext_costs_are_positive() -> None:
    kp = generate_keypair(512, insecure_test_key=True)
    costs = per_ciphertext_costs(deal(3, 5), kp, 4, 1)
    assert set(costs) >= {"crt", "share", "prove", "optimistic", "combine", "verify"}
    assert all(v > 0 for v in costs.values())
