"""protocols: composition of the mechanisms (FedAvg rounds, drivers, the CLI).

The bring-your-own-stack entry point is :class:`PrivacyLayer` (with :func:`model_hash`);
the FedAvg loop is :mod:`protocols.fedavg`, experiment configs :mod:`protocols.experiment`.
Torch is needed for both; ``import protocols`` alone loads nothing heavy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from protocols.params import model_hash
    from protocols.privacy_layer import LayerRound, PrivacyLayer

_LAZY = {
    "PrivacyLayer": "protocols.privacy_layer",
    "LayerRound": "protocols.privacy_layer",
    "model_hash": "protocols.params",
}


def __getattr__(name: str) -> Any:
    """Load the torch-based modules only when asked for."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'protocols' has no attribute {name!r}")


__all__ = ["LayerRound", "PrivacyLayer", "model_hash"]
