"""The Opacus DP-SGD client wrapper on a small real dataset (scikit-learn's digits)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("opacus")

from torch.utils.data import DataLoader, TensorDataset, WeightedRandomSampler  # noqa: E402

from dp import accounting  # noqa: E402
from dp.errors import (  # noqa: E402
    BudgetExceededError,
    DeltaError,
    UnsupportedModuleError,
    UnsupportedSamplerError,
)
from dp.ledger import read_ledger  # noqa: E402
from dp.opacus_client import DPSGDClient  # noqa: E402


@pytest.fixture(scope="module")
def digits() -> tuple[Any, Any, Any, Any]:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x / 16.0, dtype=torch.float32)
    y = torch.tensor(y)
    return x[:1500], y[:1500], x[1500:], y[1500:]


def _model() -> Any:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))


def _alice(tmp_path: Path, **kw: Any) -> DPSGDClient:
    return DPSGDClient(
        "alice",
        max_grad_norm=1.0,
        delta=1e-4,
        noise_multiplier=1.0,
        epochs_per_round=2,
        ledger_path=tmp_path / "alice.jsonl",
        **kw,
    )


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def test_learns_and_reports_the_accountants_epsilon(digits: Any, tmp_path: Path) -> None:
    x, y, xt, yt = digits
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    loader = DataLoader(TensorDataset(x, y), batch_size=50, shuffle=True)
    client = _alice(tmp_path, noise_seed=0)
    total_steps = 0
    for _ in range(3):  # same model and optimizer every round: no "hooks twice"
        result = client.train_round(model, opt, loader)
        total_steps += result.steps
        # charged before release: the round is on disk when its update is returned
        last = read_ledger(tmp_path / "alice.jsonl").entries[-1]
        assert last.round == result.round and last.status == "committed"
        assert last.epsilon_cumulative.rdp == pytest.approx(result.privacy.epsilon_rdp)
    model.eval()
    accuracy = (model(xt).argmax(1) == yt).float().mean().item()
    assert accuracy > 0.6  # chance is 0.1
    assert result.round == 2 and result.privacy.rounds == 3
    want = accounting.epsilon(
        sample_rate=1 / len(loader), noise_multiplier=1.0, steps=total_steps, delta=1e-4
    )
    assert result.privacy.epsilon == pytest.approx(want, rel=1e-9)
    want_pld = accounting.epsilon(
        sample_rate=1 / len(loader),
        noise_multiplier=1.0,
        steps=total_steps,
        delta=1e-4,
        accountant="pld",
    )
    assert result.privacy.epsilon_pld == pytest.approx(want_pld, rel=1e-3)
    # Opacus's own accountant (other orders) agrees
    assert client._engine.get_epsilon(1e-4) == pytest.approx(want, rel=0.01)
    # detached cleanly: no hooks, no per-sample attributes left
    assert not model._forward_hooks and not model[0]._forward_hooks
    for p in model.parameters():
        assert not hasattr(p, "grad_sample") and p.grad is None
    assert result.flat_update().shape == (64 * 64 + 64 + 64 * 10 + 10,)
    assert client.epsilon() == result.privacy.epsilon
    client.close()
    # the same identity after a restart resumes its spending
    again = _alice(tmp_path)
    assert again.epsilon() == result.privacy.epsilon
    again.close()


def test_target_mode_fixes_sigma_for_the_plan_and_guard_stops(digits: Any) -> None:
    x, y, _, _ = digits
    loader = DataLoader(TensorDataset(x[:400], y[:400]), batch_size=40, shuffle=True)
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    client = DPSGDClient(
        "bob",
        max_grad_norm=1.0,
        delta=1e-3,
        target_epsilon=2.0,
        planned_rounds=3,
        epochs_per_round=1,
    )
    sigmas, eps = [], []
    for _ in range(3):
        res = client.train_round(model, opt, loader)
        sigmas.append(res.noise_multiplier)
        eps.append(res.privacy.epsilon)
    assert len(set(sigmas)) == 1  # calibrated once for the plan
    assert eps[0] < eps[1] < eps[2] <= 2.0
    assert eps[2] > 1.9  # the plan spends the target by its last round, not the first
    with pytest.raises(BudgetExceededError):
        client.train_round(model, opt, loader)
    assert client.ledger.last_round == 2


def test_refuses_batchnorm_with_opacus_message_and_fix(digits: Any) -> None:
    x, y, _, _ = digits
    model = torch.nn.Sequential(
        torch.nn.Linear(64, 16), torch.nn.BatchNorm1d(16), torch.nn.Linear(16, 10)
    )
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    client = DPSGDClient("carol", max_grad_norm=1.0, delta=1e-4, noise_multiplier=1.0)
    with pytest.raises(UnsupportedModuleError, match=r"BatchNorm.*ModuleValidator\.fix"):
        client.train_round(model, opt, DataLoader(TensorDataset(x, y), batch_size=50))
    assert client.ledger.entries == ()


def test_refuses_weighted_sampler(digits: Any) -> None:
    x, y, _, _ = digits
    ds = TensorDataset(x, y)
    sampler = WeightedRandomSampler(torch.ones(len(ds)), num_samples=len(ds))
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    client = DPSGDClient("dan", max_grad_norm=1.0, delta=1e-4, noise_multiplier=1.0)
    with pytest.raises(UnsupportedSamplerError, match="WeightedRandomSampler"):
        client.train_round(model, opt, DataLoader(ds, batch_size=50, sampler=sampler))
    assert client.ledger.entries == ()


def test_delta_must_be_below_one_over_n(digits: Any) -> None:
    x, y, _, _ = digits
    client = DPSGDClient("eve", max_grad_norm=1.0, delta=1e-2, noise_multiplier=1.0)
    model = _model()
    with pytest.raises(DeltaError):
        client.train_round(
            model,
            torch.optim.SGD(model.parameters(), lr=0.1),
            DataLoader(TensorDataset(x[:200], y[:200]), batch_size=20),
        )


def test_failure_mid_round_costs_nothing(digits: Any) -> None:
    x, y, _, _ = digits
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    client = DPSGDClient("frank", max_grad_norm=1.0, delta=1e-4, noise_multiplier=1.0)

    def broken(out: Any, target: Any) -> Any:
        raise RuntimeError("boom")

    loader = DataLoader(TensorDataset(x, y), batch_size=50)
    with pytest.raises(RuntimeError, match="boom"):
        client.train_round(model, opt, loader, loss_fn=broken)
    (entry,) = client.ledger.entries
    assert entry.status == "aborted_unreleased" and client.epsilon() == 0.0
    client.train_round(model, opt, loader)  # hooks were removed: the next round works
    assert client.epsilon() > 0.0


def test_dp_sgd_step_is_the_clipped_sum_plus_the_accounted_noise(
    digits: Any, tmp_path: Path
) -> None:
    """One DP-SGD step over one batch of all n examples (Poisson sampling at q = 1 takes
    every one): the update is -lr (sum_i clip_C(g_i) + N(0, (sigma C)^2)) / n. Taking out
    the per-example clipped sum (plain autograd here) leaves a residual that passes the
    chi^2 test of tests/dp/stats.py (confidence 1 - 1e-6) at the sigma and C the ledger
    accounts (the noise is there), and has no component along the clipped sum (the clip
    holds: at these sizes a clip 20% off shifts it by about 12 sigma). The round is in
    the ledger file before train_round returns the update."""
    from tests.dp.stats import assert_centred_along, assert_noise

    x, y = digits[0][:256], digits[1][:256]
    n, clip, lr = len(x), 0.05, 1.0
    model = _model()
    clipped = None
    norms = []
    for i in range(n):
        model.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x[i : i + 1]), y[i : i + 1]).backward()
        g = torch.cat([p.grad.reshape(-1) for p in model.parameters()]).double()
        norms.append(float(g.norm()))
        part = g * min(1.0, clip / norms[-1])
        clipped = part if clipped is None else clipped + part
    model.zero_grad(set_to_none=True)
    assert clipped is not None and min(norms) > 2 * clip  # the clip binds for every example
    client = DPSGDClient(
        "gina",
        max_grad_norm=clip,
        delta=1e-4,
        noise_multiplier=0.5,
        ledger_path=tmp_path / "gina.jsonl",
        noise_seed=5,
    )
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    res = client.train_round(model, opt, DataLoader(TensorDataset(x, y), batch_size=n))
    (entry,) = read_ledger(tmp_path / "gina.jsonl").entries  # on disk with the update
    assert entry.round == res.round and entry.status == "committed"
    assert res.steps == 1 and res.sample_rate == 1.0
    p = entry.params
    sigma = lr * p.noise_multiplier * p.clip_norm / n
    residual = res.flat_update() + lr * clipped.numpy() / n
    assert_noise(residual, sigma)
    assert_centred_along(residual, clipped.numpy(), sigma)
    client.close()
