"""Flatten any model's parameters into one float64 vector and back, and hash a model.

The aggregation backends sum 1-D vectors; a model has many tensors of many shapes.
:class:`ParamSpec` records names, shapes and dtypes (in ``named_parameters`` order) so
the flat vector maps back exactly. :func:`model_hash` is what clients sign as the
round's ``extra_context``: the SHA-256 of the names, shapes and float32 bytes of every
parameter, so two clients sign the same hash only if they received the same model.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

FloatVector = npt.NDArray[np.float64]


class ParamShapeError(ValueError):
    """A flat vector or a tensor dict does not match the model's parameter layout."""


@dataclass(frozen=True)
class ParamSpec:
    """Names, shapes and dtypes of a model's trainable parameters, in a fixed order."""

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    dtypes: tuple[torch.dtype, ...]

    @classmethod
    def of(cls, model: nn.Module) -> ParamSpec:
        """The layout of ``model.named_parameters()`` (trainable ones only)."""
        items = [(k, p) for k, p in model.named_parameters() if p.requires_grad]
        return cls(
            tuple(k for k, _ in items),
            tuple(tuple(p.shape) for _, p in items),
            tuple(p.dtype for _, p in items),
        )

    @property
    def sizes(self) -> tuple[int, ...]:
        """Number of elements of each tensor."""
        return tuple(math.prod(s) for s in self.shapes)

    @property
    def dimension(self) -> int:
        """Length of the flat vector."""
        return sum(self.sizes)

    def flatten(self, tensors: Mapping[str, torch.Tensor]) -> FloatVector:
        """The tensors (keyed by parameter name) as one float64 vector."""
        if set(tensors) != set(self.names):
            missing = sorted(set(self.names) - set(tensors))
            extra = sorted(set(tensors) - set(self.names))
            raise ParamShapeError(f"parameter names differ: missing {missing}, unexpected {extra}")
        parts = []
        for name, shape in zip(self.names, self.shapes, strict=True):
            t = tensors[name]
            if tuple(t.shape) != shape:
                raise ParamShapeError(f"{name}: shape {tuple(t.shape)}, expected {shape}")
            parts.append(t.detach().reshape(-1).to(torch.float64).cpu().numpy())
        if not parts:
            return np.zeros(0)
        return np.concatenate(parts)

    def unflatten(self, vector: npt.ArrayLike) -> dict[str, torch.Tensor]:
        """The flat vector back as tensors of the recorded shapes and dtypes."""
        vec = np.asarray(vector, dtype=np.float64)
        if vec.ndim != 1 or vec.shape[0] != self.dimension:
            raise ParamShapeError(
                f"flat vector has shape {vec.shape}, expected ({self.dimension},)"
            )
        out: dict[str, torch.Tensor] = {}
        offset = 0
        for name, shape, size, dtype in zip(
            self.names, self.shapes, self.sizes, self.dtypes, strict=True
        ):
            chunk = vec[offset : offset + size].reshape(shape)
            out[name] = torch.from_numpy(chunk.copy()).to(dtype)
            offset += size
        return out


def flatten_model(model: nn.Module) -> FloatVector:
    """The model's trainable parameters as one float64 vector."""
    spec = ParamSpec.of(model)
    return spec.flatten(dict(model.named_parameters()))


def load_flat(model: nn.Module, vector: npt.ArrayLike) -> None:
    """Overwrite the model's trainable parameters with a flat vector, in place."""
    tensors = ParamSpec.of(model).unflatten(vector)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name in tensors:
                p.copy_(tensors[name])


def model_hash(model: nn.Module) -> bytes:
    """SHA-256 over every parameter's name, shape and float32 bytes (32 bytes)."""
    h = hashlib.sha256(b"secagg/model/v1")
    for name, p in model.named_parameters():
        h.update(name.encode() + b"\0" + repr(tuple(p.shape)).encode() + b"\0")
        h.update(p.detach().to(torch.float32).contiguous().cpu().numpy().tobytes())
    return h.digest()
