"""Masking and Paillier without DP track plaintext FedAvg round for round (several
parameter tensors, weighting by examples), within the quantisation error."""

from __future__ import annotations

import numpy as np
import pytest

from protocols.fedavg import FedAvgResult, build
from tests.protocols.conftest import paillier_available, tiny_config


def _history(**backend: object) -> FedAvgResult:
    cfg = tiny_config(backend=backend)
    return build(cfg, keep_history=True).run()


def _check_tracks(secure: FedAvgResult, plain: FedAvgResult, atol: float) -> None:
    assert len(secure.history) == len(plain.history) == 4
    for r, (a, b) in enumerate(zip(secure.history, plain.history, strict=True)):
        assert np.max(np.abs(a - b)) <= atol, f"round {r}: {np.max(np.abs(a - b))}"
    moved = np.max(np.abs(plain.history[-1] - plain.history[0]))
    assert moved > 100 * atol  # the model did train


def test_masking_tracks_plaintext_fedavg() -> None:
    plain = _history(name="plaintext")
    secure = _history(name="masking", setting="honest_but_curious")
    assert all(r.status == "ok" for r in secure.records)
    _check_tracks(secure, plain, atol=1e-5)


def test_masking_active_secagg_plus_tracks_plaintext_fedavg() -> None:
    plain = _history(name="plaintext")
    secure = _history(name="masking", setting="active", graph="secagg+")
    _check_tracks(secure, plain, atol=1e-5)


def test_paillier_tracks_plaintext_fedavg() -> None:
    if not paillier_available():
        pytest.skip("secagg.paillier has not landed")
    plain = _history(name="plaintext")
    secure = _history(name="paillier", key_bits=1024, insecure_test_key=True, value_bits=24)
    assert all(r.status == "ok" for r in secure.records)
    _check_tracks(secure, plain, atol=1e-4)
