"""The SecAgg+ neighbour graph: a circulant (Harary) ring over a population.

SecAgg (Bonawitz et al. 2017) masks every pair of clients: the complete graph. SecAgg+
(Bell et al. 2020) masks and shares secrets only along the edges of a sparse graph of
degree k = O(log n), which cuts per-client cost from O(n) to O(k).

The graph here is a circulant graph over a random cyclic order of the population: in an
order drawn from a seed, every client is linked to the k/2 clients on each side. Each
client's neighbourhood is then a uniform k-subset of the others (what the failure
bounds of :mod:`secagg.parameters` use), and it is *local*: the neighbours of a
client's neighbours lie within ring distance k of it, so the evidence a client needs
about its neighbourhood (:mod:`secagg.attestation`) comes from O(k) clients.

The graph is built over the whole population (client ids 0..n-1), not over the clients
that happen to show up: who advertised keys cannot change it. Where the seed comes from
is the caller's decision and the security argument's: in the active setting it is fixed
at provisioning, after the registry is sealed (:class:`secagg.registry.Registry`), so no
value the server sends re-draws it.

Finding one client's neighbours hashes every id once (O(n) symmetric work, about 10 ms at
n = 10^4) and is cached per (n, seed); nothing else is O(n).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt

from secagg.errors import ConfigError

#: Never share with t = 1: one holder would then hold the secret itself.
MIN_THRESHOLD = 2
_ORDER_LABEL = b"secagg/graph/v2"


@lru_cache(maxsize=8)
def _order(size: int, seed: bytes) -> npt.NDArray[np.int32]:
    """A random cyclic order of 0..size-1 determined by ``seed`` (a keyed sort)."""
    keys = [
        hashlib.sha256(_ORDER_LABEL + seed + c.to_bytes(4, "big")).digest() for c in range(size)
    ]
    order = sorted(range(size), key=keys.__getitem__)
    out = np.asarray(order, dtype=np.int32)
    out.setflags(write=False)
    return out


@dataclass(frozen=True)
class Graph:
    """The neighbour graph of a population of ``size`` clients.

    ``k`` is the degree: even and below ``size - 1`` for SecAgg+, or ``None`` (or any
    ``k >= size - 1``) for the complete graph. Client ids are 0..size-1.
    """

    size: int
    k: int | None
    seed: bytes
    _order: npt.NDArray[np.int32] = field(init=False, repr=False, compare=False)
    _position: npt.NDArray[np.int32] = field(init=False, repr=False, compare=False)
    _memo: dict[tuple[str, int], Any] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        n, k = self.size, self.k
        if isinstance(n, bool) or not isinstance(n, int) or n < 2:
            raise ConfigError(f"a graph needs an int population of at least 2, got {n!r}")
        if not isinstance(self.seed, bytes) or not 16 <= len(self.seed) <= 64:
            raise ConfigError("the graph seed must be 16..64 bytes")
        if k is not None:
            if isinstance(k, bool) or not isinstance(k, int) or k < 2 or k % 2:
                raise ConfigError(f"SecAgg+ degree k must be an even int >= 2, got {k!r}")
            if k >= n - 1:
                object.__setattr__(self, "k", None)
        order = _order(n, self.seed) if self.k is not None else np.arange(n, dtype=np.int32)
        position = np.empty(n, dtype=np.int32)
        position[order] = np.arange(n, dtype=np.int32)
        object.__setattr__(self, "_order", order)
        object.__setattr__(self, "_position", position)
        object.__setattr__(self, "_memo", {})

    @classmethod
    def build(cls, size: int, k: int | None, seed: bytes) -> Graph:
        """The graph for (size, k, seed), shared by every caller in this process (one
        position table, one neighbour cache, however many clients are simulated)."""
        return _build(size, None if k is None or k >= size - 1 else k, seed)

    def _cached(self, what: str, c: int, make: Any) -> Any:
        key = (what, c)
        v = self._memo.get(key)
        if v is None:
            v = self._memo[key] = make()
        return v

    # -- structure --------------------------------------------------------------------

    @property
    def complete(self) -> bool:
        """True for SecAgg's complete graph."""
        return self.k is None

    @property
    def degree(self) -> int:
        """Neighbours per client (``size - 1`` for the complete graph)."""
        return self.size - 1 if self.k is None else self.k

    def check_client(self, c: int) -> int:
        """``c`` as a valid client id, or :class:`ConfigError`."""
        if isinstance(c, bool) or not isinstance(c, int | np.integer) or not 0 <= c < self.size:
            raise ConfigError(f"client id {c!r} outside 0..{self.size - 1}")
        return int(c)

    def position(self, c: int) -> int:
        """Where client ``c`` sits in the cyclic order."""
        return int(self._position[self.check_client(c)])

    def at(self, position: int) -> int:
        """The client at ``position`` (taken modulo the ring size)."""
        return int(self._order[position % self.size])

    def offset(self, owner: int, other: int) -> int:
        """Signed ring offset of ``other`` from ``owner``, in (-size/2, size/2]."""
        d = (self.position(other) - self.position(owner)) % self.size
        return d - self.size if d > self.size // 2 else d

    def adjacent(self, a: int, b: int) -> bool:
        """Whether ``a`` and ``b`` are neighbours."""
        if a == b:
            return False
        return self.k is None or abs(self.offset(a, b)) <= self.k // 2

    def window(self, c: int, radius: int) -> tuple[int, ...]:
        """Every client within ring distance ``radius`` of ``c`` (itself included), sorted."""
        if self.k is None or 2 * radius + 1 >= self.size:
            return tuple(range(self.size))
        p = self.position(c)
        idx = np.arange(p - radius, p + radius + 1) % self.size
        return tuple(sorted(int(v) for v in self._order[idx]))

    def neighbours(self, c: int) -> tuple[int, ...]:
        """The k neighbours of ``c`` (all other clients for the complete graph), sorted."""
        half = self.degree // 2 if self.k is not None else self.size
        return self._cached("nb", c, lambda: tuple(v for v in self.window(c, half) if v != c))  # type: ignore[no-any-return]

    def holders(self, owner: int) -> tuple[int, ...]:
        """Who holds shares of ``owner``'s secrets: itself and its neighbours, sorted."""
        return self._cached("h", owner, lambda: tuple(sorted((*self.neighbours(owner), owner))))  # type: ignore[no-any-return]

    def view_positions(self, c: int) -> npt.NDArray[np.int64]:
        """Positions of ``c``'s neighbours in the canonical view order: offsets -k/2..-1,
        +1..+k/2 on a sparse ring; every other position, ascending, if complete."""
        return self._cached("vp", c, lambda: self._view_positions(c))  # type: ignore[no-any-return]

    def _view_positions(self, c: int) -> npt.NDArray[np.int64]:
        p = self.position(c)
        if self.k is None:
            out = np.array([q for q in range(self.size) if q != p], dtype=np.int64)
        else:
            half = self.k // 2
            offsets = np.concatenate([np.arange(-half, 0), np.arange(1, half + 1)])
            out = (p + offsets) % self.size
        out.setflags(write=False)
        return out

    def view_order(self, c: int) -> tuple[int, ...]:
        """``c``'s neighbours in the canonical view order."""
        return self._cached(  # type: ignore[no-any-return]
            "vo", c, lambda: tuple(int(v) for v in self._order[self.view_positions(c)])
        )

    def share_index(self, owner: int, holder: int) -> int:
        """The Shamir x-coordinate (1..k+1) of ``holder``'s share of ``owner``'s secrets.

        Fixed by the graph alone: absent holders keep their index, so client and server
        agree without knowing who showed up.
        """
        index = self._cached(
            "ix", owner, lambda: {h: i + 1 for i, h in enumerate(self.holders(owner))}
        )
        try:
            return int(index[holder])
        except KeyError as exc:
            raise ConfigError(f"client {holder} holds no share of {owner}") from exc

    def side(self, owner: int, holder: int) -> int:
        """Which side of ``owner`` ``holder`` sits on: -1 before it, +1 after it in the
        cyclic order, 0 for the owner itself (and everyone in the complete graph)."""
        if holder == owner or self.k is None:
            return 0
        return 1 if self.offset(owner, holder) > 0 else -1

    def side_of(self, owner: int, side: int) -> tuple[int, ...]:
        """``owner``'s k/2 neighbours on one side (+1 after, -1 before); every neighbour
        for the complete graph or ``side == 0``."""
        if self.k is None or side == 0:
            return self.neighbours(owner)
        p = self.position(owner)
        half = self.k // 2
        steps = range(1, half + 1)
        return tuple(sorted(self.at(p + side * j) for j in steps))


@lru_cache(maxsize=16)
def _build(size: int, k: int | None, seed: bytes) -> Graph:
    return Graph(size, k, seed)


def neighbours(clients: Iterable[int], k: int | None, seed: bytes) -> dict[int, frozenset[int]]:
    """The neighbour sets of a ring over ``clients`` (any distinct ids), by id.

    A convenience for analyses over arbitrary id sets; the protocol itself uses
    :class:`Graph` over the whole population.
    """
    ids = sorted(set(clients))
    if len(ids) < 2:
        return {c: frozenset() for c in ids}
    ring = Graph(len(ids), k if k is None or k < len(ids) - 1 else None, _pad_seed(seed))
    return {ids[i]: frozenset(ids[v] for v in ring.neighbours(i)) for i in range(len(ids))}


def _pad_seed(seed: bytes) -> bytes:
    return seed if len(seed) >= 16 else hashlib.sha256(seed).digest()


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


def ring_components(ring: Graph, members: Iterable[int]) -> list[list[int]]:
    """Connected components of the ring restricted to ``members``, in O(n).

    On a circulant ring two members are connected exactly when no run of k/2 or more
    consecutive non-members separates them, so one scan of the cyclic order finds them.
    """
    keep = np.zeros(ring.size, dtype=bool)
    for c in members:
        keep[ring.position(c)] = True
    pos = np.flatnonzero(keep)
    if pos.size == 0:
        return []
    if ring.k is None:
        return [sorted(ring.at(int(p)) for p in pos)]
    gaps = np.diff(np.append(pos, pos[0] + ring.size)) - 1  # non-members after each member
    cut = np.flatnonzero(gaps >= ring.k // 2)
    if cut.size == 0:
        return [sorted(ring.at(int(p)) for p in pos)]
    parts = []
    starts = (cut + 1) % pos.size
    for a, b in zip(starts, np.roll(starts, -1), strict=True):
        idx = np.arange(a, b if b > a else b + pos.size) % pos.size
        parts.append(sorted(ring.at(int(pos[i])) for i in idx))
    return parts


def min_covered(size: int, k: int, per_side: int) -> int:
    """Lower bound on the honest inputs in any sum the server can unmask (active rules).

    Suppose every member ``o`` of an unmaskable set T has at most ``per_side``
    (= beta) clients outside T among its k/2 neighbours on each side. Then T has no run
    of k/2 outsiders (a member next to it would see k/2 on one side), so from any member
    ``o_i`` the last member ``o_{i+1}`` within its k/2 forward neighbours exists; the
    r outsiders after ``o_{i+1}`` in that side and the h outsiders before it share the
    side's budget, r + h <= beta, so the segment ``(o_i, o_{i+1}]`` of length
    ``k/2 - r`` holds at least ``k/2 - beta`` members. At least ``ceil(2n/k - 1)``
    whole segments fit in one lap of the ring (docs/secagg.md, "The active-setting
    guarantee"). For the complete graph every member sees every outsider: ``n - beta``.
    """
    if k >= size - 1:
        return max(size - per_side, 0)
    half = k // 2
    if per_side >= half:
        return 0
    return max(math.ceil(2 * size / k - 1), 1) * (half - per_side)


class MemberGraph:
    """A ring over an arbitrary set of client ids: the honest-but-curious graph over the
    clients that advertised keys (the honest server builds it and tells each client its
    neighbours; who shows up shapes it, which only an honest server may do)."""

    def __init__(self, members: Iterable[int], k: int | None, seed: bytes) -> None:
        self.members = tuple(sorted(set(members)))
        if len(self.members) < 2:
            raise ConfigError("a graph needs at least two members")
        self._local = {c: i for i, c in enumerate(self.members)}
        kk = None if k is None or k >= len(self.members) - 1 else k
        self._g = Graph.build(len(self.members), kk, _pad_seed(seed))
        self._nbrs: dict[int, tuple[int, ...]] = {}
        self._index: dict[int, dict[int, int]] = {}

    @property
    def complete(self) -> bool:
        """True when the members form a complete graph."""
        return self._g.complete

    @property
    def degree(self) -> int:
        """Neighbours per member."""
        return self._g.degree

    def _of(self, c: int) -> int:
        try:
            return self._local[c]
        except KeyError as exc:
            raise ConfigError(f"client {c} is not a member of this graph") from exc

    def neighbours(self, c: int) -> tuple[int, ...]:
        """``c``'s neighbours among the members, sorted (cached: O(k) per member)."""
        got = self._nbrs.get(c)
        if got is None:
            got = tuple(sorted(self.members[v] for v in self._g.neighbours(self._of(c))))
            self._nbrs[c] = got
        return got

    def holders(self, owner: int) -> tuple[int, ...]:
        """``owner`` and its neighbours, sorted."""
        return tuple(sorted((*self.neighbours(owner), owner)))

    def share_index(self, owner: int, holder: int) -> int:
        """``holder``'s Shamir x-coordinate for ``owner``'s secrets (1..k+1)."""
        index = self._index.get(owner)
        if index is None:
            index = {h: i + 1 for i, h in enumerate(self.holders(owner))}
            self._index[owner] = index
        try:
            return index[holder]
        except KeyError as exc:
            raise ConfigError(f"client {holder} holds no share of {owner}") from exc

    def adjacent(self, a: int, b: int) -> bool:
        """Whether a and b are neighbours."""
        return a in self._local and b in self._local and self._g.adjacent(self._of(a), self._of(b))
