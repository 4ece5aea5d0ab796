"""What every plot script shares: run ``secagg bench NAME --json`` or reuse a saved result."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def bench_data(name: str, description: str | None) -> dict[str, Any]:
    """Parse ``--from FILE`` / ``--quick``; return the figures, saving a fresh run's JSON."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--from", dest="src", type=Path, help="reuse a saved JSON result")
    ap.add_argument("--quick", action="store_true", help="run the bench with --quick")
    args = ap.parse_args()
    if args.src:
        data: dict[str, Any] = json.loads(args.src.read_text())
        return data
    cmd = [sys.executable, "-m", "protocols.cli", "bench", name, "--json"]
    if args.quick:
        cmd.append("--quick")
    data = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    out = ROOT / "benchmarks" / "results" / f"{name}.json"
    out.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return data


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
