"""Neighbour graphs for pairwise masking, and the choice of their parameters.

SecAgg (Bonawitz et al. 2017) masks every pair of clients: the complete graph. SecAgg+
(Bell et al. 2020) masks and shares secrets only along the edges of a sparse random
k-regular graph, which cuts per-client cost from O(n) to O(k) with k = O(log n).

The graph here is a circulant (Harary) graph over a random ordering of the clients: in a
cyclic order drawn from a public seed, every client is linked to the k/2 clients on each
side. Each client's neighbourhood is then a uniform k-subset of the others, which is the
property the failure bounds below use. The seed must be fixed only after every client has
advertised its keys (the protocol hashes the advertisements), so a server cannot redraw
the graph until a victim is surrounded by clients it controls.

Parameter choice. Shares of a client's secrets go to its neighbourhood: itself and its k
neighbours, m = k + 1 holders, any t of whom reconstruct. With n clients, a fraction
gamma of them corrupt (C = floor(gamma n)) and a fraction delta dropping out
(D = floor(delta n)), three events break the protocol; each is bounded exactly from
hypergeometric tails (a union bound over clients):

* privacy, threshold: some honest client has too many corrupt neighbours: c >= t
  (honest-but-curious) or 2t <= m + c (active server, which can ask different honest
  neighbours for different shares; Bonawitz et al.'s 2t > n + n_C, per neighbourhood);
* privacy, connectivity: corrupt plus dropped clients cover two separate runs of k/2
  consecutive clients of the cyclic order, which splits the honest survivors into
  components whose partial sums would leak;
* correctness: some client keeps fewer than t surviving holders (dropouts, plus corrupt
  clients that stop answering in the active setting).

``choose_parameters`` returns the smallest even k (and the smallest t) for which the two
privacy events together have probability at most 2^-sigma and correctness fails with
probability at most 2^-eta, falling back to the complete graph, where the bounds are
deterministic. Assumption: corruptions and dropouts do not depend on the graph (the
graph is drawn after keys are committed); the protocol adds a deterministic guard for a
server that lies about dropouts (honest clients refuse to unmask when their connected
component among the survivors is smaller than ``min_aggregate``).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from secagg.errors import ConfigError

GraphKind = Literal["complete", "secagg+"]
#: Never share with t = 1: one holder would then hold the secret itself.
MIN_THRESHOLD = 2
Setting = Literal["honest_but_curious", "active"]


# --- the graph ---------------------------------------------------------------------


def _order(clients: Sequence[int], seed: bytes) -> list[int]:
    """A random cyclic order of ``clients`` determined by ``seed`` (keyed sort)."""

    def key(c: int) -> bytes:
        return hashlib.sha256(b"secagg/graph/v1" + seed + c.to_bytes(4, "big")).digest()

    return sorted(clients, key=key)


def neighbours(clients: Iterable[int], k: int | None, seed: bytes) -> dict[int, frozenset[int]]:
    """The neighbour sets of ``clients``: complete if ``k`` is None or >= len - 1."""
    ids = sorted(set(clients))
    n = len(ids)
    if k is None or k >= n - 1:
        every = frozenset(ids)
        return {c: every - {c} for c in ids}
    if k < 2 or k % 2:
        raise ConfigError(f"SecAgg+ degree k must be even and >= 2, got {k}")
    order = _order(ids, seed)
    half = k // 2
    out: dict[int, frozenset[int]] = {}
    for i, c in enumerate(order):
        out[c] = frozenset(order[(i + j) % n] for j in range(-half, half + 1) if j != 0)
    return out


def component_of(
    start: int, alive: Iterable[int], adjacency: dict[int, frozenset[int]]
) -> set[int]:
    """The connected component of ``start`` in the graph restricted to ``alive``."""
    live = set(alive)
    if start not in live:
        return set()
    seen = {start}
    stack = [start]
    while stack:
        u = stack.pop()
        for v in adjacency.get(u, frozenset()):
            if v in live and v not in seen:
                seen.add(v)
                stack.append(v)
    return seen


# --- failure bounds ----------------------------------------------------------------


@lru_cache(maxsize=4096)
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


@dataclass(frozen=True)
class GraphParameters:
    """Chosen graph degree and threshold, with the failure probabilities they give."""

    num_clients: int
    k: int  # neighbours per client (n - 1 for the complete graph)
    threshold: int  # t, out of k + 1 share holders
    kind: GraphKind
    corrupt: int  # C, corrupt clients tolerated
    dropouts: int  # D, dropouts tolerated
    privacy_failure: float  # bound on P[privacy event]
    correctness_failure: float  # bound on P[correctness event]
    sigma: int
    eta: int

    @property
    def holders(self) -> int:
        """Share holders per client: itself and its k neighbours."""
        return self.k + 1


def failure_bounds(
    n: int, k: int, t: int, corrupt: int, dropouts: int, setting: Setting
) -> tuple[float, float]:
    """Union bounds on (privacy failure, correctness failure) for degree k, threshold t."""
    if k >= n - 1:  # complete graph: deterministic
        m = n
        priv_ok = corrupt < t if setting == "honest_but_curious" else 2 * t > m + corrupt
        gone = dropouts + (corrupt if setting == "active" else 0)
        return (0.0 if priv_ok else 1.0), (0.0 if m - gone >= t else 1.0)
    m = k + 1
    honest = n - corrupt
    # corrupt neighbours c of one honest client: Hyp(n - 1, corrupt, k)
    bad_c = t if setting == "honest_but_curious" else max(2 * t - m, 0)
    p_thr = honest * hypergeom_tail(n - 1, corrupt, k, bad_c)
    # two disjoint runs of k/2 removed clients in the cyclic order (at most n^2/2 places)
    removed = min(corrupt + dropouts, n)
    p_conn = (n * (n - 1) / 2) * math.exp(_log_comb(removed, k) - _log_comb(n, k))
    # a client keeps fewer than t of its k + 1 holders: more than m - t of its k
    # neighbours gone (itself counted as gone too, in the worst case)
    gone = min(dropouts + (corrupt if setting == "active" else 0), n - 1)
    p_corr = n * hypergeom_tail(n - 1, gone, k, m - t)
    return min(1.0, p_thr + p_conn), min(1.0, p_corr)


def choose_parameters(
    num_clients: int,
    *,
    corrupt_fraction: float = 0.1,
    dropout_fraction: float = 0.2,
    sigma: int = 40,
    eta: int = 20,
    setting: Setting = "active",
    graph: GraphKind | None = None,
) -> GraphParameters:
    """Smallest even k and smallest t meeting 2^-sigma (privacy) and 2^-eta (correctness).

    ``graph="complete"`` forces SecAgg's complete graph; ``"secagg+"`` refuses to fall
    back to it; ``None`` picks SecAgg+ when a sparse graph meets the bounds. Impossible
    requests raise :class:`ConfigError` naming the constraint that cannot be met.
    """
    n = num_clients
    if isinstance(n, bool) or not isinstance(n, int) or n < 3:
        raise ConfigError(f"num_clients must be an int >= 3, got {n!r}")
    for name, f in (("corrupt_fraction", corrupt_fraction), ("dropout_fraction", dropout_fraction)):
        if not isinstance(f, int | float) or not 0 <= f < 1:
            raise ConfigError(f"{name} must be in [0, 1), got {f!r}")
    if corrupt_fraction + dropout_fraction >= 1:
        raise ConfigError("corrupt_fraction + dropout_fraction must be < 1")
    for name, v in (("sigma", sigma), ("eta", eta)):
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 256:
            raise ConfigError(f"{name} must be an int in [1, 256], got {v!r}")
    if setting not in ("honest_but_curious", "active"):
        raise ConfigError(f"setting must be 'honest_but_curious' or 'active', got {setting!r}")
    corrupt = math.floor(corrupt_fraction * n)
    dropouts = math.floor(dropout_fraction * n)
    p_sec, p_cor = 2.0**-sigma, 2.0**-eta

    candidates: list[int] = []
    if graph in (None, "secagg+"):
        candidates += list(range(2, n - 1, 2))
    if graph in (None, "complete"):
        candidates.append(n - 1)
    if not candidates:
        raise ConfigError(f"no SecAgg+ degree below n - 1 = {n - 1}; use the complete graph")
    for k in candidates:
        m = min(k + 1, n)
        # privacy improves and correctness worsens as t grows: find the smallest t that
        # is private enough (binary search), then check that it is still correct.
        lo, hi = MIN_THRESHOLD, m
        if failure_bounds(n, k, hi, corrupt, dropouts, setting)[0] > p_sec:
            continue
        while lo < hi:
            mid = (lo + hi) // 2
            if failure_bounds(n, k, mid, corrupt, dropouts, setting)[0] <= p_sec:
                hi = mid
            else:
                lo = mid + 1
        priv, corr = failure_bounds(n, k, lo, corrupt, dropouts, setting)
        if corr <= p_cor:
            kind: GraphKind = "complete" if k >= n - 1 else "secagg+"
            return GraphParameters(
                n, min(k, n - 1), lo, kind, corrupt, dropouts, priv, corr, sigma, eta
            )
    rule = "2t > n + n_C" if setting == "active" else "t > n_C"
    raise ConfigError(
        f"no (k, t) meets the request for n={n}: {corrupt} corrupt ({corrupt_fraction:.0%}) "
        f"and {dropouts} dropouts ({dropout_fraction:.0%}) need {rule} and t <= surviving "
        f"holders at failure bounds 2^-{sigma} (privacy) / 2^-{eta} (correctness); "
        "tolerate fewer corrupt clients or dropouts"
    )
