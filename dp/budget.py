"""The budget guard: refuses a round whose completion would exceed the target epsilon.

The ledger asks the guard before a round starts, with the cumulative epsilons the round
would leave behind; a refusal raises :class:`~dp.errors.BudgetExceededError` and the
ledger writes nothing. Which epsilon is enforced is explicit:

* ``accountant``: ``pld`` (default; tight and still an upper bound) or ``rdp``;
* ``view``: ``sampled`` (default; the epsilon users of the released model face, with
  amplification by client sampling), ``unsampled`` (q = 1; against a party that knows
  who took part, e.g. a server that chose the participants), or ``both`` (the larger).
"""

from __future__ import annotations

from dataclasses import dataclass

from dp.accountants import check_accountant
from dp.errors import BudgetExceededError, UnknownAccountantError
from dp.ledger_format import GUARD_VIEWS, EpsilonPair, GuardAccountant, GuardView
from dp.validation import check_epsilon


@dataclass(frozen=True)
class BudgetGuard:
    """Target epsilon and which accountant/view enforces it."""

    target_epsilon: float
    accountant: GuardAccountant = "pld"
    view: GuardView = "sampled"

    def __post_init__(self) -> None:
        object.__setattr__(self, "target_epsilon", check_epsilon(self.target_epsilon))
        if check_accountant(self.accountant) == "prv":
            raise UnknownAccountantError(
                "the guard enforces 'rdp' or 'pld'; PRV recomputes the history per query"
            )
        if self.view not in GUARD_VIEWS:
            raise UnknownAccountantError(f"view must be one of {GUARD_VIEWS}, got {self.view!r}")

    def enforced(self, cumulative: EpsilonPair, cumulative_unsampled: EpsilonPair) -> float:
        """The epsilon this guard compares with the target."""
        sampled = cumulative.get(self.accountant)
        unsampled = cumulative_unsampled.get(self.accountant)
        if self.view == "sampled":
            return sampled
        if self.view == "unsampled":
            return unsampled
        return max(sampled, unsampled)

    def check(
        self, *, round_id: int, cumulative: EpsilonPair, cumulative_unsampled: EpsilonPair
    ) -> None:
        """Raise :class:`BudgetExceededError` if these totals would exceed the target."""
        eps = self.enforced(cumulative, cumulative_unsampled)
        if not eps <= self.target_epsilon:
            raise BudgetExceededError(
                round_id=round_id,
                epsilon_after=eps,
                target_epsilon=self.target_epsilon,
                what=f"{self.accountant}, {self.view}",
            )

    def remaining(self, cumulative: EpsilonPair, cumulative_unsampled: EpsilonPair) -> float:
        """Target minus the enforced epsilon (never below 0)."""
        return max(0.0, self.target_epsilon - self.enforced(cumulative, cumulative_unsampled))
