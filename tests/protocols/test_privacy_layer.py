"""The bring-your-own-stack API, exactly as docs/training.md shows it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import dp
from protocols import PrivacyLayer, model_hash
from protocols.errors import ProtocolLayerError


def test_documented_example_with_dp_fedavg_and_a_ledger() -> None:
    model = torch.nn.Linear(4, 2)
    mech = dp.DPFedAvg(clip_norm=1.0, noise_multiplier=1.0, expected_clients=5, sample_rate=1.0)
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


# -- a ledger file attached, an abort at every point ---------------------------------------

_N = 10


def _ups(seed: int) -> dict[int, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {c: rng.uniform(-0.5, 0.5, 20) for c in range(_N)}


def _layer(path: Path, backend: str, params: dict[str, Any]) -> PrivacyLayer:
    mech = dp.DPFedAvg(clip_norm=1.0, noise_multiplier=1.0, expected_clients=_N, sample_rate=1.0)
    ledger = dp.PrivacyLedger.create(path, delta=1e-5, target_epsilon=50.0)
    return PrivacyLayer(
        backend=backend, backend_params=params, dp=mech, ledger=ledger, noise_seed=0
    )


# (backend, its parameters, dropout point of 9 of the 10 clients, shares released)
_ABORTS = [
    pytest.param("masking", {"setting": s}, step, released, id=f"{s[:6]}-{step}")
    for s, steps in (
        ("honest_but_curious", ("start", "advertise_keys", "share_keys", "masked_input")),
        ("active", ("start", "advertise_keys", "share_keys", "masked_input", "consistency_check")),
    )
    for step in steps
    for released in [
        (s, step) in {("honest_but_curious", "masked_input"), ("active", "consistency_check")}
    ]
] + [
    pytest.param("plaintext", {"min_survivors": 2}, "share_keys", False, id="plaintext"),
    pytest.param(
        "paillier",
        {"key_bits": 512, "insecure_test_key": True},
        "share_keys",
        False,
        id="paillier",
    ),
]


@pytest.mark.parametrize(("backend", "params", "step", "released"), _ABORTS)
def test_a_ledger_file_survives_an_abort_at_every_point(
    backend: str, params: dict[str, Any], step: str, released: bool, tmp_path: Path
) -> None:
    """Round 1 aborts at ``step``: it lands in the ledger file at zero cost, or counted
    when unmasking shares went out; the session goes on and the file verifies."""
    path = tmp_path / "server.jsonl"
    layer = _layer(path, backend, params)
    ledger = layer.ledger
    assert layer.aggregate(_ups(0), model_hash=b"\x00" * 32).status == "committed"
    eps = ledger.epsilon()
    out = layer.aggregate(
        _ups(1), model_hash=b"\x01" * 32, dropouts=dict.fromkeys(range(_N - 1), step)
    )
    assert out.status == "failed" and out.update is None
    assert out.released_shares is released
    status = "aborted_released" if released else "aborted_unreleased"
    assert out.ledger_entry.round == 1 and out.ledger_entry.status == status
    assert (ledger.epsilon() > eps) is released
    after = layer.aggregate(_ups(2), model_hash=b"\x02" * 32)  # the session goes on
    assert after.status == "committed" and after.ledger_entry.round == 2
    ledger.close()
    assert [e.status for e in dp.read_ledger(path).entries] == ["committed", status, "committed"]
    assert dp.verify_ledger(path).rounds_counted == (3 if released else 2)


def test_a_ledger_file_survives_aborts_before_aggregation(tmp_path: Path) -> None:
    """No clients, or updates refused before anything is sent: zero cost, in order."""
    path = tmp_path / "server.jsonl"
    layer = _layer(path, "masking", {})
    empty = layer.aggregate({}, model_hash=b"\x00" * 32)
    assert empty.status == "failed" and empty.ledger_entry.status == "aborted_unreleased"
    bad = {c: np.zeros(4 if c == 1 else 3) for c in range(_N)}
    with pytest.raises(ProtocolLayerError):
        layer.aggregate(bad, model_hash=b"\x01" * 32)
    assert layer.ledger.entries[-1].round == 1
    assert layer.ledger.entries[-1].status == "aborted_unreleased"
    assert layer.aggregate(_ups(0), model_hash=b"\x02" * 32).status == "committed"
    layer.ledger.close()
    assert [e.round for e in dp.read_ledger(path).entries] == [0, 1, 2]
    assert dp.verify_ledger(path).rounds_counted == 1


@pytest.mark.parametrize("backend", ["masking", "plaintext"])
def test_dp_fedavg_releases_the_accounted_noise_after_the_commit(
    backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """d = 10 000, every update far above C: the released update minus the mean of the
    L2-clipped updates is N(0, (z S / m)^2) per coordinate at the ledger's z, S and m
    (chi^2 test at confidence 1 - 1e-6, tests/dp/stats.py), with no component along the
    clipped sum (the clip holds); the round's entry is in the ledger file when the
    mechanism releases."""
    from tests.dp.stats import assert_centred_along, assert_noise

    d, clip = 10_000, 1.0
    path = tmp_path / "server.jsonl"
    mech = dp.DPFedAvg(clip_norm=clip, noise_multiplier=1.0, expected_clients=_N, sample_rate=1.0)
    ledger = dp.PrivacyLedger.create(path, delta=1e-5)
    layer = PrivacyLayer(backend=backend, dp=mech, ledger=ledger)
    on_disk: list[Any] = []
    release = mech.release

    def watched(total: Any, **kw: Any) -> Any:
        on_disk.append(dp.read_ledger(path).entries[-1])
        return release(total, **kw)

    monkeypatch.setattr(mech, "release", watched)
    rng = np.random.default_rng(5)
    ups = {c: rng.uniform(-1.0, 1.0, d) for c in range(_N)}
    assert min(np.linalg.norm(u) for u in ups.values()) > 10 * clip
    out = layer.aggregate(ups, model_hash=b"\x05" * 32)
    assert out.status == "committed" and out.update is not None
    assert [(e.round, e.status) for e in on_disk] == [(0, "committed")]
    clipped = sum(u * (clip / np.linalg.norm(u)) for u in ups.values())
    p = out.ledger_entry.params
    sigma = p.noise_multiplier * p.sensitivity / float(p.extra["expected_clients"])
    residual = out.update - clipped / _N
    assert_noise(residual, sigma)
    assert_centred_along(residual, clipped, sigma)
    ledger.close()
