"""Protocol-level attacks by a malicious server, end to end against the real clients.

Each attack drives real :class:`~secagg.client.SecAggClient` objects message by message
through :class:`~protocols.attacks.wire_server.WireServer`, then tries to compute the
victim's input and reports the error of its best reconstruction. Each also runs, with
the same attack code, against a deliberately weakened client (``weakened=True``): the
control that shows the attack has teeth. The tests (``tests/attacks/``) and
``secagg audit`` share these functions.

* :func:`dropout_lie`: the server says a live victim dropped, to some holders or all,
  once or twice, to collect both kinds of its shares.
* :func:`policy_downgrade`: the server announces weaker parameters (honest-but-curious,
  t = 2) than the clients' policy fixes.
* :func:`forced_neighbourhood`: the server hands a victim a neighbourhood made of
  corrupt clients.
* :func:`sybil_attack`: the server runs fake clients around one real victim.
* :func:`differencing_attack`: two aggregates whose survivor sets differ by the victim.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from protocols.attacks.wire_server import AttackOutcome, WireServer
from protocols.errors import RepeatedContributionError
from secagg import SecAggConfig
from secagg.attestation import Status
from secagg.client import SecAggClient
from secagg.client_state import ClientPhase
from secagg.errors import SecAggError
from secagg.messages import Attestations, MsgType, NeighbourKeys, ShareKind
from secagg.policy import SecurityPolicy
from secagg.registry import Trust
from secagg.simulate import InProcessRound, Provisioning, simulate

Vector = npt.NDArray[np.float64]
__all__ = [
    "AttackOutcome",
    "NoAttestationClient",
    "TrustingClient",
    "WireServer",
    "client_differencing_attack",
    "differencing_attack",
    "dropout_lie",
    "forced_neighbourhood",
    "isolation_attack",
    "policy_downgrade",
    "sybil_attack",
]


# --- deliberately weakened clients (the controls) ----------------------------------------


class NoAttestationClient(SecAggClient):
    """Weakened: releases shares on the server's statuses alone, without the evidence
    that other honest holders were told the same and without its dropout budget (the
    pre-fix consistency gap: a check the server could satisfy per client)."""

    def _check_own_budget(self) -> None:
        pass

    def _on_attestations(self, msg: Attestations) -> bytes:
        return self._unmask_honest_but_curious()


class AnswersTwiceClient(NoAttestationClient):
    """Weakened further: answers a second status list as well (no one-answer rule)."""

    _EXPECTED: ClassVar[dict[ClientPhase, tuple[MsgType, ...]]] = {
        **SecAggClient._EXPECTED,
        ClientPhase.DONE: (MsgType.STATUS_LIST, MsgType.ABORT),
        ClientPhase.REPORTED: (MsgType.ATTESTATIONS, MsgType.STATUS_LIST, MsgType.ABORT),
    }

    def _forget_shares(self) -> None:
        pass

    def _guard_release(self, owner: int, kind: ShareKind) -> None:
        pass

    def _dispatch(self, data: bytes) -> bytes | None:
        if (
            len(data) > 5
            and data[5] == MsgType.STATUS_LIST
            and self.phase is not ClientPhase.MASKED
        ):
            self.st.phase = ClientPhase.MASKED  # forget it answered
        return super()._dispatch(data)


class TrustingClient(SecAggClient):
    """Weakened: takes its neighbourhood from the server instead of the registry graph
    and, having no graph, no evidence either (the pre-fix design, where the server shaped
    the graph and a client trusted its survivor list)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.graph = None
        self._expect = self._expectations()


class CorruptClient(TrustingClient):
    """A client the server runs: it accepts whatever neighbours the server lists."""

    def _accept_keys(self, msg: NeighbourKeys) -> dict[int, tuple[bytes, bytes]]:
        return {e.client: (e.channel_public, e.mask_public) for e in msg.entries if e.present}


def _config(n: int, setting: str = "active", **kw: Any) -> SecAggConfig:
    return SecAggConfig.default(n, setting=setting, rounding="nearest", **kw)  # type: ignore[arg-type]


def _inputs(n: int, d: int, seed: int) -> Vector:
    return np.random.default_rng(seed).uniform(-1, 1, (n, d))


# --- the dropout lie ------------------------------------------------------------------------


def dropout_lie(
    victim: int = 0,
    *,
    split: bool,
    ask_twice: bool,
    n: int = 7,
    weakened: bool = False,
    seed: int = 0,
    graph: str | None = "complete",
) -> AttackOutcome:
    """Claim that a live ``victim`` dropped after it sent its masked input.

    The server needs ``t`` shares of the victim's self-mask seed (asked as if it survived)
    *and* ``t`` of its mask key (as if it dropped). ``split``: tell half the holders each
    story at once; ``ask_twice``: first ask with the victim alive, then again claiming it
    dropped. ``weakened``: for ``split``, clients that took the server's parameters
    (honest-but-curious, t = 2: no certification, a threshold two stories can share);
    for ``ask_twice``, clients without the one-answer rule. ``graph``: the session's
    graph (``None``: the default for n).
    """
    if split and weakened:
        srv = _downgraded_server(n, seed)
    else:
        factory = AnswersTwiceClient if weakened else SecAggClient
        srv = WireServer(_config(n, graph=graph), _inputs(n, 64, seed), client_factory=factory)
    srv.to_masked_inputs()
    everyone = frozenset(srv.masked)
    without = everyone - {victim}
    others = sorted(c for c in everyone if c != victim)
    if split:  # alternate the stories around the victim's neighbourhood
        stories = dict.fromkeys(everyone, everyone)
        for i, c in enumerate(srv.lists[victim]):
            stories[c] = everyone if i % 2 else without
        srv.unmask(stories)
        return srv.recover(victim)
    first = everyone if ask_twice else without
    srv.unmask({c: first for c in everyone})
    if ask_twice:  # the same clients, asked again with the other story
        srv.unmask({c: without for c in others})
    return srv.recover(victim)


# --- isolation by equivocation --------------------------------------------------------------


def isolation_attack(*, weakened: bool, n: int = 7, victim: int = 0) -> AttackOutcome:
    """Tell the victim everyone is alive, and tell everyone else that the victim is
    alive but every other client dropped: each holder then releases the victim's
    self-mask share and its other neighbours' mask-key shares, and the server strips
    every mask off the victim's input (each pairwise mask through the neighbour's key).

    Fixed: the victim's neighbours are certified dropped by their holders' views, so
    the side rule withholds the victim's self mask (and each holder's own dropout
    budget refuses such a story). Weakened: clients without attestation or budget.
    """
    cfg = _config(n)
    factory = NoAttestationClient if weakened else SecAggClient
    srv = WireServer(cfg, _inputs(n, 64, 3), client_factory=factory)
    srv.to_masked_inputs()
    everyone = frozenset(srv.masked)
    stories = {c: frozenset({victim, c}) for c in everyone}
    stories[victim] = everyone
    srv.unmask(stories)
    return srv.recover(victim)


# --- parameters the server chooses -------------------------------------------------------


def _downgraded_server(n: int, seed: int, *, weakened: bool = True) -> WireServer:
    """A server announcing honest-but-curious parameters with t = 2, k = 4 to clients
    provisioned for the default active policy; ``weakened`` clients take them (policy
    off), the others refuse the session."""
    weak = SecAggConfig(
        num_clients=n, threshold=2, neighbours=4, setting="honest_but_curious", rounding="nearest"
    )
    prov = Provisioning.make(_config(n), SecurityPolicy())  # what the clients hold

    def factory(config: SecAggConfig, cid: int, **kw: Any) -> SecAggClient:
        trust: Trust | None = kw.pop("trust", None)
        if weakened or trust is None:
            return SecAggClient(config, cid, **kw)  # policy off: whatever the server says
        return SecAggClient(config, cid, policy=trust.registry.policy, **kw)

    return WireServer(weak, _inputs(n, 64, seed), client_factory=factory, provisioning=prov)


def policy_downgrade(*, weakened: bool, n: int = 20, victim: int = 0) -> AttackOutcome:
    """Weaker parameters than the clients' policy (honest-but-curious, t = 2, k = 4), then
    split stories among the victim's holders (zero colluders needed at t = 2). Fixed:
    every client refuses the session before any key leaves it. Weakened: clients that
    take the server's parameters (policy off)."""
    srv = _downgraded_server(n, 1, weakened=weakened)
    if len(srv.clients) < n:
        return AttackOutcome(None, float("inf"), 1.0, _names(srv), {"refused": len(srv.errors)})
    srv.to_masked_inputs()
    everyone = frozenset(srv.masked)
    stories = {c: everyone for c in everyone}
    for h in srv.graph.neighbours(victim)[2:]:
        stories[h] = everyone - {victim}  # these release the victim's mask-key shares
    srv.unmask(stories)
    return srv.recover(victim)


def forced_neighbourhood(*, weakened: bool, victim: int = 0, n: int = 12) -> AttackOutcome:
    """The server tells the victim its neighbours are t corrupt clients of its choice,
    so the corrupt holders alone rebuild both of its secrets and unmask its input.

    The corrupt clients sit anywhere but next to the victim in the registry's graph (the
    corruption does not depend on the graph). Fixed: the victim checks its neighbour
    list against that graph and refuses (``NeighbourhoodError``) before it deals.
    Weakened: a victim that takes its neighbourhood from the server (the pre-fix design,
    where the server shaped the graph) deals to the corrupt clients.
    """
    cfg = SecAggConfig(
        num_clients=n, threshold=4, neighbours=4, setting="active", rounding="nearest"
    )
    prov = Provisioning.make(cfg)
    graph = prov.registry.ring(cfg.neighbours)
    corrupt = frozenset([c for c in range(n) if c not in graph.holders(victim)][: cfg.threshold])

    def factory(config: SecAggConfig, cid: int, **kw: Any) -> SecAggClient:
        cls = CorruptClient if cid in corrupt else (TrustingClient if weakened else SecAggClient)
        return cls(config, cid, **kw)

    srv = WireServer(
        cfg, _inputs(n, 64, 2), client_factory=factory, provisioning=prov, corrupt=corrupt
    )
    srv.lists[victim] = tuple(sorted(corrupt))
    for c in corrupt:
        srv.lists[c] = tuple(sorted((corrupt - {c}) | {victim}))
    srv.advertise()
    srv.share()
    srv.deliver()
    everyone = frozenset(srv.masked)
    srv.unmask({c: everyone for c in everyone})
    out = srv.recover(victim)
    out.details["corrupt"] = sorted(corrupt)
    return out


def _names(srv: WireServer) -> str:
    return ", ".join(sorted({type(e).__name__ for e in srv.errors.values()})) or "none"


# --- Sybil clients ----------------------------------------------------------------------------


def sybil_attack(
    victim_input: Vector,
    n: int = 7,
    *,
    trusted_registry: bool,
    graph: str | None = "complete",
) -> AttackOutcome:
    """One real client (the victim, id 0) and ``n - 1`` identities the server runs.

    With a trusted registry the fake clients cannot MAC their keys for the victim under
    the registered identities, so the victim sees no neighbour and refuses; when the
    server hands out the registry it lists its own keys, the round completes and the
    server subtracts the inputs it chose for its Sybils.
    """
    cfg = _config(n, graph=graph)
    xs = np.zeros((n, victim_input.shape[0]))
    xs[0] = victim_input
    prov = Provisioning.make(cfg)
    if not trusted_registry:  # the server provisions the victim with its own registry
        rnd = InProcessRound(xs, cfg, provisioning=prov)
    else:
        fake = Provisioning.make(cfg)  # keys the server made, not the registered ones
        sybils = {c: fake.trust[c] for c in range(1, n)}
        rnd = InProcessRound(xs, cfg, provisioning=prov)
        for c in sybils:
            cl = rnd.clients[c]
            cl.trust = sybils[c]  # right index, wrong keys: its MACs do not verify
    try:
        res = rnd.run()
    except SecAggError as exc:
        return AttackOutcome(
            None, float("inf"), float(np.max(np.abs(victim_input))), type(exc).__name__
        )
    recovered = np.asarray(res.sum, dtype=np.float64) - xs[1:].sum(axis=0)
    err = float(np.max(np.abs(recovered - victim_input)))
    return AttackOutcome(
        recovered,
        err,
        float(np.max(np.abs(victim_input))),
        None,
        {"survivors": list(res.survivors)},
    )


# --- multi-round differencing (So et al., AAAI 2023) -----------------------------------


def differencing_attack(
    updates: list[Vector],
    victim: int,
    *,
    guarded: bool,
    fresh_noise: bool = False,
    backend: str = "masking",
    setting: str = "active",
) -> AttackOutcome:
    """Aggregate twice with survivor sets that differ by ``victim``; subtract the sums.

    ``guarded=False`` runs two bare :func:`secagg.simulate` rounds; ``guarded=True`` goes
    through :class:`protocols.privacy_layer.PrivacyLayer` with ``backend`` (one model
    hash for both), whose :class:`~protocols.differencing.ContributionGuard` must refuse
    the repeat.
    """
    n = len(updates)
    rest = [c for c in range(n) if c != victim]
    truth = np.asarray(updates[victim], dtype=np.float64)
    if not guarded:
        full = simulate(updates, _config(n)).sum
        part = simulate([updates[c] for c in rest], _config(n - 1)).sum
        diff = np.asarray(full - part, dtype=np.float64)
        return AttackOutcome(
            diff, float(np.max(np.abs(diff - truth))), float(np.max(np.abs(truth)))
        )
    from protocols.privacy_layer import PrivacyLayer

    params: dict[str, Any] = {"setting": setting} if backend == "masking" else {}
    if backend == "paillier":
        params = {"insecure_test_key": True}  # a fast key: the guard is what is attacked
    layer = PrivacyLayer(backend=backend, backend_params=params)
    model_hash = b"\x07" * 32
    ups = dict(enumerate(updates))
    first = layer.aggregate(ups, model_hash=model_hash, fresh_noise=fresh_noise)
    try:
        second = layer.aggregate(
            {c: ups[c] for c in rest}, model_hash=model_hash, fresh_noise=fresh_noise
        )
    except RepeatedContributionError as exc:
        return AttackOutcome(
            None,
            float("inf"),
            float(np.max(np.abs(truth))),
            type(exc).__name__,
            {"repeat_clients": exc.clients},
        )
    if first.update is None or second.update is None:
        return AttackOutcome(None, float("inf"), float(np.max(np.abs(truth))), "no aggregate")
    diff = np.asarray(
        first.update * first.total_weight - second.update * second.total_weight, dtype=np.float64
    )
    return AttackOutcome(diff, float(np.max(np.abs(diff - truth))), float(np.max(np.abs(truth))))


def _local_update(data: tuple[Vector, Vector], model: Vector, lr: float = 0.5) -> Vector:
    """One least-squares gradient step on a client's data: the update depends on the
    model smoothly, so a nearly equal model gives a nearly equal update."""
    x, y = data
    out: Vector = -lr * x.T @ (x @ model - y) / len(y)
    return out


def client_differencing_attack(
    guard: str,
    *,
    n: int = 5,
    d: int = 16,
    victim: int = 2,
    epsilon: float = 1e-9,
    second: str = "nudge",
    graph: str | None = None,
) -> AttackOutcome:
    """Two rounds the server runs against clients that guard themselves: round 0 at
    model M with everyone, round 1 at M + epsilon (``guard="hash"`` and ``"client*"``) or
    at M itself (``"none"``) without the victim; the difference of the two secure sums
    is the victim's update if the others contribute again.

    ``guard``: ``"client"`` (the fixed :class:`~protocols.client_guard.ClientGuard`, a
    repeat refused), ``"client_noise"`` (a repeat allowed with fresh Gaussian noise of
    std 1 x clip, charged to each client's own ledger), ``"hash"`` (the weakened control:
    a per-model-hash rule, bypassed by M + epsilon), ``"none"`` (no client rule).

    ``second`` is the server's round-1 model: ``"nudge"`` M + epsilon; ``"near_zero"``
    round 0 at 1e-6 w and round 1 at 1.5e-6 w (a relative change of 50%, tiny in
    absolute terms); ``"dead_feature"`` M moved by 10 along a feature no client's data
    uses: a functionally identical model far away in parameter space, which no
    parameter-space rule can see (the stated limit: only DP noise bounds it).
    """
    import dp
    from protocols.client_guard import (
        ClientGuard,
        ContributionPolicy,
        ContributionRefusedError,
        ModelHashGuard,
    )

    rng = np.random.default_rng(7)
    data = [(rng.normal(size=(32, d)), rng.normal(size=32)) for _ in range(n)]
    model = rng.normal(size=d) * 0.1
    if second == "dead_feature":
        for x, _ in data:
            x[:, 0] = 0.0  # a feature (say, an always-absent token) no client has
    if second == "near_zero":
        model = 1e-6 * rng.normal(size=d)
    noisy = guard == "client_noise"
    guards: list[Any] = []
    ledgers = [dp.PrivacyLedger.in_memory(delta=1e-5) for _ in range(n)]
    for c in range(n):
        if guard.startswith("client"):
            pol = ContributionPolicy(repeat_noise_multiplier=1.0 if noisy else 0.0)
            guards.append(ClientGuard(pol, ledger=ledgers[c]))
        else:
            guards.append(ModelHashGuard())
    if second == "near_zero":
        moved = 1.5 * model
    elif second == "dead_feature":
        moved = model + 10.0 * np.eye(d)[0]
    elif second == "nudge":
        moved = model if guard == "none" else model + epsilon * rng.normal(size=d)
    else:
        raise ValueError(f"second {second!r}; use nudge, near_zero or dead_feature")
    sums: list[Vector] = []
    refusals: list[str] = []
    truth = np.zeros(d)
    rounds = ((model, range(n)), (moved, [c for c in range(n) if c != victim]))
    for counter, (m, who) in enumerate(rounds):
        ups = []
        for c in who:
            try:
                adm = guards[c].admit(counter, m) if guard != "none" else None
            except ContributionRefusedError as exc:
                refusals.append(f"client {c}: {exc}")
                continue
            u = _local_update(data[c], m)
            vec = guards[c].prepare(u, adm) if adm is not None else dp.clip_l2(u, 1.0)[0]
            if counter == 0 and c == victim:
                truth = dp.clip_l2(u, 1.0)[0]
            ups.append(vec)
        if len(ups) < 2:  # secure aggregation needs two inputs: the server gets nothing
            break
        sums.append(np.asarray(simulate(np.array(ups), _config(len(ups), graph=graph)).sum))
    chance = float(np.max(np.abs(truth)))
    charged = [len(led.entries) for led in ledgers]
    details: dict[str, object] = {"refusals": len(refusals), "client_ledger_rounds": charged}
    if len(sums) < 2:
        return AttackOutcome(None, float("inf"), chance, "ContributionRefusedError", details)
    diff = np.asarray(sums[0] - sums[1], dtype=np.float64)
    err = float(np.max(np.abs(diff - truth)))
    # recovered: within the fixed-point error and the M + epsilon drift (<< the update)
    recovered = diff if err < 1e-3 * max(chance, 1e-12) else None
    return AttackOutcome(recovered, err, chance, None, details)


_ = Status  # re-exported for attack scripts that build stories by hand


def outcome_table() -> list[tuple[str, AttackOutcome, AttackOutcome | None]]:
    """Every attack above against the fixed client and its weakened control (the table in
    ``docs/attacks.md``); ``None`` where no control applies."""
    return [
        (
            "dropout lie, split stories",
            dropout_lie(split=True, ask_twice=False),
            dropout_lie(split=True, ask_twice=False, weakened=True),
        ),
        (
            "dropout lie, ask twice",
            dropout_lie(split=False, ask_twice=True),
            dropout_lie(split=False, ask_twice=True, weakened=True),
        ),
        ("dropout lie, consistent", dropout_lie(split=False, ask_twice=False), None),
        ("isolation, n = 7", isolation_attack(weakened=False), isolation_attack(weakened=True)),
        (
            "isolation, n = 12",
            isolation_attack(weakened=False, n=12),
            isolation_attack(weakened=True, n=12),
        ),
        ("policy downgrade", policy_downgrade(weakened=False), policy_downgrade(weakened=True)),
        (
            "forced neighbourhood",
            forced_neighbourhood(weakened=False),
            forced_neighbourhood(weakened=True),
        ),
    ]


def _describe(out: AttackOutcome) -> str:
    shares = (
        f"{out.details.get('self_mask_shares', 0)} / {out.details.get('mask_key_shares', 0)}"
        f" (t = {out.details.get('threshold', '-')})"
    )
    verdict = "RECOVERED" if out.recovered is not None else "hidden"
    error = f"error {out.error:.3g} vs chance {out.chance_error:.3g}"
    return f"{verdict}, {error}, shares {shares}, stopped by {out.refused_by or '-'}"


def main() -> None:
    """Print :func:`outcome_table` (``python -m protocols.attacks.server_attacks``)."""
    for name, fixed, control in outcome_table():
        print(f"{name}\n  fixed:    {_describe(fixed)}")
        if control is not None:
            print(f"  weakened: {_describe(control)}")


if __name__ == "__main__":
    main()
