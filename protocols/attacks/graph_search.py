"""Graph-level adversarial search against the SecAgg+ release rules (issue 12).

One active-setting round under a malicious server, modelled on the ring alone: no
cryptography, numpy arrays indexed by ring position (ids do not matter: the graph is a
random cyclic order, and the corrupt set is drawn independently of it).

**The model.** ``n`` registered clients on a circulant ring of degree ``k``; a corrupt set
of ``floor(gamma n)`` positions drawn uniformly. A :class:`Story` is everything the
server decides: which share boxes each honest client receives (``box[u, j]``: u gets the
box of its j-th neighbour in canonical view order, offsets ``-k/2..-1, +1..k/2``), and for
each honest client separately the status of each neighbour it is told (ALIVE/DROPPED;
ABSENT exactly where no box came, the one thing a client can check). Corrupt clients
receive every box, hold every share dealt to them and attest anything: for each client
their views say whatever certifies it (alive if that reaches t, else not alive; exact
while ``2t > k + 1 + c``, see :func:`_certify`). Honest clients apply the rules of
``secagg/client.py`` exactly: the own-budget refusal (more than ``cap`` neighbours on a
side not ALIVE: abort, no view, no share), certification with ``t`` (the own view counts
as ALIVE), the side rule with ``cap`` on the holder's side (both for the owner's own
share), one kind of share per owner and holder. :func:`evaluate` returns, per honest
owner, the self-mask and mask-key shares the server obtains, and the smallest set T of
honest clients whose sum it can unmask (every member's self mask rebuilt, every pairwise
mask a member added cancelled inside T or removable from a rebuilt mask key or a corrupt
peer).

**The adversary** (:func:`search`) tries, per draw: (a) split stories on a victim's
holders at every split size; (b) hiding: the victim's neighbours certified dropped by
their other holders while the victim is told they are alive (grouped stories, or a
greedy allocation that respects every holder's cap), with the neighbours nearest the
victim made ABSENT to it; (c) cutting the ring: outsiders spread as densely as each
client's cap allows, evenly spaced gaps, or a carved segment, the outsiders dropped,
dropped within the cap, or absent; (d) a local search over per-client stories from the
best story found, maximising isolation of the victim or min(self-mask, mask-key shares).
Directory choice: with the fixed design the server cannot change the graph (absences are
box withholding); with a choosable graph it grinds directories offline
(:func:`grind_directories`).

**Variants** (:data:`VARIANTS`), all attacked by the same code: ``fixed`` (the new rules
and the provisioned graph), ``graph_choosable`` (the new rules, but the graph over the
advertisements the server forwards, seed from their hash), ``old_consistency`` (the old design's
client on a fixed graph: t signatures over its own survivor list, ``min_aggregate`` and
``component_of``, the old design's k and t), ``no_side_rule``, ``no_attestation`` (release on the
server's status alone; the own-budget check kept), and ``old_design`` (the old design entirely:
the issue's attack).

**Budget.** By default the server is bound only by the checks each honest client makes
(no client can count dropouts claimed to others). ``max_dropouts`` (e.g. the policy's
D) also caps the distinct honest clients claimed not alive to anyone, plus those left
out of a directory.

``python -m protocols.attacks.graph_search --help`` runs the survey (a markdown table).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from secagg.attestation import Status
from secagg.config import SecAggConfig
from secagg.parameters import hypergeom_tail

Bool = npt.NDArray[np.bool_]
Int = npt.NDArray[np.int64]
Codes = npt.NDArray[np.int8]

ALIVE, DROPPED, ABSENT = int(Status.ALIVE), int(Status.DROPPED), int(Status.ABSENT)
_NONE = 1 << 30  # "no unmaskable sum" when ranking


# --- rules and parameters ------------------------------------------------------------


@dataclass(frozen=True)
class Rules:
    """What the honest clients of one variant check."""

    name: str
    certification: bool = True  # release needs t views certifying the status
    side_rule: bool = True  # self-mask release needs the holder's side within cap
    own_budget: bool = True  # abort when more than cap neighbours on a side are not ALIVE
    old_check: bool = False  # old design: t signatures over the client's own survivor list
    graph_choosable: bool = False  # the graph is over the directory the server forwards
    old_parameters: bool = False  # the old design's (k, t) and min_aggregate


VARIANTS: dict[str, Rules] = {
    "fixed": Rules("fixed"),
    "graph_choosable": Rules("graph_choosable", graph_choosable=True),
    "old_consistency": Rules(
        "old_consistency",
        certification=False,
        side_rule=False,
        own_budget=False,
        old_check=True,
        old_parameters=True,
    ),
    "no_side_rule": Rules("no_side_rule", side_rule=False),
    "no_attestation": Rules("no_attestation", certification=False, side_rule=False),
    "old_design": Rules(
        "old_design",
        certification=False,
        side_rule=False,
        own_budget=False,
        old_check=True,
        graph_choosable=True,
        old_parameters=True,
    ),
}
WEAKENED = ("graph_choosable", "old_consistency", "no_side_rule", "no_attestation")


@dataclass(frozen=True)
class Params:
    """One variant's parameters at population ``n``."""

    n: int
    k: int
    t: int
    cap: int  # per-side dropout cap (k when the rules have none)
    corrupt: int  # C = floor(gamma n)
    dropouts: int  # D = floor(delta n), the policy's dropout budget
    min_summed: int  # the fixed design's promise: every unmaskable sum covers this many
    min_aggregate: int = 0  # the old design's guard on a survivor list and its component


def fixed_parameters(n: int) -> Params:
    """The default active policy's parameters (``SecAggConfig.default(n)``)."""
    cfg = SecAggConfig.default(n, setting="active")
    if cfg.neighbours is None:
        raise ValueError(f"n={n} gives the complete graph; the ring model needs SecAgg+")
    d = math.floor(cfg.dropout_fraction * n)
    return Params(
        n, cfg.degree, cfg.threshold, cfg.dropout_cap, cfg.tolerated_corrupt, d, cfg.min_summed
    )


def _log_comb(n: int, k: int) -> float:
    if k < 0 or k > n:
        return -math.inf
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def _old_privacy(n: int, k: int, t: int, corrupt: int, dropouts: int) -> float:
    """the old design's active-setting privacy bound (secagg/graph.py ``failure_bounds``)."""
    m = k + 1
    p_thr = (n - corrupt) * hypergeom_tail(n - 1, corrupt, k, max(2 * t - m, 0))
    removed = min(corrupt + dropouts, n)
    p_conn = (n * (n - 1) / 2) * math.exp(_log_comb(removed, k) - _log_comb(n, k))
    return min(1.0, p_thr + p_conn)


@lru_cache(maxsize=16)
def old_parameters(n: int, sigma: int = 40, eta: int = 20) -> tuple[int, int]:
    """the old design's ``choose_parameters(n, setting="active")``: the smallest even k and t with
    privacy <= 2^-sigma and correctness <= 2^-eta (10% corrupt, 20% dropouts)."""
    corrupt, dropouts = math.floor(0.1 * n), math.floor(0.2 * n)
    p_sec, p_cor = 2.0**-sigma, 2.0**-eta
    gone = min(dropouts + corrupt, n - 1)
    for k in range(2, n - 1, 2):
        m = k + 1
        if _old_privacy(n, k, m, corrupt, dropouts) > p_sec:
            continue
        lo, hi = 2, m
        while lo < hi:
            mid = (lo + hi) // 2
            if _old_privacy(n, k, mid, corrupt, dropouts) <= p_sec:
                hi = mid
            else:
                lo = mid + 1
        if n * hypergeom_tail(n - 1, gone, k, m - lo) <= p_cor:
            return k, lo
    raise ValueError(f"the old design's search has no sparse (k, t) for n={n}")


def variant_parameters(rules: Rules, n: int) -> Params:
    """The parameters a variant's clients use at population ``n``."""
    p = fixed_parameters(n)
    if not rules.old_parameters:
        return p
    k, t = old_parameters(n)
    return Params(n, k, t, k, p.corrupt, p.dropouts, p.min_summed, max(t, math.ceil(n / 2)))


# --- one round's ring ------------------------------------------------------------------


@dataclass(frozen=True)
class Round:
    """One drawn instance: the ring (positions 0..m-1), who is corrupt, the rules."""

    params: Params
    rules: Rules
    corrupt: Bool
    excluded: int = 0  # honest registered clients the server kept out of the graph
    k: int = field(init=False)
    nbr: Int = field(init=False, repr=False)  # nbr[u, j]: u's j-th neighbour
    cnb: Int = field(init=False, repr=False)  # corrupt neighbours of each position

    def __post_init__(self) -> None:
        m = self.corrupt.size
        k = min(self.params.k, m - 1)
        if k % 2 or k < 2:
            raise ValueError(f"a ring of {m} positions cannot have degree {k}")
        h = k // 2
        off = np.concatenate([np.arange(-h, 0), np.arange(1, h + 1)])
        nbr = (np.arange(m)[:, None] + off[None, :]) % m
        object.__setattr__(self, "k", k)
        object.__setattr__(self, "nbr", nbr.astype(np.int64))
        object.__setattr__(self, "cnb", self.corrupt[nbr].sum(axis=1).astype(np.int64))

    @property
    def m(self) -> int:
        """Positions on the ring (the directory's size for a choosable graph)."""
        return int(self.corrupt.size)

    @property
    def h(self) -> int:
        """Neighbours per side."""
        return self.k // 2

    @property
    def honest(self) -> Bool:
        """Honest positions."""
        return ~self.corrupt

    def mirror(self) -> Int:
        """For u's j-th neighbour w, u is w's ``k-1-j``-th neighbour (offsets are symmetric)."""
        return self.k - 1 - np.arange(self.k)


def draw_round(rules: Rules, n: int, rng: np.random.Generator) -> Round:
    """A round on the provisioned graph: corruption uniform, independent of the graph."""
    p = variant_parameters(rules, n)
    corrupt = np.zeros(n, dtype=bool)
    corrupt[rng.choice(n, p.corrupt, replace=False)] = True
    return Round(p, rules, corrupt)


def _window_counts(flags: Bool, h: int) -> Int:
    """Per position, the flagged positions among its 2h ring neighbours."""
    m = flags.size
    c: Int = np.concatenate([[0], np.cumsum(np.tile(flags.astype(np.int64), 3))])
    idx = np.arange(m) + m
    out: Int = c[idx + h + 1] - c[idx - h] - flags.astype(np.int64)
    return out


def _smallest_directory(rules: Rules, p: Params) -> int:
    """The fewest clients a directory may hold: the old design needs ``min_aggregate`` survivors
    after one dropout (a complete ring of odd size is fine there); the new rules need a
    sparse ring (their side rule on a complete graph is another rule)."""
    floor = max(p.min_aggregate + 1, p.t, p.corrupt + 1)
    if not rules.old_check:
        return max(floor, p.k + 2)
    if floor <= p.k + 1:
        return floor + (floor % 2 == 0)
    return floor


def grind_directories(
    rules: Rules,
    n: int,
    rng: np.random.Generator,
    tries: int,
    sizes: int,
    max_dropouts: int | None = None,
) -> list[Round]:
    """A server choosing the directory: it keeps every corrupt client, claims some honest
    ones never advertised and re-draws the seed (a hash of what it forwards) offline.

    Returns the largest directory whose best victim has ``c_v >= 2t - k - 1`` corrupt
    neighbours (both kinds reachable by a split), if ``tries`` seeds per size find one,
    and the smallest directory the clients accept (fewest honest clients, for a cut).
    ``max_dropouts`` bounds the honest clients it may leave out.
    """
    p = variant_parameters(rules, n)
    need = 2 * p.t - p.k - 1
    floor = _smallest_directory(rules, p)
    if max_dropouts is not None:
        floor = max(floor, n - max_dropouts)
    picks: list[Round] = []
    cands = {int(m) for m in np.linspace(n, max(floor, p.k + 2), max(sizes, 2))} | {floor}
    if rules.old_check and p.k + 1 >= floor:
        cands.add(p.k + 1)  # the largest complete ring: every corrupt client a holder
    for m in sorted(cands, reverse=True):
        best, best_c = None, -1
        for _ in range(tries):
            flags = np.zeros(m, dtype=bool)
            flags[: p.corrupt] = True
            rng.shuffle(flags)
            c = int(np.where(flags, -1, _window_counts(flags, min(p.k, m - 1) // 2)).max())
            if c > best_c:
                best, best_c = flags, c
        if best is not None and best_c >= need:
            picks.append(Round(p, rules, best, n - m))
            break
    flags = np.zeros(floor, dtype=bool)
    flags[: p.corrupt] = True
    rng.shuffle(flags)
    picks.append(Round(p, rules, flags, n - floor))
    return picks


# --- stories ---------------------------------------------------------------------------


@dataclass
class Story:
    """The server's choices for one round (see the module doc)."""

    name: str
    victim: int
    box: Bool  # box[u, j]: u received the box of its j-th neighbour
    status: Codes  # status[u, j]: what u is told of its j-th neighbour
    label: Int  # old check: the survivor list a client is told; one label, one list

    @classmethod
    def honest(cls, rnd: Round, name: str, victim: int) -> Story:
        """Everyone alive, every box delivered."""
        m, k = rnd.m, rnd.k
        return cls(
            name,
            victim,
            np.ones((m, k), dtype=bool),
            np.full((m, k), ALIVE, dtype=np.int8),
            np.zeros(m, dtype=np.int64),
        )

    def copy(self, name: str | None = None) -> Story:
        """An independent copy."""
        return Story(
            self.name if name is None else name,
            self.victim,
            self.box.copy(),
            self.status.copy(),
            self.label.copy(),
        )


@dataclass(frozen=True)
class Outcome:
    """What the server obtains from one story."""

    self_shares: Int  # per owner: self-mask shares released (corrupt holders included)
    key_shares: Int
    self_known: Bool  # >= t self-mask shares (honest owners only)
    key_known: Bool
    masked: Bool  # honest clients that sent a masked input
    unknown_pairs: Int  # per client: pairwise masks it added that no rebuilt key removes
    best_t: int | None  # smallest unmaskable sum of honest inputs (None: none)
    single: bool  # one honest input recovered
    aborted: int  # honest clients that refused at a check (own budget, old guards)
    withheld: int  # shares honest holders held and refused to release
    dropouts: int  # distinct honest clients told to someone as not alive (+ kept out)
    max_view: int  # the most clients one honest story claims are not alive

    def feasible(self, min_summed: int) -> bool:
        """A single input, or a sum over fewer honest inputs than promised."""
        return self.single or (self.best_t is not None and self.best_t < min_summed)


# --- evaluation ------------------------------------------------------------------------


def _normalise(rnd: Round, story: Story) -> tuple[Bool, Codes, Bool, Bool]:
    """Boxes (corrupt clients get all), statuses as told, who masked, who may go on."""
    box = story.box | rnd.corrupt[:, None]
    st = np.where(box, story.status, ABSENT).astype(np.int8)
    # a neighbour that shared but is told ABSENT is refused (NeighbourhoodError)
    consistent = ~np.any(box & (story.status == ABSENT), axis=1)
    masked = rnd.honest & (box.sum(axis=1) + 1 >= rnd.params.t)  # else TooFewSurvivors
    return box, st, masked, consistent & masked


def _ring_components(members: Bool, h: int) -> Int:
    """Per position, the size of its component among ``members`` on the ring (0 outside)."""
    m = members.size
    idx = np.flatnonzero(members)
    out = np.zeros(m, dtype=np.int64)
    if idx.size == 0:
        return out
    gaps = np.diff(np.append(idx, idx[0] + m)) - 1
    cut_before = np.roll(gaps >= h, 1)
    if not cut_before.any():
        out[idx] = idx.size
        return out
    comp = np.cumsum(cut_before) - 1
    if not cut_before[0]:
        comp[comp == comp.max()] = -1  # the run after the last cut wraps into the first
        comp += 1
    out[idx] = np.bincount(comp)[comp]
    return out


def _old_valid(rnd: Round, st: Codes, going: Bool, label: Int) -> tuple[Bool, int]:
    """the old design's check per survivor list (one per label): no two of its honest recipients
    disagree, each is on it, t signers on it, ``min_aggregate`` met by the list and by
    the recipient's component. Returns who passes, and the longest list of dropouts."""
    p, m = rnd.params, rnd.m
    valid = np.zeros(m, dtype=bool)
    worst = 0
    for g in np.unique(label[going]):
        mem = going & (label == g)
        says, nb = st[mem], rnd.nbr[mem]
        alive = np.zeros(m, dtype=bool)
        alive[nb[says == ALIVE]] = True
        alive[mem] = True
        gone = np.zeros(m, dtype=bool)
        gone[nb[says != ALIVE]] = True
        if np.any(alive & gone):
            continue  # two recipients of "one" list were told different things
        listed = ~gone
        signers = np.count_nonzero(mem) + np.count_nonzero(rnd.corrupt & listed)
        if signers < p.t or np.count_nonzero(listed) < max(p.t, p.min_aggregate):
            continue
        worst = max(worst, int(np.count_nonzero(gone & rnd.honest)))
        valid |= mem & (_ring_components(listed, rnd.h) >= p.min_aggregate)
    return valid, worst


def _viewing(rnd: Round, st: Codes, going: Bool, label: Int) -> tuple[Bool, int]:
    """Who gives a view and releases: the own-budget check (new) or the old design's list check."""
    nonalive = st != ALIVE
    if rnd.rules.old_check:
        return _old_valid(rnd, st, going, label)
    worst = int(np.where(going, nonalive.sum(axis=1), 0).max(initial=0))
    if not rnd.rules.own_budget:
        return going, worst
    h, cap = rnd.h, rnd.params.cap
    ok = (nonalive[:, :h].sum(axis=1) <= cap) & (nonalive[:, h:].sum(axis=1) <= cap)
    return going & ok, worst


def _certify(rnd: Round, st: Codes, viewing: Bool) -> tuple[Bool, Bool]:
    """Certified alive / not alive, the same in every honest holder's evidence.

    The server forwards every honest view (more views never hurt it). Corrupt holders'
    views of x say ALIVE where that certifies x alive, else not alive: with
    ``2t > k + 1 + c_x`` at most one of the two can reach t, so this is the best choice
    for every holder. With more corrupt holders both do, and the model lets each
    holder's evidence have both (an over-approximation, only where a split on x succeeds
    anyway).
    """
    m, t = rnd.m, rnd.params.t
    if not rnd.rules.certification:
        every = np.ones(m, dtype=bool)
        return every, every
    v = viewing[:, None]
    alive = np.bincount(rnd.nbr[v & (st == ALIVE)], minlength=m) + viewing + rnd.corrupt
    other = np.bincount(rnd.nbr[v & (st != ALIVE)], minlength=m)
    return alive + rnd.cnb >= t, other + rnd.cnb >= t


def _sides(rnd: Round, box: Bool, masked: Bool, alive: Bool) -> tuple[Bool, Bool]:
    """Per owner, whether its -1 and +1 sides pass the side rule (edges: what it masked)."""
    if not rnd.rules.side_rule:
        every = np.ones(rnd.m, dtype=bool)
        return every, every
    h, cap = rnd.h, rnd.params.cap
    bad = ~(alive[rnd.nbr] & box & masked[:, None])
    return bad[:, :h].sum(axis=1) <= cap, bad[:, h:].sum(axis=1) <= cap


Flags = tuple[Bool, Bool, Bool]


def _release_flags(
    rnd: Round,
    box: Bool,
    st: Codes,
    viewing: Bool,
    certs: tuple[Bool, Bool],
    sides: tuple[Bool, Bool],
) -> Flags:
    """Per holder u and index j: u releases the self-mask / mask-key share of its j-th
    neighbour (honest owners); and per client: it releases its own self-mask share."""
    h, nbr = rnd.h, rnd.nbr
    ca, cn = certs
    minus, plus = sides
    # a holder sits on the owner's +1 side when the owner is at a negative offset from it
    side_ok = np.concatenate([plus[nbr[:, :h]], minus[nbr[:, h:]]], axis=1)
    held = viewing[:, None] & box & rnd.honest[nbr]
    self_rel = held & (st == ALIVE) & ca[nbr] & side_ok
    key_rel = held & (st == DROPPED) & cn[nbr]
    return self_rel, key_rel, viewing & ca & minus & plus


def release_decisions(rnd: Round, story: Story) -> Flags:
    """What every honest holder releases under the variant's rules (see
    :func:`_release_flags`); for cross-checks against :mod:`secagg.attestation`."""
    box, st, masked, going = _normalise(rnd, story)
    viewing, _ = _viewing(rnd, st, going, story.label)
    certs = _certify(rnd, st, viewing)
    return _release_flags(rnd, box, st, viewing, certs, _sides(rnd, box, masked, certs[0]))


def _components(members: Bool, edges: Bool, nbr: Int) -> Int:
    """Connected-component labels (a member position) over symmetric ``edges`` among
    members: min-label propagation over the edge list with pointer jumping."""
    m = members.size
    src, col = np.nonzero(edges)
    dst = nbr[src, col]
    lab = np.where(members, np.arange(m), m)
    if src.size == 0:
        return lab
    starts = np.flatnonzero(np.r_[True, src[1:] != src[:-1]])  # np.nonzero is row-major
    rows = src[starts]
    while True:
        new = lab.copy()
        new[rows] = np.minimum(lab[rows], np.minimum.reduceat(lab[dst], starts))
        new = np.where(members, new[np.minimum(new, m - 1)], m)
        if np.array_equal(new, lab):
            return lab
        lab = new


def _smallest_sum(
    rnd: Round, box: Bool, masked: Bool, self_known: Bool, key_known: Bool
) -> tuple[int | None, Int]:
    """The smallest closed set T of honest inputs, and each client's unremovable masks.

    T is closed when every member's self mask is rebuilt and each pairwise mask a member
    added either cancels (the peer is in T and masked with it too) or is removable (the
    peer is corrupt, or either mask key is rebuilt). The requirement is symmetric, so
    the closed sets are unions of components; a component with a member whose mask can
    neither cancel nor be removed is not closed.
    """
    nbr = rnd.nbr
    edges = box & masked[:, None]
    known = rnd.corrupt[nbr] | key_known[nbr] | key_known[:, None]
    need = edges & ~known
    unknown = need.sum(axis=1).astype(np.int64)
    cand = masked & self_known
    if not cand.any():
        return None, unknown
    need &= cand[:, None]
    if np.any(cand & ~need.any(axis=1)):
        return 1, unknown  # a member none of whose masks needs a peer: its input alone
    ok = need & cand[nbr] & edges[nbr, rnd.mirror()[None, :]]
    lab = _components(cand, ok, nbr)
    sizes = np.bincount(lab[cand], minlength=rnd.m)
    good = sizes > 0
    good[lab[cand & np.any(need & ~ok, axis=1)]] = False
    return (int(sizes[good].min()) if good.any() else None), unknown


def evaluate(rnd: Round, story: Story) -> Outcome:
    """Apply the variant's honest rules to ``story``: what the server obtains."""
    t = rnd.params.t
    box, st, masked, going = _normalise(rnd, story)
    viewing, worst = _viewing(rnd, st, going, story.label)
    certs = _certify(rnd, st, viewing)
    sides = _sides(rnd, box, masked, certs[0])
    self_rel, key_rel, own = _release_flags(rnd, box, st, viewing, certs, sides)
    held = viewing[:, None] & box & rnd.honest[rnd.nbr]
    withheld = int(np.count_nonzero(held & ~self_rel & ~key_rel) + np.count_nonzero(viewing & ~own))
    self_sh = np.bincount(rnd.nbr[self_rel], minlength=rnd.m) + own + rnd.cnb
    key_sh = np.bincount(rnd.nbr[key_rel], minlength=rnd.m) + rnd.cnb
    self_known = rnd.honest & (self_sh >= t)
    key_known = rnd.honest & (key_sh >= t)
    best, unknown = _smallest_sum(rnd, box, masked, self_known, key_known)
    told = np.zeros(rnd.m, dtype=bool)
    told[rnd.nbr[going[:, None] & (st != ALIVE)]] = True
    return Outcome(
        self_sh,
        key_sh,
        self_known,
        key_known,
        masked,
        unknown,
        best,
        bool(np.any(masked & self_known & key_known)) or best == 1,
        int(np.count_nonzero(masked & ~viewing)),
        withheld,
        int(np.count_nonzero(told & rnd.honest)) + rnd.excluded,
        worst,
    )


# --- strategies ------------------------------------------------------------------------


def victims(rnd: Round, count: int, rng: np.random.Generator) -> list[int]:
    """The honest clients with the most corrupt neighbours (the server picks its victim)."""
    score = np.where(rnd.honest, rnd.cnb, -1) + rng.random(rnd.m) * 0.5
    return [int(v) for v in np.argsort(-score)[:count]]


def _nearest_first(rnd: Round) -> tuple[Int, Int]:
    """Indices into a row of the -1 side and the +1 side, nearest neighbour first."""
    h = rnd.h
    return np.arange(h)[::-1].astype(np.int64), np.arange(h, 2 * h).astype(np.int64)


def split_stories(rnd: Round, victim: int, step: int) -> Iterator[Story]:
    """(a) Tell the first ``a`` of the victim's honest holders (alternating sides, nearest
    first) that it is alive and the rest that it dropped, for every ``a`` (``step`` apart,
    plus the two thresholds). The old design's lists: one per story, every other client
    joins one."""
    rows, cols = rnd.nbr[victim], rnd.mirror()
    minus, plus = _nearest_first(rnd)
    order = np.ravel(np.column_stack([minus, plus]))
    order = order[rnd.honest[rows[order]]]
    t, c, size = rnd.params.t, int(rnd.cnb[victim]), order.size
    crit = {t - 1 - c, size - (t - c), (size - 1) // 2}
    for a in sorted(set(range(0, size + 1, max(step, 1))) | {x for x in crit if 0 <= x <= size}):
        s = Story.honest(rnd, f"split:{a}", victim)
        told, rest = order[:a], order[a:]
        s.status[rows[rest], cols[rest]] = DROPPED
        s.label[:] = np.arange(rnd.m) % 2
        s.label[rows[told]], s.label[rows[rest]], s.label[victim] = 0, 1, 0
        yield s


def _victim_neighbours(rnd: Round, victim: int, absent: int) -> tuple[Int, Int]:
    """Row indices of the victim's ``absent`` nearest honest neighbours on each side, and
    of its other honest neighbours, farthest first, the two sides interleaved."""
    rows = rnd.nbr[victim]
    near: list[Int] = []
    far: list[Int] = []
    for side in _nearest_first(rnd):
        side = side[rnd.honest[rows[side]]]
        near.append(side[:absent])
        far.append(side[absent:][::-1])
    a, b = far
    both = min(a.size, b.size)
    inter = np.ravel(np.column_stack([a[:both], b[:both]]))
    return np.concatenate(near), np.concatenate([inter, a[both:], b[both:]])


def hide_grouped(rnd: Round, victim: int, groups: int, max_dropouts: int | None) -> Story:
    """(b) Hiding with consistent groups: the victim's honest neighbours are split into
    ``groups`` groups; every honest client is in one group's story (a label) and is told
    that the victim's neighbours of every other group dropped. No cap is respected: this
    is the story the old design's signature check accepts."""
    s = Story.honest(rnd, f"hide-groups:{groups}", victim)
    _, rest = _victim_neighbours(rnd, victim, 0)
    targets = rnd.nbr[victim][rest]
    if max_dropouts is not None:
        targets = targets[: max(max_dropouts - rnd.excluded, 0)]
    tg = np.full(rnd.m, -1, dtype=np.int64)
    tg[targets] = np.arange(targets.size) % groups
    s.label = np.arange(rnd.m, dtype=np.int64) % groups
    s.label[targets] = tg[targets]
    s.label[victim] = 0
    g_nb = tg[rnd.nbr]
    s.status[(g_nb >= 0) & (g_nb != s.label[:, None]) & rnd.honest[:, None]] = DROPPED
    return s


def hide_capped(
    rnd: Round, victim: int, absent: int, order: str, max_dropouts: int | None
) -> Story:
    """(b) Hiding within every holder's cap: the victim's ``absent`` nearest honest
    neighbours per side are made ABSENT to it (their boxes withheld from it), the others
    are told alive to it and dropped to enough of their other holders (greedy)."""
    absent = min(absent, (rnd.k + 1 - rnd.params.t) // 2)  # it still needs t - 1 boxes
    s = Story.honest(rnd, f"hide-capped:{absent}:{order}", victim)
    near, rest = _victim_neighbours(rnd, victim, absent)
    s.box[victim, near] = False
    s.status[victim, near] = ABSENT
    targets = rnd.nbr[victim][rest if order == "far" else rest[::-1]]
    if max_dropouts is not None:
        targets = targets[: max(max_dropouts - rnd.excluded - near.size, 0)]
    _allocate(rnd, s, targets, rnd.params.cap)
    return s


def _allocate(rnd: Round, story: Story, targets: Int, per_side: int) -> int:
    """Make honest holders of each target say DROPPED until ``t - c`` of them do, at most
    ``per_side`` not-ALIVE statuses per side of each holder, in place; greedy, targets in
    order, holders whose side competes for the fewest remaining targets first. Returns
    how many targets were left short."""
    k, h, t, m = rnd.k, rnd.h, rnd.params.t, rnd.m
    st, box, nbr = story.status, story.box, rnd.nbr
    nonalive = np.where(box, st, ABSENT) != ALIVE
    rem = np.stack([per_side - nonalive[:, :h].sum(1), per_side - nonalive[:, h:].sum(1)], 1)
    tgt = np.zeros(m, dtype=bool)
    tgt[targets] = True
    cover = np.stack([tgt[nbr[:, :h]].sum(1), tgt[nbr[:, h:]].sum(1)], 1)
    jj = rnd.mirror()
    side = (jj >= h).astype(np.int64)  # the side of the holder the target sits on
    short = 0
    for w in targets:
        hs = nbr[w]
        holds = rnd.honest[hs] & box[hs, jj]
        need = t - int(rnd.cnb[w]) - int(np.count_nonzero(holds & (st[hs, jj] == DROPPED)))
        if need > 0:
            cand = np.flatnonzero(holds & (st[hs, jj] == ALIVE) & (rem[hs, side] > 0))
            pri = cover[hs[cand], side[cand]] * (k + 1) - rem[hs[cand], side[cand]]
            pick = cand[np.argsort(pri, kind="stable")[:need]]
            st[hs[pick], jj[pick]] = DROPPED
            rem[hs[pick], side[pick]] -= 1
            short += int(pick.size < need)
        cover[hs, side] -= 1
    return short


def _spread(rnd: Round, limit: int, start: int, most: int) -> Bool:
    """Honest outsiders placed as densely as "at most ``limit`` in any k/2 consecutive
    positions" allows (each client's side then holds at most ``limit``), at most ``most``."""
    m, h = rnd.m, rnd.h
    out = np.zeros(m, dtype=bool)
    order = (start + np.arange(m)) % m
    inwin = total = 0
    for i in range(m):
        if i >= h and out[order[i - h]]:
            inwin -= 1
        p = order[i]
        if rnd.honest[p] and inwin < limit and total < most:
            out[p] = True
            inwin += 1
            total += 1
    while True:  # windows across the sweep's start
        c = np.concatenate([[0], np.cumsum(np.tile(out, 2))])
        bad = np.flatnonzero(c[np.arange(m) + h] - c[np.arange(m)] > limit)
        if bad.size == 0:
            return out
        seg = (bad[0] + np.arange(h)) % m
        cand = seg[out[seg]]
        out[cand[np.argmax((cand - start) % m)]] = False


def _runs(rnd: Round, starts: Sequence[int], width: int, most: int) -> Bool:
    """The next ``width`` honest positions from each start are outsiders (at most ``most``)."""
    out = np.zeros(rnd.m, dtype=bool)
    for p0 in starts:
        seq = (p0 + np.arange(rnd.m)) % rnd.m
        out[seq[rnd.honest[seq]][:width]] = True
    idx = np.flatnonzero(out)
    out[idx[most:]] = False
    return out


def _cut_story(rnd: Round, outsiders: Bool, mode: str, name: str) -> Story:
    """A story in which ``outsiders`` are left out of T: dropped (to every holder),
    dropped within each holder's cap (greedy), or absent (no box either way)."""
    inside = np.flatnonzero(rnd.honest & ~outsiders)
    s = Story.honest(rnd, f"{name}:{mode}", int(inside[0]) if inside.size else 0)
    if mode == "absent":
        s.box[outsiders] = False
        s.box[outsiders[rnd.nbr]] = False
        s.status[~s.box] = ABSENT
    elif mode == "dropped":
        s.status[rnd.honest[:, None] & outsiders[rnd.nbr]] = DROPPED
    else:
        _allocate(rnd, s, np.flatnonzero(outsiders), rnd.params.cap)
    return s


def cut_stories(
    rnd: Round, budget: SearchBudget, rng: np.random.Generator, max_dropouts: int | None
) -> Iterator[Story]:
    """(c) Cutting the ring: outsiders spread at ``limit`` per k/2 positions (the cap and
    beyond it), evenly spaced gaps, and a segment carved by two runs of k/2 clients."""
    m, h, cap = rnd.m, rnd.h, rnd.params.cap
    most = m if max_dropouts is None else max(max_dropouts - rnd.excluded, 0)
    seg = max(rnd.params.min_summed // 2, 1)
    for i in range(budget.cut_starts):
        start = int(rng.integers(m))
        for f in budget.cut_limits:
            limit = min(max(round(f * cap), 1), h)
            spread = _spread(rnd, limit, start, most)
            count = max(m // (h + limit), 1)
            gaps = _runs(rnd, [start + g * m // count for g in range(count)], limit, most)
            for name, out in ((f"cut-spread:{f}", spread), (f"cut-gaps:{f}", gaps)):
                for mode in ("dropped", "capped", "absent"):
                    yield _cut_story(rnd, out, mode, f"{name}:{i}")
        carve = _runs(rnd, [start, start + h + seg], h, most)
        for mode in ("dropped", "capped", "absent"):
            yield _cut_story(rnd, carve, mode, f"cut-segment:{i}")


# --- (d) local search ------------------------------------------------------------------


def _objective(mode: str, out: Outcome, victim: int) -> tuple[int, ...]:
    """What a local search climbs: isolating the victim (its self mask rebuilt, fewest
    pairwise masks left), or min(self-mask, mask-key shares) of it."""
    best = -(out.best_t if out.best_t is not None else _NONE)
    if mode == "isolate":
        return int(out.self_known[victim]), -int(out.unknown_pairs[victim]), best
    return min(int(out.self_shares[victim]), int(out.key_shares[victim])), best


def _side_overflow(rnd: Round, s: Story, u: int, j: int, rng: np.random.Generator) -> None:
    """Keep u's side of neighbour j within the cap: re-alive a random other not-ALIVE one."""
    h = rnd.h
    sl = slice(0, h) if j < h else slice(h, 2 * h)
    row = np.where(s.box[u, sl], s.status[u, sl], ABSENT)
    gone = np.flatnonzero(row != ALIVE) + sl.start
    gone = gone[gone != j]
    if gone.size + 1 > rnd.params.cap and gone.size:
        g = int(rng.choice(gone))
        s.box[u, g], s.status[u, g] = True, ALIVE


def _mutate(rnd: Round, s: Story, out: Outcome, rng: np.random.Generator, mode: str) -> None:
    """One random move of the server's story, in place (see :func:`local_search`)."""
    v, cols = s.victim, rnd.mirror()
    rows = rnd.nbr[v]
    if mode == "split":
        hold = np.flatnonzero(rnd.honest[rows] & s.box[rows, cols])
        for j in rng.choice(hold, size=min(hold.size, 1 + int(rng.integers(4))), replace=False):
            cur = s.status[rows[j], cols[j]]
            s.status[rows[j], cols[j]] = DROPPED if cur == ALIVE else ALIVE
        return
    r = rng.random()
    if r < 0.7:  # one more holder says an unhidden neighbour of the victim dropped
        left = np.flatnonzero(s.box[v] & rnd.honest[rows] & ~out.key_known[rows])
        if left.size == 0:
            return
        w = int(rows[rng.choice(left)])
        hs = rnd.nbr[w]
        ok = np.flatnonzero(rnd.honest[hs] & s.box[hs, cols] & (s.status[hs, cols] == ALIVE))
        if ok.size:
            i = int(rng.choice(ok))
            s.status[hs[i], cols[i]] = DROPPED
            _side_overflow(rnd, s, int(hs[i]), int(cols[i]), rng)
    elif r < 0.9:  # hide one more neighbour from the victim (ABSENT to it)
        j = int(rng.choice(np.flatnonzero(rnd.honest[rows])))
        s.box[v, j] = not s.box[v, j]
        s.status[v, j] = ALIVE if s.box[v, j] else ABSENT
        _side_overflow(rnd, s, v, j, rng)
    else:  # any honest client, any neighbour
        u, j = int(rng.integers(rnd.m)), int(rng.integers(rnd.k))
        if rnd.honest[u] and s.box[u, j]:
            s.status[u, j] = DROPPED if s.status[u, j] == ALIVE else ALIVE


def local_search(
    run: Callable[[Story], Outcome],
    rnd: Round,
    start: Story,
    steps: int,
    rng: np.random.Generator,
    mode: str,
) -> None:
    """(d) Hill climbing over per-client stories from ``start``: a move is kept when the
    objective does not get worse. Every story tried goes through ``run``."""
    cur = start.copy(f"local-{mode}")
    out = run(cur)
    cur_obj = _objective(mode, out, cur.victim)
    for _ in range(steps):
        cand = cur.copy()
        _mutate(rnd, cand, out, rng, mode)
        cand_out = run(cand)
        obj = _objective(mode, cand_out, cand.victim)
        if obj >= cur_obj:
            cur, cur_obj, out = cand, obj, cand_out


# --- the search ------------------------------------------------------------------------


@dataclass(frozen=True)
class SearchBudget:
    """How hard :func:`search` tries (the tests use :meth:`quick`)."""

    victims: int = 2
    split_step: int = 1  # every split size
    groups: tuple[int, ...] = (3, 4)
    absent: tuple[float, ...] = (0.0, 0.5, 1.0)  # x cap, per side, made ABSENT to the victim
    orders: tuple[str, ...] = ("far", "near")
    cut_limits: tuple[float, ...] = (1.0, 1.25, 2.0)  # outsiders per k/2 positions, x cap
    cut_starts: int = 2
    local_steps: int = 120
    grind_tries: int = 200
    grind_sizes: int = 6

    @classmethod
    def quick(cls) -> SearchBudget:
        """A budget for the default test suite (well under a second per draw at n=530)."""
        return cls(
            victims=1,
            split_step=24,
            groups=(3,),
            absent=(1.0,),
            orders=("far",),
            cut_limits=(1.0, 2.0),
            cut_starts=1,
            local_steps=16,
            grind_tries=60,
            grind_sizes=3,
        )


@dataclass(frozen=True)
class AttackResult:
    """The adversary's best outcome on one draw."""

    variant: str
    n: int
    k: int
    t: int
    cap: int
    feasible: bool
    best_t: int | None  # smallest unmaskable sum of honest inputs it reached
    victim: int
    self_shares: int  # of the victim, corrupt holders included
    key_shares: int
    strategy: str  # the story that achieved the best outcome
    elapsed: float  # seconds for this draw
    min_summed: int
    single_input: bool
    dropouts: int  # distinct honest clients the best story claims are not alive (+ left out)
    max_view: int  # the most one honest client's own story claims are not alive
    max_dropouts: int | None  # the budget the search kept to (None: unbounded)
    refused: int  # stories in which some honest client refused (abort or withheld share)
    evaluated: int
    excluded: int  # honest clients kept out of the directory (choosable graph)
    corrupt_neighbours: int  # of the victim
    directory: int  # clients in the graph
    per_strategy: dict[str, bool] = field(default_factory=dict)  # family -> any feasible


class _Tracker:
    """Evaluates stories and keeps the best one, per strategy family as well."""

    def __init__(self, rnd: Round, max_dropouts: int | None, bar: tqdm[None] | None) -> None:
        self.rnd, self.max_dropouts, self.bar = rnd, max_dropouts, bar
        self.best: tuple[tuple[int, ...], Story, Outcome] | None = None
        self.starts: dict[str, tuple[tuple[int, ...], Story, Outcome]] = {}
        self.per: dict[str, bool] = {}
        self.refused = self.evaluated = 0

    def run(self, story: Story) -> Outcome:
        """Evaluate one story and record it."""
        out = evaluate(self.rnd, story)
        self.evaluated += 1
        self.refused += int(out.aborted > 0 or out.withheld > 0)
        ok = self.max_dropouts is None or out.dropouts <= self.max_dropouts
        feasible = ok and out.feasible(self.rnd.params.min_summed)
        family = story.name.split(":")[0]
        self.per[family] = self.per.get(family, False) or feasible
        v = story.victim
        score = (
            int(feasible),
            -(out.best_t or _NONE),
            min(int(out.self_shares[v]), int(out.key_shares[v])),
        )
        if ok and (self.best is None or score > self.best[0]):
            self.best = (score, story, out)
        for mode in ("isolate", "split"):
            obj = _objective(mode, out, v)
            if ok and (mode not in self.starts or obj > self.starts[mode][0]):
                self.starts[mode] = (obj, story, out)
        if self.bar is not None:
            self.bar.update()
        return out


def _strategies(tr: _Tracker, rnd: Round, budget: SearchBudget, rng: np.random.Generator) -> None:
    """Strategies (a)-(c) on the victims the server picks, then (d) from the best."""
    md = tr.max_dropouts
    for v in victims(rnd, budget.victims, rng):
        for s in split_stories(rnd, v, budget.split_step):
            tr.run(s)
        for g in budget.groups:
            tr.run(hide_grouped(rnd, v, g, md))
        for f in budget.absent:
            for order in budget.orders:
                tr.run(hide_capped(rnd, v, round(f * rnd.params.cap), order, md))
    for s in cut_stories(rnd, budget, rng, md):
        tr.run(s)
    for mode, steps in (("isolate", budget.local_steps), ("split", budget.local_steps // 2)):
        if mode in tr.starts:
            local_search(tr.run, rnd, tr.starts[mode][1], steps, rng, mode)


def _result(rnd: Round, tr: _Tracker, elapsed: float) -> AttackResult:
    p = rnd.params
    if tr.best is None:  # nothing within the budget (cannot happen: splits claim one)
        raise ValueError("no story was admissible")
    score, story, out = tr.best
    v = story.victim
    return AttackResult(
        rnd.rules.name,
        p.n,
        rnd.k,
        p.t,
        p.cap,
        bool(score[0]),
        out.best_t,
        v,
        int(out.self_shares[v]),
        int(out.key_shares[v]),
        story.name,
        elapsed,
        p.min_summed,
        out.single,
        out.dropouts,
        out.max_view,
        tr.max_dropouts,
        tr.refused,
        tr.evaluated,
        rnd.excluded,
        int(rnd.cnb[v]),
        rnd.m,
        dict(tr.per),
    )


def search(
    rnd: Round,
    budget: SearchBudget,
    rng: np.random.Generator,
    *,
    max_dropouts: int | None = None,
    progress: bool = False,
) -> AttackResult:
    """The adversary's best attack on one drawn round (``max_dropouts``: at most that
    many distinct honest clients claimed not alive; None: only the clients' own checks
    bound the server)."""
    t0 = time.perf_counter()
    with tqdm(
        desc=f"{rnd.rules.name} n={rnd.params.n}", unit="story", disable=not progress, leave=False
    ) as bar:
        tr = _Tracker(rnd, max_dropouts, bar)
        _strategies(tr, rnd, budget, rng)
    return _result(rnd, tr, time.perf_counter() - t0)


def attack_draw(
    variant: str,
    n: int,
    budget: SearchBudget,
    rng: np.random.Generator,
    *,
    max_dropouts: int | None = None,
    progress: bool = False,
) -> AttackResult:
    """One draw of ``variant`` at ``n``: the provisioned graph, or for a choosable graph
    each directory :func:`grind_directories` picks; the best result over them."""
    rules = VARIANTS[variant]
    t0 = time.perf_counter()
    if rules.graph_choosable:
        rounds = grind_directories(
            rules, n, rng, budget.grind_tries, budget.grind_sizes, max_dropouts
        )
    else:
        rounds = [draw_round(rules, n, rng)]
    best: AttackResult | None = None
    for rnd in rounds:
        r = search(rnd, budget, rng, max_dropouts=max_dropouts, progress=progress)
        if best is None or _rank(r) > _rank(best):
            best = r
    if best is None:
        raise ValueError("no directory to attack")
    return _with_elapsed(best, time.perf_counter() - t0)


def _rank(r: AttackResult) -> tuple[int, int, int]:
    return int(r.feasible), -(r.best_t or _NONE), min(r.self_shares, r.key_shares)


def _with_elapsed(r: AttackResult, elapsed: float) -> AttackResult:
    d = dict(r.__dict__)
    d["elapsed"] = elapsed
    return AttackResult(**d)


def survey(
    variant: str,
    n: int,
    draws: int,
    budget: SearchBudget,
    *,
    seed: int = 0,
    within_policy: bool = False,
    progress: bool = True,
) -> list[AttackResult]:
    """``draws`` independent draws (corruption, graph seed) of ``variant`` at ``n``;
    ``within_policy``: the server claims at most D = floor(delta n) distinct dropouts."""
    rng = np.random.default_rng([seed, n, sorted(VARIANTS).index(variant)])
    md = variant_parameters(VARIANTS[variant], n).dropouts if within_policy else None
    out = []
    for _ in tqdm(range(draws), desc=f"{variant} n={n}", unit="draw", disable=not progress):
        out.append(attack_draw(variant, n, budget, rng, max_dropouts=md))
    return out


# --- report ----------------------------------------------------------------------------


def summary_row(results: Sequence[AttackResult]) -> dict[str, object]:
    """One table row: feasible fraction, smallest T, the victim's shares, time."""
    r0 = results[0]
    ts = [r.best_t for r in results if r.best_t is not None]
    feas = [r for r in results if r.feasible]
    shown = feas or list(results)
    fams = [r.strategy.split(":")[0] for r in shown]
    return {
        "variant": r0.variant,
        "n": r0.n,
        "k": r0.k,
        "t": r0.t,
        "cap": r0.cap,
        "min_summed": r0.min_summed,
        "draws": len(results),
        "feasible": f"{len(feas)}/{len(results)}",
        "single": sum(r.single_input for r in results),
        "best_T": min(ts) if ts else None,
        "self/key": f"{int(np.median([r.self_shares for r in shown]))}/"
        f"{int(np.median([r.key_shares for r in shown]))}",
        "dropouts": int(np.median([r.dropouts for r in shown])),
        "per_view": int(np.median([r.max_view for r in shown])),
        "excluded": int(np.median([r.excluded for r in shown])),
        "strategy": max(set(fams), key=fams.count),
        "s/draw": round(float(np.mean([r.elapsed for r in results])), 2),
    }


def markdown_table(rows: Sequence[dict[str, object]]) -> str:
    """Rows as a markdown table."""
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += [
        "| " + " | ".join("-" if r[k] is None else str(r[k]) for k in keys) + " |" for r in rows
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m protocols.attacks.graph_search``: the survey as a markdown table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--sizes", type=int, nargs="+", default=[100, 530, 1000, 2000])
    ap.add_argument(
        "--variants",
        nargs="+",
        default=["fixed", *WEAKENED, "old_design"],
        choices=sorted(VARIANTS),
    )
    ap.add_argument("--draws", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="the test suite's search budget")
    ap.add_argument("--within-policy", action="store_true", help="at most D distinct dropouts")
    ap.add_argument("--json", help="also write every draw's result to this file")
    args = ap.parse_args(argv)
    budget = SearchBudget.quick() if args.quick else SearchBudget()
    rows, every = [], []
    for variant in args.variants:
        for n in args.sizes:
            res = survey(
                variant, n, args.draws, budget, seed=args.seed, within_policy=args.within_policy
            )
            every += [r.__dict__ for r in res]
            rows.append(summary_row(res))
            print(markdown_table(rows[-1:]).splitlines()[-1], flush=True)
    print(markdown_table(rows))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(every, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
