"""Named exceptions of the Flower deployment harness (``protocols.flower``).

Every error that comes from a deployment process carries the tail of that process's log
in its message and in ``log_tail``, so a failing test or benchmark says why without
anyone having to find the run directory first (it is named too, in ``run_dir``).
"""

from __future__ import annotations

from pathlib import Path

from protocols.errors import ProtocolLayerError


class FlowerDeploymentError(ProtocolLayerError, RuntimeError):
    """Base class: something went wrong with a local Flower deployment."""

    def __init__(self, message: str, *, run_dir: Path | None = None, log_tail: str = "") -> None:
        text = message
        if run_dir is not None:
            text += f" (run directory: {run_dir})"
        if log_tail:
            text += "\n--- log tail ---\n" + log_tail
        super().__init__(text)
        self.run_dir = run_dir
        self.log_tail = log_tail


class DeploymentStartError(FlowerDeploymentError):
    """The SuperLink or a SuperNode exited, or not all SuperNodes came online in time."""


class FlowerRunError(FlowerDeploymentError):
    """``flwr run`` failed, or the ServerApp finished without writing its result file."""


class FlowerRunTimeoutError(FlowerRunError, TimeoutError):
    """The run did not finish within its timeout; it was stopped."""


class LeftoverProcessError(FlowerDeploymentError):
    """``stop()`` could not make every process of the deployment exit; ``pids`` lists
    the survivors."""

    def __init__(self, message: str, *, pids: list[int], run_dir: Path | None = None) -> None:
        super().__init__(message, run_dir=run_dir)
        self.pids = pids


class SyncTimeoutError(ProtocolLayerError, TimeoutError):
    """ServerApp side: the harness did not acknowledge an exchange event in time."""


class SyncAbortedError(ProtocolLayerError, RuntimeError):
    """ServerApp side: the harness's event handler failed and asked the run to stop."""
