"""Every party of a pipelined session in one process: the driver tests and benches use.

It moves bundles between one :class:`PipelineServer` and n :class:`PipelineClient`\\ s
exactly as a deployment would, including what Flower does to clients between
exchanges: with ``persist=True`` (the default) every client is saved to bytes and
loaded back after each exchange, as a fresh ClientApp process would. Failures are given
per exchange: ``offline`` (the client neither receives nor answers), ``reply_lost``
(it processes the bundle, the reply never arrives: it dropped right after acting) and
``state_lost`` (from that exchange on it runs with empty state, like a restarted node).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from secagg.client_records import ClientRecords
from secagg.config import SecAggConfig
from secagg.errors import ConfigError, SecAggError
from secagg.pipeline import ExchangeKind, PipelineClient, PipelineServer, RoundEnd
from secagg.policy import SecurityPolicy
from secagg.registry import Trust
from secagg.simulate import Provisioning

InputFn = Callable[[int, int], npt.ArrayLike]  # (round, client) -> input vector


@dataclass
class PipelineRun:
    """What a simulated session produced."""

    ends: dict[int, RoundEnd]
    exchanges: int
    kinds: list[str]
    bytes_up: dict[int, int]
    bytes_down: dict[int, int]
    client_errors: list[tuple[int, int, SecAggError]] = field(default_factory=list)
    seconds: float = 0.0
    server: PipelineServer | None = None
    clients: dict[int, PipelineClient] = field(default_factory=dict)


def _schedule(spec: Mapping[int, Iterable[int]] | None) -> dict[int, set[int]]:
    return {int(c): {int(g) for g in gs} for c, gs in (spec or {}).items()}


def run_pipeline(
    inputs: InputFn,
    config: SecAggConfig,
    *,
    rounds: int,
    dimension: int,
    offline: Mapping[int, Iterable[int]] | None = None,
    reply_lost: Mapping[int, Iterable[int]] | None = None,
    state_lost: Mapping[int, int] | None = None,
    contexts: Callable[[int], bytes] | None = None,
    persist: bool = True,
    keep_finished: bool = False,
    server: PipelineServer | None = None,
    tamper: Callable[[int, int, bytes], bytes] | None = None,
    provisioning: Provisioning | None = None,
) -> PipelineRun:
    """Run a whole pipelined session in-process (see the module docs).

    ``contexts(r)`` gives round r's model context (the hash clients sign when active);
    ``tamper(exchange, client, bundle)`` lets a test act as a malicious server by
    rewriting the bytes a client receives.
    """
    n = config.num_clients
    if n < 3:
        raise ConfigError("a pipelined session needs at least 3 clients")
    prov = provisioning or (Provisioning.make(config) if config.active else None)
    policy = None if prov is not None else SecurityPolicy.fixed(config)
    srv = server or PipelineServer(
        config,
        rounds=rounds,
        dimension=dimension,
        registry=prov.registry if prov is not None else None,
        keep_finished=keep_finished,
    )
    records = {c: ClientRecords() for c in range(n)}  # durable: they survive lost state
    off, lost = _schedule(offline), _schedule(reply_lost)
    crash = dict(state_lost or {})
    saved: dict[int, bytes | None] = dict.fromkeys(range(n))
    clients: dict[int, PipelineClient] = {}
    run = PipelineRun({}, 0, [], dict.fromkeys(range(n), 0), dict.fromkeys(range(n), 0))
    t0 = time.perf_counter()
    while not srv.done:
        g = srv.exchange
        kind = srv.kind
        run.kinds.append(kind.value)
        tr = srv.train_round
        ctx: dict[int, bytes] = {}
        if kind is ExchangeKind.TRAIN and tr is not None and contexts is not None:
            ctx[tr] = contexts(tr)
            srv.bind_context(tr, ctx[tr])
        for c, bundle in srv.outgoing().items():
            if g in off.get(c, set()):
                continue
            if tamper is not None:
                bundle = tamper(g, c, bundle)
            run.bytes_down[c] += len(bundle)
            if crash.get(c) == g:
                saved[c] = None
                clients.pop(c, None)
            trust = prov.trust.get(c) if prov is not None else None
            client = _client(c, saved, clients, trust, policy, records[c], persist)
            feed = {tr: inputs(tr, c)} if kind is ExchangeKind.TRAIN and tr is not None else {}
            try:
                reply = client.handle(bundle, inputs=feed, contexts=ctx)
            except SecAggError as exc:  # a bundle the client refuses outright
                run.client_errors.append((g, c, exc))
                continue
            finally:
                if persist:
                    saved[c] = client.save()
                    clients.pop(c, None)
            if client.last_report is not None:
                run.client_errors += [(g, c, e) for e in client.last_report.refused.values()]
            if g in lost.get(c, set()):
                continue
            run.bytes_up[c] += len(reply)
            srv.receive(c, reply)
        for end in srv.close():
            run.ends[end.round] = end
        run.exchanges += 1
    run.seconds = time.perf_counter() - t0
    run.server = srv
    if not persist:
        run.clients = clients
    return run


def _client(
    c: int,
    saved: dict[int, bytes | None],
    live: dict[int, PipelineClient],
    trust: Trust | None,
    policy: SecurityPolicy | None,
    records: ClientRecords,
    persist: bool,
) -> PipelineClient:
    if not persist and c in live:
        return live[c]
    data = saved.get(c)
    if data is None:
        client = PipelineClient(trust=trust, policy=policy, records=records)
    else:
        client = PipelineClient.load(data, trust=trust, policy=policy, records=records)
    if not persist:
        live[c] = client
    return client


def plaintext_sums(
    run: PipelineRun, inputs: InputFn, dimension: int
) -> dict[int, npt.NDArray[np.float64]]:
    """The exact sum of every finished round's survivors' inputs, for comparison."""
    out = {}
    for r, end in run.ends.items():
        if end.outcome is not None:
            total = np.zeros(dimension)
            for c in end.outcome.survivors:
                total += np.asarray(inputs(r, c), dtype=np.float64)
            out[r] = total
    return out
