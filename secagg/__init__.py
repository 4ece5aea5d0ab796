"""secagg: the cryptographic core of a privacy layer for federated learning.

Pairwise-masking secure aggregation (SecAgg, Bonawitz et al. 2017, with the SecAgg+
graph of Bell et al. 2020) as sans-I/O state machines (``secagg.client``,
``secagg.server``) on small primitives (ring encoding, mask expansion, Shamir sharing,
key agreement, authenticated encryption, signatures). No torch, no I/O.

Entry points: :class:`SecAggConfig` and :func:`simulate`.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("secagg")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+unknown"

from secagg.config import SecAggConfig
from secagg.result import AggregationResult, Transcript
from secagg.simulate import simulate

__all__ = ["AggregationResult", "SecAggConfig", "Transcript", "__version__", "simulate"]
