"""Client cost of distributed DP, each part against its own limit (issue 16):

* the noise sampler against reading the same number of random bytes from ``os.urandom``
  (goal <= 3x): one 64-bit word per coordinate per table level;
* the randomized Hadamard rotation against numpy's FFT of the same (padded) length
  (goal <= 2x), reported against ``np.fft.fft`` (complex) and ``np.fft.rfft`` (real);
* for context: conditional rounding and the wrap, and the central secure Gaussian.

Prints one JSON object. Times are the minimum over interleaved repeats (shared machines
are noisy: compare the ratios). Run it alone: ``flock /tmp/bench.lock .venv/bin/python
benchmarks/ddp_client_cost.py [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from dp.distributed import choose_parameters
from dp.secure_noise import secure_gaussian
from secagg.discrete_encoding import DiscreteEncoder, DiscreteEncodingConfig
from secagg.rotation import HadamardRotation


def _best(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Minimum wall time of each function, the functions interleaved round by round."""
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def measure(dim: int, repeats: int) -> dict[str, Any]:
    """All figures at one dimension (n = 100 clients, b = 20 bits, z = 1)."""
    p = choose_parameters(
        dim=dim, clip_norm=1.0, noise_multiplier=1.0, bits=20, n_max=100, n_min=100
    )
    big = p.padded_dim
    ddg, skellam = (
        p.sampler(),
        choose_parameters(
            dim=dim,
            clip_norm=1.0,
            noise_multiplier=1.0,
            bits=20,
            n_max=100,
            n_min=100,
            kind="skellam",
        ).sampler(),
    )
    rot = HadamardRotation(dim, b"bench")
    enc = DiscreteEncoder(DiscreteEncodingConfig(**p.encoding()))  # type: ignore[arg-type]
    x = np.random.default_rng(0).normal(size=dim)  # the update (data)
    x_pad = np.random.default_rng(1).normal(size=big)
    values = enc.quantize(x, seed=b"bench").values
    noise = ddg.sample(big)
    t = _best(
        {
            "urandom_8_bytes_per_coordinate": lambda: os.urandom(8 * big),
            "ddg_sampler": lambda: ddg.sample(big),
            "skellam_sampler": lambda: skellam.sample(big),
            "fft_complex": lambda: np.fft.fft(x_pad),
            "fft_real": lambda: np.fft.rfft(x_pad),
            "rotation": lambda: rot.rotate(x),
            "inverse_rotation": lambda: rot.unrotate(x_pad),
            "quantize": lambda: enc.quantize(x, seed=b"bench"),
            "wrap": lambda: enc.wrap(values, noise),
            "central_secure_gaussian": lambda: secure_gaussian(big, 1.0),
        },
        repeats,
    )
    words = {
        "ddg": sum(1 for _ in ddg.levels) if hasattr(ddg, "levels") else 1,
        "skellam": getattr(skellam, "shares", 1),
    }
    return {
        "dim": dim,
        "padded_dim": big,
        "local_sigma": p.local_sigma,
        "ddg_table_levels": words["ddg"],
        "skellam_shares": words["skellam"],
        "seconds": t,
        "ddg_sampler_vs_urandom": t["ddg_sampler"] / t["urandom_8_bytes_per_coordinate"],
        "skellam_sampler_vs_urandom": t["skellam_sampler"] / t["urandom_8_bytes_per_coordinate"],
        "rotation_vs_fft_complex": t["rotation"] / t["fft_complex"],
        "rotation_vs_fft_real": t["rotation"] / t["fft_real"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="fewer repeats")
    args = ap.parse_args()
    repeats = 5 if args.quick else 15
    print(json.dumps([measure(d, repeats) for d in (10**5, 10**6)], indent=2))


if __name__ == "__main__":
    main()
