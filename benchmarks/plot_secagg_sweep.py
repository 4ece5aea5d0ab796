"""Plot the n-sweep of ``secagg bench secagg``: each figure against n on log-log axes
with its fitted slope, next to the reference growths log n, n and n log n. Reads either
``--sweep --json`` output (one sweep per setting) or the whole benchmark's JSON (its
``sweep_hbc`` rows).

    .venv/bin/python benchmarks/plot_secagg_sweep.py benchmarks/results/secagg.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from _common import ROOT, pyplot

FIGURES = (
    ("client_compute_s", "client compute per round", "seconds"),
    ("bytes_down_per_client", "bytes down per client", "bytes"),
    ("server_compute_s", "server compute", "seconds"),
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("src", type=Path, help="the sweep's JSON")
    raw = json.loads(ap.parse_args().src.read_text())
    data = {"honest_but_curious": {"rows": raw["sweep_hbc"]}} if "sweep_hbc" in raw else raw
    plt = pyplot()
    fig, axes = plt.subplots(1, len(FIGURES), figsize=(13, 3.9))
    series = {s: sorted(v["rows"], key=lambda r: r["n"]) for s, v in sorted(data.items())}
    active = sorted(
        (r for r in raw.get("scale", []) if r["setting"] == "active"), key=lambda r: r["n"]
    )
    for ax, (key, title, unit) in zip(axes, FIGURES, strict=True):
        ax.set_xscale("log")
        ax.set_yscale("log")
        for setting, rows in series.items():
            ns = [r["n"] for r in rows]
            ys = [max(r[key], 1e-9) for r in rows]
            fit = np.polyfit(np.log(ns), np.log(ys), 1)[0]
            ax.plot(
                ns,
                ys,
                "o-",
                label=f"{setting.replace('_', '-')} (d = {rows[0]['d']:.0e}): slope {fit:.2f}",
            )
            xs = np.geomspace(ns[0], ns[-1], 20)
            for name, f in (
                ("log n", np.log),
                ("n", lambda x: x),
                ("n log n", lambda x: x * np.log(x)),
            ):
                ax.plot(xs, ys[0] * f(xs) / f(ns[0]), ":", color="grey", lw=0.8)
                ax.annotate(name, (xs[-1], ys[0] * f(xs[-1]) / f(ns[0])), fontsize=6, color="grey")
        if active:
            ax.plot(
                [r["n"] for r in active],
                [r[key] for r in active],
                "s--",
                label="active, scale rows: "
                + ", ".join(f"n = {r['n']} at d = {r['d']:.0e}" for r in active),
            )
        ax.set_title(title)
        ax.set_ylabel(unit)
        ax.set_xlabel("clients n")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=6)
    fig.tight_layout()
    target = ROOT / "docs" / "img" / "bench_secagg_sweep.png"
    fig.savefig(target, dpi=110)
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
