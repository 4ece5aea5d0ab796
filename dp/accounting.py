"""Privacy accounting API: epsilon for a mechanism (or a history of them) and the noise
multiplier needed for a target epsilon. Keyword-only arguments throughout.

The mechanism is the Poisson-subsampled Gaussian (DP-SGD steps, DP-FedAvg rounds):
``sample_rate`` q, ``noise_multiplier`` sigma (noise std / L2 sensitivity), ``steps``
compositions. Accountants: ``rdp`` (fast, looser), ``pld`` (tight, dp_accounting's
privacy-loss distributions), ``prv`` (Opacus's PRV, on request: slow on varied
histories). All three return upper bounds on epsilon; none uses the CLT approximation.

Running totals for a ledger live in :mod:`dp.accountants`; this module answers one-off
questions, e.g. ``epsilon(sample_rate=256/60000, noise_multiplier=1.1, steps=14063,
delta=1e-5)``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from dp.accountants import (
    AccountantName,
    MechanismStep,
    check_accountant,
    make_accountant,
)
from dp.errors import NoiseCalibrationError
from dp.rdp import DEFAULT_ORDERS, epsilon_from_rdp, rdp_per_step
from dp.validation import check_count, check_delta, check_epsilon, check_sample_rate

__all__ = [
    "MechanismStep",
    "epsilon",
    "epsilon_for_history",
    "epsilons_for_history",
    "noise_multiplier",
    "rdp_epsilon",
]

_SIGMA_MAX = 1e4
_SIGMA_MIN = 0.05  # below this the PLD grid gets huge; such targets are not DP in practice


def epsilon(
    *,
    sample_rate: float,
    noise_multiplier: float,
    steps: int,
    delta: float,
    accountant: AccountantName = "rdp",
) -> float:
    """Epsilon at ``delta`` after ``steps`` subsampled-Gaussian steps."""
    return epsilon_for_history(
        [MechanismStep(sample_rate, noise_multiplier, steps)], delta=delta, accountant=accountant
    )


def epsilon_for_history(
    history: Iterable[MechanismStep], *, delta: float, accountant: AccountantName = "rdp"
) -> float:
    """Epsilon at ``delta`` for a history of (q, sigma, steps) blocks, composed in order."""
    acc = make_accountant(accountant)
    for block in history:
        acc.compose(block)
    return acc.get_epsilon(delta)


def epsilons_for_history(
    history: Sequence[MechanismStep],
    *,
    delta: float,
    accountants: Sequence[AccountantName] = ("rdp", "pld"),
) -> dict[str, float]:
    """Epsilon at ``delta`` under each named accountant, for the same history."""
    return {
        name: epsilon_for_history(history, delta=delta, accountant=check_accountant(name))
        for name in accountants
    }


def rdp_epsilon(
    *,
    sample_rate: float,
    noise_multiplier: float,
    steps: int,
    delta: float,
    orders: Sequence[float] = DEFAULT_ORDERS,
    conversion: str = "improved",
) -> float:
    """RDP epsilon with explicit orders and conversion (``improved`` or ``classic``).

    ``classic`` (eps = rdp - log(delta)/(a-1)) reproduces figures published before 2020
    (Abadi et al. 2016's moments accountant, TF-Privacy tutorials); ``improved`` is what
    :func:`epsilon` uses.
    """
    block = MechanismStep(sample_rate, noise_multiplier, steps)
    delta = check_delta(delta)
    if conversion not in ("improved", "classic"):
        raise ValueError(f"conversion must be 'improved' or 'classic', got {conversion!r}")
    curve = block.steps * rdp_per_step(
        sample_rate=block.sample_rate,
        noise_multiplier=block.noise_multiplier,
        orders=tuple(float(a) for a in orders),
    )
    if conversion == "classic":
        return epsilon_from_rdp(tuple(orders), curve, delta, conversion="classic")[0]
    return epsilon_from_rdp(tuple(orders), curve, delta, conversion="improved")[0]


def noise_multiplier(
    *,
    target_epsilon: float,
    delta: float,
    sample_rate: float,
    steps: int,
    accountant: AccountantName = "rdp",
    tolerance: float = 1e-3,
) -> float:
    """Smallest noise multiplier (to relative ``tolerance``) whose epsilon after ``steps``
    steps at rate ``sample_rate`` is at most ``target_epsilon`` at ``delta``.

    The result always meets the target (the upper end of the bisection is returned).
    """
    target = check_epsilon(target_epsilon)
    delta = check_delta(delta)
    q = check_sample_rate(sample_rate)
    n_steps = check_count(steps, "steps", minimum=1)
    name = check_accountant(accountant)

    def eps_at(sigma: float) -> float:
        return epsilon(
            sample_rate=q, noise_multiplier=sigma, steps=n_steps, delta=delta, accountant=name
        )

    hi = 1.0
    if eps_at(hi) > target:
        while eps_at(hi) > target:
            hi *= 2.0
            if hi > _SIGMA_MAX:
                raise NoiseCalibrationError(
                    f"no noise multiplier up to {_SIGMA_MAX:g} gives epsilon <= {target} "
                    f"(q={q}, steps={n_steps}, delta={delta})"
                )
        lo = hi / 2.0
    else:
        lo = hi / 2.0
        while eps_at(lo) <= target:
            hi = lo
            lo /= 2.0
            if lo < _SIGMA_MIN:
                return hi
    while hi - lo > tolerance * hi:
        mid = (lo + hi) / 2.0
        if eps_at(mid) > target:
            lo = mid
        else:
            hi = mid
    return hi
