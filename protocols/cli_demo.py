"""``secagg demo [--quick] [--out DIR]``: secure + private federated training end to end."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``demo`` subcommand."""
    p = sub.add_parser(
        "demo",
        help="train across 20 simulated clients with SecAgg+ and DP-SGD; write a report",
        description=(
            "The main job: an MLP on scikit-learn's digits, non-IID across 20 clients, DP-SGD "
            "on every client, SecAgg+ masking (active setting), 10%% dropouts per round; and "
            "the plaintext FedAvg baseline. Writes results.json, the ledgers and PNG plots."
        ),
    )
    p.add_argument("--quick", action="store_true", help="fewer rounds (about a minute)")
    p.add_argument("--out", default="demo-report", help="report folder (default: demo-report)")
    p.add_argument("--rounds", type=int, default=None, help="override the number of rounds")
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    import torch

    from protocols.demo import run_demo

    torch.set_num_threads(1)
    try:
        run_demo(args.out, quick=args.quick, rounds=args.rounds)
    except FileExistsError as exc:
        print(f"secagg demo: {exc}")
        return 2
    return 0
