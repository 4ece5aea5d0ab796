"""Run ``secagg bench paillier --json`` (or reuse a saved result with ``--from``) and draw
docs/img/bench_paillier.png: whole-round time per element (per-element phe vs packed),
encryption cost per ciphertext relative to one powmod, and encryption time against d.

Run it under the benchmark lock: ``flock /tmp/secagg-bench.lock .venv/bin/python
benchmarks/plot_paillier.py`` (or ``--from benchmarks/results/paillier.json``).
"""

from __future__ import annotations

import re

from _common import ROOT, bench_data, pyplot


def main() -> None:
    r = bench_data("paillier", __doc__)
    plt = pyplot()
    fig, (a, b, c) = plt.subplots(1, 3, figsize=(15, 4.2))

    # 1. whole round, seconds per element
    labels = ["per-element phe\n(1 core)", "packed\n(1 core)", f"packed\n({r['cores']} cores)"]
    ds = sorted(int(m.group(1)) for k in r if (m := re.fullmatch(r"packed_d(\d+)_round_s", k)))
    vals = [
        r["phe_round_s_per_element"],
        r["packed_one_core_round_s_per_element"],
        r["packed_round_s_per_element"],
    ]
    bars = a.bar(labels, vals, color=["#999999", "#6a9fd4", "#1f5fa8"])
    a.set_yscale("log")
    a.set_ylabel("seconds per element, whole round")
    a.set_title(f"N={r['clients']} clients, {r['key_bits']}-bit key")
    for bar, v in zip(bars, vals, strict=True):
        a.annotate(
            f"{vals[0] / v:.0f}x" if v != vals[0] else "1x",
            (bar.get_x() + bar.get_width() / 2, v),
            ha="center",
            va="bottom",
        )

    # 2. cost of one ciphertext relative to one powmod(r, n, n^2)
    names = ["phe, per\nelement", "packed", "short exp.\n(optional)", "precomputed\nonline (opt.)"]
    ratios = [
        r["phe_encrypt_vs_powmod"],
        r["encrypt_vs_powmod"],
        r["optional_short_exponent_encrypt_vs_powmod"],
        r["optional_precomputed_online_encrypt_vs_powmod"],
    ]
    b.bar(names, ratios, color=["#999999", "#1f5fa8", "#d08c2f", "#d08c2f"])
    b.axhline(1.0, color="k", lw=0.8, ls="--")
    b.set_yscale("log")
    b.set_ylabel("encryption time / one powmod")
    b.set_title(f"per ciphertext ({r['slots_per_ciphertext']} values packed in one)")

    # 3. encryption per client vs d, measured and extrapolated
    xs = [float(d) for d in ds]
    ys = [r[f"packed_d{d}_encrypt_per_client_s"] for d in ds]
    c.loglog(xs, ys, "o-", color="#1f5fa8", label="measured")
    y6 = r["packed_d1e6_encrypt_per_client_s_extrapolated"]
    c.loglog([xs[-1], 1e6], [ys[-1], y6], "--", color="#1f5fa8")
    c.loglog([1e6], [y6], "o", mfc="white", color="#1f5fa8", label="extrapolated (d=10^6)")
    c.set_xlabel("d (values per client)")
    c.set_ylabel("seconds to encrypt one client")
    c.set_title(f"packed encryption, {r['cores']} cores")
    c.legend()
    fig.tight_layout()
    dst = ROOT / "docs" / "img" / "bench_paillier.png"
    fig.savefig(dst, dpi=110)
    print(f"wrote {dst}")


if __name__ == "__main__":
    main()
