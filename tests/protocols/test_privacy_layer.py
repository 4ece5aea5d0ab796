"""The bring-your-own-stack API, exactly as docs/training.md shows it."""

from __future__ import annotations

import numpy as np
import torch

import dp
from protocols import PrivacyLayer, model_hash


def test_documented_example_with_dp_fedavg_and_a_ledger() -> None:
    model = torch.nn.Linear(4, 2)
    mech = dp.DPFedAvg(clip_norm=1.0, noise_multiplier=1.0, expected_clients=5, sample_rate=0.05)
    ledger = dp.PrivacyLedger.in_memory(delta=1e-5, target_epsilon=10.0)
    layer = PrivacyLayer(backend="masking", dp=mech, ledger=ledger)

    updates = {
        cid: {k: 0.01 * torch.randn_like(p) for k, p in model.named_parameters()}
        for cid in range(5)
    }  # your clients' update tensors, by client id
    out = layer.aggregate(updates, model_hash=model_hash(model))

    assert out.status == "committed" and out.survivors == (0, 1, 2, 3, 4)
    assert out.update is not None and out.update.shape == (10,)
    assert out.ledger_entry.counted and out.ledger_entry.mechanism == "dp_fedavg"
    assert ledger.epsilon() > 0


def test_plain_secure_mean_of_tensors_is_exact() -> None:
    layer = PrivacyLayer(backend="masking", backend_params={"setting": "honest_but_curious"})
    xs = {c: torch.linspace(-0.5, 0.5, 7) * (c + 1) / 6 for c in range(6)}
    out = layer.aggregate(xs, model_hash=b"\x00" * 32)
    assert out.update is not None and out.ledger_entry is None
    np.testing.assert_allclose(out.update, sum(x.numpy() for x in xs.values()) / 6, atol=1e-6)
