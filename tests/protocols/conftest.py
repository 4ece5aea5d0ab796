"""Shared fixtures for the end-to-end (protocols) tests: one torch thread, tiny configs."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from protocols.experiment import ExperimentConfig

torch.set_num_threads(1)


def tiny_config(**sections: dict[str, Any]) -> ExperimentConfig:
    """Digits across 8 clients, a 2-layer MLP (4 parameter tensors), 3 rounds, no DP."""
    raw: dict[str, dict[str, Any]] = {
        "experiment": {"name": "tiny", "seed": 3, "rounds": 3},
        "model": {"kind": "mlp", "hidden": [8]},
        "data": {"dataset": "digits", "split": "dirichlet", "alpha": 1.0, "min_client_size": 30},
        "clients": {"num_clients": 8, "weighting": "examples"},
        "training": {"local_epochs": 1, "batch_size": 16, "lr": 0.3},
        "backend": {"name": "masking", "setting": "honest_but_curious"},
    }
    for name, values in sections.items():
        raw.setdefault(name, {}).update(values)
    return ExperimentConfig.from_dict(raw)


@pytest.fixture
def tiny() -> ExperimentConfig:
    """The tiny config."""
    return tiny_config()


def paillier_available() -> bool:
    """True when the Paillier backend (secagg.paillier) has landed."""
    import importlib.util

    return importlib.util.find_spec("secagg.paillier") is not None
