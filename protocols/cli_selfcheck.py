"""``secagg selfcheck``: prove the primitives work on this machine, in one line."""

from __future__ import annotations

import argparse
import sys

from secagg.errors import SecAggError
from secagg.selfcheck import run_selfcheck


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``selfcheck`` subcommand."""
    p = sub.add_parser(
        "selfcheck",
        help="check the cryptographic primitives end to end (one line)",
        description="Mask, sum and unmask a tiny aggregation by hand; round-trip Shamir, "
        "AES-GCM and Ed25519. Exit status 1 if any primitive misbehaves.",
    )
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    try:
        print(run_selfcheck())
    except SecAggError as exc:
        print(f"selfcheck FAILED: {exc}", file=sys.stderr)
        return 1
    return 0
