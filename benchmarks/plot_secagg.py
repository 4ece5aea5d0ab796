"""Run ``secagg bench secagg --json`` (or reuse a saved result) and plot the protocol's
cost against n: server unmasking time, server peak memory, client masking vs keystream."""

from __future__ import annotations

from _common import ROOT, bench_data, pyplot


def main() -> None:
    data = bench_data("secagg", __doc__)
    plt = pyplot()

    rows = [r for r in data["configs"] if "config" not in r]  # the default-parameter grid
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for d in sorted({r["d"] for r in rows}):
        for p in sorted({r["dropout"] for r in rows}):
            sel = sorted(
                (r for r in rows if r["d"] == d and r["dropout"] == p), key=lambda r: r["n"]
            )
            ns = [r["n"] for r in sel]
            label = f"d={d:.0e}, {p:.0%} dropout"
            axes[0].plot(ns, [r["server_unmask_s"] for r in sel], "o-", label=label)
            axes[1].plot(ns, [r["server_rss_growth_mib"] for r in sel], "o-", label=label)
            axes[2].plot(ns, [r["client_mask_vs_keystream"] for r in sel], "o-", label=label)
            fl = [r for r in sel if "flower_server_unmask_s" in r]
            if fl:
                axes[0].plot(
                    [r["n"] for r in fl],
                    [r["flower_server_unmask_s"] for r in fl],
                    "x--",
                    label=f"Flower 1.42, {label}",
                )
    axes[0].set_title("server unmasking time")
    axes[0].set_ylabel("seconds")
    axes[0].set_yscale("log")
    axes[1].set_title("server resident-memory growth")
    axes[1].set_ylabel("MiB")
    axes[2].set_title("client masking / raw AES-CTR keystream")
    axes[2].axhline(1.5, color="grey", ls=":", label="goal 1.5x")
    axes[2].set_ylabel("time ratio")
    for ax in axes:
        ax.set_xlabel("clients n")
        ax.set_xscale("log")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    axes[2].legend(fontsize=7)
    fig.tight_layout()
    target = ROOT / "docs" / "img" / "bench_secagg.png"
    fig.savefig(target, dpi=110)
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
