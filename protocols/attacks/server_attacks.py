"""Protocol-level attacks by a malicious server: multi-round differencing, Sybil clients
and the dropout lie.

Each function runs the attack against the real client code and returns what the server
ends up with, so the tests (``tests/attacks/``) and ``secagg audit`` share one
implementation. An attack "recovers" the victim when the server can compute its input.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from protocols.errors import RepeatedContributionError
from secagg import SecAggConfig, crypto
from secagg.client import SecAggClient
from secagg.errors import SecAggError
from secagg.messages import (
    SERVER_ID,
    AdvertiseKeys,
    ConsistencySignature,
    Expect,
    Header,
    KeyDirectory,
    KeyEntry,
    MaskedInput,
    MsgType,
    ShareDelivery,
    ShareKeys,
    ShareKind,
    SignatureList,
    SurvivorList,
    UnmaskShares,
    decode,
    encode,
)
from secagg.simulate import InProcessRound, simulate

Vector = npt.NDArray[np.float64]


@dataclass
class AttackOutcome:
    """What the server got: the victim's input if recovered, else ``None``, and why."""

    recovered: Vector | None
    refused_by: str | None = None
    details: dict[str, object] = field(default_factory=dict)

    @property
    def succeeded(self) -> bool:
        """True when the server computed the victim's input."""
        return self.recovered is not None


# --- multi-round differencing (So et al., AAAI 2023) -----------------------------------


def differencing_attack(
    updates: list[Vector], victim: int, *, guarded: bool, fresh_noise: bool = False
) -> AttackOutcome:
    """Aggregate twice with survivor sets that differ by ``victim``; subtract the sums.

    ``guarded=False`` runs two bare :func:`secagg.simulate` rounds; ``guarded=True`` goes
    through :class:`protocols.privacy_layer.PrivacyLayer` (one model hash for both), whose
    :class:`~protocols.differencing.ContributionGuard` must refuse the repeat.
    """
    n = len(updates)
    rest = [c for c in range(n) if c != victim]
    if not guarded:
        cfg = SecAggConfig.default(n, rounding="nearest")
        full = simulate(updates, cfg).sum
        cfg2 = SecAggConfig.default(n - 1, rounding="nearest")
        part = simulate([updates[c] for c in rest], cfg2).sum
        return AttackOutcome(np.asarray(full - part, dtype=np.float64))
    from protocols.privacy_layer import PrivacyLayer

    layer = PrivacyLayer(backend="masking", backend_params={"setting": "active"})
    model_hash = b"\x07" * 32
    ups = dict(enumerate(updates))
    first = layer.aggregate(ups, model_hash=model_hash, fresh_noise=fresh_noise)
    try:
        second = layer.aggregate(
            {c: ups[c] for c in rest}, model_hash=model_hash, fresh_noise=fresh_noise
        )
    except RepeatedContributionError as exc:
        return AttackOutcome(None, type(exc).__name__, {"repeat_clients": exc.clients})
    assert first.update is not None and second.update is not None
    diff = first.update * first.total_weight - second.update * second.total_weight
    return AttackOutcome(np.asarray(diff, dtype=np.float64))


# --- Sybil clients ------------------------------------------------------------------------


def sybil_attack(
    victim_input: Vector, n: int = 7, *, trusted_registry: bool, setting: str = "active"
) -> AttackOutcome:
    """One real client (the victim, id 0) and ``n - 1`` fake identities run by the server.

    The fake clients sign with keys the server made. With a trusted registry the victim
    verifies them against the registered keys of the real (absent) clients and aborts;
    when the server hands out the registry it lists its own keys, the round completes and
    the server subtracts the inputs it chose for its Sybils.
    """
    cfg = SecAggConfig.default(n, setting=setting, graph="complete", rounding="nearest")  # type: ignore[arg-type]
    sybil_inputs = np.zeros((n - 1, victim_input.shape[0]))
    rnd = InProcessRound([victim_input, *sybil_inputs], cfg)
    if cfg.active:
        fake = {c: crypto.SigningKey.generate() for c in range(1, n)}
        puppets = [rnd.server.registry] + [rnd.clients[c].registry for c in fake]
        if not trusted_registry:
            puppets.append(rnd.clients[0].registry)
        for c, key in fake.items():
            rnd.clients[c].identity = key
            for registry in puppets:
                registry[c] = key.public_bytes
    try:
        res = rnd.run()
    except SecAggError as exc:
        return AttackOutcome(None, type(exc).__name__)
    if 0 not in res.survivors:
        why = sorted({type(e).__name__ for e in rnd.client_errors}) or ["victim not aggregated"]
        return AttackOutcome(None, ", ".join(why), {"survivors": list(res.survivors)})
    recovered = np.asarray(res.sum, dtype=np.float64) - sybil_inputs.sum(axis=0)
    return AttackOutcome(recovered, None, {"survivors": list(res.survivors)})


# --- dropout lie --------------------------------------------------------------------------


class WireServer:
    """A malicious server writing raw wire messages to honest clients.

    Shared by the attack suites and ``secagg audit``: it runs the honest steps on demand
    (:meth:`advertise`, :meth:`directory`, :meth:`to_masked_inputs`) and lets the caller
    write any message it likes (:meth:`send`, any :meth:`header`).
    """

    def __init__(
        self,
        n: int = 7,
        dimension: int = 8,
        seed: int = 0,
        *,
        setting: str = "active",
        round_index: int = 0,
        extra: dict[int, bytes] | None = None,
    ) -> None:
        self.n = n
        self.round_index = round_index
        self.cfg = SecAggConfig.default(
            n,
            setting=setting,  # type: ignore[arg-type]
            graph="complete",
            rounding="nearest",
        )
        self.session = os.urandom(16)
        self.ids = {c: crypto.SigningKey.generate() for c in range(n)}
        self.registry = {c: k.public_bytes for c, k in self.ids.items()}
        rng = np.random.default_rng(seed)
        self.inputs = rng.uniform(-1, 1, (n, dimension))
        self.clients = {
            c: SecAggClient(
                self.cfg,
                c,
                session_id=self.session,
                round_index=round_index,
                dimension=dimension,
                identity=self.ids[c],
                registry=self.registry,
                extra_context=(extra or {}).get(c, b""),
            )
            for c in range(n)
        }
        for c, cl in self.clients.items():
            cl.set_input(self.inputs[c])
        self.expect = Expect(self.session, round_index, n, self.cfg.encoding.ring, dimension)
        self.errors: dict[int, SecAggError] = {}

    def header(self, round_index: int | None = None, session: bytes | None = None) -> Header:
        """A server header: this round's, or a forged one for another round or session."""
        return Header(
            session or self.session,
            self.round_index if round_index is None else round_index,
            SERVER_ID,
        )

    def send(self, c: int, msg: object) -> object:
        """Deliver ``msg`` (a message or raw bytes) to client ``c``; its decoded reply, or
        ``None`` if it aborted (the error is kept in ``errors``)."""
        data = msg if isinstance(msg, bytes) else encode(msg)  # type: ignore[arg-type]
        try:
            reply = self.clients[c].handle(data)
        except SecAggError as exc:
            self.errors[c] = exc
            return None
        return decode(reply, self.expect, tuple(MsgType)) if reply else None

    def advertise(self) -> dict[int, AdvertiseKeys]:
        """Every client's key advertisement."""
        ads = {}
        for c, cl in self.clients.items():
            ad = decode(cl.advertise(), self.expect, tuple(MsgType))
            assert isinstance(ad, AdvertiseKeys)
            ads[c] = ad
        return ads

    def directory(self, ads: dict[int, AdvertiseKeys]) -> KeyDirectory:
        """The key directory an honest server would relay for ``ads``."""
        entries = tuple(
            KeyEntry(c, a.channel_public, a.mask_public, a.signature)
            for c, a in sorted(ads.items())
        )
        return KeyDirectory(self.header(), entries)

    def to_masked_inputs(self) -> tuple[KeyDirectory, dict[int, MaskedInput]]:
        """Run the round honestly until every client has sent its masked input; return
        the key directory relayed and the masked inputs received."""
        d = self.directory(self.advertise())
        shares = {c: self.send(c, d) for c in self.clients}
        boxes: dict[int, list[tuple[int, bytes]]] = {c: [] for c in self.clients}
        for s, m in shares.items():
            assert isinstance(m, ShareKeys)
            for r, b in m.boxes:
                boxes[r].append((s, b))
        everyone = tuple(self.clients)
        masked: dict[int, MaskedInput] = {}
        for c in self.clients:
            m = self.send(c, ShareDelivery(self.header(), everyone, tuple(boxes[c])))
            if isinstance(m, MaskedInput):
                masked[c] = m
        return d, masked

    def unmask(self, lists: dict[int, tuple[int, ...]]) -> dict[tuple[int, ShareKind], int]:
        """Send each client its survivor list, forward the signatures, count released shares."""
        sigs = {c: self.send(c, SurvivorList(self.header(), lst)) for c, lst in lists.items()}
        entries = tuple(
            sorted((c, m.signature) for c, m in sigs.items() if isinstance(m, ConsistencySignature))
        )
        released: dict[tuple[int, ShareKind], int] = {}
        for c in lists:
            if c in self.errors:
                continue
            m = self.send(c, SignatureList(self.header(), entries))
            if isinstance(m, UnmaskShares):
                for owner, kind, _ in m.shares:
                    released[(owner, kind)] = released.get((owner, kind), 0) + 1
        return released


def dropout_lie(victim: int = 0, *, split: bool, ask_twice: bool) -> AttackOutcome:
    """Claim that a live ``victim`` dropped after it sent its masked input.

    The server needs ``t`` shares of the victim's self-mask seed (asked as if it survived)
    *and* ``t`` of its mask key (as if it dropped). ``split``: tell half the clients each
    story at once; ``ask_twice``: first ask with the victim alive, then again claiming it
    dropped. The victim counts as recovered when both kinds reach the threshold.
    """
    srv = WireServer()
    srv.to_masked_inputs()
    others = [c for c in srv.clients if c != victim]
    alive = tuple(srv.clients)
    dropped = tuple(others)
    if split:
        half = len(others) // 2
        lists = {c: alive for c in others[:half]} | {c: dropped for c in others[half:]}
        released = srv.unmask(lists)
    else:
        released = srv.unmask(
            dict.fromkeys(others, alive) if ask_twice else dict.fromkeys(others, dropped)
        )
        if ask_twice:
            for key, count in srv.unmask(dict.fromkeys(others, dropped)).items():
                released[key] = released.get(key, 0) + count
    t = srv.cfg.threshold
    self_mask = released.get((victim, ShareKind.SELF_MASK), 0)
    mask_key = released.get((victim, ShareKind.MASK_KEY), 0)
    details: dict[str, object] = {
        "self_mask_shares": self_mask,
        "mask_key_shares": mask_key,
        "threshold": t,
        "client_errors": {c: type(e).__name__ for c, e in sorted(srv.errors.items())},
    }
    if self_mask >= t and mask_key >= t:
        return AttackOutcome(srv.inputs[victim], None, details)
    refused = sorted({type(e).__name__ for e in srv.errors.values()}) or ["one kind per peer"]
    return AttackOutcome(None, ", ".join(refused), details)
