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


# --- the masking protocol ------------------------------------------------------------


class ProtocolError(SecAggError):
    """Base class of protocol failures (bad messages, aborts, misuse)."""


class MessageFormatError(ProtocolError, ValueError):
    """A wire message is malformed: magic, version, type, lengths, counts or values."""


class WrongSessionError(ProtocolError):
    """A message belongs to another session (a replay or a misrouted message)."""


class WrongRoundError(ProtocolError):
    """A message belongs to another training round (a replay from an earlier round)."""


class UnexpectedMessageError(ProtocolError):
    """A message of the wrong type for the current protocol step, or after the end."""


class DuplicateSenderError(ProtocolError):
    """A party sent twice in one step, or two entries claim the same client."""


class ProtocolViolationError(ProtocolError):
    """The peer broke a protocol rule (e.g. a survivor list that is not a subset of the
    previous one, keys that do not match, a share for the wrong owner)."""


class RoundAbortedError(ProtocolError):
    """The round was aborted; no unmasking share was released by honest clients."""


class TooFewSurvivorsError(RoundAbortedError):
    """Fewer than the threshold t of clients remain at some step."""


class SurvivorSetTooSmallError(RoundAbortedError):
    """The survivor set (or this client's connected part of it) is below min_aggregate,
    so an honest client refuses to unmask: the sum would cover too few inputs."""


class BothSharesRequestedError(RoundAbortedError):
    """Releasing a share would give out both the key share and the self-mask share of
    the same peer, which would unmask that peer's input."""


class ConsistencyCheckError(RoundAbortedError):
    """Fewer than t valid signatures on the survivor set (and extra context), or an
    invalid one: the server showed different clients different views."""


class ReconstructionError(RoundAbortedError):
    """The server cannot rebuild a secret: too few shares, or shares that disagree."""


class ProtocolUsageError(ProtocolError):
    """The local caller misused a state machine (e.g. no input set before masking)."""


# --- trust provisioned out of band ---------------------------------------------------


class PolicyViolationError(ProtocolViolationError):
    """The server's session parameters are not exactly the ones the client's security
    policy fixes (a weaker setting, threshold, graph, or another parameter search)."""


class RegistryError(ConfigError):
    """A registry or identity file is malformed, or does not match the other."""


class ReplayedSessionError(WrongSessionError):
    """A session whose counter is not above the last one this client accepted (a
    replayed or re-started bootstrap)."""


# --- neighbourhood evidence ---------------------------------------------------------


class NeighbourhoodError(ProtocolViolationError):
    """A per-neighbour list holds a client outside this client's neighbourhood, misses
    one inside it (neither present nor marked absent), or contradicts an earlier step."""


class DropoutBudgetExceededError(SurvivorSetTooSmallError):
    """More of this client's neighbours on one side are not certified alive than the
    policy's dropout budget allows: a server cutting the graph would look like this."""


class DealerMisbehaviourError(RoundAbortedError):
    """A client dealt shares that do not match its signed commitment; ``owner`` names it
    and ``proof`` lets anyone check it against the registry."""

    def __init__(self, message: str, *, owner: int, proof: object | None = None) -> None:
        super().__init__(message)
        self.owner = owner
        self.proof = proof


class BadShareError(ProtocolViolationError):
    """A released share does not match the digest its owner committed to: the holder
    that sent it is excluded and the secret is rebuilt from verified shares."""
