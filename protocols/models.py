"""Small models for the demo, the examples and the benchmark (all Opacus-compatible)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

MODEL_KINDS = ("mlp", "logistic", "linear")


def build_model(
    kind: str, in_features: int, out_features: int, hidden: Sequence[int] = (), seed: int = 0
) -> nn.Module:
    """``mlp`` (Linear-ReLU stacks), ``logistic`` (one Linear, for cross-entropy) or
    ``linear`` (one Linear, for regression); weights initialised from ``seed``."""
    if kind not in MODEL_KINDS:
        raise ValueError(f"model kind {kind!r}; use one of {', '.join(MODEL_KINDS)}")
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        if kind == "mlp":
            layers: list[nn.Module] = []
            width = in_features
            for h in hidden:
                layers += [nn.Linear(width, h), nn.ReLU()]
                width = h
            layers.append(nn.Linear(width, out_features))
            return nn.Sequential(*layers)
        model = nn.Linear(in_features, out_features)
        if kind == "linear":
            with torch.no_grad():
                model.weight.zero_()
                model.bias.zero_()
        return model
    finally:
        torch.random.set_rng_state(gen_state)
