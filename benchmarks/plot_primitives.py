"""Run ``secagg bench primitives --json`` and plot mask expansion against the keystream."""

from __future__ import annotations

from _common import ROOT, bench_data, pyplot


def main() -> None:
    data = bench_data("primitives", __doc__)
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(6, 3.4))
    groups = ["b = 32 (uint32)", "b = 20 (uint32, reduced)"]
    raw = [data["keystream_gbps"], data["keystream_gbps_b20"]]
    mask = [data["mask_gbps"], data["mask_gbps_b20"]]
    xs = range(len(groups))
    ax.bar([x - 0.2 for x in xs], raw, width=0.4, label="raw AES-128-CTR keystream")
    ax.bar([x + 0.2 for x in xs], mask, width=0.4, label="mask expansion (HKDF + CTR + reduce)")
    for x, r, m in zip(xs, raw, mask, strict=True):
        ax.text(x + 0.2, m, f"{m / r:.0%}", ha="center", va="bottom")
    ax.set_xticks(list(xs), groups)
    ax.set_ylabel("GB/s (one core)")
    ax.set_title(f"Mask expansion vs keystream, d = {data['d']:,}")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    target = ROOT / "docs" / "img" / "bench_primitives.png"
    fig.savefig(target, dpi=120)
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
