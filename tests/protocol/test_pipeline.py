"""The pipelined multi-round mode (secagg/pipeline.py): schedule, exact sums under
failures at every exchange, persistence across restarts, and the cross-round rules."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from secagg import attestation
from secagg.attestation import Status
from secagg.client_records import ClientRecords
from secagg.config import SecAggConfig
from secagg.errors import MessageFormatError, ProtocolViolationError, WrongSessionError
from secagg.messages import (
    SERVER_ID,
    Expect,
    Header,
    MsgType,
    ShareKind,
    StatusList,
    UnmaskShares,
    decode,
    encode,
)
from secagg.pipeline import (
    TO_CLIENT,
    TO_SERVER,
    Bundle,
    ExchangeKind,
    PipelineClient,
    PipelineServer,
    RoundClosedError,
    Schedule,
    SessionDescriptor,
    StateLostError,
)
from secagg.pipeline_sim import PipelineRun, plaintext_sums, run_pipeline
from secagg.policy import SecurityPolicy

N, D, R = 7, 24, 3
SETTINGS = ("honest_but_curious", "active")


def inputs(r: int, c: int) -> np.ndarray:
    return np.random.default_rng(1000 * r + c).uniform(-1, 1, D)


def config(setting: str, n: int = N) -> SecAggConfig:
    return SecAggConfig.default(n, setting=setting)  # type: ignore[arg-type]


def ctx(r: int) -> bytes:
    return bytes([r % 256]) * 32


def check_exact(run: PipelineRun, rounds: int = R) -> None:
    """Every round finished with the exact sum over its survivors, or aborted cleanly."""
    assert set(run.ends) == set(range(1, rounds + 1))
    want = plaintext_sums(run, inputs, D)
    quantum = config("active").encoding.quantum
    for r, end in run.ends.items():
        if end.outcome is None:
            assert end.error is not None
            continue
        err = np.abs(end.outcome.sum - want[r]).max()
        assert err <= len(end.outcome.survivors) * quantum


# -- schedule ------------------------------------------------------------------------


@pytest.mark.parametrize("active", [False, True])
def test_schedule_costs_two_or_three_exchanges_per_round(active: bool) -> None:
    for rounds in (1, 2, 5, 40):
        s = Schedule(rounds, active)
        assert s.num_exchanges == 2 + (3 if active else 2) * rounds
        kinds = [s.kind(g) for g in range(s.num_exchanges)]
        assert kinds.count(ExchangeKind.TRAIN) == rounds
        assert kinds.count(ExchangeKind.UNMASK) == rounds
        assert kinds.count(ExchangeKind.CHECK) == (rounds if active else 0)
        for r in range(1, rounds + 1):
            steps = s.steps(r)
            assert steps == sorted(set(steps))  # one step per exchange, in order
            assert len(steps) == (5 if active else 4)
            assert s.kind(steps[-3 if active else -2]) is ExchangeKind.TRAIN
            assert s.train_round(steps[-1]) == r  # round r unmasks within training round r
            for g in steps:
                assert r in s.collecting(g)
            assert r in s.starts(steps[0])


def test_schedule_rejects_bad_rounds() -> None:
    with pytest.raises(ValueError):
        Schedule(0, False)
    with pytest.raises(ValueError):
        Schedule(True, False)  # type: ignore[arg-type]


# -- exact sums ----------------------------------------------------------------------


@pytest.mark.parametrize("setting", SETTINGS)
def test_no_failures_every_round_sums_everyone(setting: str) -> None:
    run = run_pipeline(inputs, config(setting), rounds=R, dimension=D, contexts=ctx)
    check_exact(run)
    for end in run.ends.values():
        assert end.outcome is not None and end.outcome.survivors == tuple(range(N))
    assert run.exchanges == 2 + (3 if setting == "active" else 2) * R
    assert not run.client_errors


@pytest.mark.parametrize("setting", SETTINGS)
@pytest.mark.parametrize("how", ["offline", "reply_lost"])
def test_one_failure_at_every_exchange_keeps_sums_exact(setting: str, how: str) -> None:
    cfg = config(setting)
    total = Schedule(R, cfg.active).num_exchanges
    for g in range(total):
        run = run_pipeline(inputs, cfg, rounds=R, dimension=D, contexts=ctx, **{how: {3: {g}}})
        check_exact(run)
        missed = [r for r, e in run.ends.items() if e.outcome and 3 not in e.outcome.survivors]
        # the failed exchange costs at most the rounds in flight; the client rejoins later
        assert len(missed) <= 2, (g, missed)
        assert all(e.outcome is not None for e in run.ends.values())


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.data(),
    setting=st.sampled_from(SETTINGS),
)
def test_random_failure_schedules_sum_exactly_or_abort_cleanly(
    data: st.DataObject, setting: str
) -> None:
    cfg = config(setting)
    total = Schedule(R, cfg.active).num_exchanges
    fail = st.dictionaries(
        st.integers(0, N - 1), st.sets(st.integers(0, total - 1), max_size=3), max_size=4
    )
    off, lost = data.draw(fail), data.draw(fail)
    run = run_pipeline(
        inputs, cfg, rounds=R, dimension=D, contexts=ctx, offline=off, reply_lost=lost
    )
    check_exact(run)
    for end in run.ends.values():
        if end.outcome is not None:
            assert len(end.outcome.survivors) >= cfg.threshold


@pytest.mark.parametrize("setting", SETTINGS)
def test_too_many_failures_abort_that_round_and_the_next_runs(setting: str) -> None:
    cfg = config(setting)
    s = Schedule(R, cfg.active)
    g = s.steps(2)[2]  # round 2's TRAIN exchange: masked inputs of round 2
    off = {c: {g} for c in range(N - cfg.threshold + 1)}
    run = run_pipeline(inputs, cfg, rounds=R, dimension=D, contexts=ctx, offline=off)
    check_exact(run)
    assert run.ends[2].outcome is None and run.ends[2].error is not None
    assert not run.ends[2].released_shares  # aborted before any unmasking share
    assert run.ends[1].outcome is not None
    # round 3's key sharing rode on the same exchange; it may abort too, never wrongly


def test_restarting_clients_between_exchanges_changes_nothing() -> None:
    cfg = config("active")
    a = run_pipeline(inputs, cfg, rounds=2, dimension=D, contexts=ctx, persist=True)
    b = run_pipeline(inputs, cfg, rounds=2, dimension=D, contexts=ctx, persist=False)
    for r in (1, 2):
        ea, eb = a.ends[r].outcome, b.ends[r].outcome
        assert ea is not None and eb is not None
        assert ea.survivors == eb.survivors
        assert np.allclose(ea.sum, eb.sum, atol=N * cfg.encoding.quantum)


@pytest.mark.parametrize("setting", SETTINGS)
def test_lost_state_refuses_rounds_in_flight_and_rejoins(setting: str) -> None:
    cfg = config(setting)
    s = Schedule(4, cfg.active)
    g = s.steps(1)[-1]  # client 2 restarts empty just before round 1's unmasking
    run = run_pipeline(inputs, cfg, rounds=4, dimension=D, contexts=ctx, state_lost={2: g})
    check_exact(run, 4)
    refusals = [e for gg, c, e in run.client_errors if c == 2 and gg == g]
    assert refusals and all(isinstance(e, RoundClosedError) for e in refusals)
    end4 = run.ends[4].outcome
    assert end4 is not None and 2 in end4.survivors  # back through the key advertisement


def policy_of(cfg: SecAggConfig) -> SecurityPolicy:
    return SecurityPolicy.fixed(cfg)


def test_a_client_without_state_refuses_a_non_bootstrap_bundle() -> None:
    cfg = config("honest_but_curious")
    srv = PipelineServer(cfg, rounds=2, dimension=D)
    first = srv.outgoing()
    for c, b in first.items():
        srv.receive(c, PipelineClient(policy=policy_of(cfg)).handle(b))
    srv.close()
    bundle = srv.outgoing()[0]  # boot_shares: no descriptor, parts for round 1
    with pytest.raises(StateLostError):
        PipelineClient(policy=policy_of(cfg)).handle(bundle)


# -- cross-round rules ----------------------------------------------------------------


def _expect(session: bytes, r: int, cfg: SecAggConfig, d: int = D) -> Expect:
    return Expect(session, r, cfg.num_clients, cfg.encoding.ring, d, cfg.degree, cfg.num_clients, 0)


def _unmask_shares(reply: bytes, r: int, cfg: SecAggConfig) -> list[tuple[int, ShareKind]]:
    b = Bundle.decode(reply, TO_SERVER, 1 << 24)
    out = []
    for rnd, part in b.parts:
        if rnd == r and part[5] == MsgType.UNMASK_SHARES:
            msg = decode(part, _expect(b.session_id, r, cfg), (MsgType.UNMASK_SHARES,))
            assert isinstance(msg, UnmaskShares)
            out += [(owner, kind) for owner, kind, _ in msg.shares]
    return out


@pytest.mark.parametrize("setting", SETTINGS)
def test_a_round_r_request_inside_round_r_plus_1_is_refused(setting: str) -> None:
    """The server got the victim's round-1 self-mask shares, then asks for its round-1
    mask-key shares (victim now 'dropped') inside round 2's TRAIN bundle: every client
    refuses, and the round-2 work in the same bundle goes on."""
    cfg = config(setting)
    s = Schedule(R, cfg.active)
    victim = 0
    unmask1, train2 = s.steps(1)[-1], s.steps(2)[2]
    stash: dict[int, bytes] = {}
    released: dict[int, list[tuple[int, ShareKind]]] = {}

    def tamper(g: int, c: int, bundle: bytes) -> bytes:
        b = Bundle.decode(bundle, TO_CLIENT, 1 << 24)
        if g == unmask1:
            stash[c] = dict(b.parts)[1]  # round 1's unmasking request, as answered
        if g == train2 and c != victim and c in stash:
            # a new round-1 request that calls the victim dropped: its mask-key share
            ask = encode(StatusList(Header(b.session_id, 1, SERVER_ID), _dropped(cfg, c, victim)))
            parts = (*b.parts, (1, ask))
            return Bundle(
                b.direction, b.session_id, g, c, parts, b.starts, (1, *b.live_rounds), b.descriptor
            ).encode()
        return bundle

    orig_receive = PipelineServer.receive

    def spy(self: PipelineServer, client: int, data: bytes) -> None:
        if self.exchange == train2:
            released[client] = _unmask_shares(data, 1, cfg)
        orig_receive(self, client, data)

    PipelineServer.receive = spy  # type: ignore[method-assign]
    try:
        run = run_pipeline(inputs, cfg, rounds=R, dimension=D, contexts=ctx, tamper=tamper)
    finally:
        PipelineServer.receive = orig_receive  # type: ignore[method-assign]
    check_exact(run)
    assert all(not shares for shares in released.values())  # nothing about round 1 again
    refused = [e for g, c, e in run.client_errors if g == train2]
    assert len(refused) == N - 1 and all(isinstance(e, RoundClosedError) for e in refused)


def _dropped(cfg: SecAggConfig, c: int, victim: int) -> bytes:
    """Client c's statuses on the complete graph with only ``victim`` dropped."""
    order = [v for v in range(cfg.num_clients) if v != c]
    return attestation.pack_statuses(
        [Status.DROPPED if v == victim else Status.ALIVE for v in order]
    )


def test_a_round_r_message_labelled_as_round_r_plus_1_is_refused() -> None:
    cfg = config("honest_but_curious")
    s = Schedule(R, cfg.active)
    unmask1, unmask2 = s.steps(1)[-1], s.steps(2)[-1]
    stash: dict[int, bytes] = {}

    def tamper(g: int, c: int, bundle: bytes) -> bytes:
        b = Bundle.decode(bundle, TO_CLIENT, 1 << 24)
        if g == unmask1:
            stash[c] = dict(b.parts)[1]
        if g == unmask2 and c in stash:  # round 1's list where round 2's belongs
            parts = tuple((r, stash[c] if r == 2 else m) for r, m in b.parts)
            return Bundle(
                b.direction, b.session_id, g, c, parts, b.starts, b.live_rounds, b.descriptor
            ).encode()
        return bundle

    run = run_pipeline(inputs, cfg, rounds=R, dimension=D, tamper=tamper)
    assert run.ends[1].outcome is not None
    assert run.ends[2].outcome is None  # nobody answered round 2: it aborts, nothing leaks
    bad = [e for g, c, e in run.client_errors if g == unmask2]
    assert bad and all("round" in str(e) for e in bad)


def test_rebuilding_a_dropped_clients_key_in_one_round_does_not_unmask_another() -> None:
    """Victim survives round 1 (its self-mask seed is rebuilt) and drops in round 2 (its
    mask key is rebuilt). Round 1's masked input stays masked: round 1's pairwise masks
    come from round 1's own key pair."""
    from protocols.attacks.distinguishers import uniformity_pvalue
    from secagg.crypto import AgreementKeyPair
    from secagg.prg import apply_masks
    from secagg.roundspec import mask_sign, pairwise_mask_term, pairwise_seed, self_mask_term

    cfg = config("honest_but_curious")
    s = Schedule(R, cfg.active)
    victim, d = 0, 4096
    big = lambda r, c: np.random.default_rng(r * 7 + c).uniform(-1, 1, d)  # noqa: E731
    srv = PipelineServer(cfg, rounds=R, dimension=d, record_transcript=True, keep_finished=True)
    run = run_pipeline(
        big, cfg, rounds=R, dimension=d, offline={victim: {s.steps(2)[2]}}, server=srv
    )
    r1, r2 = srv.rounds[1], srv.rounds[2]
    o1, o2 = r1.result(), r2.result()
    assert victim in o1.survivors and victim not in o2.survivors
    seed1 = o1.rebuilt_self_mask_seeds[victim]
    key2 = AgreementKeyPair.from_private_bytes(o2.rebuilt_mask_keys[victim])
    assert r1.transcript is not None
    y = next(
        rec.payload for rec in r1.transcript if rec.sender == victim and rec.kind == "masked_input"
    )
    from secagg.messages import AdvertiseKeys, MaskedInput

    e1 = _expect(srv.descriptor.session_id, 1, cfg, d)
    msg = decode(y, e1, (MsgType.MASKED_INPUT,))
    assert isinstance(msg, MaskedInput)
    ads = {}
    for rec in r1.transcript:  # round 1's public keys, from what the server received
        if rec.kind == "advertise_keys":
            ad = decode(rec.payload, e1, (MsgType.ADVERTISE_KEYS,))
            assert isinstance(ad, AdvertiseKeys)
            ads[rec.sender] = ad.mask_public
    v = msg.vector.copy()
    terms = [self_mask_term(seed1, victim, sign=-1)]
    for peer in r1.graph.neighbours(victim):
        # the attacker's best guess: round 2's key with round 1's directory
        guess = pairwise_seed(r1.ctx, victim, key2, peer, ads[peer])
        terms.append(pairwise_mask_term(guess, victim, peer, -mask_sign(victim, peer)))
    apply_masks(v, cfg.encoding.ring, terms, session_id=srv.descriptor.session_id, round_index=1)
    cfg.encoding.ring.reduce(v, out=v)
    got = r1.encoder.decode_sum(v, 1)
    assert np.abs(got - big(1, victim)).max() > 0.5
    assert uniformity_pvalue(v, cfg.bits) > 1e-4
    assert run.ends[3].outcome is not None


# -- bad input ----------------------------------------------------------------------


def test_garbage_reply_drops_that_client_only() -> None:
    cfg = config("honest_but_curious")
    srv = PipelineServer(cfg, rounds=1, dimension=D)
    clients = {c: PipelineClient(policy=policy_of(cfg)) for c in range(N)}
    while not srv.done:
        for c, b in srv.outgoing().items():
            tr = srv.train_round
            reply = clients[c].handle(b, inputs={tr: inputs(tr, c)} if tr else {})
            srv.receive(c, b"\x00garbage" if (c == 4 and srv.kind is ExchangeKind.TRAIN) else reply)
        ends = srv.close()
    assert ends and ends[0].outcome is not None and 4 not in ends[0].outcome.survivors
    assert any(isinstance(e, MessageFormatError) for e in srv.rejected.values())


def test_bundle_and_descriptor_decoders_refuse_bad_input() -> None:
    good = Bundle(TO_CLIENT, b"s" * 16, 0, 1, ((1, b"x"),), (1,), (1,), b"").encode()
    assert Bundle.decode(good, TO_CLIENT, 10).parts == ((1, b"x"),)
    for bad in (b"", b"SAGP", good[:-1], good + b"\x00", b"XXXX" + good[4:]):
        with pytest.raises(MessageFormatError):
            Bundle.decode(bad, TO_CLIENT, 10)
    with pytest.raises(MessageFormatError):
        Bundle.decode(good, TO_SERVER, 10)  # wrong direction
    dup = Bundle(TO_CLIENT, b"s" * 16, 0, 1, ((1, b"x"), (1, b"y"))).encode()
    with pytest.raises(MessageFormatError):
        Bundle.decode(dup, TO_CLIENT, 10)
    desc = SessionDescriptor(b"s" * 16, config("active"), 3, D)
    assert SessionDescriptor.from_bytes(desc.to_bytes()) == desc
    for bad in (b"{", b"[]", b'{"a":1}', desc.to_bytes().replace(b'"rounds":3', b'"rounds":0')):
        with pytest.raises((MessageFormatError, ValueError)):
            SessionDescriptor.from_bytes(bad)


def test_client_refuses_a_changed_session_or_a_replayed_exchange() -> None:
    cfg = config("honest_but_curious")
    srv = PipelineServer(cfg, rounds=2, dimension=D)
    records = ClientRecords()
    client = PipelineClient(policy=policy_of(cfg), records=records)
    first = srv.outgoing()[0]
    reply = client.handle(first)
    assert client.handle(first) == reply  # redelivery: same bytes, nothing new
    other = PipelineServer(cfg, rounds=2, dimension=D)
    with pytest.raises((WrongSessionError, ProtocolViolationError)):
        client.handle(other.outgoing()[0])
    loaded = PipelineClient.load(client.save(), policy=policy_of(cfg), records=records)
    assert loaded.handle(first) == reply


@pytest.mark.parametrize("group_b", [1, 3, 5])
def test_inconsistent_statuses_in_a_pipelined_round_never_unmask_the_victim(
    group_b: int,
) -> None:
    """Active setting, round 1 of a pipelined session: the server tells group B the victim
    dropped and group A it survived. Group B's evidence contradicts its own view, so it
    refuses; group A releases only the victim's self-mask shares: never t of both."""
    cfg = config("active")
    s = Schedule(R, cfg.active)
    victim, r = 0, 1
    check, unmask = s.steps(r)[3], s.steps(r)[4]
    b_group = set(range(N - group_b, N))
    released: list[tuple[int, ShareKind]] = []

    def tamper(g: int, c: int, bundle: bytes) -> bytes:
        b = Bundle.decode(bundle, TO_CLIENT, 1 << 24)
        parts = dict(b.parts)
        if g == check and c in b_group and r in parts:
            parts[r] = encode(
                StatusList(Header(b.session_id, r, SERVER_ID), _view_dropped(cfg, c, victim))
            )
        return Bundle(
            b.direction,
            b.session_id,
            g,
            c,
            tuple(sorted(parts.items())),
            b.starts,
            b.live_rounds,
            b.descriptor,
        ).encode()

    orig_receive = PipelineServer.receive

    def spy(self: PipelineServer, client: int, data: bytes) -> None:
        if self.exchange == unmask:
            released.extend(_unmask_shares(data, r, cfg))
        orig_receive(self, client, data)

    PipelineServer.receive = spy  # type: ignore[method-assign]
    try:
        run = run_pipeline(inputs, cfg, rounds=R, dimension=D, contexts=ctx, tamper=tamper)
    finally:
        PipelineServer.receive = orig_receive  # type: ignore[method-assign]
    seeds = sum(1 for owner, kind in released if owner == victim and kind is ShareKind.SELF_MASK)
    keys = sum(1 for owner, kind in released if owner == victim and kind is ShareKind.MASK_KEY)
    assert not (seeds >= cfg.threshold and keys >= cfg.threshold), (seeds, keys)
    assert keys == 0  # B's view was never certified
    if N - group_b >= cfg.threshold:  # A (with the victim) can certify it alive
        assert seeds > 0  # the attack got answers: the refusal is the protocol's
    else:
        assert seeds == 0  # too few views agree: nothing of the victim is released
    assert run.ends[2].outcome is not None and run.ends[3].outcome is not None


def _view_dropped(cfg: SecAggConfig, c: int, victim: int) -> bytes:
    """Client c's statuses (canonical order, complete graph) with ``victim`` dropped."""
    from secagg.graph import Graph

    g = Graph(cfg.num_clients, None, bytes(32))
    order = attestation.view_clients(g, c)
    return attestation.pack_statuses(
        [Status.DROPPED if v == victim else Status.ALIVE for v in order]
    )
