"""The gmpy2 requirement: refuse to run on phe's pure-Python fallback.

phe silently uses pure-Python big integers when gmpy2 is missing, which makes every
powmod about 8x slower; a federated round sized for gmpy2 would then take days. Every
entry point that does Paillier arithmetic calls :func:`require_gmpy2` first.
"""

from __future__ import annotations

from types import ModuleType

from secagg.paillier.errors import Gmpy2MissingError


def require_gmpy2() -> ModuleType:
    """Return the gmpy2 module, or raise :class:`Gmpy2MissingError` if phe cannot use it."""
    import phe.util

    try:
        import gmpy2
    except ImportError as exc:  # pragma: no cover - exercised through HAVE_GMP below
        raise Gmpy2MissingError(
            "gmpy2 is not installed; phe would fall back to pure Python (about 8x slower). "
            "Install gmpy2 (pip install gmpy2)"
        ) from exc
    if not getattr(phe.util, "HAVE_GMP", False):
        raise Gmpy2MissingError(
            "phe is running without gmpy2 (phe.util.HAVE_GMP is False): every powmod would "
            "be about 8x slower; install gmpy2 and reinstall phe"
        )
    module: ModuleType = gmpy2
    return module
