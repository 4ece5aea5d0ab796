"""The worked case: 100 devices with 10 samples each train a linear regression by
federated gradient averaging, under every aggregation backend.

Each device i holds (x_ij, y_ij), j = 1..10, and the loss f_i(w) = (1/(2*10)) sum_j
(f(x_ij; w) - y_ij)^2 with f(x; w) = w . x + b. Its gradient is

    grad f_i(w) = (1/10) sum_j (f(x_ij; w) - y_ij) x_ij          (and likewise for b)

and the server steps w <- w - alpha * g with g = (1/N) sum_i grad f_i(w). The usual
textbook write-up states the local gradient as (1/10) sum_j (y_ij - f(w)) x_ij: that is
the *negative* gradient, and stepping w - alpha * (that) would climb the loss. We use the
correct sign above.

In FedAvg terms: one full-batch local SGD step at learning rate alpha gives each device
the update -alpha * grad f_i(w); the uniform mean of the updates is -alpha * g, and the
server adds it (server learning rate 1). The secure runs (SecAgg+ masking, Paillier) sum
the same updates without the server seeing any single one, and track the plaintext run
step for step to within the fixed-point quantisation error.

    .venv/bin/python examples/linear_regression_100_devices.py [--steps 20]
"""

from __future__ import annotations

import argparse
import importlib.util
from typing import Any

import numpy as np

from protocols.experiment import ExperimentConfig
from protocols.fedavg import build


def config(backend: dict[str, Any], steps: int, alpha: float) -> ExperimentConfig:
    """100 devices x 10 samples, one full-batch gradient step per device per round."""
    return ExperimentConfig.from_dict(
        {
            "experiment": {"name": f"linreg-{backend['name']}", "seed": 0, "rounds": steps},
            "model": {"kind": "linear"},
            "data": {"dataset": "synthetic_linear", "samples_per_client": 10, "dim": 5},
            "clients": {"num_clients": 100, "weighting": "uniform"},
            "training": {"batch_size": 0, "lr": alpha, "loss": "half_mse", "local_epochs": 1},
            "backend": {"clip": 2.0, **backend},
        }
    )


def numpy_reference(steps: int, alpha: float) -> list[np.ndarray]:
    """The same descent written out with the gradient formula above (weights, then bias)."""
    fed = build(config({"name": "plaintext"}, steps, alpha))
    xs = [d.tensors[0].double().numpy() for d in fed.data.clients]
    ys = [d.tensors[1].double().numpy()[:, 0] for d in fed.data.clients]
    w, b = np.zeros(xs[0].shape[1]), 0.0
    out = [np.append(w, b)]
    for _ in range(steps):
        gw, gb = np.zeros_like(w), 0.0
        for x, y in zip(xs, ys, strict=True):
            residual = x @ w + b - y  # f(x; w) - y: the correct sign
            gw += residual @ x / len(y)
            gb += residual.mean()
        w, b = w - alpha * gw / len(xs), b - alpha * gb / len(xs)
        out.append(np.append(w, b))
    return out


def run(
    steps: int = 20, alpha: float = 0.1, paillier_bits: int = 2048
) -> dict[str, list[np.ndarray]]:
    """The global model after every step, per backend (Paillier when it is installed)."""
    backends: list[dict[str, Any]] = [
        {"name": "plaintext"},
        {"name": "masking", "setting": "honest_but_curious"},
    ]
    if importlib.util.find_spec("secagg.paillier") is not None:
        backends.append(
            {
                "name": "paillier",
                "key_bits": paillier_bits,
                "insecure_test_key": paillier_bits < 2048,
            }
        )
    runs = {}
    for b in backends:
        res = build(config(b, steps, alpha), keep_history=True).run()
        runs[b["name"]] = res.history
    runs["numpy"] = numpy_reference(steps, alpha)
    return runs


def main() -> None:
    """Print, per step, the loss proxy |w| and each secure run's distance to plaintext."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--alpha", type=float, default=0.1)
    p.add_argument("--paillier-bits", type=int, default=2048)
    args = p.parse_args()
    runs = run(args.steps, args.alpha, args.paillier_bits)
    plain = runs["plaintext"]
    names = [n for n in runs if n != "plaintext"]
    print(f"{'step':>4}  {'w[0]':>9}  " + "  ".join(f"{'|' + n + ' - plain|':>18}" for n in names))
    for s, w in enumerate(plain):
        diffs = "  ".join(f"{np.max(np.abs(runs[n][s] - w)):>18.2e}" for n in names)
        print(f"{s:>4}  {w[0]:>9.5f}  {diffs}")


if __name__ == "__main__":
    main()
