"""Aggregation backends by name: ``masking`` (SecAgg/SecAgg+), ``paillier``, ``plaintext``.

Every backend sums n float vectors (clipped to a symmetric range ``[-clip, clip]``) and
returns the common :class:`secagg.AggregationResult`; a round that aborts raises
:class:`AggregationAbortedError` with ``released_shares`` decided as follows:

* **masking**: ``True`` iff the cause is a ``ReconstructionError`` (the server already
  holds unmasking shares) or at least one message reached the server while it was in its
  Unmasking step (after the survivor list, or in the active setting the signature list,
  survivors answer with shares). Aborts in AdvertiseKeys, ShareKeys,
  MaskedInputCollection or ConsistencyCheck, and unmasking refusals by every client
  (``SurvivorSetTooSmallError``), release nothing: ``False``.
* **paillier**: a refused decryption (``DecryptionRefusedError``, e.g. too few
  contributors) releases nothing: ``False``.
* **plaintext**: too few survivors is refused before any sum: ``False``.

The Paillier backend (``secagg.paillier``) is imported lazily, by name, on first use.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from protocols.errors import AggregationAbortedError, BackendUnavailableError, UnknownBackendError

FloatVector = npt.NDArray[np.float64]
BACKENDS = ("masking", "paillier", "plaintext")


@dataclass(frozen=True)
class RoundInfo:
    """What one round binds the aggregation to: the element clip range ``[-clip, clip]``,
    a fresh ``session_id``, the ``round_index``, the ``extra_context`` clients sign (the
    model hash), and the ``seed`` of the stochastic rounding."""

    clip: float
    session_id: bytes
    round_index: int
    extra_context: bytes
    seed: int | None


class AggregationBackend(Protocol):
    """What the FedAvg loop and the privacy layer need from a backend."""

    name: str

    def quantum(self, num_clients: int, clip: float) -> float:
        """The quantisation step of one element (0 for exact float sums)."""
        ...

    def aggregate(
        self,
        vectors: Sequence[FloatVector],
        dropouts: Mapping[int, str],
        info: RoundInfo,
    ) -> Any:
        """Sum the vectors of the clients that do not drop; an ``AggregationResult``."""
        ...


def _result(**kwargs: Any) -> Any:
    from secagg.result import AggregationResult

    return AggregationResult(**kwargs)


class PlaintextBackend:
    """The baseline: clients send float32 vectors in the clear and the server adds them."""

    name = "plaintext"

    def __init__(self, *, min_survivors: int = 1) -> None:
        self.min_survivors = min_survivors

    def quantum(self, num_clients: int, clip: float) -> float:
        """Float32 transport: no fixed-point quantum."""
        return 0.0

    def aggregate(
        self,
        vectors: Sequence[FloatVector],
        dropouts: Mapping[int, str],
        info: RoundInfo,
    ) -> Any:
        """Clip, cast to float32 (what goes on the wire), sum the survivors' vectors."""
        t0 = time.perf_counter()
        n = len(vectors)
        survivors = tuple(i for i in range(n) if i not in dropouts)
        if len(survivors) < self.min_survivors:
            raise AggregationAbortedError(
                f"{len(survivors)} survivors, fewer than {self.min_survivors}",
                released_shares=False,
            )
        sent = [np.clip(vectors[i], -info.clip, info.clip).astype(np.float32) for i in survivors]
        t1 = time.perf_counter()
        total = np.zeros(len(vectors[0]))
        for v in sent:
            total += v
        t2 = time.perf_counter()
        d = len(vectors[0])
        return _result(
            sum=total,
            mean=total / len(survivors),
            survivors=survivors,
            dropped=tuple(sorted(set(range(n)) - set(survivors))),
            timings={"encode/client": t1 - t0, "sum/server": t2 - t1},
            bytes_sent={"server": 0} | {f"client/{i}": 4 * d for i in survivors},
            transcript=None,
            params={"backend": "plaintext", "dimension": d},
        )


@lru_cache(maxsize=64)
def _masking_config(
    n: int, setting: str, graph: str | None, bits: int, clip: float, dropout_fraction: float
) -> Any:
    from secagg.config import SecAggConfig

    return SecAggConfig.default(
        n,
        setting=setting,  # type: ignore[arg-type]
        graph=graph,  # type: ignore[arg-type]
        dropout_fraction=dropout_fraction,
        bits=bits,
        clip_min=-clip,
        clip_max=clip,
    )


class MaskingBackend:
    """Pairwise masking (SecAgg / SecAgg+) through ``InProcessRound``.

    One config per (participants, clip): ``SecAggConfig.default`` with the given setting,
    graph (``None``: the sparsest SecAgg+ graph that meets the failure bounds, else the
    complete graph), ring bits and the symmetric clip range; the encoder picks the largest scale for
    which the sum of all participants cannot wrap. Each round gets the session id and
    round index it is given and signs ``extra_context`` (the model hash).
    """

    name = "masking"

    def __init__(
        self,
        *,
        setting: str = "active",
        graph: str | None = None,
        bits: int = 32,
        dropout_fraction: float = 0.2,
        record_transcript: bool = False,
    ) -> None:
        self.setting = setting
        self.graph = graph
        self.bits = bits
        self.dropout_fraction = dropout_fraction
        self.record_transcript = record_transcript
        self.last_round: Any = None

    def config(self, num_clients: int, clip: float) -> Any:
        """The ``SecAggConfig`` used for a round of ``num_clients``."""
        return _masking_config(
            num_clients, self.setting, self.graph, self.bits, float(clip), self.dropout_fraction
        )

    def quantum(self, num_clients: int, clip: float) -> float:
        """1/scale of the encoding for this many clients and clip."""
        return float(self.config(num_clients, clip).encoding.quantum)

    def aggregate(
        self,
        vectors: Sequence[FloatVector],
        dropouts: Mapping[int, str],
        info: RoundInfo,
    ) -> Any:
        """Run the masked round; on abort raise :class:`AggregationAbortedError`."""
        from secagg.errors import ReconstructionError, RoundAbortedError
        from secagg.simulate import InProcessRound

        if len(vectors) - sum(1 for w in dropouts.values() if w == "start") < 3:
            raise AggregationAbortedError(
                "fewer than 3 clients showed up; secure aggregation needs at least 3",
                released_shares=False,
            )
        rnd = InProcessRound(
            vectors,
            self.config(len(vectors), info.clip),
            dict(dropouts),
            info.seed,
            record_transcript=self.record_transcript,
            extra_context=info.extra_context,
            round_index=info.round_index,
            session_id=info.session_id,
        )
        self.last_round = rnd
        try:
            return rnd.run()
        except RoundAbortedError as exc:
            # any message that reached the server while it collected unmasking shares
            # may have carried shares: the round then stays counted
            released = isinstance(exc, ReconstructionError) or bool(rnd.server.unmasking_senders)
            raise AggregationAbortedError(
                f"masked round aborted: {type(exc).__name__}: {exc}", released_shares=released
            ) from exc


class PaillierBackend:
    """Paillier-encrypted summation (``secagg.paillier.simulate``), one key pair per backend.

    The key pair is generated at the first round and reused (a key holder's key lives
    for the session). ``workers=1`` by default: the FedAvg loop already keeps the cores
    busy, and a process pool needs a ``__main__`` guard in scripts.
    """

    name = "paillier"

    def __init__(
        self,
        *,
        key_bits: int = 2048,
        value_bits: int = 24,
        workers: int | None = 1,
        insecure_test_key: bool = False,
    ) -> None:
        try:
            self._mod = importlib.import_module("secagg.paillier")
        except ImportError as exc:
            raise BackendUnavailableError(
                f"the paillier backend needs secagg.paillier ({exc})"
            ) from exc
        self.key_bits = key_bits
        self.value_bits = value_bits
        self.workers = workers
        self.insecure_test_key = insecure_test_key
        self._keypair: Any = None

    def config(self, clip: float) -> Any:
        """The ``PaillierConfig`` of a round."""
        return self._mod.PaillierConfig(
            key_bits=self.key_bits,
            value_bits=self.value_bits,
            clip_min=-clip,
            clip_max=clip,
            workers=self.workers,
            insecure_test_key=self.insecure_test_key,
            record_transcript=False,
        )

    def quantum(self, num_clients: int, clip: float) -> float:
        """1/scale of the packed fixed-point encoding."""
        return float(1.0 / self.config(clip).packing(num_clients).resolved_scale)

    def aggregate(
        self,
        vectors: Sequence[FloatVector],
        dropouts: Mapping[int, str],
        info: RoundInfo,
    ) -> Any:
        """Encrypt, multiply, decrypt the sum; on refusal raise :class:`AggregationAbortedError`."""
        errors = importlib.import_module("secagg.paillier.errors")
        cfg = self.config(info.clip)
        if self._keypair is None:
            self._keypair = self._mod.generate_keypair(
                self.key_bits, insecure_test_key=self.insecure_test_key
            )
        try:
            return self._mod.simulate(
                list(vectors), cfg, dropouts=sorted(dropouts), seed=info.seed, keypair=self._keypair
            )
        except errors.DecryptionRefusedError as exc:
            raise AggregationAbortedError(
                f"paillier round refused: {type(exc).__name__}: {exc}", released_shares=False
            ) from exc


def make_backend(name: str, **params: Any) -> AggregationBackend:
    """The backend called ``name`` with its parameters (see each class)."""
    if name == "masking":
        return MaskingBackend(**params)
    if name == "paillier":
        return PaillierBackend(**params)
    if name == "plaintext":
        return PlaintextBackend(**params)
    raise UnknownBackendError(f"backend {name!r}; use one of {', '.join(BACKENDS)}")
