"""Federated data: scikit-learn's digits split across clients (IID, label-sorted shards,
or Dirichlet non-IID), and the synthetic linear-regression devices of the worked case."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import TensorDataset

SPLITS = ("iid", "dirichlet", "label_sorted")
DATASETS = ("digits", "synthetic_linear")


class DataSplitError(ValueError):
    """The split cannot give every client data (too many clients, bad parameters)."""


@dataclass(frozen=True)
class FederatedData:
    """One dataset per client, a held-out test set, and the task's shape."""

    clients: tuple[TensorDataset, ...]
    test: TensorDataset
    in_features: int
    out_features: int
    task: str  # "classification" or "regression"

    @property
    def sizes(self) -> tuple[int, ...]:
        """Examples per client."""
        return tuple(len(d) for d in self.clients)


def _split_indices(
    labels: np.ndarray,
    num_clients: int,
    split: str,
    alpha: float,
    rng: np.random.Generator,
    min_size: int,
) -> list[np.ndarray]:
    n = len(labels)
    if split == "iid":
        return [np.sort(p) for p in np.array_split(rng.permutation(n), num_clients)]
    if split == "label_sorted":
        # two shards per client of a label-sorted order (McMahan et al. 2017's pathological non-IID)
        order = np.argsort(labels, kind="stable")
        shards = np.array_split(order, 2 * num_clients)
        picks = rng.permutation(2 * num_clients)
        return [
            np.sort(np.concatenate([shards[picks[2 * i]], shards[picks[2 * i + 1]]]))
            for i in range(num_clients)
        ]
    classes = np.unique(labels)
    for _ in range(1000):  # redraw until every client has min_size examples
        parts: list[list[int]] = [[] for _ in range(num_clients)]
        for c in classes:
            idx = rng.permutation(np.flatnonzero(labels == c))
            props = rng.dirichlet(np.full(num_clients, alpha))
            cuts = (np.cumsum(props)[:-1] * len(idx)).astype(int)
            for i, chunk in enumerate(np.split(idx, cuts)):
                parts[i].extend(chunk.tolist())
        if min(len(p) for p in parts) >= min_size:
            return [np.sort(np.asarray(p, dtype=np.int64)) for p in parts]
    raise DataSplitError(
        f"no Dirichlet(alpha={alpha}) split gives each of {num_clients} clients {min_size} examples"
    )


def digits(
    num_clients: int,
    *,
    split: str = "dirichlet",
    alpha: float = 0.5,
    test_fraction: float = 0.2,
    min_client_size: int = 20,
    seed: int = 0,
) -> FederatedData:
    """scikit-learn's 8x8 digits (1797 images, 10 classes; ships with scikit-learn),
    pixels scaled to [0, 1], split across ``num_clients`` after holding out a test set."""
    from sklearn.datasets import load_digits

    if split not in SPLITS:
        raise DataSplitError(f"split {split!r}; use one of {', '.join(SPLITS)}")
    x, y = load_digits(return_X_y=True)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y))
    n_test = round(test_fraction * len(y))
    test_idx, train_idx = order[:n_test], order[n_test:]
    if len(train_idx) < num_clients * min_client_size:
        raise DataSplitError(
            f"{len(train_idx)} training examples cannot give {num_clients} clients "
            f"{min_client_size} each"
        )
    xt = torch.tensor(x / 16.0, dtype=torch.float32)
    yt = torch.tensor(y, dtype=torch.long)
    parts = _split_indices(y[train_idx], num_clients, split, alpha, rng, min_client_size)
    clients = tuple(TensorDataset(xt[train_idx[p]], yt[train_idx[p]]) for p in parts)
    test = TensorDataset(xt[test_idx], yt[test_idx])
    return FederatedData(clients, test, 64, 10, "classification")


def synthetic_linear(
    num_clients: int = 100,
    *,
    samples_per_client: int = 10,
    dim: int = 5,
    noise: float = 0.1,
    test_size: int = 500,
    seed: int = 0,
) -> FederatedData:
    """y = x . w* + b* + noise, x ~ N(0, I): the worked case of 100 devices x 10 samples."""
    rng = np.random.default_rng(seed)
    w_true = rng.normal(size=dim)
    b_true = float(rng.normal())

    def draw(n: int) -> TensorDataset:
        x = rng.normal(size=(n, dim))
        y = x @ w_true + b_true + noise * rng.normal(size=n)
        return TensorDataset(
            torch.tensor(x, dtype=torch.float32), torch.tensor(y[:, None], dtype=torch.float32)
        )

    clients = tuple(draw(samples_per_client) for _ in range(num_clients))
    return FederatedData(clients, draw(test_size), dim, 1, "regression")
