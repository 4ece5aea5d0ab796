"""``SecAggConfig``: every parameter of the masking protocol, validated together.

The threshold rules it enforces:

* ``2 <= t <= k + 1`` (a client's secrets are shared among itself and its k neighbours);
* ``n_C < t``: the tolerated corrupt clients alone never reach the threshold (for
  SecAgg+, within each neighbourhood, except with probability ``2^-sigma``);
* active setting: ``2t > m + n_C`` within each neighbourhood of ``m = k + 1`` holders
  (Bonawitz et al.'s ``2t > n + n_C`` for the complete graph). For SecAgg+ the corrupt
  count of a neighbourhood is random; the rule must hold except with probability
  ``2^-sigma`` (Bell et al.), which :func:`secagg.graph.failure_bounds` bounds exactly;
* the fixed-point encoding cannot wrap for a sum of all ``n`` clients.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from secagg.encoding import FixedPointConfig, Rounding
from secagg.errors import ConfigError
from secagg.graph import (
    MIN_THRESHOLD,
    GraphKind,
    Setting,
    choose_parameters,
    failure_bounds,
)

MAX_CLIENTS = 1 << 20


@dataclass(frozen=True)
class SecAggConfig:
    """Parameters of one secure-aggregation session.

    Args:
        num_clients: n, the clients that may take part (ids 0..n-1).
        threshold: t, shares needed to rebuild a client's secrets.
        neighbours: k for SecAgg+ (even), or ``None`` for SecAgg's complete graph.
        setting: ``"honest_but_curious"`` or ``"active"`` (signatures + ConsistencyCheck).
        tolerated_corrupt: n_C, corrupt clients the threshold must withstand.
        min_aggregate: honest clients refuse to unmask when their connected part of the
            survivor set is smaller (so no sum covers fewer inputs).
        bits, clip_min, clip_max, scale, rounding: the fixed-point encoding.
        sigma, eta: statistical security / correctness parameters (failure 2^-sigma,
            2^-eta) used for SecAgg+ bounds.
        dropout_fraction: the dropout rate the parameters were chosen for (reported).
    """

    num_clients: int
    threshold: int
    neighbours: int | None = None
    setting: Setting = "active"
    tolerated_corrupt: int = 0
    min_aggregate: int | None = None
    bits: int = 32
    clip_min: float = -1.0
    clip_max: float = 1.0
    scale: float | None = None
    rounding: Rounding = "stochastic"
    sigma: int = 40
    eta: int = 20
    dropout_fraction: float = 0.0
    encoding: FixedPointConfig = field(init=False, repr=False, compare=False)
    privacy_failure: float = field(init=False, repr=False, compare=False)
    correctness_failure: float = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        n, t, k = self.num_clients, self.threshold, self.neighbours
        if _not_int(n) or not 3 <= n <= MAX_CLIENTS:
            raise ConfigError(f"num_clients must be an int in [3, {MAX_CLIENTS}], got {n!r}")
        if self.setting not in ("honest_but_curious", "active"):
            raise ConfigError(
                f"setting must be 'honest_but_curious' or 'active', got {self.setting!r}"
            )
        if k is not None:
            if _not_int(k) or k < 2 or k % 2:
                raise ConfigError(
                    f"neighbours (SecAgg+ degree k) must be an even int >= 2, got {k!r}"
                )
            if k >= n - 1:
                object.__setattr__(self, "neighbours", None)  # that is the complete graph
                k = None
        holders = n if k is None else k + 1
        if _not_int(t) or not MIN_THRESHOLD <= t <= holders:
            raise ConfigError(
                f"threshold t must be an int in [{MIN_THRESHOLD}, {holders}] (the share holders "
                f"of one client), got {t!r}"
            )
        nc = self.tolerated_corrupt
        if _not_int(nc) or not 0 <= nc < n:
            raise ConfigError(f"tolerated_corrupt must be an int in [0, n), got {nc!r}")
        if k is None and nc >= t:
            # (for SecAgg+ the rule applies within each neighbourhood; the failure bound
            # below checks it there)
            raise ConfigError(
                f"tolerated_corrupt n_C={nc} must be below the threshold t={t}: "
                "otherwise the corrupt clients alone rebuild any secret"
            )
        for name, v in (("sigma", self.sigma), ("eta", self.eta)):
            if _not_int(v) or not 1 <= v <= 256:
                raise ConfigError(f"{name} must be an int in [1, 256], got {v!r}")
        df = self.dropout_fraction
        if not isinstance(df, int | float) or isinstance(df, bool) or not 0 <= df < 1:
            raise ConfigError(f"dropout_fraction must be in [0, 1), got {df!r}")
        dropouts = math.floor(df * n)
        priv, corr = failure_bounds(n, n - 1 if k is None else k, t, nc, dropouts, self.setting)
        if self.setting == "active" and k is None and not 2 * t > n + nc:
            raise ConfigError(
                f"active setting needs 2t > n + n_C: 2*{t} = {2 * t} <= {n} + {nc}; "
                f"use t >= {(n + nc) // 2 + 1}"
            )
        if priv > 2.0**-self.sigma:
            rule = "2t > k + 1 + n_C" if self.setting == "active" else "t > n_C"
            raise ConfigError(
                f"threshold t={t} with k={k} neighbours and n_C={nc} of n={n} corrupt breaks "
                f"{rule} within some neighbourhood with probability up to {priv:.3g} "
                f"> 2^-{self.sigma}; raise t or k (see SecAggConfig.default)"
            )
        ma = self.min_aggregate
        if ma is None:
            ma = max(t, math.ceil(n / 2))
            object.__setattr__(self, "min_aggregate", ma)
        if _not_int(ma) or not 1 <= ma <= n:
            raise ConfigError(f"min_aggregate must be an int in [1, n], got {ma!r}")
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
        object.__setattr__(self, "privacy_failure", priv)
        object.__setattr__(self, "correctness_failure", corr)

    # -- derived ----------------------------------------------------------------------

    @property
    def graph(self) -> GraphKind:
        """``"complete"`` (SecAgg) or ``"secagg+"``."""
        return "complete" if self.neighbours is None else "secagg+"

    @property
    def active(self) -> bool:
        """True in the active-server setting (signatures and ConsistencyCheck)."""
        return self.setting == "active"

    def describe(self) -> dict[str, Any]:
        """The parameters actually used, for reports and ``AggregationResult.params``."""
        return {
            "num_clients": self.num_clients,
            "threshold": self.threshold,
            "graph": self.graph,
            "k": self.num_clients - 1 if self.neighbours is None else self.neighbours,
            "setting": self.setting,
            "tolerated_corrupt": self.tolerated_corrupt,
            "min_aggregate": self.min_aggregate,
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
        **overrides: Any,
    ) -> SecAggConfig:
        """Sound defaults for ``num_clients``: tolerate 20% dropouts and 10% corrupt
        clients at failure probabilities 2^-40 (privacy) and 2^-20 (correctness), with the
        sparsest SecAgg+ graph that achieves it; 32-bit ring, clip range [-1, 1]."""
        sigma = overrides.pop("sigma", 40)
        eta = overrides.pop("eta", 20)
        p = choose_parameters(
            num_clients,
            corrupt_fraction=corrupt_fraction,
            dropout_fraction=dropout_fraction,
            sigma=sigma,
            eta=eta,
            setting=setting,
            graph=graph,
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
            **overrides,
        )


def _not_int(v: object) -> bool:
    return isinstance(v, bool) or not isinstance(v, int)
