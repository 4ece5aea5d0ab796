"""A malicious server writing raw wire messages to real, honest clients, and the
reconstruction it attempts afterwards.

:class:`WireServer` runs the honest steps on demand and lets the caller choose every value
the server sends: which neighbours are present, which boxes arrive, and for each client
its own story of who is alive (per-client equivocation), with the evidence (views, edge
lists) the server forwards. Corrupt clients are real clients whose held shares the
server reads. :meth:`WireServer.recover` then tries to compute the victim's input from
everything the server got and reports the error of its best reconstruction against the
truth, whether or not the attack "worked": a refusal is backed by an error at chance.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from secagg import SecAggConfig, attestation, crypto, shamir
from secagg.attestation import Status
from secagg.client import SecAggClient
from secagg.context import RoundContext
from secagg.encoding import FixedPointEncoder
from secagg.errors import SecAggError, ShamirError
from secagg.graph import Graph
from secagg.messages import (
    SERVER_ID,
    AdvertiseKeys,
    Attestations,
    DeliveryEntry,
    Expect,
    Header,
    MaskedInput,
    MsgType,
    NeighbourEntry,
    NeighbourKeys,
    ShareDelivery,
    ShareKeys,
    ShareKind,
    StatusList,
    UnmaskShares,
    ViewReport,
    decode,
    encode,
)
from secagg.prg import apply_masks
from secagg.roundspec import (
    mask_sign,
    pairwise_mask_term,
    pairwise_seed,
    round_graph,
    self_mask_term,
    session_graph_seed,
)
from secagg.simulate import Provisioning

Vector = npt.NDArray[np.float64]
Stories = Mapping[int, frozenset[int]]  # client -> the set of clients it is told are alive


@dataclass
class AttackOutcome:
    """What the server got: its best reconstruction of the victim's input and its error.

    ``recovered`` is set when the reconstruction equals the victim's input within the
    encoding's rounding; ``error`` is the max-abs error of the best reconstruction
    either way, next to ``chance_error``, the error of guessing the clip range's centre.
    """

    recovered: Vector | None
    error: float = float("inf")
    chance_error: float = float("nan")
    refused_by: str | None = None
    details: dict[str, object] = field(default_factory=dict)

    @property
    def succeeded(self) -> bool:
        """True when the server computed the victim's input."""
        return self.recovered is not None


ClientFactory = Callable[..., SecAggClient]


class WireServer:
    """A malicious server over real clients (``client_factory`` builds them).

    ``corrupt`` clients are honest code whose held shares the server reads (they collude
    and give away both kinds of every share they hold).
    """

    def __init__(
        self,
        config: SecAggConfig,
        inputs: npt.ArrayLike,
        *,
        round_index: int = 0,
        extra: Mapping[int, bytes] | None = None,
        corrupt: Iterable[int] = (),
        client_factory: ClientFactory = SecAggClient,
        provisioning: Provisioning | None = None,
        client_config: SecAggConfig | None = None,
    ) -> None:
        self.cfg = config
        self.inputs = np.asarray(inputs, dtype=np.float64)
        n, d = self.inputs.shape
        self.n, self.d = n, d
        self.round_index = round_index
        self.session = os.urandom(16)
        self.ctx = RoundContext(self.session, round_index)
        self.prov = provisioning or (Provisioning.make(config) if config.active else None)
        self.graph: Graph = (
            self.prov.registry.ring(config.neighbours)
            if self.prov is not None and config.active
            else round_graph(config, session_graph_seed(self.ctx))
        )
        self.corrupt = frozenset(corrupt)
        self.errors: dict[int, SecAggError] = {}
        made = client_config or config
        self.clients: dict[int, SecAggClient] = {}
        for c in range(n):
            try:
                cl = client_factory(
                    made,
                    c,
                    session_id=self.session,
                    round_index=round_index,
                    dimension=d,
                    trust=self.prov.trust.get(c) if self.prov is not None else None,
                    extra_context=(extra or {}).get(c, b""),
                )
            except SecAggError as exc:  # a client that refuses the session outright
                self.errors[c] = exc
                continue
            cl.set_input(self.inputs[c])
            self.clients[c] = cl
        self.expect = self._expect()
        self.ads: dict[int, AdvertiseKeys] = {}
        self.dealings: dict[int, ShareKeys] = {}
        self.masked: dict[int, MaskedInput] = {}
        self.views: dict[int, ViewReport] = {}
        self.released: dict[tuple[int, ShareKind], dict[int, bytes]] = {}
        self.kept: dict[int, dict[int, tuple[bytes, bytes]]] = {}  # corrupt -> held shares
        # the neighbour list the server gives each client (the graph's, unless it lies)
        self.lists: dict[int, tuple[int, ...]] = {c: self.graph.neighbours(c) for c in range(n)}

    def _expect(self) -> Expect:
        g = self.graph
        return Expect(
            self.session,
            self.round_index,
            self.n,
            self.cfg.encoding.ring,
            self.d,
            g.degree,
            len(g.window(0, attestation.attester_radius(g))),
            0,
        )

    # -- talking to clients ------------------------------------------------------------

    def header(self, round_index: int | None = None, session: bytes | None = None) -> Header:
        """A server header: this round's, or a forged one for another round or session."""
        return Header(
            session or self.session,
            self.round_index if round_index is None else round_index,
            SERVER_ID,
        )

    def send(self, c: int, msg: object) -> Any:
        """Deliver ``msg`` (a message or raw bytes) to client ``c``; its decoded reply, or
        ``None`` if it aborted (the error is kept in ``errors``)."""
        cl = self.clients.get(c)
        if cl is None or cl.aborted:
            return None
        data = msg if isinstance(msg, bytes) else encode(msg)  # type: ignore[arg-type]
        try:
            reply = cl.handle(data)
        except SecAggError as exc:
            self.errors[c] = exc
            return None
        finally:
            if c in self.corrupt and cl.st.held:
                self.kept[c] = dict(cl.st.held)
        return decode(reply, self.expect, tuple(MsgType)) if reply else None

    # -- the honest steps, with the server's choices -------------------------------------

    def advertise(self) -> dict[int, AdvertiseKeys]:
        """Every client's key advertisement."""
        for c, cl in self.clients.items():
            ad = decode(cl.advertise(), self.expect, tuple(MsgType))
            if isinstance(ad, AdvertiseKeys):
                self.ads[c] = ad
        return self.ads

    def neighbour_keys(self, c: int, absent: frozenset[int] = frozenset()) -> NeighbourKeys:
        """What the server relays to ``c`` for its list, with ``absent`` marked absent; a
        corrupt neighbour MACs its keys for ``c`` if it did not already (the server holds
        its keys)."""
        entries = []
        for v in self.lists[c]:
            ad = self.ads.get(v)
            if ad is None or v in absent:
                entries.append(NeighbourEntry(v, False))
            else:
                entries.append(
                    NeighbourEntry(
                        v, True, ad.channel_public, ad.mask_public, self._advert_tag(v, c)
                    )
                )
        return NeighbourKeys(self.header(), tuple(entries))

    def _advert_tag(self, v: int, c: int) -> bytes:
        tag = dict(self.ads[v].tags).get(c, b"")
        if tag or v not in self.corrupt or self.prov is None:
            return tag
        ad = self.ads[v]
        b = attestation.Binding(self.ctx, self.prov.registry.digest, b"")
        body = b.payload("advert", v, c, ad.channel_public + ad.mask_public)
        return attestation.tag(self.prov.trust[v].keyring.key(c), body)

    def share(self, absent: Mapping[int, frozenset[int]] | None = None) -> dict[int, ShareKeys]:
        """Send each client its neighbours' keys; collect the share boxes."""
        for c in self.clients:
            m = self.send(c, self.neighbour_keys(c, (absent or {}).get(c, frozenset())))
            if isinstance(m, ShareKeys):
                self.dealings[c] = m
        return self.dealings

    def mutual(self, a: int, b: int) -> bool:
        """Whether a and b sent each other a box."""
        da, db = self.dealings.get(a), self.dealings.get(b)
        return da is not None and db is not None and b in dict(da.boxes) and a in dict(db.boxes)

    def deliver(self) -> dict[int, MaskedInput]:
        """Deliver the boxes of mutual pairs; collect the masked inputs."""
        for c in list(self.dealings):
            entries = []
            for v in self.lists[c]:
                if v not in self.ads:
                    continue
                if not self.mutual(c, v):
                    entries.append(DeliveryEntry(v, False))
                    continue
                box = dict(self.dealings[v].boxes)[c]
                leaf = next(lf for lf in self.dealings[v].leaves if lf[0] == c)
                entries.append(DeliveryEntry(v, True, box, leaf[1], leaf[2]))
            m = self.send(c, ShareDelivery(self.header(), tuple(entries)))
            if isinstance(m, MaskedInput):
                self.masked[c] = m
        return self.masked

    def to_masked_inputs(self) -> dict[int, MaskedInput]:
        """Run the round honestly until every client has sent its masked input."""
        self.advertise()
        self.share()
        return self.deliver()

    # -- stories: per-client claims of who is alive --------------------------------------

    def status_of(self, c: int, v: int, alive: frozenset[int]) -> Status:
        """What ``c`` is told about neighbour ``v`` under the story ``alive``."""
        if not self.mutual(c, v):
            return Status.ABSENT
        return Status.ALIVE if v in alive else Status.DROPPED

    def order(self, c: int) -> tuple[int, ...]:
        """The order of ``c``'s statuses: canonical on the registry graph, else its list."""
        cl = self.clients.get(c)
        if self.cfg.active and cl is not None and cl.graph is not None:
            return attestation.view_clients(self.graph, c)
        return self.lists[c]

    def statuses(self, c: int, alive: frozenset[int]) -> bytes:
        """``c``'s packed statuses under ``alive``."""
        return attestation.pack_statuses([self.status_of(c, v, alive) for v in self.order(c)])

    def tell(self, stories: Stories) -> dict[int, Any]:
        """Send each client its statuses; the replies (views when active, shares hbc)."""
        out = {}
        for c, alive in stories.items():
            m = self.send(c, StatusList(self.header(), self.statuses(c, alive)))
            out[c] = m
            if isinstance(m, ViewReport):
                self.views[c] = m
            elif isinstance(m, UnmaskShares):
                self._take_shares(c, m)
        return out

    def attestations(
        self, c: int, stories: Stories, hide: frozenset[int] = frozenset()
    ) -> Attestations:
        """The evidence for ``c``: a base from ``c``'s own story, every view and edge list
        it can use (in full where it differs from the base), minus ``hide``."""
        g = self.graph
        story = stories[c]
        positions = attestation.base_positions(g, c, attestation.base_radius(g))
        base = [self._global(v, story) for v in (g.at(int(q)) for q in positions)]
        edges = []
        for o in g.neighbours(c):
            m = self.masked.get(o)
            tag = dict(m.tags).get(c) if m is not None else None
            if tag is None or o in hide:
                continue
            derived = attestation.pack_bits(
                [self._global(v, story) != Status.ABSENT for v in attestation.view_clients(g, o)]
            )
            edges.append((o, b"" if m.edges == derived else m.edges, tag))  # type: ignore[union-attr]
        views = []
        for w in g.window(c, attestation.attester_radius(g)):
            rep = self.views.get(w)
            tag = dict(rep.tags).get(c) if rep is not None and w != c else None
            if tag is None or w in hide:
                continue
            derived = attestation.pack_statuses(
                [self._global(v, story) for v in attestation.view_clients(g, w)]
            )
            views.append((w, b"" if rep.statuses == derived else rep.statuses, tag))  # type: ignore[union-attr]
        return Attestations(
            self.header(), attestation.pack_statuses(base), tuple(edges), tuple(views)
        )

    def _global(self, v: int, story: frozenset[int]) -> Status:
        if v not in self.dealings:
            return Status.ABSENT
        return Status.ALIVE if v in story else Status.DROPPED

    def unmask(self, stories: Stories, hide: Mapping[int, frozenset[int]] | None = None) -> None:
        """The rest of the round under per-client ``stories``: statuses, (active) views and
        the evidence, then every released share is kept in ``released``."""
        self.tell(stories)
        for c in stories:
            if c in self.views:
                m = self.send(c, self.attestations(c, stories, (hide or {}).get(c, frozenset())))
                if isinstance(m, UnmaskShares):
                    self._take_shares(c, m)

    def _take_shares(self, holder: int, m: UnmaskShares) -> None:
        for owner, kind, raw in m.shares:
            self.released.setdefault((owner, kind), {})[holder] = raw

    # -- the reconstruction ---------------------------------------------------------------

    def shares_of(self, owner: int, kind: ShareKind) -> list[shamir.Share]:
        """Every share of (owner, kind) the server holds: released, plus the corrupt
        clients' (both kinds of everything they hold)."""
        got = dict(self.released.get((owner, kind), {}))
        for c, held in self.kept.items():
            if owner in held:
                got.setdefault(c, held[owner][0 if kind is ShareKind.MASK_KEY else 1])
        return [shamir.Share.from_bytes(raw) for raw in got.values()]

    def rebuild(self, owner: int, kind: ShareKind) -> bytes | None:
        """The secret, if the server holds t shares of it."""
        got = self.shares_of(owner, kind)
        if len(got) < self.cfg.threshold:
            return None
        try:
            return shamir.combine(got[: self.cfg.threshold])
        except ShamirError:
            return None

    def recover(self, victim: int) -> AttackOutcome:
        """Try to compute ``victim``'s input from the server's whole view: its self mask
        if t shares of its seed are held, and each pairwise mask through whichever end's
        mask key is rebuilt (its own, or the neighbour's). The best reconstruction is
        clipped to the input range and scored by its mean absolute error, next to the
        error of a uniformly random guess in that range (``chance_error``)."""
        enc = FixedPointEncoder(self.cfg.encoding, rounding="nearest")
        truth = enc.decode(enc.encode(self.inputs[victim]))
        lo, hi = self.cfg.clip_min, self.cfg.clip_max
        chance = float(np.mean(((truth - lo) ** 2 + (hi - truth) ** 2) / (2 * (hi - lo))))
        details: dict[str, object] = {
            "self_mask_shares": len(self.shares_of(victim, ShareKind.SELF_MASK)),
            "mask_key_shares": len(self.shares_of(victim, ShareKind.MASK_KEY)),
            "threshold": self.cfg.threshold,
            "client_errors": {c: type(e).__name__ for c, e in sorted(self.errors.items())},
        }
        m = self.masked.get(victim)
        if m is None:
            return AttackOutcome(None, float("inf"), chance, _refusal(self.errors), details)
        y = m.vector.copy()
        terms, unknown = self._removable(victim)
        details["masks_left"] = unknown
        ring = self.cfg.encoding.ring
        apply_masks(y, ring, terms, session_id=self.session, round_index=self.round_index)
        ring.reduce(y, out=y)
        guess = np.clip(enc.decode_sum(y, 1), lo, hi)
        error = float(np.mean(np.abs(guess - truth)))
        ok = float(np.max(np.abs(guess - truth))) <= self.cfg.encoding.quantum
        return AttackOutcome(
            guess if ok else None, error, chance, None if ok else _refusal(self.errors), details
        )

    def _removable(self, victim: int) -> tuple[list[Any], int]:
        """The masks of ``victim``'s input the server can compute, and how many it cannot."""
        terms, unknown = [], 0
        seed = self.rebuild(victim, ShareKind.SELF_MASK)
        if seed is not None:
            terms.append(self_mask_term(seed, victim, sign=-1))
        else:
            unknown += 1
        mine = self.rebuild(victim, ShareKind.MASK_KEY)
        for v in self.lists[victim]:
            if not self.mutual(victim, v):
                continue
            key = self._key_pair(victim, v, mine)
            if key is None:
                unknown += 1
                continue
            owner, kp, other = key
            s = pairwise_seed(self.ctx, owner, kp, other, self.ads[other].mask_public)
            terms.append(pairwise_mask_term(s, victim, v, -mask_sign(victim, v)))
        return terms, unknown

    def _key_pair(
        self, victim: int, v: int, mine: bytes | None
    ) -> tuple[int, crypto.AgreementKeyPair, int] | None:
        if mine is not None:
            return victim, crypto.AgreementKeyPair.from_private_bytes(mine), v
        theirs = self.rebuild(v, ShareKind.MASK_KEY)
        if theirs is None and v in self.corrupt:
            k = self.clients[v].st.mask_key  # the server runs the corrupt client
            theirs = k.private_bytes() if k is not None else None
        if theirs is None:
            return None
        return v, crypto.AgreementKeyPair.from_private_bytes(theirs), victim


def _refusal(errors: Mapping[int, SecAggError]) -> str:
    names = sorted({type(e).__name__ for e in errors.values()})
    return ", ".join(names) or "one kind per peer"
