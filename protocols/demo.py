"""``secagg demo``: the main job on embedded defaults.

A small MLP on scikit-learn's digits (shipped inside scikit-learn), split non-IID
(Dirichlet, alpha = 1) across 20 simulated clients; every round all 20 train with DP-SGD
through :class:`dp.DPSGDClient` (sample-level DP, Opacus), 10% of them drop out before
sending their masked input, and the rest are aggregated with SecAgg+ masking in the
active-server setting (signed model hash). The same split and seeds are also trained
with plaintext FedAvg (no DP) as the baseline. With only 20 clients, user-level
DP-FedAvg noise would swamp the signal; ``examples/configs/dp_fedavg_population.toml``
shows DP-FedAvg on a larger population.

The report folder holds ``results.json``, ``ledger.jsonl`` (the server ledger: a
per-round upper bound over clients), ``client_ledgers/`` (each client's own ledger),
``accuracy.png``, ``epsilon.png`` and ``config.toml``. The ledger's head hash after each
round is in the table and in ``results.json`` (``ledger_head``): keep the last one
elsewhere to check the ledger later (``secagg budget verify --expect-head``).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, TextIO

from protocols.experiment import ExperimentConfig

DEMO_CONFIG: dict[str, dict[str, Any]] = {
    "experiment": {"name": "demo", "seed": 1, "rounds": 30},
    "model": {"kind": "mlp", "hidden": [64]},
    "data": {"dataset": "digits", "split": "dirichlet", "alpha": 1.0, "min_client_size": 40},
    "clients": {
        "num_clients": 20,
        "dropout_fraction": 0.1,
        "dropout_step": "share_keys",
        "weighting": "examples",
    },
    "training": {"local_epochs": 1, "batch_size": 32, "lr": 1.0, "loss": "cross_entropy"},
    "backend": {"name": "masking", "setting": "active", "graph": "secagg+", "clip": 1.0},
    "dp": {"mechanism": "dp_sgd", "noise_multiplier": 3.0, "max_grad_norm": 1.0, "delta": 1e-5},
}
QUICK_ROUNDS = 15


def demo_config(*, quick: bool = False, rounds: int | None = None) -> ExperimentConfig:
    """The embedded config (``quick``: fewer rounds)."""
    cfg = ExperimentConfig.from_dict(DEMO_CONFIG)
    n = rounds if rounds is not None else (QUICK_ROUNDS if quick else None)
    return cfg if n is None else cfg.replace(experiment={"rounds": n})


def baseline_of(cfg: ExperimentConfig) -> ExperimentConfig:
    """The plaintext FedAvg baseline of a config: same data, model and seeds, no DP."""
    return cfg.replace(backend={"name": "plaintext"}, dp={"mechanism": "none"})


def run_demo(
    out_dir: str | Path,
    *,
    quick: bool = False,
    rounds: int | None = None,
    config: ExperimentConfig | None = None,
    progress: bool = True,
    table: TextIO | None = None,
    quiet: bool = False,
) -> dict[str, Any]:
    """Run secure+DP and the baseline, write the report folder; return the results.

    The per-round table goes to ``table`` (default: ``sys.stdout`` as it is at call time,
    so redirection and capture work), or nowhere when ``quiet``.
    """
    from protocols.fedavg import records_json, run_experiment
    from protocols.report import plot_accuracy, plot_epsilon, write_json

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if (out / "ledger.jsonl").exists():
        raise FileExistsError(f"{out} already holds a demo report; pick another --out")
    cfg = config or demo_config(quick=quick, rounds=rounds)
    _write_toml(out / "config.toml", cfg.to_dict())
    if not quiet and table is None:
        table = sys.stdout
    say = None if quiet else table
    if say:
        print("secure aggregation (SecAgg+ masking, active) + DP-SGD on every client", file=say)
    t0 = time.perf_counter()
    secure = run_experiment(cfg, out_dir=out, progress=progress, table=table, label="secure+DP")
    t_secure = time.perf_counter() - t0
    if say:
        print("\nbaseline: plaintext FedAvg, no DP", file=say)
    t0 = time.perf_counter()
    base = run_experiment(baseline_of(cfg), progress=progress, table=table, label="baseline")
    t_base = time.perf_counter() - t0
    last = secure.records[-1]
    results: dict[str, Any] = {
        "config": cfg.to_dict(),
        "rounds": records_json(secure.records),
        "final_accuracy": secure.final_accuracy,
        "final_epsilon": last.epsilon,
        "final_epsilon_ledger_bound": last.epsilon_bound,
        "ledger_head": last.ledger_head,
        "delta": cfg.dp.delta,
        "seconds": t_secure,
        "baseline": {
            "rounds": records_json(base.records),
            "final_accuracy": base.final_accuracy,
            "seconds": t_base,
        },
        "notes": (
            "epsilon is sample-level: the max over participating clients of each client's "
            "cumulative epsilon (Opacus DP-SGD, RDP accountant); final_epsilon_ledger_bound "
            "is the server ledger's upper bound over all clients"
        ),
    }
    write_json(out / "results.json", results)
    plot_accuracy(
        {"SecAgg+ masking + DP-SGD": secure.records, "plaintext FedAvg (no DP)": base.records},
        out / "accuracy.png",
    )
    plot_epsilon(secure.records, out / "epsilon.png", delta=cfg.dp.delta)
    if say:
        eps = "-" if last.epsilon is None else f"{last.epsilon:.2f}"
        print(
            f"\nfinal accuracy: secure+DP {secure.final_accuracy:.3f} (epsilon {eps} at "
            f"delta {cfg.dp.delta:g}, {len(secure.records)} rounds, {t_secure:.0f} s), "
            f"baseline {base.final_accuracy:.3f} ({t_base:.0f} s)\nreport: {out}/",
            file=say,
        )
        if last.ledger_head is not None:
            print(
                f"ledger head: {last.ledger_head} (keep it elsewhere; check with `secagg "
                f"budget verify {out / 'ledger.jsonl'} --expect-head {last.ledger_head}`)",
                file=say,
            )
    return results


def _write_toml(path: Path, data: dict[str, dict[str, Any]]) -> None:
    lines = []
    for section, values in data.items():
        lines.append(f"[{section}]")
        for k, v in values.items():
            lines.append(f"{k} = {_toml_value(v)}")
        lines.append("")
    path.write_text("\n".join(lines))


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return repr(v)
