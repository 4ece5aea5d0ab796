"""``secagg bench fedavg``: time per FedAvg round by phase, secure vs plaintext.

Two cases, each run twice on the same data, seeds and DP: once with secure aggregation
and once with the plaintext backend, so the ratio isolates the cost of secure
aggregation. Per round the loop records local training (DP-SGD
noise and clipping included when on), encoding/masking (client side of the backend:
quantisation, key agreement, mask expansion), server aggregation (the server's side, and
for masking the unmasking), and DP (ledger begin/commit with fsync-free in-memory
ledger, central noise). Figures are means over the rounds after the first (warm-up).

* ``demo``: the ``secagg demo`` config (20 clients, MLP 64-64-10, SecAgg+ masking in the
  active setting, DP-SGD on every client) vs the same with plaintext aggregation.
* ``1m``: an MLP 64-1024-896-10 (993,930 parameters) at 100 clients (IID digits), SecAgg+
  masking (honest-but-curious) with DP-FedAvg central noise vs the same in plaintext.
  ``--quick`` shrinks it to 64-256-10 (19,210 parameters) at 50 clients.

``overhead_*`` is (secure round time) / (plaintext round time), both summed over phases.
"""

from __future__ import annotations

import statistics
from typing import Any

PHASES = ("local_training", "encode_mask", "server_aggregate", "dp")


def _cases(quick: bool) -> list[tuple[str, Any, Any]]:
    from protocols.demo import demo_config
    from protocols.experiment import ExperimentConfig

    demo = demo_config(rounds=3 if quick else 5)
    hidden = [256] if quick else [1024, 896]
    clients = 50 if quick else 100
    big = ExperimentConfig.from_dict(
        {
            "experiment": {"name": "bench-1m", "seed": 0, "rounds": 2 if quick else 3},
            "model": {"kind": "mlp", "hidden": hidden},
            "data": {"dataset": "digits", "split": "iid", "min_client_size": 10},
            "clients": {
                "num_clients": clients,
                "per_round": clients,
                "sampling": "poisson",
                "weighting": "uniform",
            },
            "training": {"batch_size": 16, "lr": 0.1},
            "backend": {"name": "masking", "setting": "honest_but_curious", "clip": 1.0},
            "dp": {
                "mechanism": "dp_fedavg",
                "noise_multiplier": 1.0,
                "clip_norm": 1.0,
                "delta": 1e-4,
            },
        }
    )
    plain = {"name": "plaintext"}
    return [
        ("demo", demo, demo.replace(backend=plain)),
        ("1m", big, big.replace(backend=plain)),
    ]


def _measure(cfg: Any, progress: bool, label: str) -> dict[str, Any]:
    from protocols.fedavg import build

    fed = build(cfg)
    res = fed.run(progress=progress, label=label)
    rounds = res.records[1:] or res.records
    row: dict[str, Any] = {
        "params": fed.spec.dimension,
        "clients": len(res.records[-1].participants),
    }
    for phase in PHASES:
        row[f"{phase}_s"] = statistics.fmean(r.timings.get(phase, 0.0) for r in rounds)
    row["round_s"] = sum(row[f"{p}_s"] for p in PHASES)
    row["bytes_up_kB"] = statistics.fmean(r.bytes_up for r in rounds) / 1e3
    row["final_accuracy"] = res.final_accuracy
    return row


def run(quick: bool = False, progress: bool = False) -> dict[str, Any]:
    """Per-phase round times for both cases, secure and plaintext, and the overheads."""
    import torch

    torch.set_num_threads(1)
    rows: list[dict[str, Any]] = []
    out: dict[str, Any] = {"quick": quick}
    for name, secure, plain in _cases(quick):
        s = {"case": name, "run": "secure"} | _measure(secure, progress, f"{name} secure")
        p = {"case": name, "run": "plaintext"} | _measure(plain, progress, f"{name} plaintext")
        rows += [s, p]
        out[f"overhead_{name}"] = s["round_s"] / p["round_s"]
        out[f"overhead_{name}_excluding_training"] = (s["round_s"] - s["local_training_s"]) / max(
            p["round_s"] - p["local_training_s"], 1e-9
        )
    out["rounds"] = rows
    return out
