"""Incremental privacy accountants with ``step()`` / ``get_epsilon(delta)``.

Each accountant composes Poisson-subsampled Gaussian steps as they happen and keeps a
running total, so adding a round and asking for epsilon costs the same at round 1000 as
at round 1, whatever the history of (sigma, q). (Opacus's accountants keep the history
and recompute all of it on each query once parameters vary.)

* :class:`RDPAccountant` keeps the running RDP curve (a vector over orders).
* :class:`PLDAccountant` keeps the composed privacy-loss distribution (dp_accounting,
  pessimistic "connect the dots" discretisation): tight, an upper bound. Steps with
  q = 1 compose exactly (Gaussians compose to a Gaussian) and are folded in at query time.
* :class:`PRVAccountant` wraps Opacus's PRV accountant; it recomputes the history on
  each query (seconds to a minute at 1000 varied rounds), so it is on request only.

The CLT / Gaussian-DP approximation is deliberately absent: it under-reports epsilon.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np

from dp.errors import UnknownAccountantError
from dp.rdp import DEFAULT_ORDERS, FloatArray, epsilon_from_rdp, rdp_per_step
from dp.validation import check_count, check_delta, check_noise_multiplier, check_sample_rate

if TYPE_CHECKING:  # pragma: no cover
    from dp_accounting.pld.privacy_loss_distribution import PrivacyLossDistribution

AccountantName = Literal["rdp", "pld", "prv"]
ACCOUNTANTS: tuple[AccountantName, ...] = ("rdp", "pld", "prv")

# Width of the PLD's privacy-loss grid. 1e-3 with connect-the-dots stays within ~0.002 of
# the 1e-4 grid on 1000 compositions (measured) at a tenth of the cost per new (q, sigma).
PLD_DISCRETIZATION = 1e-3


@dataclass(frozen=True)
class MechanismStep:
    """``steps`` compositions of the Gaussian mechanism at noise multiplier ``sigma``,
    each on a Poisson sample of rate ``sample_rate`` (q = 1: no sampling)."""

    sample_rate: float
    noise_multiplier: float
    steps: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "sample_rate", check_sample_rate(self.sample_rate))
        object.__setattr__(self, "noise_multiplier", check_noise_multiplier(self.noise_multiplier))
        object.__setattr__(self, "steps", check_count(self.steps, "steps"))

    def unsampled(self) -> MechanismStep:
        """The same step with q = 1: the view of a party that knows who was sampled."""
        return MechanismStep(1.0, self.noise_multiplier, self.steps)


class Accountant(Protocol):
    """What every accountant offers."""

    name: str

    def step(self, *, noise_multiplier: float, sample_rate: float, steps: int = 1) -> None:
        """Compose ``steps`` more steps."""
        ...

    def compose(self, step: MechanismStep) -> None:
        """Compose a validated :class:`MechanismStep`."""
        ...

    def get_epsilon(self, delta: float) -> float:
        """Epsilon spent so far at ``delta``."""
        ...

    @property
    def history(self) -> tuple[MechanismStep, ...]:
        """Every composed step, in order."""
        ...


class _HistoryMixin:
    _history: list[MechanismStep]

    @property
    def history(self) -> tuple[MechanismStep, ...]:
        """Every composed step, in order (for audits and from-scratch cross-checks)."""
        return tuple(self._history)

    def step(self, *, noise_multiplier: float, sample_rate: float, steps: int = 1) -> None:
        """Compose ``steps`` steps of the subsampled Gaussian (arguments validated)."""
        self.compose(MechanismStep(sample_rate, noise_multiplier, steps))

    def compose(self, step: MechanismStep) -> None:  # pragma: no cover - overridden
        raise NotImplementedError


class RDPAccountant(_HistoryMixin):
    """Running RDP curve; epsilon by the improved RDP-to-DP conversion."""

    name = "rdp"

    def __init__(self, *, orders: tuple[float, ...] = DEFAULT_ORDERS) -> None:
        self.orders = tuple(float(a) for a in orders)
        self._rdp: FloatArray = np.zeros(len(self.orders))
        self._history = []

    @property
    def rdp(self) -> FloatArray:
        """The composed RDP at each order (a copy)."""
        return self._rdp.copy()

    def compose(self, step: MechanismStep) -> None:
        """Add ``step.steps`` times the per-step RDP curve."""
        if step.steps:
            per = rdp_per_step(
                sample_rate=step.sample_rate,
                noise_multiplier=step.noise_multiplier,
                orders=self.orders,
            )
            self._rdp = self._rdp + step.steps * per
        self._history.append(step)

    def get_epsilon(self, delta: float) -> float:
        """Epsilon at ``delta`` (0 before any step)."""
        delta = check_delta(delta)
        if not self._history:
            return 0.0
        return epsilon_from_rdp(self.orders, self._rdp, delta)[0]

    def copy(self) -> RDPAccountant:
        """An independent accountant with the same state (cheap: one vector)."""
        other = RDPAccountant(orders=self.orders)
        other._rdp = self._rdp.copy()
        other._history = list(self._history)
        return other


@lru_cache(maxsize=256)
def _step_pld(
    sample_rate: float, noise_multiplier: float, steps: int, discretization: float
) -> PrivacyLossDistribution:
    """PLD of ``steps`` subsampled-Gaussian steps; cached since histories repeat."""
    from dp_accounting.pld import privacy_loss_distribution as pld_lib

    single = pld_lib.from_gaussian_mechanism(
        standard_deviation=noise_multiplier,
        sensitivity=1.0,
        sampling_prob=sample_rate,
        value_discretization_interval=discretization,
        pessimistic_estimate=True,
        use_connect_dots=True,
    )
    return single if steps == 1 else single.self_compose(steps)


def gaussian_epsilon(effective_sigma: float, delta: float) -> float:
    """Exact epsilon of one Gaussian mechanism with noise multiplier ``effective_sigma``
    (Balle & Wang 2018, analytic Gaussian)."""
    import dp_accounting

    return float(dp_accounting.get_epsilon_gaussian(effective_sigma, delta))


class PLDAccountant(_HistoryMixin):
    """Composed privacy-loss distribution (dp_accounting); tight, pessimistic rounding."""

    name = "pld"

    def __init__(self, *, discretization: float = PLD_DISCRETIZATION) -> None:
        self.discretization = float(discretization)
        self._pld: PrivacyLossDistribution | None = None
        # Steps with q = 1 compose exactly: sum of steps / sigma^2 is 1 / sigma_eff^2.
        self._gauss_precision = 0.0
        self._history = []

    def compose(self, step: MechanismStep) -> None:
        """Fold ``step`` into the running distribution."""
        if step.steps:
            if step.sample_rate == 1.0:
                self._gauss_precision += step.steps / step.noise_multiplier**2
            else:
                new = _step_pld(
                    step.sample_rate, step.noise_multiplier, step.steps, self.discretization
                )
                self._pld = new if self._pld is None else self._pld.compose(new)
        self._history.append(step)

    def get_epsilon(self, delta: float) -> float:
        """Epsilon at ``delta`` (0 before any step)."""
        delta = check_delta(delta)
        if self._pld is None and self._gauss_precision == 0.0:
            return 0.0
        if self._pld is None:
            return gaussian_epsilon(1.0 / math.sqrt(self._gauss_precision), delta)
        pld = self._pld
        if self._gauss_precision > 0.0:
            pld = pld.compose(
                _step_pld(1.0, 1.0 / math.sqrt(self._gauss_precision), 1, self.discretization)
            )
        return float(pld.get_epsilon_for_delta(delta))

    def copy(self) -> PLDAccountant:
        """An independent accountant with the same state (PLD objects are shared: they
        are never mutated, composition makes a new one)."""
        other = PLDAccountant(discretization=self.discretization)
        other._pld = self._pld
        other._gauss_precision = self._gauss_precision
        other._history = list(self._history)
        return other


class PRVAccountant(_HistoryMixin):
    """Opacus's PRV accountant (Gopi et al. 2021). Recomputes the whole history on every
    query: for one-off checks, not for per-round enforcement. Needs torch and opacus."""

    name = "prv"

    def __init__(self, *, eps_error: float = 0.01) -> None:
        self.eps_error = float(eps_error)
        self._history = []

    def compose(self, step: MechanismStep) -> None:
        """Record the step (composition happens at query time)."""
        self._history.append(step)

    def get_epsilon(self, delta: float) -> float:
        """Epsilon at ``delta``: Opacus's upper bound within ``eps_error``."""
        delta = check_delta(delta)
        if not any(s.steps for s in self._history):
            return 0.0
        from opacus.accountants import PRVAccountant as OpacusPRV

        acc: Any = OpacusPRV()
        acc.history = [
            (s.noise_multiplier, s.sample_rate, s.steps) for s in self._history if s.steps
        ]
        return float(acc.get_epsilon(delta=delta, eps_error=self.eps_error))

    def copy(self) -> PRVAccountant:
        """An independent accountant with the same history."""
        other = PRVAccountant(eps_error=self.eps_error)
        other._history = list(self._history)
        return other


_FACTORIES: dict[str, Callable[[], RDPAccountant | PLDAccountant | PRVAccountant]] = {
    "rdp": RDPAccountant,
    "pld": PLDAccountant,
    "prv": PRVAccountant,
}


def check_accountant(name: object) -> AccountantName:
    """``name`` if it names an accountant, else :class:`UnknownAccountantError`."""
    if name == "rdp":
        return "rdp"
    if name == "pld":
        return "pld"
    if name == "prv":
        return "prv"
    raise UnknownAccountantError(f"accountant must be one of {ACCOUNTANTS}, got {name!r}")


def make_accountant(name: str) -> RDPAccountant | PLDAccountant | PRVAccountant:
    """A fresh accountant by name: ``rdp``, ``pld`` or ``prv``."""
    return _FACTORIES[check_accountant(name)]()
