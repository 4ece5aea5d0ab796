"""Flattening any model's parameters and back; the model hash clients sign."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from protocols.params import ParamShapeError, ParamSpec, flatten_model, load_flat, model_hash


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv1d(2, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(12, 4))


def test_flatten_unflatten_round_trip_for_several_tensors() -> None:
    m = _model()
    spec = ParamSpec.of(m)
    assert len(spec.names) == 4 and spec.dimension == sum(p.numel() for p in m.parameters())
    vec = flatten_model(m)
    back = spec.unflatten(vec)
    for name, p in m.named_parameters():
        assert back[name].shape == p.shape and back[name].dtype == p.dtype
        assert torch.equal(back[name], p.detach())
    other = _model()
    load_flat(other, vec + 1.0)
    np.testing.assert_allclose(flatten_model(other), vec + 1.0, rtol=1e-6)


def test_shape_errors_are_named() -> None:
    spec = ParamSpec.of(_model())
    with pytest.raises(ParamShapeError):
        spec.unflatten(np.zeros(spec.dimension + 1))
    with pytest.raises(ParamShapeError):
        spec.flatten({"0.weight": torch.zeros(1)})


def test_model_hash_changes_with_any_parameter() -> None:
    m = _model()
    h = model_hash(m)
    assert len(h) == 32 and model_hash(_model()) == h
    with torch.no_grad():
        m[3].bias[0] += 1e-3
    assert model_hash(m) != h
