"""Run ``secagg bench flower --json`` (or reuse a saved result with ``--from``) and draw
docs/img/bench_flower.png: per-round wall time on Flower's deployment engine for plain
FedAvg, Flower's own SecAgg+ and ours (honest-but-curious and active), as a ratio to
plain FedAvg, with exchanges per round annotated; and bytes per client per round.

Run it under the benchmark lock, on a quiet machine (it starts a SuperLink and 10
SuperNodes): ``flock /tmp/secagg-bench.lock .venv/bin/python benchmarks/plot_flower.py``
(or ``--from benchmarks/results/flower.json``).
"""

from __future__ import annotations

from _common import ROOT, bench_data, pyplot

MODES = ("plain", "flower_secaggplus", "ours_hbc", "ours_active")
LABELS = {
    "plain": "plain FedAvg",
    "flower_secaggplus": "Flower SecAgg+",
    "ours_hbc": "ours, hbc",
    "ours_active": "ours, active",
}
COLOURS = {
    "plain": "#999999",
    "flower_secaggplus": "#d08c2f",
    "ours_hbc": "#6a9fd4",
    "ours_active": "#1f5fa8",
}


def main() -> None:
    r = bench_data("flower", __doc__)
    rows = r["results"]
    ds = sorted({row["d"] for row in rows})
    plt = pyplot()
    fig, (a, b) = plt.subplots(1, 2, figsize=(13, 4.4))
    width = 0.8 / len(MODES)
    for j, mode in enumerate(MODES):
        xs, ratio, ex = [], [], []
        for i, d in enumerate(ds):
            row = next((x for x in rows if x["mode"] == mode and x["d"] == d), None)
            if row is None:
                continue
            xs.append(i + (j - (len(MODES) - 1) / 2) * width)
            ratio.append(row.get("vs_plain", float("nan")))
            ex.append(row["exchanges_per_round"])
        bars = a.bar(xs, ratio, width, color=COLOURS[mode], label=LABELS[mode])
        for bar, v, e in zip(bars, ratio, ex, strict=True):
            a.annotate(
                f"{v:.1f}x\n{e} exch.",
                (bar.get_x() + bar.get_width() / 2, v),
                ha="center",
                va="bottom",
                fontsize=8,
            )
        up = [
            next(x for x in rows if x["mode"] == mode and x["d"] == d)["bytes_up_per_client"] / d
            for d in ds
            if any(x["mode"] == mode and x["d"] == d for x in rows)
        ]
        b.bar(xs, up, width, color=COLOURS[mode], label=LABELS[mode])
    for ax in (a, b):
        ax.set_xticks(range(len(ds)))
        ax.set_xticklabels([f"d = {d:.0e}" for d in ds])
    a.axhline(1.0, color="k", lw=0.8, ls="--")
    a.set_ylabel("round wall time / plain FedAvg")
    timed = "round 2" if r["rounds"] == 2 else f"median of rounds 2..{r['rounds']}"
    a.set_title(f"{r['nodes']} SuperNodes on loopback, {timed}")
    top = max(x.get("vs_plain", 1.0) for x in rows)
    a.set_ylim(0, top * 1.35)
    a.legend(fontsize=8, loc="upper center", ncol=4)
    b.set_ylabel("bytes up per client per round / element")
    b.set_title("upload per element (float32 = 4)")
    b.axhline(4.0, color="k", lw=0.8, ls="--")
    b.set_ylim(0, 9.5)
    b.legend(fontsize=8, loc="upper center", ncol=4)
    fig.tight_layout()
    out = ROOT / "docs" / "img" / "bench_flower.png"
    fig.savefig(out, dpi=120)
    print(out)


if __name__ == "__main__":
    main()
