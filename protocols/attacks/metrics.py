"""Image-reconstruction metrics (PSNR, SSIM, label accuracy) in plain numpy.

Reconstructions come back in arbitrary batch order, so :func:`match` pairs each original
with a distinct reconstruction (minimum total MSE) before the scores are taken.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from scipy.ndimage import gaussian_filter
from scipy.optimize import linear_sum_assignment

Images = npt.NDArray[np.float64]


def psnr(original: Images, recon: Images, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB of one image (or a stack, pooled)."""
    mse = float(np.mean((np.asarray(original) - np.asarray(recon)) ** 2))
    if mse == 0.0:
        return float("inf")
    return 10.0 * float(np.log10(data_range**2 / mse))


def ssim(original: Images, recon: Images, data_range: float = 1.0, sigma: float = 1.0) -> float:
    """Mean structural similarity of two 2-D images (Gaussian window, Wang et al. 2004)."""
    x = np.asarray(original, dtype=np.float64)
    y = np.asarray(recon, dtype=np.float64)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2

    def blur(a: Images) -> Images:
        return np.asarray(gaussian_filter(a, sigma, mode="reflect", truncate=2.0))

    mx, my = blur(x), blur(y)
    vx = blur(x * x) - mx * mx
    vy = blur(y * y) - my * my
    cxy = blur(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return float(np.mean(s))


def match(originals: Images, recons: Images) -> npt.NDArray[np.intp]:
    """Index of the reconstruction paired with each original (Hungarian, on MSE).

    ``recons`` may hold more images than ``originals`` (an attack on an aggregate
    reconstructs every client's batch; the victim's images are matched among them).
    """
    a = np.asarray(originals).reshape(len(originals), -1)
    b = np.asarray(recons).reshape(len(recons), -1)
    cost = ((a[:, None, :] - b[None, :, :]) ** 2).mean(axis=2)
    rows, cols = linear_sum_assignment(cost)
    out = np.empty(len(a), dtype=np.intp)
    out[rows] = cols
    return out


def batch_scores(originals: Images, recons: Images) -> tuple[float, float]:
    """Mean PSNR and mean SSIM over a batch, after :func:`match`."""
    idx = match(originals, recons)
    ps = [psnr(o, recons[j]) for o, j in zip(originals, idx, strict=True)]
    ss = [ssim(o, recons[j]) for o, j in zip(originals, idx, strict=True)]
    return float(np.mean(ps)), float(np.mean(ss))


def label_accuracy(true: Sequence[int], guessed: Sequence[int]) -> float:
    """Fraction of the true labels recovered, as multisets (batch order is unknown)."""
    t, g = Counter(int(v) for v in true), Counter(int(v) for v in guessed)
    return sum((t & g).values()) / max(1, len(true))


def random_guess_psnr(originals: Images, trials: int = 20, seed: int = 0) -> float:
    """PSNR of uniform-noise images against the originals: the 'knows nothing' level."""
    rng = np.random.default_rng(seed)
    vals = [
        batch_scores(originals, rng.uniform(0, 1, np.shape(originals)))[0] for _ in range(trials)
    ]
    return float(np.mean(vals))
