"""DP-SGD with white-box gradient canaries, for the empirical audit.

The audited mechanism is the one the accountant charges: every step clips each
per-example gradient to L2 norm ``clip`` and adds N(0, (sigma * clip)^2) to their sum,
with full-batch steps (sample rate 1). The auditor inserts m Dirac canaries, records
whose gradient is ``clip`` on one coordinate of the model (a distinct coordinate each),
each included independently with probability 1/2; they go through the same clipping.

After each step the auditor (white box) reads the released noisy sum off the parameter
change and subtracts the clipped gradients of the public non-canary data at the current
model (post-processing of the outputs, so the bound still applies); the score of a
canary is that residual on its coordinate, summed over steps. ``noise_scale`` < 1 is the
deliberately broken mechanism: it applies ``noise_scale * sigma`` while reporting sigma.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from torch import nn
from torch.func import functional_call, grad, vmap

import dp


@dataclass(frozen=True)
class CanaryRun:
    """Scores of one audited training run and what the ledger would say about it."""

    scores: npt.NDArray[np.float64]
    included: npt.NDArray[np.bool_]
    noise_multiplier: float
    applied_noise_multiplier: float
    steps: int
    accounted_epsilon: float
    delta: float


def _model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(64, 32), nn.Sigmoid(), nn.Linear(32, 10)).double()


def _data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    d = load_digits()
    idx = np.random.default_rng(seed).choice(len(d.data), size=n, replace=False)
    x = torch.as_tensor(d.data[idx] / 16.0, dtype=torch.float64)
    return x, torch.as_tensor(d.target[idx], dtype=torch.int64)


def dpsgd_with_canaries(
    *,
    noise_multiplier: float,
    steps: int,
    canaries: int = 1000,
    clip: float = 1.0,
    noise_scale: float = 1.0,
    lr: float = 0.5,
    examples: int = 128,
    delta: float = 1e-5,
    seed: int = 0,
    accountant: str = "rdp",
) -> CanaryRun:
    """Run full-batch DP-SGD with Dirac canaries and score every canary.

    ``noise_multiplier = 0`` is the non-private run (accounted epsilon = inf).
    """
    rng = np.random.default_rng(seed)
    model = _model(seed)
    params = {k: v.detach() for k, v in model.named_parameters()}
    sizes = [p.numel() for p in params.values()]
    dim = sum(sizes)
    if canaries > dim:
        raise ValueError(f"{canaries} Dirac canaries need as many coordinates; model has {dim}")
    coords = torch.as_tensor(rng.choice(dim, size=canaries, replace=False))
    included = rng.random(canaries) < 0.5
    x, y = _data(examples, seed)
    gen = torch.Generator().manual_seed(seed + 1)

    def loss(p: dict[str, torch.Tensor], xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        out = functional_call(model, p, (xb.unsqueeze(0),))
        return nn.functional.cross_entropy(out, yb.unsqueeze(0))

    per_example = vmap(grad(loss), in_dims=(None, 0, 0))
    canary_grads = torch.zeros((int(included.sum()), dim), dtype=torch.float64)
    canary_grads[torch.arange(canary_grads.shape[0]), coords[torch.as_tensor(included)]] = clip
    scores = torch.zeros(canaries, dtype=torch.float64)
    for _ in range(steps):
        g = per_example(params, x, y)
        flat = torch.cat([g[k].reshape(x.shape[0], -1) for k in params], dim=1)
        rows = torch.cat([flat, canary_grads])  # every record, canaries included
        norms = rows.norm(dim=1, keepdim=True)
        clipped = rows * torch.clamp(clip / (norms + 1e-12), max=1.0)
        noise = torch.randn(dim, generator=gen, dtype=torch.float64)
        released = clipped.sum(0) + noise * (noise_scale * noise_multiplier * clip)
        data_part = clipped[: x.shape[0]].sum(0)  # public data at the public model
        scores += (released - data_part)[coords]
        step = released * (lr / x.shape[0])
        offset = 0
        for k, n in zip(params, sizes, strict=True):
            params[k] = params[k] - step[offset : offset + n].reshape(params[k].shape)
            offset += n
    eps = (
        float("inf")
        if noise_multiplier == 0
        else dp.epsilon(
            sample_rate=1.0,
            noise_multiplier=noise_multiplier,
            steps=steps,
            delta=delta,
            accountant=accountant,  # type: ignore[arg-type]
        )
    )
    return CanaryRun(
        scores.numpy(),
        included,
        noise_multiplier,
        noise_scale * noise_multiplier,
        steps,
        eps,
        delta,
    )


def multi_run_scores(
    *, noise_multiplier: float, steps: int, runs: int, noise_scale: float = 1.0, seed: int = 0
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Scores of one canary over ``runs`` runs with it and ``runs`` without (one canary
    per run, fresh noise each run), for :func:`protocols.attacks.audit.clopper_pearson_audit`."""
    ins: list[float] = []
    outs: list[float] = []
    for r in range(runs):
        for want, bucket in ((True, ins), (False, outs)):
            for s in range(1000):  # a run whose single canary has the wanted status
                run = dpsgd_with_canaries(
                    noise_multiplier=noise_multiplier,
                    steps=steps,
                    canaries=1,
                    noise_scale=noise_scale,
                    examples=32,
                    seed=seed + 7919 * r + s + (0 if want else 104729),
                )
                if bool(run.included[0]) == want:
                    bucket.append(float(run.scores[0]))
                    break
    return np.asarray(ins), np.asarray(outs)
