"""The ``secagg`` command line.

Subcommands live in their own modules and register themselves through
:data:`SUBCOMMANDS` (name -> "module:function" that adds the subparser). Modules are
imported lazily, so ``secagg --help`` stays fast and a missing optional extra only
breaks the subcommand that needs it.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

import secagg

# name -> "module:register" where register(subparsers) adds the subcommand's parser and
# sets ``func`` (args -> exit code). Later issues add one line here each.
SUBCOMMANDS: dict[str, str] = {
    "selfcheck": "protocols.cli_selfcheck:register",
    "bench": "protocols.bench:register",
    "budget": "protocols.cli_budget:register",
    "run": "protocols.cli_run:register",
    "demo": "protocols.cli_demo:register",
    "audit": "protocols.cli_audit:register",
    "flower-demo": "protocols.cli_flower_demo:register",
}


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every registered subcommand."""
    parser = argparse.ArgumentParser(
        prog="secagg",
        description=(
            "secagg: a privacy layer for federated learning. The server learns only the "
            "aggregate of client updates (secure aggregation), and what the aggregate still "
            "leaks is bounded and accounted (differential privacy)."
        ),
    )
    parser.add_argument("--version", action="version", version=f"secagg {secagg.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for target in SUBCOMMANDS.values():
        module_name, func_name = target.split(":")
        register: Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None] = getattr(
            importlib.import_module(module_name), func_name
        )
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``secagg`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 0
    func: Callable[[argparse.Namespace], int] = args.func
    return func(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
