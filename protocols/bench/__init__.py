"""``secagg bench NAME``: the one benchmark entry point.

Each benchmark is a module exposing ``run(quick: bool, progress: bool) -> dict``; the
dict maps figure names to numbers (ratios included) and is printed as one JSON object
with ``--json``, or as a table otherwise. Modules are imported on demand so a benchmark
that needs an optional extra (torch, flwr) does not slow the others down.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from typing import Any

# name -> module path; later issues add secagg, paillier, dp, fedavg, flower.
BENCHMARKS: dict[str, str] = {
    "primitives": "protocols.bench.primitives",
    "secagg": "protocols.bench.secagg",
    "dp": "protocols.bench.dp",
    "paillier": "protocols.bench.paillier",
    "fedavg": "protocols.bench.fedavg",
    "flower": "protocols.bench.flower",
}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``bench`` subcommand."""
    p = sub.add_parser(
        "bench",
        help="run a benchmark (ratios to the hardware/library limits)",
        description="Run one benchmark and report its figures. Benchmarks: "
        + ", ".join(sorted(BENCHMARKS)),
    )
    p.add_argument("name", choices=sorted(BENCHMARKS), help="which benchmark")
    p.add_argument("--quick", action="store_true", help="smaller sizes, under a minute")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    g = p.add_argument_group("secagg: one configuration or the scale sweep")
    g.add_argument("--n", type=int, help="clients")
    g.add_argument("--d", type=int, help="vector length")
    g.add_argument("--dropout", type=float, help="fraction of clients that drop after ShareKeys")
    g.add_argument("--setting", choices=("honest_but_curious", "active"))
    g.add_argument("--graph", choices=("complete", "secagg+"))
    g.add_argument("--workers", type=int, help="client processes (default: one per core)")
    g.add_argument(
        "--sweep", action="store_true", help="n in {100, ..., 10^4} at one d, log-log slopes"
    )
    g = p.add_argument_group("paillier")
    g.add_argument("--threshold", help="a t/m committee, e.g. 3/5")
    p.set_defaults(func=_main)


def _options(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """The benchmark-specific options the user gave, refused for a benchmark without them."""
    given = {
        k: v
        for k in ("n", "d", "dropout", "setting", "graph", "workers", "sweep", "threshold")
        if (v := getattr(args, k, None)) not in (None, False)
    }
    module = importlib.import_module(BENCHMARKS[name])
    allowed = set(getattr(module, "OPTIONS", ()))
    bad = sorted(set(given) - allowed)
    if bad:
        raise SystemExit(
            f"secagg bench {name}: options {bad} do not apply (it takes {sorted(allowed)})"
        )
    return given


def run_benchmark(
    name: str, *, quick: bool = False, progress: bool = False, **options: Any
) -> dict[str, Any]:
    """Run benchmark ``name`` in this process and return its figures."""
    if name not in BENCHMARKS:
        raise KeyError(f"unknown benchmark {name!r}; known: {', '.join(sorted(BENCHMARKS))}")
    module = importlib.import_module(BENCHMARKS[name])
    result: dict[str, Any] = module.run(quick=quick, progress=progress, **options)
    return result


def _main(args: argparse.Namespace) -> int:
    options = _options(args.name, args)
    result = run_benchmark(args.name, quick=args.quick, progress=not args.json, **options)
    if args.json:
        json.dump(result, sys.stdout, indent=2, sort_keys=True)
        sys.stdout.write("\n")
    else:
        print(format_table(result))
    return 0


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def format_table(result: dict[str, Any]) -> str:
    """Figures as aligned text; lists of rows (e.g. per-configuration results) as tables."""
    lines = []
    scalars = {k: v for k, v in result.items() if not isinstance(v, list)}
    width = max((len(k) for k in scalars), default=0)
    for key in sorted(scalars):
        lines.append(f"{key:<{width}}  {_fmt(scalars[key])}")
    for key, rows in result.items():
        if not isinstance(rows, list) or not rows or not isinstance(rows[0], dict):
            continue
        cols = list(rows[0])
        cells = [[_fmt(r.get(c, "")) for c in cols] for r in rows]
        widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
        lines.append("")
        lines.append(f"{key}:")
        lines.append("  ".join(c.rjust(w) for c, w in zip(cols, widths, strict=True)))
        for row in cells:
            lines.append("  ".join(v.rjust(w) for v, w in zip(row, widths, strict=True)))
    return "\n".join(lines)
