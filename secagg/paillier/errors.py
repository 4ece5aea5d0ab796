"""Named exceptions of the Paillier backend.

Each failure has its own class so a driver can tell a bad client message (exclude that
client) from an unsound configuration (fix the call) from a refusal by the key holder (the
aggregator misbehaved). All inherit from :class:`secagg.errors.SecAggError`; those caused
by a bad value also inherit from :class:`ValueError` (through ``ConfigError`` or
directly).
"""

from __future__ import annotations

from secagg.errors import ConfigError, SecAggError, SignatureError


class PaillierError(SecAggError):
    """Base class of every error raised by ``secagg.paillier``."""


class Gmpy2MissingError(PaillierError, RuntimeError):
    """gmpy2 is not importable: phe would fall back to pure Python (about 8x slower)."""


# --- configuration -------------------------------------------------------------------


class PaillierConfigError(PaillierError, ConfigError):
    """A Paillier or packing parameter is out of range or inconsistent."""


class KeySizeError(PaillierConfigError):
    """The modulus size is not one of the allowed key sizes (2048, 3072 bits)."""


class SlotOverflowError(PaillierConfigError):
    """The sum of the allowed number of clients could carry out of a packing slot."""


class RandomnessExhaustedError(PaillierError):
    """A store of precomputed obfuscators ran out; each one may be used only once."""


# --- wire format: one client's (or one party's) bad bytes -----------------------------


class PaillierFormatError(PaillierError, ValueError):
    """Serialized bytes are malformed: magic, version, kind, truncation, trailing data."""


class KeyIdMismatchError(PaillierFormatError):
    """Ciphertexts are under a different public key than the one of this session."""


class LengthMismatchError(PaillierFormatError):
    """The number of elements, ciphertexts or the packing layout differs from expected."""


class CiphertextRangeError(PaillierFormatError):
    """A ciphertext lies outside Z*_(n^2): c <= 0, c >= n^2, or gcd(c, n) != 1."""


class PublicKeyFormatError(PaillierFormatError):
    """A serialized public key is malformed (even modulus, wrong size, bad base)."""


# --- contributions -------------------------------------------------------------------


class ContributionError(PaillierError, ValueError):
    """A client's contribution cannot be accepted for this round."""


class ContributionSignatureError(ContributionError, SignatureError):
    """A contribution's Ed25519 signature is missing or does not verify."""


class UnknownClientError(ContributionError):
    """The contribution names a client that is not in the round's roster."""


class SenderMismatchError(ContributionError):
    """The client id inside a contribution differs from the party that delivered it."""


class DuplicateContributionError(ContributionError):
    """A second contribution from the same client in one round."""


class WrongRoundError(ContributionError):
    """The contribution (or request) is bound to another session or round: a replay."""


# --- key holder refusals ------------------------------------------------------------


class DecryptionRefusedError(PaillierError):
    """The key holder refuses to decrypt what the aggregator handed over."""


class InsufficientContributorsError(DecryptionRefusedError):
    """Fewer than ``min_contributors`` distinct valid contributions: a sum this small
    could reveal a single client's update."""


class ProductMismatchError(DecryptionRefusedError):
    """The aggregator's claimed product differs from the one the key holder recomputed."""


class RoundAlreadyDecryptedError(DecryptionRefusedError):
    """This round (or a later one) was already decrypted; one decryption per round."""


class ForeignSessionError(DecryptionRefusedError, WrongRoundError):
    """The decryption request belongs to another session than the key holder's."""


class InvalidContributionError(DecryptionRefusedError):
    """A contribution handed to the key holder does not validate (see ``__cause__``)."""


# --- decryption output ---------------------------------------------------------------


class DecodeRangeError(PaillierError, ValueError):
    """A decrypted slot sum lies outside what the stated contributors can produce."""


# --- threshold decryption by a committee (secagg.paillier.threshold_*) ------------------


class ThresholdConfigError(PaillierConfigError):
    """A committee setting is impossible or unsafe: (t, l) out of range, a wrong quorum,
    primes that are not safe primes, a key share for another member."""


class ThresholdFormatError(PaillierFormatError):
    """Threshold key, key-share, endorsement, share or member-state bytes are malformed."""


class InvalidDecryptionShareError(PaillierError, ValueError):
    """A member's decryption share (or its batched proof) does not verify.

    ``member`` is the index of the member that sent it, so a driver can exclude it.
    """

    def __init__(self, member: int, message: str) -> None:
        super().__init__(f"member {member}: {message}")
        self.member = member


class NotEnoughSharesError(PaillierError):
    """Fewer than t valid decryption shares: the round cannot be decrypted.

    ``excluded`` maps each member whose share was refused to the reason.
    """

    def __init__(self, message: str, excluded: dict[int, str] | None = None) -> None:
        super().__init__(message)
        self.excluded = dict(excluded or {})


class QuorumError(DecryptionRefusedError):
    """Fewer than q valid member endorsements on this round's (contributor set, product)."""


class SecondSubsetError(RoundAlreadyDecryptedError):
    """A member already endorsed another contributor set or product in this round."""


class UnverifiedProductError(DecryptionRefusedError):
    """A member is asked to release a share for a product it has not itself verified."""
