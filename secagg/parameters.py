"""Choosing the graph degree k and the threshold t from (n, corrupt and dropout fractions,
sigma, eta): what a client derives from its security policy.

Two searches, one per setting (version :data:`PARAMETER_SEARCH_VERSION`):

* **honest-but-curious** (the server follows the protocol, dropouts are random):
  privacy fails if some honest client has t or more corrupt neighbours, or if random
  removals cut the ring (two runs of k/2 removed clients); correctness fails if some
  client keeps fewer than t surviving holders. Union bounds over exact hypergeometric
  tails, as in Bell et al. (CCS 2020).
* **active** (the server chooses every message and which clients drop): the server may
  drop any clients it likes within the budget and tell each client its own story; the
  only randomness left is where the statically corrupted clients sit on the ring,
  which is fixed independently of the corruption (the seed is provisioned after the
  registry is sealed). With ``c_full`` and ``c_side`` bounding the corrupt neighbours of
  every client, in its whole neighbourhood and on each side, except with probability
  2^-sigma, and ``d_full``/``d_side`` bounding random dropouts the same way except with
  probability 2^-eta, the rules of :mod:`secagg.attestation` need

  - ``2t > k + 1 + c_full``: at most one status (alive / not alive) of a client can be
    certified by t of its holders, so at most one kind of its shares is released;
  - ``t > k/2 + 1 + c_side``: any t shares of a client include an honest holder from
    each side other than the owner itself; each checked its side, and each checked the
    owner's edge list under its own model hash, so an owner whose model differs from
    its neighbours' on either side is never unmasked;
  - ``t <= k - d_full``: a dropped client's live neighbours can certify it and rebuild
    its mask key (correctness), and each side's check allows ``cap = d_side`` clients
    that are not certified alive.

  The guarantee is then deterministic given those bounds: every sum the server can
  unmask covers at least :func:`secagg.graph.min_covered` honest inputs
  (``min_summed``). The complete graph (small n) uses ``2t > n + C`` and ``t <= n - D``.

The smallest even k meeting the rules (and the policy's ``min_summed_fraction``) wins;
the complete graph is the fallback. Derivation, assumptions and the proof sketch:
docs/secagg.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from secagg.errors import ConfigError
from secagg.graph import MIN_THRESHOLD, min_covered

#: Bump when the search's rules change: policies pin it, so a client built with another
#: search refuses instead of deriving different parameters than its peers.
PARAMETER_SEARCH_VERSION = 2
GraphKind = Literal["complete", "secagg+"]
Setting = Literal["honest_but_curious", "active"]
SETTINGS: tuple[Setting, ...] = ("honest_but_curious", "active")
GRAPHS: tuple[GraphKind, ...] = ("complete", "secagg+")


# --- hypergeometric tails ------------------------------------------------------------


@lru_cache(maxsize=65536)
def _log_comb(n: int, k: int) -> float:
    if k < 0 or k > n:
        return -math.inf
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def hypergeom_tail(population: int, marked: int, draws: int, at_least: int) -> float:
    """P[X >= at_least] for X ~ Hypergeometric(population, marked, draws)."""
    lo = max(at_least, 0, draws - (population - marked))
    hi = min(draws, marked)
    if lo > hi:
        return 0.0
    denom = _log_comb(population, draws)
    logs = [
        _log_comb(marked, i) + _log_comb(population - marked, draws - i) - denom
        for i in range(lo, hi + 1)
    ]
    top = max(logs)
    return min(1.0, math.exp(top) * sum(math.exp(v - top) for v in logs))


@lru_cache(maxsize=65536)
def tail_bound(population: int, marked: int, draws: int, target: float) -> tuple[int, float]:
    """Smallest c with P[Hyp(population, marked, draws) > c] <= target, and that tail."""
    hi = min(draws, marked)
    lo = max(0, draws - (population - marked))
    denom = _log_comb(population, draws)
    tail = 0.0
    # walk down from the top of the support, accumulating P[X >= i]
    for i in range(hi, lo - 1, -1):
        p = math.exp(_log_comb(marked, i) + _log_comb(population - marked, draws - i) - denom)
        if tail + p > target:
            return i, tail
        tail += p
    return max(lo - 1, 0), tail


# --- the result ----------------------------------------------------------------------


@dataclass(frozen=True)
class GraphParameters:
    """Chosen graph degree and threshold, with the bounds they give."""

    num_clients: int
    k: int  # neighbours per client (n - 1 for the complete graph)
    threshold: int  # t, out of k + 1 share holders
    kind: GraphKind
    setting: Setting
    corrupt: int  # C, corrupt clients tolerated
    dropouts: int  # D, dropouts tolerated
    privacy_failure: float  # bound on P[privacy event]
    correctness_failure: float  # bound on P[correctness event]
    sigma: int
    eta: int
    corrupt_per_side: int  # active: c_side (c_full for the complete graph)
    dropout_cap: int  # active: clients per side (all others, complete) not certified alive
    min_summed: int  # active: honest inputs in any sum the server can unmask

    @property
    def holders(self) -> int:
        """Share holders per client: itself and its k neighbours."""
        return self.k + 1

    @property
    def min_summed_fraction(self) -> float:
        """``min_summed / n``: the alpha of "summed with at least alpha n others"."""
        return self.min_summed / self.num_clients


# --- honest-but-curious --------------------------------------------------------------


def failure_bounds(
    n: int, k: int, t: int, corrupt: int, dropouts: int, setting: Setting = "honest_but_curious"
) -> tuple[float, float]:
    """Honest-but-curious union bounds on (privacy failure, correctness failure).

    ``setting="active"`` is accepted for the complete graph only, where the bounds are
    deterministic (``2t > n + C``, ``t <= n - D``); sparse active graphs use
    :func:`active_bounds`.
    """
    if k >= n - 1:
        if setting == "honest_but_curious":
            return (0.0 if corrupt < t else 1.0), (0.0 if n - dropouts >= t else 1.0)
        return (0.0 if 2 * t > n + corrupt else 1.0), (0.0 if n - dropouts >= t else 1.0)
    if setting != "honest_but_curious":
        raise ConfigError("sparse active-setting bounds come from active_bounds()")
    m = k + 1
    honest = n - corrupt
    p_thr = honest * hypergeom_tail(n - 1, corrupt, k, t)
    removed = min(corrupt + dropouts, n)
    p_conn = (n * (n - 1) / 2) * math.exp(_log_comb(removed, k) - _log_comb(n, k))
    gone = min(dropouts, n - 1)
    p_corr = n * hypergeom_tail(n - 1, gone, k, m - t)
    return min(1.0, p_thr + p_conn), min(1.0, p_corr)


def _hbc(
    n: int, k: int, corrupt: int, dropouts: int, sigma: int, eta: int
) -> GraphParameters | None:
    m = min(k + 1, n)
    p_sec, p_cor = 2.0**-sigma, 2.0**-eta
    lo, hi = MIN_THRESHOLD, m
    if failure_bounds(n, k, hi, corrupt, dropouts)[0] > p_sec:
        return None
    while lo < hi:  # privacy improves as t grows: the smallest private t
        mid = (lo + hi) // 2
        if failure_bounds(n, k, mid, corrupt, dropouts)[0] <= p_sec:
            hi = mid
        else:
            lo = mid + 1
    priv, corr = failure_bounds(n, k, lo, corrupt, dropouts)
    if corr > p_cor:
        return None
    kind: GraphKind = "complete" if k >= n - 1 else "secagg+"
    return GraphParameters(
        n,
        min(k, n - 1),
        lo,
        kind,
        "honest_but_curious",
        corrupt,
        dropouts,
        priv,
        corr,
        sigma,
        eta,
        corrupt,
        dropouts,
        0,
    )


# --- active --------------------------------------------------------------------------


@dataclass(frozen=True)
class ActiveBounds:
    """The per-neighbourhood bounds of one sparse active candidate (k)."""

    c_full: int
    c_side: int
    d_full: int
    d_side: int
    privacy_failure: float
    correctness_failure: float

    def threshold(self, k: int) -> int:
        """The smallest t meeting both privacy rules."""
        return max(k // 2 + self.c_side + 2, (k + 1 + self.c_full) // 2 + 1)


def active_bounds(
    n: int, k: int, corrupt: int, dropouts: int, sigma: int, eta: int
) -> ActiveBounds:
    """Union-bounded tails for degree k: n clients, two sides each."""
    p_sec, p_cor = 2.0**-sigma, 2.0**-eta
    cf, pf = tail_bound(n - 1, corrupt, k, p_sec / (2 * n))
    cs, ps = tail_bound(n - 1, corrupt, k // 2, p_sec / (4 * n))
    df, qf = tail_bound(n - 1, dropouts, k, p_cor / (2 * n))
    ds, qs = tail_bound(n - 1, dropouts, k // 2, p_cor / (4 * n))
    return ActiveBounds(cf, cs, df, ds, n * pf + 2 * n * ps, n * qf + 2 * n * qs)


def _active_sparse(
    n: int, k: int, corrupt: int, dropouts: int, sigma: int, eta: int, min_summed: int
) -> GraphParameters | None:
    b = active_bounds(n, k, corrupt, dropouts, sigma, eta)
    t = b.threshold(k)
    if t > k - b.d_full or t < MIN_THRESHOLD:
        return None
    covered = min_covered(n, k, b.c_side + b.d_side)
    if covered < max(min_summed, 1):
        return None
    return GraphParameters(
        n,
        k,
        t,
        "secagg+",
        "active",
        corrupt,
        dropouts,
        b.privacy_failure,
        b.correctness_failure,
        sigma,
        eta,
        b.c_side,
        b.d_side,
        covered,
    )


def _active_complete(
    n: int, corrupt: int, dropouts: int, sigma: int, eta: int, min_summed: int
) -> GraphParameters | None:
    t = (n + corrupt) // 2 + 1
    covered = min_covered(n, n - 1, corrupt + dropouts)
    if t > n - dropouts or covered < max(min_summed, 1):
        return None
    return GraphParameters(
        n,
        n - 1,
        t,
        "complete",
        "active",
        corrupt,
        dropouts,
        0.0,
        0.0,
        sigma,
        eta,
        corrupt,
        dropouts,
        covered,
    )


# --- the search ----------------------------------------------------------------------


def check_fraction(name: str, f: object) -> float:
    """``f`` as a fraction in [0, 1), or :class:`ConfigError`."""
    if isinstance(f, bool) or not isinstance(f, int | float) or not 0 <= f < 1:
        raise ConfigError(f"{name} must be a number in [0, 1), got {f!r}")
    return float(f)


def check_level(name: str, v: object) -> int:
    """``v`` as a security level (an int in [1, 256]), or :class:`ConfigError`."""
    if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 256:
        raise ConfigError(f"{name} must be an int in [1, 256], got {v!r}")
    return v


@lru_cache(maxsize=256)
def choose_parameters(
    num_clients: int,
    *,
    corrupt_fraction: float = 0.1,
    dropout_fraction: float = 0.2,
    sigma: int = 40,
    eta: int = 20,
    setting: Setting = "active",
    graph: GraphKind | None = None,
    min_summed_fraction: float = 0.0,
) -> GraphParameters:
    """Smallest even k (and smallest t) meeting the setting's rules; see the module doc.

    ``graph="complete"`` forces SecAgg's complete graph; ``"secagg+"`` refuses to fall
    back to it; ``None`` picks SecAgg+ when a sparse graph meets the rules.
    ``min_summed_fraction`` (active setting) asks that any sum the server can unmask
    covers at least that fraction of the population's inputs. Impossible requests raise
    :class:`ConfigError` naming the constraint that cannot be met.
    """
    n = num_clients
    if isinstance(n, bool) or not isinstance(n, int) or n < 3:
        raise ConfigError(f"num_clients must be an int >= 3, got {n!r}")
    gamma = check_fraction("corrupt_fraction", corrupt_fraction)
    delta = check_fraction("dropout_fraction", dropout_fraction)
    alpha = check_fraction("min_summed_fraction", min_summed_fraction)
    if gamma + delta >= 1:
        raise ConfigError("corrupt_fraction + dropout_fraction must be < 1")
    check_level("sigma", sigma)
    check_level("eta", eta)
    if setting not in SETTINGS:
        raise ConfigError(f"setting must be one of {SETTINGS}, got {setting!r}")
    if graph is not None and graph not in GRAPHS:
        raise ConfigError(f"graph must be one of {GRAPHS} or None, got {graph!r}")
    corrupt, dropouts = math.floor(gamma * n), math.floor(delta * n)
    want = math.ceil(alpha * n)
    if graph in (None, "secagg+"):
        for k in range(2 if setting == "honest_but_curious" else 4, n - 1, 2):
            p = (
                _hbc(n, k, corrupt, dropouts, sigma, eta)
                if setting == "honest_but_curious"
                else _active_sparse(n, k, corrupt, dropouts, sigma, eta, want)
            )
            if p is not None:
                return p
        if graph == "secagg+":
            raise ConfigError(f"no SecAgg+ degree below n - 1 = {n - 1} meets the request")
    p = (
        _hbc(n, n - 1, corrupt, dropouts, sigma, eta)
        if setting == "honest_but_curious"
        else _active_complete(n, corrupt, dropouts, sigma, eta, want)
    )
    if p is not None:
        return p
    rule = (
        "t > n_C and t <= surviving holders"
        if setting == "honest_but_curious"
        else "2t > n + n_C, t <= n - D and the min_summed_fraction"
    )
    raise ConfigError(
        f"no (k, t) meets the request for n={n}: {corrupt} corrupt ({gamma:.0%}) and "
        f"{dropouts} dropouts ({delta:.0%}) need {rule} at failure bounds 2^-{sigma} "
        f"(privacy) / 2^-{eta} (correctness); tolerate fewer corrupt clients or dropouts"
    )
