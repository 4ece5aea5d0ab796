"""``SecAggConfig``: every parameter of the masking protocol, validated together.

The threshold rules it enforces (:mod:`secagg.parameters` derives them):

* ``2 <= t <= k + 1`` (a client's secrets are shared among itself and its k neighbours);
* honest-but-curious: ``n_C < t`` (complete graph), or within each SecAgg+
  neighbourhood except with probability ``2^-sigma``;
* active, complete graph: ``2t > n + n_C`` and ``t <= n - D``;
* active, SecAgg+: ``2t > k + 1 + c_full`` and ``t > k/2 + 1 + c_side`` with the corrupt
  neighbours of every client bounded by c_full (c_side per side) except with probability
  2^-sigma, and ``t <= k - d_full`` for the tolerated dropouts except with probability
  2^-eta; the per-side dropout cap and the guaranteed size of any unmaskable sum follow;
* the fixed-point encoding cannot wrap for a sum of all ``n`` clients.

In a deployment a client does not take these from the server: it derives them from its
:class:`~secagg.policy.SecurityPolicy` and accepts exactly those.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from secagg.encoding import FixedPointConfig, Rounding
from secagg.errors import ConfigError
from secagg.graph import MIN_THRESHOLD, min_covered
from secagg.parameters import (
    SETTINGS,
    GraphKind,
    Setting,
    active_bounds,
    check_fraction,
    check_level,
    choose_parameters,
    failure_bounds,
)
from secagg.validation import check_int, is_int

MAX_CLIENTS = 1 << 20


@dataclass(frozen=True)
class SecAggConfig:
    """Parameters of one secure-aggregation session.

    Args:
        num_clients: n, the population (ids 0..n-1; the registry in the active setting).
        threshold: t, shares needed to rebuild a client's secrets.
        neighbours: k for SecAgg+ (even), or ``None`` for SecAgg's complete graph.
        setting: ``"honest_but_curious"`` or ``"active"`` (attestations, signatures).
        tolerated_corrupt: n_C, corrupt clients the threshold must withstand.
        dropout_fraction: the dropouts tolerated (D = floor(fraction * n)); in the
            active setting it sets each client's dropout cap.
        min_summed_fraction: active setting: refuse parameters under which a sum the
            server unmasks could cover fewer than this fraction of the population;
            honest-but-curious: the honest server unmasks no sum over fewer survivors
            than this fraction (nor than t).
        bits, clip_min, clip_max, scale, rounding: the fixed-point encoding.
        sigma, eta: statistical security / correctness parameters (failure 2^-sigma,
            2^-eta).

    Derived: ``privacy_failure``, ``correctness_failure``, ``dropout_cap`` (active:
    neighbours per side a holder accepts as not certified alive), ``min_summed`` (active:
    honest inputs in any sum the server can unmask; honest-but-curious: the fewest
    survivors the honest server unmasks).
    """

    num_clients: int
    threshold: int
    neighbours: int | None = None
    setting: Setting = "active"
    tolerated_corrupt: int = 0
    bits: int = 32
    clip_min: float = -1.0
    clip_max: float = 1.0
    scale: float | None = None
    rounding: Rounding = "stochastic"
    sigma: int = 40
    eta: int = 20
    dropout_fraction: float = 0.0
    min_summed_fraction: float = 0.0
    encoding: FixedPointConfig = field(init=False, repr=False, compare=False)
    privacy_failure: float = field(init=False, repr=False, compare=False)
    correctness_failure: float = field(init=False, repr=False, compare=False)
    dropout_cap: int = field(init=False, repr=False, compare=False)
    min_summed: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        n = check_int("num_clients", self.num_clients, 3, MAX_CLIENTS)
        if self.setting not in SETTINGS:
            raise ConfigError(f"setting must be one of {SETTINGS}, got {self.setting!r}")
        k = self._degree(n)
        holders = n if k is None else k + 1
        t = self.threshold
        if not is_int(t) or not MIN_THRESHOLD <= t <= holders:
            raise ConfigError(
                f"threshold t must be an int in [{MIN_THRESHOLD}, {holders}] (the share holders "
                f"of one client), got {t!r}"
            )
        nc = check_int("tolerated_corrupt", self.tolerated_corrupt, 0, n - 1)
        check_level("sigma", self.sigma)
        check_level("eta", self.eta)
        check_fraction("dropout_fraction", self.dropout_fraction)
        check_fraction("min_summed_fraction", self.min_summed_fraction)
        dropouts = math.floor(self.dropout_fraction * n)
        if self.setting == "active":
            priv, corr, cap, summed = self._active(n, k, t, nc, dropouts)
        else:
            priv, corr, cap, summed = self._hbc(n, k, t, nc, dropouts)
        object.__setattr__(
            self,
            "encoding",
            FixedPointConfig(
                bits=self.bits,
                clip_min=self.clip_min,
                clip_max=self.clip_max,
                num_clients=n,
                scale=self.scale,
            ),
        )
        if self.rounding not in ("stochastic", "nearest"):
            raise ConfigError(f"rounding must be 'stochastic' or 'nearest', got {self.rounding!r}")
        for name, v in (
            ("privacy_failure", priv),
            ("correctness_failure", corr),
            ("dropout_cap", cap),
            ("min_summed", summed),
        ):
            object.__setattr__(self, name, v)

    def _degree(self, n: int) -> int | None:
        k = self.neighbours
        if k is None:
            return None
        if not is_int(k) or k < 2 or k % 2:
            raise ConfigError(f"neighbours (SecAgg+ degree k) must be an even int >= 2, got {k!r}")
        if k >= n - 1:
            object.__setattr__(self, "neighbours", None)  # that is the complete graph
            return None
        return k

    def _hbc(self, n: int, k: int | None, t: int, nc: int, d: int) -> tuple[float, float, int, int]:
        if k is None and nc >= t:
            raise ConfigError(
                f"tolerated_corrupt n_C={nc} must be below the threshold t={t}: "
                "otherwise the corrupt clients alone rebuild any secret"
            )
        priv, corr = failure_bounds(n, n - 1 if k is None else k, t, nc, d)
        if priv > 2.0**-self.sigma:
            raise ConfigError(
                f"threshold t={t} with k={k} neighbours and n_C={nc} of n={n} corrupt breaks "
                f"t > n_C within some neighbourhood with probability up to {priv:.3g} "
                f"> 2^-{self.sigma}; raise t or k (see SecAggConfig.default)"
            )
        return priv, corr, d, max(t, math.ceil(self.min_summed_fraction * n))

    def _active(
        self, n: int, k: int | None, t: int, nc: int, d: int
    ) -> tuple[float, float, int, int]:
        want = math.ceil(self.min_summed_fraction * n)
        if k is None:
            if not 2 * t > n + nc:
                raise ConfigError(
                    f"active setting needs 2t > n + n_C: 2*{t} = {2 * t} <= {n} + {nc}; "
                    f"use t >= {(n + nc) // 2 + 1}"
                )
            if t > n - d:
                raise ConfigError(f"t={t} > n - D = {n - d}: the tolerated dropouts abort rounds")
            summed = min_covered(n, n - 1, nc + d)
            self._check_summed(summed, want)
            return 0.0, 0.0, d, summed
        b = active_bounds(n, k, nc, d, self.sigma, self.eta)
        if t < b.threshold(k):
            raise ConfigError(
                f"threshold t={t} with k={k}: every neighbourhood holds up to {b.c_full} corrupt "
                f"clients ({b.c_side} per side) except with probability 2^-{self.sigma}, so the "
                f"active setting needs 2t > k + 1 + {b.c_full} and t > k/2 + 1 + {b.c_side} within "
                f"some neighbourhood; use t >= {b.threshold(k)} (see SecAggConfig.default)"
            )
        if t > k - b.d_full:
            raise ConfigError(
                f"t={t} > k - {b.d_full}: a dropped client's live neighbours could not rebuild "
                f"its mask key (correctness failure above 2^-{self.eta}); raise k"
            )
        summed = min_covered(n, k, b.c_side + b.d_side)
        self._check_summed(summed, want)
        return b.privacy_failure, b.correctness_failure, b.d_side, summed

    def _check_summed(self, summed: int, want: int) -> None:
        if summed < max(want, 1):
            raise ConfigError(
                f"a sum the server unmasks could cover only {summed} honest inputs under these "
                f"parameters, below min_summed_fraction={self.min_summed_fraction}; raise k"
            )

    # -- derived ----------------------------------------------------------------------

    @property
    def graph(self) -> GraphKind:
        """``"complete"`` (SecAgg) or ``"secagg+"``."""
        return "complete" if self.neighbours is None else "secagg+"

    @property
    def active(self) -> bool:
        """True in the active-server setting (attestations and signatures)."""
        return self.setting == "active"

    @property
    def degree(self) -> int:
        """k, neighbours per client (n - 1 for the complete graph)."""
        return self.num_clients - 1 if self.neighbours is None else self.neighbours

    def describe(self) -> dict[str, Any]:
        """The parameters actually used, for reports and ``AggregationResult.params``."""
        return {
            "num_clients": self.num_clients,
            "threshold": self.threshold,
            "graph": self.graph,
            "k": self.degree,
            "setting": self.setting,
            "tolerated_corrupt": self.tolerated_corrupt,
            "dropout_cap": self.dropout_cap,
            "min_summed": self.min_summed,
            "min_summed_fraction": self.min_summed / self.num_clients,
            "privacy_failure_bound": self.privacy_failure,
            "correctness_failure_bound": self.correctness_failure,
            "dropout_fraction": self.dropout_fraction,
            "sigma": self.sigma,
            "eta": self.eta,
            **{f"encoding_{k}": v for k, v in self.encoding.describe().items()},
            "rounding": self.rounding,
        }

    # -- defaults ---------------------------------------------------------------------

    @classmethod
    def default(
        cls,
        num_clients: int,
        *,
        setting: Setting = "active",
        corrupt_fraction: float = 0.1,
        dropout_fraction: float = 0.2,
        graph: GraphKind | None = None,
        min_summed_fraction: float | None = None,
        **overrides: Any,
    ) -> SecAggConfig:
        """Sound defaults for ``num_clients``: tolerate 20% dropouts and 10% corrupt
        clients at failure probabilities 2^-40 (privacy) and 2^-20 (correctness), with the
        sparsest SecAgg+ graph that achieves it (and sums over at least a quarter of the
        population when active, half when honest-but-curious); 32-bit ring, clip range
        [-1, 1]. What
        :meth:`SecurityPolicy.derive <secagg.policy.SecurityPolicy.derive>` gives for the
        default policy."""
        sigma = overrides.pop("sigma", 40)
        eta = overrides.pop("eta", 20)
        alpha = default_min_summed(setting) if min_summed_fraction is None else min_summed_fraction
        p = choose_parameters(
            num_clients,
            corrupt_fraction=corrupt_fraction,
            dropout_fraction=dropout_fraction,
            sigma=sigma,
            eta=eta,
            setting=setting,
            graph=graph,
            min_summed_fraction=alpha,
        )
        return cls(
            num_clients=num_clients,
            threshold=overrides.pop("threshold", p.threshold),
            neighbours=overrides.pop("neighbours", None if p.kind == "complete" else p.k),
            setting=setting,
            tolerated_corrupt=overrides.pop("tolerated_corrupt", p.corrupt),
            sigma=sigma,
            eta=eta,
            dropout_fraction=dropout_fraction,
            min_summed_fraction=alpha,
            **overrides,
        )


def default_min_summed(setting: str) -> float:
    """The default ``min_summed_fraction``: a quarter of the population in the active
    setting (what the graph guarantees against a server choosing dropouts), half when
    the honest server simply refuses small sums."""
    return 0.25 if setting == "active" else 0.5
