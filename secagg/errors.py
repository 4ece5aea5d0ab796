"""Named exceptions of the cryptographic core.

Every failure a caller may want to handle has its own class, so that a driver can tell
"this client sent garbage" from "the configuration is unsound" without parsing
messages. All inherit from :class:`SecAggError`; the ones caused by a bad value also
inherit from :class:`ValueError` so generic code that catches ``ValueError`` still works.
"""

from __future__ import annotations


class SecAggError(Exception):
    """Base class of every error raised by ``secagg``."""


# --- configuration -------------------------------------------------------------------


class ConfigError(SecAggError, ValueError):
    """A parameter is out of range or parameters are inconsistent with each other."""


class RingOverflowError(ConfigError):
    """The sum of ``n`` encoded inputs (plus noise) could wrap around the ring."""


# --- encoding ------------------------------------------------------------------------


class EncodingError(SecAggError, ValueError):
    """An input vector cannot be encoded (wrong type, dtype or shape)."""


class NonFiniteInputError(EncodingError):
    """An input vector contains NaN or +-Inf; such values are never encoded."""


class RingValueError(EncodingError):
    """A ring vector has the wrong dtype, shape, or holds elements outside Z_(2^b)."""


# --- Shamir secret sharing -------------------------------------------------------------


class ShamirError(SecAggError, ValueError):
    """Base class of secret-sharing errors."""


class SecretFormatError(ShamirError):
    """The secret to share is not a byte string of the supported length."""


class InsufficientSharesError(ShamirError):
    """Fewer than the threshold number of shares were given to ``combine``."""


class DuplicateShareError(ShamirError):
    """Two shares carry the same index."""


class ShareOutOfRangeError(ShamirError):
    """A share's index or value lies outside the field or the sharing's range."""


class InconsistentSharesError(ShamirError):
    """Shares disagree: different thresholds, or extra shares off the polynomial."""


class ShareFormatError(ShamirError):
    """Serialized share bytes are malformed (length, version, or field encoding)."""


# --- key agreement, encryption, signatures ------------------------------------------


class CryptoError(SecAggError):
    """Base class of errors from key agreement, encryption and signatures."""


class KeyFormatError(CryptoError, ValueError):
    """A public or private key has the wrong type or length, or is a weak point."""


class DecryptionError(CryptoError):
    """Authenticated decryption failed: wrong key, tampered data, or wrong context."""


class SignatureError(CryptoError):
    """A signature is missing, malformed, or does not verify."""


class ContextError(CryptoError, ValueError):
    """A domain-separation context field (session id, round, party) is invalid."""
