"""secagg: the cryptographic core of a privacy layer for federated learning.

This package holds the primitives of masked aggregation (fixed-point ring encoding,
mask expansion, Shamir sharing, key agreement, authenticated encryption, signatures).
It has no torch dependency and performs no I/O: protocol state machines and drivers
are built on top of it.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("secagg")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
