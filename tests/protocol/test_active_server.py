"""An active server that writes raw wire messages (a test-only malicious server, not the
honest server's API). Every misbehaviour ends in an abort or a refusal, never in a
released share that unmasks a victim."""

from __future__ import annotations

import os

import numpy as np
import pytest

from protocols.attacks.server_attacks import WireServer
from secagg import SecAggConfig, crypto
from secagg.errors import (
    ConsistencyCheckError,
    ProtocolError,
    ProtocolViolationError,
    SignatureError,
    UnexpectedMessageError,
    WrongRoundError,
    WrongSessionError,
)
from secagg.messages import (
    AdvertiseKeys,
    ConsistencySignature,
    KeyDirectory,
    KeyEntry,
    ShareDelivery,
    ShareKind,
    SignatureList,
    SurvivorList,
    UnmaskShares,
)
from secagg.simulate import InProcessRound

N, D = 7, 8


def RawServer(
    setting: str = "active", round_index: int = 3, extra: dict[int, bytes] | None = None
) -> WireServer:
    """The test-only malicious server: the attack suites' ``WireServer`` on N clients."""
    return WireServer(N, D, setting=setting, round_index=round_index, extra=extra)


def _released(replies: dict[int, object]) -> dict[tuple[int, ShareKind], int]:
    count: dict[tuple[int, ShareKind], int] = {}
    for m in replies.values():
        if isinstance(m, UnmaskShares):
            for owner, kind, _ in m.shares:
                count[(owner, kind)] = count.get((owner, kind), 0) + 1
    return count


@pytest.mark.parametrize("split", [3, 4])
def test_different_survivor_lists_to_different_clients(split: int) -> None:
    srv = RawServer()
    srv.to_masked_inputs()
    victim = 0
    full = tuple(range(N))
    without = tuple(c for c in full if c != victim)
    group_a = list(range(1, split))  # told the victim survived
    group_b = list(range(split, N))  # told the victim dropped
    sigs = {}
    for c in group_a:
        sigs[c] = srv.send(c, SurvivorList(srv.header(), full))
    for c in group_b:
        sigs[c] = srv.send(c, SurvivorList(srv.header(), without))
    # the server forwards every signature it got to everybody: each group sees the
    # other group's signatures over a different list and aborts
    entries = tuple(
        sorted((c, m.signature) for c, m in sigs.items() if isinstance(m, ConsistencySignature))
    )
    replies = {c: srv.send(c, SignatureList(srv.header(), entries)) for c in group_a + group_b}
    assert all(isinstance(srv.errors[c], ConsistencyCheckError) for c in group_a + group_b)
    assert _released(replies) == {}
    # forwarding to each group only its own signatures: at most one group reaches t
    # (2t > n), so at most one kind of the victim's shares can ever be released
    srv2 = RawServer()
    srv2.to_masked_inputs()
    sigs = {c: srv2.send(c, SurvivorList(srv2.header(), full)) for c in group_a}
    sigs |= {c: srv2.send(c, SurvivorList(srv2.header(), without)) for c in group_b}
    replies = {}
    for group in (group_a, group_b):
        entries = tuple(sorted((c, sigs[c].signature) for c in group))  # type: ignore[union-attr]
        for c in group:
            replies[c] = srv2.send(c, SignatureList(srv2.header(), entries))
    t = srv2.cfg.threshold
    rel = _released(replies)
    assert not (
        rel.get((victim, ShareKind.SELF_MASK), 0) >= t - 1
        and rel.get((victim, ShareKind.MASK_KEY), 0) >= t - 1
    )


def test_both_shares_of_one_peer_are_never_released() -> None:
    srv = RawServer()
    srv.to_masked_inputs()
    full = tuple(range(N))
    sigs = {c: srv.send(c, SurvivorList(srv.header(), full)) for c in range(N)}
    entries = tuple(sorted((c, m.signature) for c, m in sigs.items()))  # type: ignore[union-attr]
    first = {c: srv.send(c, SignatureList(srv.header(), entries)) for c in range(N)}
    assert all(isinstance(m, UnmaskShares) for m in first.values())
    # now ask again, claiming the victim dropped: every client refuses
    without = tuple(range(1, N))
    second = {c: srv.send(c, SurvivorList(srv.header(), without)) for c in range(1, N)}
    assert all(m is None for m in second.values())
    assert all(isinstance(srv.errors[c], UnexpectedMessageError) for c in range(1, N))
    assert all(k is ShareKind.SELF_MASK for _, k in _released(first))


def test_guard_refuses_the_second_kind_directly() -> None:
    from secagg.errors import BothSharesRequestedError

    cl = RawServer().clients[0]
    cl._guard_release(3, ShareKind.SELF_MASK)
    cl._guard_release(3, ShareKind.SELF_MASK)  # the same kind again is harmless
    with pytest.raises(BothSharesRequestedError):
        cl._guard_release(3, ShareKind.MASK_KEY)


def test_survivor_list_must_shrink() -> None:
    srv = RawServer()
    # shared-keys list with an unknown client: not a subset of the key directory
    ads = srv.advertise()
    d = KeyDirectory(
        srv.header(),
        tuple(
            KeyEntry(c, a.channel_public, a.mask_public, a.signature)
            for c, a in sorted(ads.items())
            if c != 6
        ),
    )
    for c in range(6):
        srv.send(c, d)
    srv.send(0, ShareDelivery(srv.header(), tuple(range(N)), ()))
    assert isinstance(srv.errors[0], ProtocolViolationError)


def test_survivors_not_subset_of_shared() -> None:
    srv = RawServer()
    ads = srv.advertise()
    d = srv.directory(ads)
    shares = {c: srv.send(c, d) for c in range(N)}
    boxes: dict[int, list[tuple[int, bytes]]] = {c: [] for c in range(N)}
    for s, m in shares.items():
        for r, b in m.boxes:  # type: ignore[union-attr]
            if s != 6:
                boxes[r].append((s, b))
    u2 = tuple(range(6))
    for c in range(6):
        srv.send(c, ShareDelivery(srv.header(), u2, tuple(x for x in boxes[c])))
    srv.send(0, SurvivorList(srv.header(), tuple(range(N))))  # 6 never shared keys
    assert isinstance(srv.errors[0], ProtocolViolationError)


def test_forged_advertisement_is_refused() -> None:
    srv = RawServer()
    ads = srv.advertise()
    fake = crypto.AgreementKeyPair.generate().public_bytes
    a = ads[3]
    ads[3] = AdvertiseKeys(a.header, a.channel_public, fake, a.signature)  # server swaps a key
    for c in range(N):
        srv.send(c, srv.directory(ads))
    assert all(
        isinstance(srv.errors[c], (SignatureError, ProtocolViolationError)) for c in range(N)
    )
    # an unsigned entry is refused too
    srv = RawServer()
    ads = srv.advertise()
    a = ads[2]
    ads[2] = AdvertiseKeys(a.header, a.channel_public, a.mask_public, b"")
    srv.send(0, srv.directory(ads))
    assert isinstance(srv.errors[0], SignatureError)


def test_replayed_advertisement_from_an_earlier_round_is_refused() -> None:
    old = RawServer(round_index=2)
    old_ads = old.advertise()
    srv = RawServer(round_index=3)
    srv.ids, srv.registry = old.ids, old.registry  # same identities across rounds
    for c, cl in srv.clients.items():
        cl.registry = dict(old.registry)
        cl.identity = old.ids[c]
    ads = srv.advertise()
    ads[4] = AdvertiseKeys(
        ads[4].header, old_ads[4].channel_public, old_ads[4].mask_public, old_ads[4].signature
    )
    srv.send(0, srv.directory(ads))
    assert isinstance(srv.errors[0], SignatureError)


def test_copied_keys_are_refused_in_the_honest_but_curious_setting() -> None:
    srv = RawServer(setting="honest_but_curious")
    ads = srv.advertise()
    a, b = ads[1], ads[5]
    ads[5] = AdvertiseKeys(b.header, b.channel_public, a.mask_public, b"")  # Sybil copies 1's key
    srv.send(0, srv.directory(ads))
    assert isinstance(srv.errors[0], ProtocolViolationError)


def test_messages_from_another_round_or_session_are_refused() -> None:
    srv = RawServer()
    ads = srv.advertise()
    d = srv.directory(ads)
    srv.send(0, KeyDirectory(srv.header(round_index=2), d.entries))
    assert isinstance(srv.errors[0], WrongRoundError)
    srv.send(1, KeyDirectory(srv.header(session=os.urandom(16)), d.entries))
    assert isinstance(srv.errors[1], WrongSessionError)
    srv.send(2, SurvivorList(srv.header(), tuple(range(N))))  # a later step's message now
    assert isinstance(srv.errors[2], UnexpectedMessageError)
    srv.send(3, b"\x80\x04garbage-not-a-message")
    assert isinstance(srv.errors[3], ProtocolError)
    # an aborted client stays aborted
    srv.send(0, d)
    assert isinstance(srv.errors[0], UnexpectedMessageError)


def test_model_inconsistency_is_detected_through_the_signed_context() -> None:
    """Pasquini et al.: a server that sends a different model to some clients. Every client
    signs the hash of the model it received in its key advertisement and again in the
    consistency check, so a client with another model cannot be aggregated with the rest."""
    xs = np.random.default_rng(0).uniform(-1, 1, (N, D))
    cfg = SecAggConfig.default(N, graph="complete")
    honest = {c: b"model:aaaa" for c in range(N)}
    victim_gets = dict(honest) | {0: b"model:bbbb"}  # a crafted model for the victim
    rnd = InProcessRound(xs, cfg, extra_context=victim_gets, server_extra_context=b"model:aaaa")
    res = rnd.run()  # the honest server drops the victim's mismatching advertisement
    assert 0 not in res.survivors
    # a cheating server that forwards every advertisement makes every client abort
    srv = RawServer(extra=victim_gets)
    d = srv.directory(srv.advertise())
    replies = {c: srv.send(c, d) for c in range(N)}
    assert all(r is None for r in replies.values())
    assert all(isinstance(srv.errors[c], SignatureError) for c in range(N))
    # the honest case goes through
    InProcessRound(xs, cfg, extra_context=honest, server_extra_context=b"model:aaaa").run()
