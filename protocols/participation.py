"""Who takes part in a round, as a driver really runs it, checked against what the DP
mechanism's accounting assumes.

DP-FedAvg's ledger charges one Poisson-subsampled Gaussian step per round at the
mechanism's ``sample_rate`` q, with the fixed public denominator ``expected_clients`` =
q * N. That charge is only right when the driver really samples that way:

* every registered client in every round (Flower's workflows today): q must be 1;
* Poisson sampling at rate q over a population of N, with coins the adversary neither
  sees nor chooses (amplification by sampling needs a secret sample): q is the rate;
* a fixed-size cohort of m drawn without replacement: the Poisson accountant does not
  cover it, so it is refused unless q = 1.

:func:`check_dp_fedavg` refuses any mismatch with :class:`AccountingAssumptionError`
before a round starts; :meth:`Participation.check_round` checks each round's
participants against it. Every driver (``FedAvg``, ``PrivacyLayer``, both Flower
workflows) calls both.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from protocols.errors import ProtocolLayerError
from secagg.validation import is_int

SAMPLINGS = ("all", "poisson", "fixed_size")
#: resolution of the secret Poisson coins: q is compared with a 53-bit uniform
_COIN_BITS = 53


class AccountingAssumptionError(ProtocolLayerError, ValueError):
    """What a driver does contradicts what the DP mechanism's accounting assumes (the
    sampling, the population, the fixed denominator or the steps per round)."""


@dataclass(frozen=True)
class Participation:
    """How a driver picks each round's participants.

    ``population`` is the number of registered clients N (``None``: fixed by the first
    round's clients); ``rate`` the Poisson rate q (1.0 for ``"all"``); ``cohort`` the
    fixed size m; ``secret`` whether the sample's coins are hidden from the server and
    from model consumers (required for amplification).
    """

    sampling: str
    population: int | None = None
    rate: float = 1.0
    cohort: int | None = None
    secret: bool = True

    def __post_init__(self) -> None:
        if self.sampling not in SAMPLINGS:
            raise AccountingAssumptionError(
                f"sampling {self.sampling!r}; use one of {', '.join(SAMPLINGS)}"
            )
        if self.population is not None and not (is_int(self.population) and self.population >= 1):
            raise AccountingAssumptionError(
                f"population must be an int >= 1, got {self.population!r}"
            )
        if not (isinstance(self.rate, int | float) and 0.0 < float(self.rate) <= 1.0):
            raise AccountingAssumptionError(f"rate must be in (0, 1], got {self.rate!r}")
        if self.sampling == "all" and self.rate != 1.0:
            raise AccountingAssumptionError("sampling 'all' has rate 1")
        if self.sampling == "fixed_size" and (
            self.cohort is None
            or self.cohort < 1
            or (self.population is not None and self.cohort > self.population)
        ):
            raise AccountingAssumptionError("fixed_size needs 1 <= cohort <= population")

    @classmethod
    def everyone(cls, population: int | None = None) -> Participation:
        """Every registered client is asked in every round."""
        return cls("all", population)

    @classmethod
    def poisson(cls, rate: float, population: int, *, secret: bool = True) -> Participation:
        """Each client independently with probability ``rate`` per round."""
        return cls("poisson", population, float(rate), secret=secret)

    @classmethod
    def fixed_size(cls, cohort: int, population: int) -> Participation:
        """``cohort`` clients drawn without replacement per round."""
        return cls("fixed_size", population, cohort / population, cohort=cohort)

    def sample(self, clients: Iterable[int]) -> list[int]:
        """Draw one round's cohort from ``clients`` with the OS CSPRNG (Poisson: one
        secret coin per client; ``all``: everyone). ``fixed_size`` is drawn uniformly."""
        pool = sorted(int(c) for c in clients)
        if self.sampling == "all":
            return pool
        if self.sampling == "fixed_size":
            m = min(int(self.cohort or 0), len(pool))
            rng = secrets.SystemRandom()
            return sorted(rng.sample(pool, m))
        limit = math.floor(self.rate * 2**_COIN_BITS)
        return [c for c in pool if secrets.randbits(_COIN_BITS) < limit]

    def check_round(self, participants: Iterable[int], allowed: Iterable[int]) -> None:
        """Refuse a round whose participants the accounting does not cover. ``allowed``
        is the registered population under ``all`` (every member must be there, dropouts
        included) and the round's drawn cohort under sampling (no one else may be)."""
        got = {int(c) for c in participants}
        want = {int(c) for c in allowed}
        if self.sampling == "all":
            if got != want:
                missing = sorted(want - got)[:5]
                extra = sorted(got - want)[:5]
                raise AccountingAssumptionError(
                    "every client must be asked in every round (accounted at q = 1): "
                    f"missing {missing}, not registered {extra}"
                )
            return
        outside = sorted(got - want)
        if outside:
            raise AccountingAssumptionError(
                f"clients {outside[:5]} were not sampled for this round but contributed"
            )


def check_dp_fedavg(mech: Any, participation: Participation, *, where: str) -> None:
    """Refuse a DP-FedAvg mechanism whose accounting ``participation`` contradicts.

    Checks the sample rate against the sampling, the secret coins, the fixed denominator
    ``expected_clients`` = q * N and one step per round; ``where`` names the driver.
    """
    q = float(mech.sample_rate)
    p = participation
    if p.sampling == "all" and q != 1.0:
        raise AccountingAssumptionError(
            f"{where}: every client takes part in every round, but the mechanism is "
            f"accounted at sample_rate {q:g}: amplification by sampling that never "
            "happens. Use sample_rate=1.0, or sample clients (Participation.poisson)."
        )
    if p.sampling == "fixed_size" and q != 1.0:
        raise AccountingAssumptionError(
            f"{where}: fixed-size cohorts (without replacement) are not covered by the "
            f"Poisson accountant at sample_rate {q:g}; use Poisson sampling"
        )
    if p.sampling == "poisson":
        if not math.isclose(q, p.rate, rel_tol=1e-12):
            raise AccountingAssumptionError(
                f"{where}: clients are sampled at rate {p.rate:g} but the mechanism is "
                f"accounted at {q:g}"
            )
        if not p.secret and q < 1.0:
            raise AccountingAssumptionError(
                f"{where}: the sample is public or chosen by the server, so it gives no "
                "amplification; account at sample_rate=1.0"
            )
    if p.population is not None:
        want = q * p.population
        if not math.isclose(float(mech.expected_clients), want, rel_tol=1e-9):
            raise AccountingAssumptionError(
                f"{where}: the fixed denominator expected_clients = "
                f"{float(mech.expected_clients):g} is not q * N = {want:g}"
            )
    steps = int(mech.round_cost().params.steps)
    if steps != 1:
        raise AccountingAssumptionError(
            f"{where}: DP-FedAvg uses each model once per round; the cost claims {steps} steps"
        )
