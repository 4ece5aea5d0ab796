"""``secagg.simulate``: run one masked round in-process through the real messages.

Every client and the server are the real state machines; the driver only moves bytes
between them and plays the clock (a step closes when every expected message is in or
the client that would send it has vanished). Dropouts are scheduled per client.

The driver keeps only what a deployment would hold: each client's O(k) state, the
server's O(n k + d), and one input vector at a time (inputs can be produced lazily by
:class:`LazyInputs`, so a round at n = 10^4 needs no n x d matrix). The active setting
is provisioned here as a trusted provisioner would: identities, a sealed registry
holding the policy (by default one that pins the given config) and pairwise MAC keys,
dealt from one secret by default (:class:`~secagg.registry.DealtKeyring`: the
simulation's shortcut around n k one-time key agreements).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from secagg.client import SecAggClient, new_session_id
from secagg.config import SecAggConfig
from secagg.errors import ConfigError, EncodingError, SecAggError
from secagg.messages import MsgType
from secagg.policy import SecurityPolicy
from secagg.registry import Identity, Registry, Trust, keyrings, provision
from secagg.result import AggregationResult, client_key
from secagg.server import SecAggServer, ServerStep

#: The steps after which a client may vanish, in protocol order. "start" means it never
#: shows up at all.
DROPOUT_POINTS = ("start", "advertise_keys", "share_keys", "masked_input", "consistency_check")
_STEP_ORDER = {name: i for i, name in enumerate(DROPOUT_POINTS)}
# The step a client sends in, by the server step collecting it.
_SENDS_IN = {
    ServerStep.ADVERTISE_KEYS: "advertise_keys",
    ServerStep.SHARE_KEYS: "share_keys",
    ServerStep.MASKED_INPUT: "masked_input",
    ServerStep.CONSISTENCY_CHECK: "consistency_check",
    ServerStep.UNMASKING: "unmasking",
}

DropoutSpec = Mapping[int, str] | Iterable[int] | None


@dataclass(frozen=True)
class LazyInputs:
    """n input vectors of length d, made on demand by ``make(client)``."""

    num_clients: int
    dimension: int
    make: Callable[[int], npt.ArrayLike]

    def __len__(self) -> int:
        return self.num_clients


def normalise_dropouts(dropouts: DropoutSpec, n: int) -> dict[int, str]:
    """Dropout schedule as {client: last step it completes}.

    A mapping gives the step after which each client vanishes; a plain iterable of
    indices means those clients vanish before sending a masked input (after ShareKeys).
    """
    if dropouts is None:
        return {}
    if isinstance(dropouts, Mapping):
        out = dict(dropouts)
    else:
        out = {int(i): "share_keys" for i in dropouts}
    for c, when in out.items():
        if isinstance(c, bool) or not isinstance(c, int | np.integer) or not 0 <= c < n:
            raise ConfigError(f"dropout client {c!r} is not an index in 0..{n - 1}")
        if when not in _STEP_ORDER:
            raise ConfigError(
                f"dropout point {when!r} for client {c}; use one of {', '.join(DROPOUT_POINTS)}"
            )
    return {int(c): w for c, w in out.items()}


ClientFactory = Callable[..., SecAggClient]
Vectors = Sequence[npt.ArrayLike] | npt.NDArray[Any] | LazyInputs


def _shape(vectors: Vectors) -> tuple[int, int, Callable[[int], npt.ArrayLike]]:
    if isinstance(vectors, LazyInputs):
        return vectors.num_clients, vectors.dimension, vectors.make
    arrays = [np.asarray(v) for v in vectors]
    d = arrays[0].shape[0] if arrays and arrays[0].ndim == 1 else -1
    if d < 1 or any(a.ndim != 1 or a.shape[0] != d for a in arrays):
        raise EncodingError("every client vector must be 1-D with the same non-zero length")
    return len(arrays), d, arrays.__getitem__


@dataclass(frozen=True, repr=False)
class Provisioning:
    """What a trusted provisioner hands out for the active setting."""

    identities: dict[int, Identity]
    registry: Registry
    trust: dict[int, Trust]

    @classmethod
    def make(
        cls, config: SecAggConfig, policy: SecurityPolicy | None = None, *, dealt: bool = True
    ) -> Provisioning:
        """Identities and a sealed registry for ``config``'s n clients; pairwise keys dealt
        from one secret (``dealt=True``, simulation only) or agreed (X25519)."""
        pol = policy or SecurityPolicy.fixed(config)
        ids, registry = provision(config.num_clients, pol)
        by_index = {i.index: i for i in ids}
        rings = keyrings(by_index, registry, dealt=os.urandom(32) if dealt else None)
        return cls(
            by_index, registry, {i: Trust(by_index[i], registry, rings[i]) for i in by_index}
        )


class InProcessRound:
    """One round with every party in this process: the driver behind :func:`simulate`.

    Attributes after :meth:`run`: ``server`` (its whole final state: transcript, rebuilt
    seeds and keys), ``clients`` (id -> state machine), ``client_errors``. Tests build
    deliberately broken clients through ``client_factory`` and attack the final state.
    ``extra_context`` may map client ids to different contexts (e.g. the hashes of
    different models a cheating server sent), with ``server_extra_context`` the one the
    server checks against.
    """

    def __init__(
        self,
        vectors: Vectors,
        config: SecAggConfig | None = None,
        dropouts: DropoutSpec = None,
        seed: int | None = None,
        *,
        record_transcript: bool = True,
        extra_context: bytes | Mapping[int, bytes] = b"",
        server_extra_context: bytes | None = None,
        round_index: int = 0,
        session_id: bytes | None = None,
        client_factory: ClientFactory = SecAggClient,
        provisioning: Provisioning | None = None,
        threads: int | None = None,
    ) -> None:
        n, d, make = _shape(vectors)
        if n < 3:
            raise ConfigError(f"secure aggregation needs at least 3 clients, got {n}")
        cfg = config if config is not None else SecAggConfig.default(n)
        if cfg.num_clients != n:
            raise ConfigError(f"config is for {cfg.num_clients} clients, got {n} vectors")
        self.config, self.dimension, self._make = cfg, d, make
        self.plan = normalise_dropouts(dropouts, n)
        self.session_id = session_id if session_id is not None else new_session_id()
        self.round_index = round_index
        self.provisioning = provisioning or (Provisioning.make(cfg) if cfg.active else None)
        extras = (
            dict(extra_context)
            if isinstance(extra_context, Mapping)
            else dict.fromkeys(range(n), bytes(extra_context))
        )
        self.timings: dict[str, float] = {}
        self.bytes_sent: dict[str, int] = {"server": 0} | {client_key(c): 0 for c in range(n)}
        self.client_errors: list[SecAggError] = []
        self.server = SecAggServer(
            cfg,
            session_id=self.session_id,
            round_index=round_index,
            dimension=d,
            registry=self.provisioning.registry if self.provisioning else None,
            extra_context=(
                server_extra_context if server_extra_context is not None else extras.get(0, b"")
            ),
            record_transcript=record_transcript,
            threads=threads,
        )
        self._rng = np.random.default_rng(seed)
        trust = self.provisioning.trust if self.provisioning else {}
        self.clients: dict[int, SecAggClient] = {}
        for c in range(n):
            if self.plan.get(c) == "start":
                continue
            self.clients[c] = client_factory(
                cfg,
                c,
                session_id=self.session_id,
                round_index=round_index,
                dimension=d,
                trust=trust.get(c),
                extra_context=extras.get(c, b""),
                rng=np.random.default_rng(self._rng.integers(2**63)),
            )

    @property
    def registry(self) -> Registry | None:
        """The sealed registry (active setting)."""
        return self.provisioning.registry if self.provisioning else None

    def _clock(self, key: str, t0: float) -> None:
        self.timings[key] = self.timings.get(key, 0.0) + time.perf_counter() - t0

    def _alive_for(self, c: int, step: str) -> bool:
        when = self.plan.get(c)
        return when is None or _STEP_ORDER.get(step, len(DROPOUT_POINTS)) <= _STEP_ORDER[when]

    def run(self) -> AggregationResult:
        """Drive the round to its end; raise the abort error if it aborts."""
        server = self.server
        for c, cl in self.clients.items():
            t0 = time.perf_counter()
            msg = cl.advertise()
            self._clock("advertise_keys/client", t0)
            self.bytes_sent[client_key(c)] += len(msg)
            server.receive(c, msg)
        while server.step not in (ServerStep.DONE, ServerStep.ABORTED):
            out = server.close_step()
            for c, msg in out.items():
                self.bytes_sent["server"] += len(msg)
                self._deliver(c, msg)
        for step_name, secs in server.timings.items():
            self.timings[f"{step_name}/server"] = secs
        if server.error is not None:
            if self.client_errors:  # the clients' refusal is the root cause of the abort
                raise self.client_errors[0] from server.error
            raise server.error
        return self._result()

    def _deliver(self, c: int, msg: bytes) -> None:
        server, peer = self.server, self.clients.get(c)
        if peer is None or peer.aborted:
            return
        sends = _SENDS_IN.get(server.step)
        if server.error is not None:  # the round aborted: every client hears of it
            with contextlib.suppress(SecAggError):
                peer.handle(msg)
            return
        if sends is None or not self._alive_for(c, sends):
            return
        t0 = time.perf_counter()
        try:
            if len(msg) > 5 and msg[5] == MsgType.SHARE_DELIVERY:
                peer.set_input(self._make(c))  # made now, gone once masked
            reply = peer.handle(msg)
        except SecAggError as exc:  # the client aborted: it sends nothing more
            self.client_errors.append(exc)
            return
        finally:
            self._clock(f"{sends}/client", t0)
        if reply is not None:
            self.bytes_sent[client_key(c)] += len(reply)
            server.receive(c, reply)

    def _result(self) -> AggregationResult:
        outcome = self.server.result()
        params = self.config.describe() | {
            "dimension": self.dimension,
            "session_id": self.session_id.hex(),
            "bytes_down": dict(self.server.bytes_down),
        }
        return AggregationResult(
            sum=outcome.sum,
            mean=outcome.sum / len(outcome.survivors),
            survivors=outcome.survivors,
            dropped=outcome.dropped,
            timings=self.timings,
            bytes_sent=self.bytes_sent,
            transcript=self.server.transcript,
            params=params,
        )


def simulate(
    vectors: Vectors,
    config: SecAggConfig | None = None,
    dropouts: DropoutSpec = None,
    seed: int | None = None,
    *,
    record_transcript: bool = True,
    extra_context: bytes = b"",
    round_index: int = 0,
    session_id: bytes | None = None,
) -> AggregationResult:
    """Securely sum ``vectors`` (one per client) through the full protocol in-process.

    Args:
        vectors: n input vectors of equal length d (floats; clipped to the config range),
            or a :class:`LazyInputs` that makes each when its client needs it.
        config: ``None`` uses :meth:`SecAggConfig.default` for n clients.
        dropouts: ``{client: step}`` with step in ``DROPOUT_POINTS`` (the client vanishes
            after completing that step), or an iterable of client indices that vanish
            before sending their masked input.
        seed: seeds the stochastic rounding only; keys and mask seeds always come from
            the OS CSPRNG.
        record_transcript: keep the server's view (every message it received).
        extra_context: what clients bind into their views besides the statuses (active).

    Returns the :class:`AggregationResult`; raises :class:`TooFewSurvivorsError` (or
    another :class:`RoundAbortedError`) when the round aborts.
    """
    return InProcessRound(
        vectors,
        config,
        dropouts,
        seed,
        record_transcript=record_transcript,
        extra_context=extra_context,
        round_index=round_index,
        session_id=session_id,
    ).run()
