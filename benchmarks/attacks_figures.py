"""Measure the attack suites and draw docs/img/attacks_*.png (figures in docs/attacks.md).

Run: flock /tmp/secagg-bench.lock .venv/bin/python benchmarks/attacks_figures.py
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

from protocols.attacks import gradient_inversion as gi
from protocols.attacks.audit import one_run_audit
from protocols.attacks.canaries import dpsgd_with_canaries
from protocols.attacks.metrics import match, random_guess_psnr

OUT = Path(__file__).resolve().parent.parent / "docs" / "img"


def main() -> None:
    torch.set_num_threads(1)
    model = gi.tiny_convnet(0)
    imgs, labels = gi.distinct_label_batches(1, 4, seed=1)[0]
    g = gi.flat_gradient(model, imgs, labels)
    lab = gi.recover_labels(model, g, 4)
    rows = {"original": imgs}
    r, used = gi.dlg(model, g, 4, iters=60)
    s = gi.score(r, used, imgs, labels)
    print(f"DLG B=4 plaintext: PSNR {s.psnr:.1f} SSIM {s.ssim:.3f} labels {s.label_acc:.2f}")
    rows["DLG (plaintext)"] = r[match(imgs, r)]
    r = gi.inverting_gradients(model, g, 4, lab, iters=3000, restarts=2)
    s = gi.score(r, lab, imgs, labels)
    print(f"IG B=4 plaintext: PSNR {s.psnr:.1f} SSIM {s.ssim:.3f} labels {s.label_acc:.2f}")
    rows["IG (plaintext)"] = r[match(imgs, r)]
    batches = [(imgs, labels), *gi.distinct_label_batches(3, 4, seed=5)]
    view = gi.masked_view([gi.flat_gradient(model, x, y) for x, y in batches])
    lv = gi.recover_labels(model, view, 4)
    r, used = gi.dlg(model, view, 4, labels=lv, iters=30)
    s = gi.score(r, used, imgs, labels)
    print(f"DLG masked vector: PSNR {s.psnr:.1f} SSIM {s.ssim:.3f} labels {s.label_acc:.2f}")
    print(f"random guess: PSNR {random_guess_psnr(imgs):.1f}")
    rows["DLG (masked vector)"] = r[match(imgs, r)]

    fig, axes = plt.subplots(len(rows), 4, figsize=(5, 1.3 * len(rows)))
    for i, (name, ims) in enumerate(rows.items()):
        for j in range(4):
            axes[i, j].imshow(ims[j], cmap="gray", vmin=0, vmax=1)
            axes[i, j].set_xticks([])
            axes[i, j].set_yticks([])
        axes[i, 0].set_ylabel(name, fontsize=7)
    fig.tight_layout()
    fig.savefig(OUT / "attacks_reconstructions.png", dpi=120)

    ns = (1, 2, 4, 8, 16)
    singles = gi.distinct_label_batches(16, 1, seed=1)
    chance = random_guess_psnr(singles[0][0])
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for z in (0.0, 0.01, 0.1):
        ps = []
        for n in ns:
            rec = gi.attack_aggregate(model, singles[:n], z=z, iters=30)
            ps.append(rec.psnr)
            print(
                f"aggregate N={n} z={z}: PSNR {rec.psnr:.1f} SSIM {rec.ssim:.3f} "
                f"labels {rec.label_acc:.2f}"
            )
        ax.plot(ns, ps, marker="o", label=f"DP noise z={z}" if z else "no DP")
    ax.axhline(chance, color="grey", ls="--", label="random guess")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("clients in the aggregate (N)")
    ax.set_ylabel("PSNR of victim's image (dB)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(OUT / "attacks_psnr_vs_n.png", dpi=120)

    for name, sigma, scale in (("non-private", 0.0, 1.0), ("DP", 4.0, 1.0), ("broken", 4.0, 0.1)):
        run = dpsgd_with_canaries(noise_multiplier=sigma, steps=4, noise_scale=scale)
        res = one_run_audit(run.scores, run.included, k_pos=250, k_neg=250, delta=run.delta)
        print(
            f"audit {name}: eps_lb {res.epsilon_lower_bound:.2f} ({res.correct}/{res.guesses}) "
            f"accounted {run.accounted_epsilon:.2f}"
        )


if __name__ == "__main__":
    main()
