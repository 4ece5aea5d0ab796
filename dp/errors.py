"""Named exceptions of the differential-privacy layer.

Every failure a caller may want to handle has its own class, so a driver can tell "this
parameter is out of range" from "the budget is spent" or "the ledger was edited" without
parsing messages. All inherit from :class:`DPError`; the ones caused by a bad value also
inherit from :class:`ValueError` so generic code that catches ``ValueError`` still works.
"""

from __future__ import annotations

import math


class DPError(Exception):
    """Base class of every error raised by ``dp``."""


# --- privacy parameters ----------------------------------------------------------------


class PrivacyParameterError(DPError, ValueError):
    """A privacy parameter is out of range (base of the parameter errors below)."""


class NoiseMultiplierError(PrivacyParameterError):
    """The noise multiplier is negative, zero, NaN or infinite."""


class ClipNormError(PrivacyParameterError):
    """A clipping norm (or sensitivity bound) is not a finite number > 0."""


class SampleRateError(PrivacyParameterError):
    """A sampling rate is outside (0, 1]."""


class DeltaError(PrivacyParameterError):
    """delta is outside (0, 1), or not below 1/n for a population of n."""


class EpsilonError(PrivacyParameterError):
    """A target epsilon is not a finite number > 0."""


class StepsError(PrivacyParameterError):
    """A step, round or epoch count is not a non-negative integer."""


class UnknownAccountantError(PrivacyParameterError):
    """The accountant name is not one of ``rdp``, ``pld``, ``prv``."""


class NoiseCalibrationError(DPError, ValueError):
    """No noise multiplier in the searched range reaches the target epsilon."""


# --- mechanisms ------------------------------------------------------------------------


class UpdateError(DPError, ValueError):
    """A model update cannot be clipped or noised (NaN/Inf, wrong shape or dtype)."""


class QuantizationError(DPError, ValueError):
    """Conditional rounding could not meet its norm bound within the allowed tries."""


class NoiseLocationError(DPError, ValueError):
    """The mechanism does not support the requested noise location (yet)."""


# --- client DP-SGD (Opacus) ------------------------------------------------------------


class UnsupportedModuleError(DPError, ValueError):
    """Opacus cannot compute per-sample gradients for a layer of the model."""


class UnsupportedSamplerError(DPError, ValueError):
    """The data loader's sampling differs from the Poisson sampling that is accounted."""


class ClientStateError(DPError):
    """A client wrapper was used out of order (e.g. a closed client, a reused round)."""


# --- ledger and budget -----------------------------------------------------------------


class BudgetExceededError(DPError):
    """Completing the round would push cumulative epsilon above the target budget."""

    def __init__(self, *, round_id: int, epsilon_after: float, target_epsilon: float, what: str):
        self.round_id = round_id
        self.epsilon_after = epsilon_after
        self.target_epsilon = target_epsilon
        shown = "inf" if math.isinf(epsilon_after) else f"{epsilon_after:.6g}"
        super().__init__(
            f"round {round_id} refused: cumulative epsilon would reach {shown} ({what}), "
            f"above the target {target_epsilon:.6g}; nothing was written for this round"
        )


class LedgerError(DPError):
    """Base class of ledger failures."""


class LedgerFormatError(LedgerError, ValueError):
    """A ledger line is not a valid record (names the file and the line number)."""


class LedgerTamperedError(LedgerError):
    """The hash chain does not verify: a line was edited, removed, inserted or reordered."""


class LedgerTruncatedError(LedgerTamperedError):
    """The ledger holds fewer entries than its head anchor says were committed."""


class LedgerMismatchError(LedgerError):
    """A stored epsilon differs from the epsilon recomputed from the stored parameters."""


class LedgerStateError(LedgerError):
    """A ledger call out of order: commit without begin, a round number not increasing."""


class LedgerLockedError(LedgerError):
    """Another writer holds the ledger file open."""


# --- the external anchor (a head hash kept outside the ledger's two files) -------------


class LedgerAnchorFormatError(LedgerError, ValueError):
    """An expected head hash is not 64 hexadecimal digits."""


class LedgerAnchorError(LedgerTamperedError):
    """The ledger does not match a head hash kept outside it; ``verdict`` names how."""

    verdict = "anchor_mismatch"

    def __init__(self, message: str, *, expected: str, head: str) -> None:
        self.expected = expected
        self.head = head
        super().__init__(message)


class LedgerAnchorNotInChainError(LedgerAnchorError):
    """The anchored hash is no line of this ledger: rolled back, truncated or replaced."""

    verdict = "anchor_not_in_chain"


class LedgerBeyondAnchorError(LedgerAnchorError):
    """The anchored hash is an earlier line, not the head: entries were appended since."""

    verdict = "entries_after_anchor"


# --- distributed DP: discrete noise, secure samplers, parameter choice (issue 16) -------


class SamplerParameterError(PrivacyParameterError):
    """A noise sampler's parameter (sigma, variance, rate, scale) is outside its range."""


class DistributedDPError(DPError, ValueError):
    """Base class of the distributed-DP parameter and accounting errors."""


class BitWidthError(DistributedDPError):
    """Z_(2^b) cannot hold the noisy sum at the configured wrap probability."""


class NoiseFloorError(DistributedDPError):
    """The local noise is too small for the sum-of-discrete-Gaussians slack to be
    negligible, and no scale meets both that floor and the bit width."""


class CollusionBoundError(DistributedDPError):
    """The contributor counts are inconsistent (e.g. n_min - n_C < 1, n_min > n_max)."""


class UnderNoisedRoundError(DistributedDPError):
    """Fewer honest contributors than the local noise was sized for: the round must abort
    before unmasking, or be accounted with the noise actually present."""
