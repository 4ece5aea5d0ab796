"""The privacy layer for people who bring their own training stack.

Give :meth:`PrivacyLayer.aggregate` one update per client (a flat vector, a tensor, or a
dict of tensors) and the hash of the model the clients trained on; get back the
aggregate (the weighted mean update, DP-noised when DP-FedAvg is on), the survivors, and
the ledger entry of the round. Per round the layer:

1. asks the ledger's budget guard (``begin_round``): a refusal raises
   :class:`dp.BudgetExceededError` and nothing is written or sent; with Poisson
   ``participation`` it also draws the round's cohort from the OS CSPRNG
   (``ticket.cohort``), and only those clients may contribute. DP-FedAvg is checked
   against the participation at construction and every round
   (:class:`~protocols.participation.AccountingAssumptionError`): every client in every
   round means sample_rate 1;
2. refuses a client that already contributed for the same model hash in this session
   without fresh DP noise (:class:`RepeatedContributionError`, multi-round differencing);
3. clips each update (coordinates to ``[-clip, clip]``; L2 to C for DP-FedAvg), weights
   it, and runs the chosen backend with a fresh session id, the round index and the
   model hash as the signed ``extra_context``;
4. on abort, records the round with ``record_aborted(released_shares=...)`` (zero cost
   when nothing that could reveal the sum was released) and returns ``status="failed"``;
5. otherwise commits the round to the ledger (fsync) and only then releases the
   aggregate (for DP-FedAvg: noise added after the commit).

**Weighting.** ``weighting="examples"`` weights client i by w_i = min(n_i, cap) / cap
with a public cap; each client sends (w_i * update_i, w_i) inside the securely summed
vector, so the server learns sum_i w_i (the total weight of the survivors) and the
weighted sum, never an individual n_i. The total weight is part of the release: with
secure aggregation it reveals only the survivors' total number of examples (capped).
DP-FedAvg uses uniform weights and the fixed public denominator instead (weights would
change the sensitivity).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from protocols.backends import AggregationBackend, RoundInfo, make_backend
from protocols.differencing import ContributionGuard
from protocols.errors import AggregationAbortedError, ProtocolLayerError
from protocols.participation import AccountingAssumptionError, Participation, check_dp_fedavg

FloatVector = npt.NDArray[np.float64]
WEIGHTINGS = ("uniform", "examples")
# Dropout points at or after which a client has sent its (masked/encrypted) input.
_SENT_INPUT = ("masked_input", "consistency_check")


class WeightingError(ProtocolLayerError, ValueError):
    """Weights are missing, not positive, or combined with DP-FedAvg."""


@dataclass(frozen=True)
class RoundTicket:
    """A round the budget guard let start (``pending`` is the ledger's PendingRound;
    ``cohort`` the clients sampled for it, ``None`` when every client takes part)."""

    round: int
    pending: Any
    cohort: tuple[int, ...] | None = None


@dataclass
class LayerRound:
    """The outcome of one :meth:`PrivacyLayer.aggregate` call.

    ``update`` is the released aggregate (weighted mean update; DP-FedAvg: noised sum
    over the fixed denominator), ``None`` when the round failed. ``survivors`` and
    ``dropped`` use the caller's client ids. ``ledger_entry`` is the round's ledger line
    (``None`` without a ledger or a DP cost).
    """

    round: int
    status: str  # "committed" or "failed"
    update: FloatVector | None
    survivors: tuple[int, ...]
    dropped: tuple[int, ...]
    ledger_entry: Any
    released_shares: bool = False
    error: BaseException | None = None
    aggregation: Any = None
    total_weight: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)


def as_vector(update: Any) -> FloatVector:
    """A flat float64 vector from a numpy array, a tensor or a dict of tensors."""
    if isinstance(update, Mapping):
        parts = [torch.as_tensor(t).detach().reshape(-1).double() for t in update.values()]
        return torch.cat(parts).numpy() if parts else np.zeros(0)
    if isinstance(update, torch.Tensor):
        return update.detach().reshape(-1).double().cpu().numpy()
    return np.asarray(update, dtype=np.float64).reshape(-1)


class PrivacyLayer:
    """Secure aggregation + DP accounting for one training session (see module docs).

    Args:
        backend: ``"masking"``, ``"paillier"``, ``"plaintext"`` or a backend object.
        backend_params: keyword arguments of the backend's constructor.
        clip: element clip range ``[-clip, clip]`` for masking/Paillier encodings.
        weighting: ``"uniform"`` or ``"examples"`` (pass ``weights`` to aggregate).
        max_weight: the public cap on examples per client (``None``: the largest weight
            of each round, fine in simulation; fix it in a deployment).
        dp: a :class:`dp.DPFedAvg` for user-level DP (central noise after aggregation).
        ledger: a :class:`dp.PrivacyLedger`; every round with a DP cost lands in it.
        participation: how clients take part (:class:`protocols.participation.
            Participation`); default every client in every round, the population fixed
            by the first round. With Poisson sampling clients are ``0..N-1`` and each
            round's cohort is ``begin_round().cohort``.
        noise_seed: seeds the DP-FedAvg noise (tests only; ``None`` uses the OS).
    """

    def __init__(
        self,
        *,
        backend: str | AggregationBackend = "masking",
        backend_params: Mapping[str, Any] | None = None,
        clip: float = 1.0,
        weighting: str = "uniform",
        max_weight: float | None = None,
        dp: Any = None,
        ledger: Any = None,
        session_id: bytes | None = None,
        seed: int | None = None,
        noise_seed: int | None = None,
        participation: Participation | None = None,
    ) -> None:
        self.backend = (
            make_backend(backend, **dict(backend_params or {}))
            if isinstance(backend, str)
            else backend
        )
        if weighting not in WEIGHTINGS:
            raise WeightingError(f"weighting {weighting!r}; use one of {', '.join(WEIGHTINGS)}")
        if dp is not None and weighting != "uniform":
            raise WeightingError("DP-FedAvg needs uniform weights (fixed public denominator)")
        if not (isinstance(clip, int | float) and np.isfinite(clip) and clip > 0):
            raise ProtocolLayerError(f"clip must be a finite number > 0, got {clip!r}")
        self.clip = float(clip)
        self.weighting = weighting
        self.max_weight = max_weight
        self.dp = dp
        self.ledger = ledger
        self.participation = participation or Participation.everyone()
        if dp is not None:
            check_dp_fedavg(dp, self.participation, where="PrivacyLayer")
        pop = self.participation.population
        self._population: frozenset[int] | None = frozenset(range(pop)) if pop is not None else None
        self.session_id = session_id if session_id is not None else os.urandom(16)
        self.guard = ContributionGuard(self.session_id)
        self._seed = np.random.SeedSequence(seed)
        self._noise_rng = np.random.default_rng(noise_seed)
        self._next_round = (
            0 if ledger is None or ledger.last_round is None else ledger.last_round + 1
        )
        self._ticket: RoundTicket | None = None

    # -- round lifecycle ----------------------------------------------------------------

    def begin_round(self, cost: Any = None) -> RoundTicket:
        """Ask the budget guard for the next round at ``cost`` (default: the DP-FedAvg
        mechanism's cost; none without DP). Raises ``BudgetExceededError``; writes nothing."""
        if self._ticket is not None:
            raise ProtocolLayerError(f"round {self._ticket.round} is open: aggregate it first")
        rid = self._next_round
        if self.dp is not None:
            own = self.dp.round_cost()
            if cost is not None and cost.params != own.params:
                raise AccountingAssumptionError(
                    "with DP-FedAvg on, a round costs what the mechanism says "
                    f"({own.params}); another cost would account a different mechanism"
                )
            cost = own
        pending = None
        if cost is not None and self.ledger is not None:
            pending = self.ledger.begin_round(rid, cost)
        cohort = None
        if self.participation.sampling != "all" and self._population is not None:
            cohort = tuple(self.participation.sample(self._population))
        self._ticket = RoundTicket(rid, pending, cohort)
        return self._ticket

    def abandon_round(self, ticket: RoundTicket) -> Any:
        """Record an opened round that never aggregated (e.g. every client failed) at zero
        cost; returns the ledger entry (or ``None``)."""
        self._close(ticket)
        if ticket.pending is not None:
            return self.ledger.record_aborted(ticket.round, released_shares=False)
        return None

    def _close(self, ticket: RoundTicket) -> None:
        if ticket is not self._ticket:
            raise ProtocolLayerError("this ticket is not the open round")
        self._ticket = None
        self._next_round = ticket.round + 1

    def element_clip(self) -> float:
        """The symmetric range every element sent to the backend lies in."""
        if self.dp is not None:
            return float(self.dp.clip_norm)
        return max(self.clip, 1.0)  # the weight element (<= 1) travels in the same vector

    # -- aggregation ------------------------------------------------------------------

    def aggregate(
        self,
        updates: Mapping[int, Any],
        *,
        model_hash: bytes,
        weights: Mapping[int, float] | None = None,
        dropouts: Mapping[int, str] | Iterable[int] | None = None,
        fresh_noise: bool = False,
        ticket: RoundTicket | None = None,
    ) -> LayerRound:
        """Aggregate one round of client updates (keyed by client id); see module docs.

        ``dropouts`` maps client ids to the protocol step after which they vanish (a plain
        iterable: before sending their input). ``fresh_noise`` says the updates carry
        fresh DP noise (DP-SGD), which lets a client contribute again for the same model.
        """
        ticket = ticket if ticket is not None else self.begin_round()
        if ticket is not self._ticket:
            raise ProtocolLayerError("this ticket is not the open round")
        ids = sorted(updates)
        drops = _dropout_map(dropouts)
        senders = [c for c in ids if c not in drops or drops[c] in _SENT_INPUT]
        try:
            self._check_participants(ids, ticket)
            self.guard.check(model_hash, senders, fresh_noise=fresh_noise)
            vectors = self._vectors(ids, updates, weights)
        except BaseException:
            self.abandon_round(ticket)
            raise
        self.guard.record(model_hash, senders)
        index = {c: i for i, c in enumerate(ids)}
        t0 = time.perf_counter()
        try:
            if len(ids) == 0:
                raise AggregationAbortedError("no clients", released_shares=False)
            info = RoundInfo(
                clip=self.element_clip(),
                session_id=os.urandom(16),
                round_index=ticket.round,
                extra_context=bytes(model_hash),
                seed=int(self._seed.spawn(1)[0].generate_state(1)[0]),
            )
            res = self.backend.aggregate(
                vectors, {index[c]: w for c, w in drops.items() if c in index}, info
            )
        except AggregationAbortedError as exc:
            self._close(ticket)
            entry = None
            if ticket.pending is not None:
                entry = self.ledger.record_aborted(
                    ticket.round, released_shares=exc.released_shares
                )
            return LayerRound(
                ticket.round,
                "failed",
                None,
                (),
                tuple(ids),
                entry,
                released_shares=exc.released_shares,
                error=exc,
                timings={"aggregate": time.perf_counter() - t0},
            )
        t1 = time.perf_counter()
        self._close(ticket)
        entry = self.ledger.commit(ticket.pending) if ticket.pending is not None else None
        total = np.asarray(res.sum, dtype=np.float64)
        if self.dp is not None:
            update = self.dp.release(total, rng=self._noise_rng)
            weight = float(self.dp.expected_clients)
        else:
            weight = float(total[-1])
            update = total[:-1] / weight
        t2 = time.perf_counter()
        return LayerRound(
            ticket.round,
            "committed",
            update,
            tuple(ids[i] for i in res.survivors),
            tuple(ids[i] for i in res.dropped),
            entry,
            aggregation=res,
            total_weight=weight,
            timings={"aggregate": t1 - t0, "dp_release": t2 - t1},
        )

    def _check_participants(self, ids: list[int], ticket: RoundTicket) -> None:
        """Refuse participants the DP accounting does not cover (see module docs)."""
        if self.dp is None or not ids:  # no clients: the round aborts, nothing is sent
            return
        if self._population is None:  # every client, every round: the first fixes who
            check_dp_fedavg(self.dp, Participation.everyone(len(ids)), where="PrivacyLayer")
            self._population = frozenset(ids)
        allowed = self._population if ticket.cohort is None else ticket.cohort
        self.participation.check_round(ids, allowed)

    def _vectors(
        self, ids: list[int], updates: Mapping[int, Any], weights: Mapping[int, float] | None
    ) -> list[FloatVector]:
        vecs = [as_vector(updates[c]) for c in ids]
        if len({v.shape for v in vecs}) > 1:
            raise ProtocolLayerError("every client update must have the same number of elements")
        if self.dp is not None:
            return [self.dp.clip(v).vector for v in vecs]
        if self.weighting == "examples":
            if weights is None or any(c not in weights for c in ids):
                raise WeightingError("weighting='examples' needs a weight for every client")
            raw = np.array([float(weights[c]) for c in ids])
            if not np.all(np.isfinite(raw)) or np.any(raw <= 0):
                raise WeightingError("weights must be finite and > 0")
            cap = float(self.max_weight) if self.max_weight is not None else float(raw.max())
            w = np.minimum(raw, cap) / cap
        else:
            w = np.ones(len(ids))
        return [
            np.append(wi * np.clip(v, -self.clip, self.clip), wi)
            for wi, v in zip(w, vecs, strict=True)
        ]


def _dropout_map(dropouts: Mapping[int, str] | Iterable[int] | None) -> dict[int, str]:
    if dropouts is None:
        return {}
    if isinstance(dropouts, Mapping):
        return {int(c): str(w) for c, w in dropouts.items()}
    return {int(c): "share_keys" for c in dropouts}
