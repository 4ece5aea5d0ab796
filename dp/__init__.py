"""dp: differential privacy for federated learning (client DP-SGD, DP-FedAvg, accounting,
the per-round privacy ledger and budget guard).

Importing ``dp`` loads neither torch nor Opacus: the DP-SGD client wrapper
(:class:`DPSGDClient`) is imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dp.accountants import (
    MechanismStep,
    PLDAccountant,
    PRVAccountant,
    RDPAccountant,
    make_accountant,
)
from dp.accounting import epsilon, epsilon_for_history, epsilons_for_history, noise_multiplier
from dp.budget import BudgetGuard
from dp.distributed import (
    DistributedAccountant,
    DistributedDPParams,
    choose_parameters,
    ddg_rdp,
    ddg_tau,
    equivalent_noise_multiplier,
    require_noise,
    round_rdp,
    skellam_rdp,
    subsampled_rdp,
)
from dp.errors import (
    BitWidthError,
    BudgetExceededError,
    ClientStateError,
    ClipNormError,
    CollusionBoundError,
    DeltaError,
    DistributedDPError,
    DPError,
    EpsilonError,
    LedgerAnchorError,
    LedgerAnchorFormatError,
    LedgerAnchorNotInChainError,
    LedgerBeyondAnchorError,
    LedgerError,
    LedgerFormatError,
    LedgerLockedError,
    LedgerMismatchError,
    LedgerStateError,
    LedgerTamperedError,
    LedgerTruncatedError,
    NoiseCalibrationError,
    NoiseFloorError,
    NoiseLocationError,
    NoiseMultiplierError,
    PrivacyParameterError,
    QuantizationError,
    SampleRateError,
    SamplerParameterError,
    StepsError,
    UnderNoisedRoundError,
    UnknownAccountantError,
    UnsupportedModuleError,
    UnsupportedSamplerError,
    UpdateError,
)
from dp.fast_samplers import (
    discrete_gaussian_sampler,
    sample_discrete_gaussian,
    sample_skellam,
    skellam_sampler,
)
from dp.ledger import (
    PendingRound,
    PrivacyLedger,
    RoundCost,
    VerifyReport,
    check_anchor,
    read_ledger,
    round_cost,
    verify_ledger,
)
from dp.ledger_format import EpsilonPair, LedgerEntry, LedgerHeader, RoundParams
from dp.mechanisms import (
    AdaptiveClipping,
    DPFedAvg,
    Mechanism,
    NoiseLocation,
    clip_l2,
    conditional_stochastic_round,
    rounded_sensitivity,
)
from dp.secure_noise import add_secure_gaussian, secure_gaussian, secure_gaussian_scalar

if TYPE_CHECKING:  # pragma: no cover
    from dp.opacus_client import ClientRoundResult, DPSGDClient, PrivacySpent

_LAZY = {"DPSGDClient", "ClientRoundResult", "PrivacySpent"}


def __getattr__(name: str) -> Any:
    """Load the torch-based client wrapper only when asked for."""
    if name in _LAZY:
        from dp import opacus_client

        return getattr(opacus_client, name)
    raise AttributeError(f"module 'dp' has no attribute {name!r}")


__all__ = [
    "AdaptiveClipping",
    "BitWidthError",
    "BudgetExceededError",
    "BudgetGuard",
    "ClientRoundResult",
    "ClientStateError",
    "ClipNormError",
    "CollusionBoundError",
    "DPError",
    "DPFedAvg",
    "DPSGDClient",
    "DeltaError",
    "DistributedAccountant",
    "DistributedDPError",
    "DistributedDPParams",
    "EpsilonError",
    "EpsilonPair",
    "LedgerAnchorError",
    "LedgerAnchorFormatError",
    "LedgerAnchorNotInChainError",
    "LedgerBeyondAnchorError",
    "LedgerEntry",
    "LedgerError",
    "LedgerFormatError",
    "LedgerHeader",
    "LedgerLockedError",
    "LedgerMismatchError",
    "LedgerStateError",
    "LedgerTamperedError",
    "LedgerTruncatedError",
    "Mechanism",
    "MechanismStep",
    "NoiseCalibrationError",
    "NoiseFloorError",
    "NoiseLocation",
    "NoiseLocationError",
    "NoiseMultiplierError",
    "PLDAccountant",
    "PRVAccountant",
    "PendingRound",
    "PrivacyLedger",
    "PrivacyParameterError",
    "PrivacySpent",
    "QuantizationError",
    "RDPAccountant",
    "RoundCost",
    "RoundParams",
    "SampleRateError",
    "SamplerParameterError",
    "StepsError",
    "UnderNoisedRoundError",
    "UnknownAccountantError",
    "UnsupportedModuleError",
    "UnsupportedSamplerError",
    "UpdateError",
    "VerifyReport",
    "add_secure_gaussian",
    "check_anchor",
    "choose_parameters",
    "clip_l2",
    "conditional_stochastic_round",
    "ddg_rdp",
    "ddg_tau",
    "discrete_gaussian_sampler",
    "epsilon",
    "epsilon_for_history",
    "epsilons_for_history",
    "equivalent_noise_multiplier",
    "make_accountant",
    "noise_multiplier",
    "read_ledger",
    "require_noise",
    "round_cost",
    "round_rdp",
    "rounded_sensitivity",
    "sample_discrete_gaussian",
    "sample_skellam",
    "secure_gaussian",
    "secure_gaussian_scalar",
    "skellam_rdp",
    "skellam_sampler",
    "subsampled_rdp",
    "verify_ledger",
]
