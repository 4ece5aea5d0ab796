"""Named exceptions of the composition layer (FedAvg loop, privacy layer, configs)."""

from __future__ import annotations


class ProtocolLayerError(Exception):
    """Base class of every error raised by ``protocols``."""


class UnknownBackendError(ProtocolLayerError, ValueError):
    """The aggregation backend's name is not one of masking, paillier, plaintext."""


class BackendUnavailableError(ProtocolLayerError, RuntimeError):
    """The backend exists by name but its module is not installed or has not landed."""


class AggregationAbortedError(ProtocolLayerError):
    """A secure round aborted; ``released_shares`` says whether anything that can
    reveal the sum (an unmasking share, a decryption) left the clients or key holder."""

    def __init__(self, message: str, *, released_shares: bool) -> None:
        super().__init__(message)
        self.released_shares = released_shares


class RepeatedContributionError(ProtocolLayerError):
    """A client would contribute twice for the same model hash in one session without
    fresh DP noise: two sums with survivor sets differing by one client would isolate it
    (multi-round differencing, So et al., AAAI 2023)."""

    def __init__(self, clients: list[int], model_hash: bytes) -> None:
        super().__init__(
            f"clients {clients} already contributed for model {model_hash.hex()[:16]} in this "
            "session; a retry needs a new model or updates that carry fresh DP noise"
        )
        self.clients = clients
        self.model_hash = model_hash


class ExperimentConfigError(ProtocolLayerError, ValueError):
    """An experiment config has an unknown key or an invalid value; ``key`` names it
    (``section.key``)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
