"""What the ServerApp and the ClientApp share: the experiment and the model layout.

Both sides build the same :class:`protocols.fedavg.FedAvg` as ``secagg run`` does (same
data split, model initialisation and seeds): the ServerApp uses its held-out test set,
its initial model and its privacy ledger; a ClientApp uses its local training of one
client. The model travels as one float32 array per parameter, in
``model.named_parameters()`` order.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from protocols.experiment import ExperimentConfig
from protocols.flower.example import load_app_config

if TYPE_CHECKING:
    from protocols.fedavg import FedAvg

APP_DIR = Path(__file__).resolve().parent.parent


def experiment(run_config: dict[str, Any]) -> ExperimentConfig:
    """The experiment of this run (run-config key ``experiment``)."""
    return load_app_config(run_config, APP_DIR)


@functools.cache
def _fedavg(config_json: str) -> FedAvg:
    import torch

    from protocols.fedavg import build

    torch.set_num_threads(1)  # one process per node and message: no thread oversubscription
    return build(ExperimentConfig.from_dict(json.loads(config_json)))


def fedavg(cfg: ExperimentConfig) -> FedAvg:
    """The experiment's FedAvg object (data split, model, seeds) as ``build`` makes it,
    once per process. Nothing is cached on disk: no pickle, even of a node's own files."""
    return _fedavg(json.dumps(cfg.to_dict(), sort_keys=True))


def to_arrays(fa: FedAvg, vector: npt.NDArray[Any]) -> list[npt.NDArray[np.float32]]:
    """A flat parameter vector as float32 arrays, one per model parameter."""
    return [t.numpy().astype(np.float32) for t in fa.spec.unflatten(vector).values()]
