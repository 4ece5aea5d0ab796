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
from dp.errors import (
    BudgetExceededError,
    ClientStateError,
    ClipNormError,
    DeltaError,
    DPError,
    EpsilonError,
    LedgerError,
    LedgerFormatError,
    LedgerLockedError,
    LedgerMismatchError,
    LedgerStateError,
    LedgerTamperedError,
    LedgerTruncatedError,
    NoiseCalibrationError,
    NoiseLocationError,
    NoiseMultiplierError,
    PrivacyParameterError,
    QuantizationError,
    SampleRateError,
    StepsError,
    UnknownAccountantError,
    UnsupportedModuleError,
    UnsupportedSamplerError,
    UpdateError,
)
from dp.ledger import (
    PendingRound,
    PrivacyLedger,
    RoundCost,
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
    "BudgetExceededError",
    "BudgetGuard",
    "ClientRoundResult",
    "ClientStateError",
    "ClipNormError",
    "DPError",
    "DPFedAvg",
    "DPSGDClient",
    "DeltaError",
    "EpsilonError",
    "EpsilonPair",
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
    "StepsError",
    "UnknownAccountantError",
    "UnsupportedModuleError",
    "UnsupportedSamplerError",
    "UpdateError",
    "clip_l2",
    "conditional_stochastic_round",
    "epsilon",
    "epsilon_for_history",
    "epsilons_for_history",
    "make_accountant",
    "noise_multiplier",
    "read_ledger",
    "round_cost",
    "rounded_sensitivity",
    "verify_ledger",
]
