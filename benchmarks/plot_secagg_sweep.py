"""Plot ``secagg bench secagg --sweep --json`` (both settings): each figure against n on
log-log axes with its fitted slope, next to the reference growths log n, n and n log n.

    flock /tmp/bench.lock .venv/bin/python -m protocols.cli bench secagg --sweep --json \
        > benchmarks/results/secagg_sweep.json
    .venv/bin/python benchmarks/plot_secagg_sweep.py benchmarks/results/secagg_sweep.json
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from _common import ROOT, pyplot

FIGURES = (
    ("client_compute_s", "client compute per round", "seconds"),
    ("bytes_down_per_client", "bytes down per client", "bytes"),
    ("server_compute_s", "server compute", "seconds"),
    ("server_rss_peak_mib", "server peak memory", "MiB"),
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("src", type=Path, help="the sweep's JSON")
    data = json.loads(ap.parse_args().src.read_text())
    plt = pyplot()
    fig, axes = plt.subplots(1, len(FIGURES), figsize=(16, 3.9))
    for setting, sweep in sorted(data.items()):
        rows = sorted(sweep["rows"], key=lambda r: r["n"])
        ns = [r["n"] for r in rows]
        for ax, (key, _, _) in zip(axes, FIGURES, strict=True):
            label = f"{setting.replace('_', '-')}: slope {sweep[f'{key}_slope']:.2f}"
            ax.plot(ns, [r[key] for r in rows], "o-", label=label)
    for ax, (key, title, unit) in zip(axes, FIGURES, strict=True):
        lo, hi = ax.get_xlim()
        first = min(min(r["n"] for r in s["rows"]) for s in data.values())
        ref_y = min(r[key] for s in data.values() for r in s["rows"] if r["n"] == first)
        xs = [first * (10 ** (i / 8)) for i in range(0, 17)]
        for name, f in (
            ("log n", math.log),
            ("n", float),
            ("n log n", lambda x: x * math.log(x)),
        ):
            ax.plot(
                xs,
                [ref_y * f(x) / f(first) for x in xs],
                ":",
                color="grey",
                lw=0.8,
                label=name if key == FIGURES[0][0] else None,
            )
        ax.set_xlim(lo, hi)
        ax.set_title(title)
        ax.set_ylabel(unit)
        ax.set_xlabel("clients n")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    fig.tight_layout()
    target = ROOT / "docs" / "img" / "bench_secagg_sweep.png"
    fig.savefig(target, dpi=110)
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
