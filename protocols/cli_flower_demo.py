"""``secagg flower-demo``: the demo on Flower's deployment engine, on loopback."""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``flower-demo`` subcommand."""
    p = sub.add_parser(
        "flower-demo",
        help="run the example Flower app (SecAgg+, DP-SGD) on a local SuperLink + N SuperNodes",
        description=(
            "Start a Flower SuperLink and N SuperNodes on loopback, run the example app "
            "(examples/flower-app: the demo's model, DP-SGD on every client, SecAgg+ secure "
            "aggregation), print the per-round table and stop every process (also on "
            "Ctrl-C). `secagg run` on the same config trains the same model."
        ),
    )
    p.add_argument(
        "--nodes", type=int, default=None, help="SuperNodes = clients (default: the config's)"
    )
    p.add_argument("--rounds", type=int, default=None, help="override the number of rounds")
    p.add_argument(
        "--setting",
        choices=("hbc", "active"),
        default=None,
        help="honest-but-curious or active server (default: the config's)",
    )
    p.add_argument(
        "--config",
        default=None,
        help="experiment TOML (default: examples/flower-app/experiment.toml)",
    )
    p.add_argument(
        "--out", default="flower-demo-report", help="report folder (default: flower-demo-report)"
    )
    p.add_argument("--timeout", type=float, default=None, help="seconds the run may take")
    p.add_argument(
        "--keep-logs", action="store_true", help="keep the deployment's logs and FLWR_HOME"
    )
    p.add_argument(
        "--keep-history", action="store_true", help="write every round's model to results.json"
    )
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    from protocols.errors import ExperimentConfigError
    from protocols.experiment import ExperimentConfig

    try:
        from protocols.flower.errors import FlowerDeploymentError
        from protocols.flower.example import run_flower_demo
    except ImportError as exc:
        print(f"secagg flower-demo: needs the flower extra ({exc})", file=sys.stderr)
        return 2
    try:
        cfg = ExperimentConfig.from_toml(args.config) if args.config else None
        run_flower_demo(
            args.out,
            config=cfg,
            nodes=args.nodes,
            rounds=args.rounds,
            setting=args.setting,
            timeout=args.timeout,
            keep_logs=args.keep_logs,
            keep_history=args.keep_history,
        )
    except ExperimentConfigError as exc:
        print(f"secagg flower-demo: config error at {exc.key}: {exc}", file=sys.stderr)
        return 2
    except FileExistsError as exc:
        print(f"secagg flower-demo: {exc}", file=sys.stderr)
        return 2
    except FlowerDeploymentError as exc:
        print(f"secagg flower-demo: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nsecagg flower-demo: interrupted; every process stopped", file=sys.stderr)
        return 130
    return 0
