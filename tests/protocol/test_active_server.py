"""An active server that writes raw wire messages (the attack suites' ``WireServer``).
Every misbehaviour ends in a named refusal, an absent neighbour or a withheld share,
never in a released share that unmasks a victim."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from protocols.attacks.wire_server import WireServer
from secagg import SecAggConfig, attestation
from secagg.attestation import Status
from secagg.client import SecAggClient
from secagg.errors import (
    BothSharesRequestedError,
    ConsistencyCheckError,
    NeighbourhoodError,
    ProtocolViolationError,
    ReconstructionError,
    SignatureError,
    UnexpectedMessageError,
    WrongRoundError,
    WrongSessionError,
)
from secagg.messages import (
    Attestations,
    DeliveryEntry,
    NeighbourEntry,
    ShareDelivery,
    ShareKeys,
    ShareKind,
    StatusList,
    UnmaskShares,
)
from secagg.simulate import InProcessRound

GUARANTEES = ("ACT-2", "ACT-3", "ACT-4", "ACT-5", "ACT-6", "ACT-8", "ACT-16")
D = 16


def _server(n: int = 7, setting: str = "active", **kw: object) -> WireServer:
    cfg = SecAggConfig.default(n, setting=setting, rounding="nearest")  # type: ignore[arg-type]
    xs = np.random.default_rng(n).uniform(-1, 1, (n, D))
    return WireServer(cfg, xs, round_index=3, **kw)  # type: ignore[arg-type]


def test_messages_from_another_round_or_session_are_refused() -> None:
    srv = _server()
    srv.advertise()
    nk = srv.neighbour_keys(0)
    assert srv.send(0, dataclasses.replace(nk, header=srv.header(round_index=2))) is None
    assert isinstance(srv.errors[0], WrongRoundError)
    assert srv.send(1, dataclasses.replace(nk, header=srv.header(session=b"S" * 16))) is None
    assert isinstance(srv.errors[1], WrongSessionError)


def test_a_neighbour_list_that_is_not_the_registry_graph_is_refused() -> None:
    """An entry outside the neighbourhood, or one inside it silently missing (neither
    present nor marked absent), is refused before the client deals any share."""
    srv = _server(30)
    srv.advertise()
    nk = srv.neighbour_keys(0)
    outsider = next(c for c in range(30) if c not in srv.graph.holders(0))
    extra = NeighbourEntry(outsider, False)
    bad_lists = [
        tuple(sorted((*nk.entries, extra), key=lambda e: e.client)),  # one too many
        nk.entries[1:],  # one missing
    ]
    for i, entries in enumerate(bad_lists):
        c = (0, 1)[i]
        msg = dataclasses.replace(srv.neighbour_keys(c), entries=entries) if c == 0 else None
        if c == 1:
            e1 = srv.neighbour_keys(1).entries
            msg = dataclasses.replace(srv.neighbour_keys(1), entries=e1[:-1])
        assert srv.send(c, msg) is None
        assert isinstance(srv.errors[c], NeighbourhoodError)
        assert srv.clients[c].held_shares == 0


def test_a_forged_or_replayed_advertisement_counts_as_absent() -> None:
    """Keys the neighbour did not MAC for this client (forged, or from another round)
    are treated as an absent neighbour: no box, no mask, no share of it held."""
    srv = _server(7)
    srv.advertise()
    victim, forged, replayed = 0, 1, 2
    nk = srv.neighbour_keys(victim)
    old = WireServer(srv.cfg, srv.inputs, round_index=2, provisioning=srv.prov)
    old.advertise()
    entries = []
    for e in nk.entries:
        if e.client == forged:
            e = dataclasses.replace(e, channel_public=bytes(32 * [9]))
        if e.client == replayed:
            ad = old.ads[replayed]
            e = dataclasses.replace(
                e,
                channel_public=ad.channel_public,
                mask_public=ad.mask_public,
                tag=dict(ad.tags)[victim],
            )
        entries.append(e)
    m = srv.send(victim, dataclasses.replace(nk, entries=tuple(entries)))
    assert isinstance(m, ShareKeys)
    assert {r for r, _ in m.boxes} == set(srv.graph.neighbours(victim)) - {forged, replayed}
    assert set(srv.clients[victim].withheld) == {forged, replayed}


def test_the_server_drops_an_advertisement_with_a_forged_signature() -> None:
    from secagg.messages import AdvertiseKeys, MsgType, decode, encode

    rnd = InProcessRound(np.zeros((7, 4)), SecAggConfig.default(7, rounding="nearest"))
    ad = decode(rnd.clients[3].advertise(), rnd.server._expect, (MsgType.ADVERTISE_KEYS,))
    assert isinstance(ad, AdvertiseKeys)
    rnd.server.receive(3, encode(dataclasses.replace(ad, signature=bytes(64))))
    assert isinstance(rnd.server.rejected[3], SignatureError)


@pytest.mark.parametrize("setting", ["honest_but_curious", "active"])
def test_copied_keys_are_refused(setting: str) -> None:
    srv = _server(7, setting)
    srv.advertise()
    nk = srv.neighbour_keys(0)
    a, b = nk.entries[0], nk.entries[1]
    b2 = dataclasses.replace(
        b, channel_public=a.channel_public, mask_public=a.mask_public, tag=a.tag
    )
    assert srv.send(0, dataclasses.replace(nk, entries=(a, b2, *nk.entries[2:]))) is None
    assert isinstance(srv.errors[0], ProtocolViolationError)


def test_the_delivery_must_list_every_present_neighbour() -> None:
    srv = _server(7)
    srv.advertise()
    srv.share()
    c = 0
    entries = []
    for v in srv.graph.neighbours(c):
        box = dict(srv.dealings[v].boxes)[c]
        leaf = next(lf for lf in srv.dealings[v].leaves if lf[0] == c)
        entries.append(DeliveryEntry(v, True, box, leaf[1], leaf[2]))
    assert srv.send(c, ShareDelivery(srv.header(), tuple(entries[1:]))) is None
    assert isinstance(srv.errors[c], NeighbourhoodError)


def test_statuses_that_contradict_the_delivery_are_refused() -> None:
    """A neighbour that shared keys cannot become ABSENT; one that did not cannot come
    back ALIVE (the survivor lists only shrink)."""
    for flip in ("shared_to_absent", "absent_to_alive"):
        srv = _server(7)
        srv.advertise()
        srv.share({0: frozenset({1})})  # client 0 is told 1 is absent
        srv.deliver()
        everyone = frozenset(srv.masked)
        order = srv.order(0)
        st = [srv.status_of(0, v, everyone) for v in order]
        i = order.index(1 if flip == "absent_to_alive" else 2)
        st[i] = Status.ALIVE if flip == "absent_to_alive" else Status.ABSENT
        assert srv.send(0, StatusList(srv.header(), attestation.pack_statuses(st))) is None
        assert isinstance(srv.errors[0], NeighbourhoodError)


def test_both_shares_of_one_peer_are_never_released() -> None:
    srv = _server(7)
    srv.to_masked_inputs()
    everyone = frozenset(srv.masked)
    srv.unmask({c: everyone for c in everyone})
    assert all(k is ShareKind.SELF_MASK for _, k in srv.released)
    # ask again, claiming the victim dropped: every client refuses
    srv.tell({c: everyone - {0} for c in everyone if c != 0})
    assert all(isinstance(srv.errors[c], UnexpectedMessageError) for c in everyone if c != 0)
    assert not any(k is ShareKind.MASK_KEY for _, k in srv.released)


def test_guard_refuses_the_second_kind_directly() -> None:
    cl = _server().clients[0]
    cl._guard_release(3, ShareKind.SELF_MASK)
    cl._guard_release(3, ShareKind.SELF_MASK)  # the same kind again is harmless
    with pytest.raises(BothSharesRequestedError):
        cl._guard_release(3, ShareKind.MASK_KEY)


def test_an_attestation_base_that_contradicts_the_own_view_is_refused() -> None:
    srv = _server(7)
    srv.to_masked_inputs()
    everyone = frozenset(srv.masked)
    stories = {c: everyone for c in everyone}
    srv.tell(stories)
    att = srv.attestations(0, {**stories, 0: everyone - {3}})  # a base saying 3 dropped
    assert srv.send(0, att) is None
    assert isinstance(srv.errors[0], ConsistencyCheckError)


def test_a_view_from_outside_the_window_is_refused() -> None:
    n = 40  # k = 6: the window (ring distance k) is 13 of the 40 clients
    cfg = SecAggConfig(
        num_clients=n, threshold=5, neighbours=6, setting="active", rounding="nearest"
    )
    srv = WireServer(cfg, np.zeros((n, D)))
    srv.to_masked_inputs()
    everyone = frozenset(srv.masked)
    srv.tell({c: everyone for c in everyone})
    att = srv.attestations(0, {c: everyone for c in everyone})
    far = next(c for c in range(n) if c not in srv.graph.window(0, srv.graph.degree))
    views = tuple(sorted((*att.views, (far, b"", bytes(16))), key=lambda v: v[0]))
    assert srv.send(0, Attestations(att.header, att.base, att.edges, views)) is None
    assert isinstance(srv.errors[0], NeighbourhoodError)


@pytest.mark.parametrize("bound_in_advert", [True, False])
def test_a_victim_sent_another_model_is_never_in_a_sum(bound_in_advert: bool) -> None:
    """A victim sent another model binds its tags to that model's hash. Bound into its
    advertisement (one-round use), its neighbours cannot verify its keys and leave it
    out; bound later (the pipeline's order), they cannot verify its edge list, so no
    honest holder releases its self-mask share and the round aborts. Either way no sum
    contains an update computed on a model the others did not get."""
    n, victim = 7, 4
    extra = dict.fromkeys(range(n), b"model-B") | {victim: b"model-A"}

    def factory(config: SecAggConfig, cid: int, **kw: object) -> SecAggClient:
        return SecAggClient(config, cid, advert_context=None if bound_in_advert else b"", **kw)  # type: ignore[arg-type]

    rnd = InProcessRound(
        np.random.default_rng(1).uniform(-1, 1, (n, 4)),
        SecAggConfig.default(n, rounding="nearest"),
        extra_context=extra,
        server_extra_context=b"model-B",
        client_factory=factory,
    )
    if bound_in_advert:
        assert victim not in rnd.run().survivors
        return
    with pytest.raises(ReconstructionError):
        rnd.run()
    assert all(victim in cl.withheld for c, cl in rnd.clients.items() if c != victim)


def test_split_stories_in_a_sparse_graph_release_one_kind_only() -> None:
    """SecAgg+ at n = 30: half the victim's holders told it is alive, half that it
    dropped; the certification lets at most one kind out, and the input stays hidden."""
    srv = _server(30)
    srv.to_masked_inputs()
    victim = 0
    everyone = frozenset(srv.masked)
    stories = dict.fromkeys(everyone, everyone)
    for i, h in enumerate(srv.graph.neighbours(victim)):
        stories[h] = everyone if i % 2 else everyone - {victim}
    srv.unmask(stories)
    out = srv.recover(victim)
    t = srv.cfg.threshold
    assert min(out.details["self_mask_shares"], out.details["mask_key_shares"]) < t  # type: ignore[type-var]
    assert not out.succeeded and out.error >= 0.9 * out.chance_error
    assert UnmaskShares  # the released shares were parsed as such
