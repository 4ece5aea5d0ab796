"""``secagg bench dp``: cost of DP-SGD through the wrapper, and of accounting at round 1000.

Figures:

* ``plain_step_ms`` / ``opacus_step_ms`` / ``wrapper_step_ms``: time per training step of
  the same MLP on the same data (scikit-learn digits, batch 64): non-private torch,
  Opacus used directly (``make_private`` once), and :class:`dp.DPSGDClient` (one
  ``train_round`` per round: validation, guard, ``make_private``, training, detach,
  ledger commit with fsync, all included). Ratios: ``opacus_vs_plain``,
  ``wrapper_vs_opacus`` (goal < 1.05): medians of interleaved repetitions (``*_best``:
  ratios of the fastest repetitions).
* ``ledger_round_ms_rdp_at_1000`` / ``ledger_round_ms_pld_at_1000``: after 1000 rounds
  with varying (sigma, q), compose one more round with a new (sigma, q) and query epsilon.
  ``history_distinct_params`` says how many distinct (sigma, q) the 1000 rounds used
  (1000 in the full run; a pool of 25 with ``--quick`` to stay under a minute).
* ``ledger_commit_ms_at_1000`` (full run only): a whole ``begin_round`` + ``commit`` of
  a file ledger (RDP and PLD, with and without sampling, fsync) at round 1000, new (sigma, q).
* ``opacus_rdp_query_ms_at_1000`` (full run only): Opacus's RDP accountant queried once
  on the same varied history (it recomputes the whole history).
"""

from __future__ import annotations

import statistics
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

_BATCH = 64
_DELTA = 1e-5


def _data() -> tuple[Any, Any]:
    import torch
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    return torch.tensor(x / 16.0, dtype=torch.float32), torch.tensor(y)


def _model() -> Any:
    import torch

    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(64, 256),
        torch.nn.ReLU(),
        torch.nn.Linear(256, 256),
        torch.nn.ReLU(),
        torch.nn.Linear(256, 10),
    )


def _time_plain(x: Any, y: Any, epochs: int) -> float:
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loader = DataLoader(TensorDataset(x, y), batch_size=_BATCH, shuffle=True)
    steps, start = 0, time.perf_counter()
    for _ in range(epochs):
        for xb, yb in loader:
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(model(xb), yb).backward()  # type: ignore[no-untyped-call]
            opt.step()
            steps += 1
    return (time.perf_counter() - start) / steps


def _time_opacus(x: Any, y: Any, epochs: int) -> float:
    import torch
    from opacus import PrivacyEngine
    from torch.utils.data import DataLoader, TensorDataset

    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loader = DataLoader(TensorDataset(x, y), batch_size=_BATCH, shuffle=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        engine = PrivacyEngine(accountant="rdp")
        steps, start = 0, time.perf_counter()
        gsm, dp_opt, dp_loader = engine.make_private(
            module=model,
            optimizer=opt,
            data_loader=loader,
            noise_multiplier=1.0,
            max_grad_norm=1.0,
            poisson_sampling=True,
        )
        for _ in range(epochs):
            for xb, yb in dp_loader:
                dp_opt.zero_grad(set_to_none=True)
                torch.nn.functional.cross_entropy(gsm(xb), yb).backward()  # type: ignore[no-untyped-call]
                dp_opt.step()
                steps += 1
        engine.get_epsilon(_DELTA)
    return (time.perf_counter() - start) / steps


def _time_wrapper(x: Any, y: Any, epochs: int, ledger_dir: Path, tag: str) -> float:
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from dp.opacus_client import DPSGDClient

    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loader = DataLoader(TensorDataset(x, y), batch_size=_BATCH, shuffle=True)
    client = DPSGDClient(
        f"bench-{tag}",
        max_grad_norm=1.0,
        delta=_DELTA,
        noise_multiplier=1.0,
        epochs_per_round=1,
        ledger_path=ledger_dir / f"client-{tag}.jsonl",
    )
    steps, start = 0, time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(epochs):
            steps += client.train_round(model, opt, loader).steps
    client.close()
    return (time.perf_counter() - start) / steps


def _history(rounds: int, distinct: int, seed: int) -> list[tuple[float, float]]:
    rng = np.random.default_rng(seed)
    pool = [
        (float(rng.uniform(0.005, 0.02)), float(rng.uniform(0.8, 1.4))) for _ in range(distinct)
    ]
    return [pool[i % distinct] for i in range(rounds)]


def _accounting(quick: bool, bar: Any) -> dict[str, float | int | str]:
    from dp.accountants import MechanismStep, PLDAccountant, RDPAccountant
    from dp.ledger import PrivacyLedger, round_cost

    rounds = 1000
    distinct = 25 if quick else rounds
    history = _history(rounds, distinct, seed=1)
    out: dict[str, float | int | str] = {
        "history_rounds": rounds,
        "history_distinct_params": distinct,
    }
    fresh = (0.0123456, 1.0987654)  # (q, sigma) never seen in the history
    for name, acc in (("rdp", RDPAccountant()), ("pld", PLDAccountant())):
        for q, sigma in history:
            acc.compose(MechanismStep(q, sigma, 1))
        acc.get_epsilon(_DELTA)
        start = time.perf_counter()
        acc.compose(MechanismStep(fresh[0], fresh[1], 1))
        eps = acc.get_epsilon(_DELTA)
        out[f"ledger_round_ms_{name}_at_1000"] = (time.perf_counter() - start) * 1e3
        out[f"epsilon_{name}_at_1001"] = eps
        bar.update(1)
    if quick:
        bar.update(1)
        return out
    ledger_history = _history(rounds, 25, seed=2)
    with tempfile.TemporaryDirectory() as tmp:
        ledger = PrivacyLedger.create(Path(tmp) / "server.jsonl", delta=_DELTA)
        for r, (q, sigma) in enumerate(ledger_history):
            cost = round_cost(
                mechanism="dp_fedavg",
                noise_location="central",
                sample_rate=q,
                noise_multiplier=sigma,
                steps=1,
                clip_norm=1.0,
            )
            ledger.commit(ledger.begin_round(r, cost))
        cost = round_cost(
            mechanism="dp_fedavg",
            noise_location="central",
            sample_rate=0.0111,
            noise_multiplier=1.111,
            steps=1,
            clip_norm=1.0,
        )
        start = time.perf_counter()
        ledger.commit(ledger.begin_round(rounds, cost))
        out["ledger_commit_ms_at_1000"] = (time.perf_counter() - start) * 1e3
        ledger.close()
    bar.update(1)
    from opacus.accountants import RDPAccountant as OpacusRDP

    opacus_acc: Any = OpacusRDP()
    for q, sigma in history:
        opacus_acc.step(noise_multiplier=sigma, sample_rate=q)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        opacus_acc.get_epsilon(_DELTA)
    out["opacus_rdp_query_ms_at_1000"] = (time.perf_counter() - start) * 1e3
    return out


def run(quick: bool, progress: bool) -> dict[str, float | int | str]:
    """Run the benchmark; see the module docstring for the figures."""
    import torch
    from tqdm import tqdm

    torch.set_num_threads(1)
    x, y = _data()
    reps = 3 if quick else 5
    epochs = 2 if quick else 6
    bar = tqdm(total=3 * reps + 3, desc="bench dp", disable=not progress, file=None)
    plain, opac, wrap = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        _time_opacus(x, y, 1)  # warm-up (imports, allocator)
        for rep in range(reps):  # interleaved so drifting load hits all three alike
            plain.append(_time_plain(x, y, epochs))
            bar.update(1)
            opac.append(_time_opacus(x, y, epochs))
            bar.update(1)
            wrap.append(_time_wrapper(x, y, epochs, Path(tmp), str(rep)))
            bar.update(1)
    # medians of interleaved repetitions (the machine is shared); best-of figures beside
    p, o, w = statistics.median(plain), statistics.median(opac), statistics.median(wrap)
    result: dict[str, float | int | str] = {
        "model": "MLP 64-256-256-10, digits (1797), batch 64, sigma 1, C 1, 1 epoch/round",
        "torch_threads": 1,
        "epochs_per_measure": epochs,
        "repetitions": reps,
        "plain_step_ms": p * 1e3,
        "opacus_step_ms": o * 1e3,
        "wrapper_step_ms": w * 1e3,
        "opacus_vs_plain": o / p,
        "wrapper_vs_opacus": w / o,
        "opacus_vs_plain_best": min(opac) / min(plain),
        "wrapper_vs_opacus_best": min(wrap) / min(opac),
    }
    result.update(_accounting(quick, bar))
    bar.close()
    return result
