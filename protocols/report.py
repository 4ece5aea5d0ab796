"""The report folder: results JSON and PNG plots (matplotlib, Agg backend, no display)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from protocols.fedavg import RoundRecord


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_accuracy(runs: dict[str, Sequence[RoundRecord]], path: Path) -> None:
    """Test accuracy per round, one line per run (e.g. secure+DP vs plaintext baseline)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, records in runs.items():
        pts = [(r.round + 1, r.accuracy) for r in records if r.accuracy is not None]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=".", label=label)
    ax.set_xlabel("round")
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_epsilon(records: Sequence[RoundRecord], path: Path, *, delta: float) -> None:
    """Cumulative epsilon per round (and the server ledger's upper bound when different)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    rounds = [r.round + 1 for r in records if r.epsilon is not None]
    ax.plot(
        rounds,
        [r.epsilon for r in records if r.epsilon is not None],
        marker=".",
        label="epsilon (max over clients)",
    )
    bound = [r.epsilon_bound for r in records if r.epsilon_bound is not None]
    if bound and any(
        not math.isclose(b, e or 0.0)
        for b, e in zip(bound, [r.epsilon for r in records], strict=False)
    ):
        ax.plot(rounds, bound, linestyle="--", label="ledger upper bound")
    ax.set_xlabel("round")
    ax.set_ylabel(f"cumulative epsilon (delta={delta:g})")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_json(path: Path, obj: Any) -> None:
    """JSON with NaN/Infinity refused (written as null by the caller when needed)."""
    path.write_text(json.dumps(_clean(obj), indent=2, sort_keys=True, allow_nan=False) + "\n")


def _clean(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    return obj
