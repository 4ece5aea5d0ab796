"""``secagg run CONFIG [--out DIR]``: run an experiment described by a TOML file."""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``run`` subcommand."""
    p = sub.add_parser(
        "run",
        help="run a federated training experiment from a TOML config",
        description="Run the FedAvg experiment a TOML file describes (docs/training.md).",
    )
    p.add_argument("config", help="experiment config (TOML)")
    p.add_argument("--out", default=None, help="folder for results.json and the ledger")
    p.add_argument("--quiet", action="store_true", help="no progress bar and no table")
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    from pathlib import Path

    from protocols.errors import ExperimentConfigError
    from protocols.experiment import ExperimentConfig

    try:
        cfg = ExperimentConfig.from_toml(args.config)
    except ExperimentConfigError as exc:
        print(f"secagg run: config error at {exc.key}: {exc}", file=sys.stderr)
        return 2
    import torch

    from protocols.fedavg import records_json, run_experiment
    from protocols.report import write_json

    torch.set_num_threads(1)
    out = Path(args.out) if args.out else None
    res = run_experiment(
        cfg,
        out_dir=out,
        progress=not args.quiet,
        table=None if args.quiet else sys.stdout,
    )
    acc = "-" if res.final_accuracy is None else f"{res.final_accuracy:.4f}"
    eps = res.records[-1].epsilon if res.records else None
    print(f"final accuracy {acc}, loss {res.final_loss:.6g}, epsilon {eps}")
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        write_json(
            out / "results.json",
            {
                "config": cfg.to_dict(),
                "rounds": records_json(res.records),
                "final_accuracy": res.final_accuracy,
                "final_loss": res.final_loss,
            },
        )
    return 0
