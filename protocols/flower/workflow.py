"""The Flower server workflow: pipelined SecAgg/SecAgg+ FedAvg on a ``Grid``.

Call it from a ServerApp's main function::

    wf = SecAggWorkflow(rounds=10, setting="active", registry_file=".../registry.json")
    report = wf.run(grid, initial_arrays, on_round=my_callback)

Each exchange is one ``grid.send_and_receive`` with the workflow's ``timeout``: a node
that misses it is a dropout for the rounds in flight and rejoins at the next key
advertisement. After a 2-exchange bootstrap (plus one identity exchange in the active
setting) a training round costs 2 exchanges honest-but-curious and 3 active, against
4 for Flower's own SecAgg+ workflow. The server only ever sees masked vectors and the
unmasked sum; with a ledger, every round is checked against the budget before any
client sends its masked input, and committed before the aggregate is used.
"""

from __future__ import annotations

import logging
import resource
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from flwr.app import ArrayRecord, ConfigRecord, Message, RecordDict
from flwr.serverapp import Grid

from protocols.flower.records import (
    ARRAYS_KEY,
    CONFIG_KEY,
    SECAGG_KEY,
    WEIGHTINGS,
    flatten,
    input_dimension,
    model_hash,
    unflatten,
)
from protocols.flower.sync import ExchangeHook
from protocols.participation import AccountingAssumptionError, Participation, check_dp_fedavg
from secagg.config import SecAggConfig
from secagg.errors import RegistryError, SecAggError
from secagg.pipeline import ExchangeKind, PipelineServer, RoundEnd
from secagg.policy import SECURITY_FIELDS, SecurityPolicy
from secagg.registry import Registry
from secagg.server import ServerOutcome

log = logging.getLogger(__name__)
Arrays = list[npt.NDArray[np.float32]]


class WorkflowError(RuntimeError):
    """The workflow cannot run (too few nodes, bad provisioning, bad parameters)."""


def wait_for_nodes(
    grid: Grid, count: int, timeout: float, *, error: type[Exception] = WorkflowError
) -> list[int]:
    """Sorted node ids once at least ``count`` nodes are connected; ``error`` after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        ids = sorted(grid.get_node_ids())
        if len(ids) >= count:
            return ids
        if time.monotonic() > deadline:
            raise error(f"{len(ids)} nodes after {timeout:.0f} s, need {count}")
        time.sleep(0.2)


@dataclass
class RoundRow:
    """One training round as the workflow saw it."""

    round: int
    status: str  # "ok", "aborted", "budget_exhausted"
    survivors: list[int]
    dropped: list[int]
    seconds: float
    exchanges: int
    bytes_up_per_client: float
    bytes_down_per_client: float
    released_shares: bool = False
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class WorkflowReport:
    """Everything the workflow measured; ``final`` is the last global model."""

    rows: list[RoundRow]
    exchanges: list[dict[str, Any]]
    final: Arrays
    nodes: dict[int, int]  # client index -> Flower node id
    setting: str
    config: dict[str, Any]
    bootstrap_seconds: float
    peak_rss_mib: float


@dataclass
class SecAggWorkflow:
    """Pipelined secure FedAvg over Flower (see the module docs).

    Args:
        rounds: training rounds.
        setting: ``"honest_but_curious"`` or ``"active"`` (needs ``registry_file``).
        bits: ring size; at b <= 32 a masked element travels as 4 bytes.
        clip: element clip range of the update; weights travel in the same vector.
        weighting: ``"uniform"`` or ``"examples"`` (w = min(n_i, max_weight)/max_weight).
        timeout: seconds each exchange waits for replies.
        min_nodes: nodes to wait for before starting (and the session's n).
        server_lr: global model += server_lr * weighted mean update.
        ledger, round_cost: a :class:`dp.PrivacyLedger` and the per-round cost to
            charge (``round_cost(r)``; with ``dp``, the mechanism's own cost by default);
            a refusal ends the session before round r's masked inputs are sent.
        dp: a :class:`dp.DPFedAvg` for user-level DP: clients L2-clip their update to
            its clip norm and send no weight; the server adds the Gaussian noise to the
            unmasked sum after the ledger commit and divides by the fixed denominator
            (``expected_clients``). Needs ``weighting="uniform"``; adaptive clipping is
            not supported here.
        hook: lets a test harness pause before/after each exchange (fault injection).
        poll_interval: seconds between pulls for replies; ``None`` uses
            ``grid.send_and_receive`` (Flower 1.42 pulls every 3 s). A short interval
            saves up to one pull period per exchange at the cost of more requests.
        policy: honest-but-curious: the nodes' policy (default: the honest-but-curious
            one with ``dropout_fraction``); active: the registry's policy is used.
        overrides: extra encoding fields (bits, clip range, scale, rounding); security
            parameters come from the nodes' policy only.
    """

    rounds: int
    setting: str = "honest_but_curious"
    bits: int = 32
    clip: float = 1.0
    weighting: str = "uniform"
    max_weight: float = 1.0
    timeout: float = 120.0
    min_nodes: int = 3
    node_wait: float = 120.0
    server_lr: float = 1.0
    dropout_fraction: float = 0.2
    registry_file: str | None = None
    policy: SecurityPolicy | None = None
    ledger: Any = None
    round_cost: Callable[[int], Any] | None = None
    hook: ExchangeHook | None = None
    dp: Any = None
    poll_interval: float | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    #: client index -> Flower node id, filled when run() has assigned the indices
    nodes: dict[int, int] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        if self.setting not in ("honest_but_curious", "active"):
            raise WorkflowError(f"setting {self.setting!r}; use honest_but_curious or active")
        if self.weighting not in WEIGHTINGS:
            raise WorkflowError(f"weighting {self.weighting!r}; use one of {WEIGHTINGS}")
        if self.setting == "active" and not self.registry_file:
            raise WorkflowError("the active setting needs registry_file (client identities)")
        if not self.clip > 0:
            raise WorkflowError("clip must be > 0")
        if self.dp is not None:
            if self.weighting != "uniform":
                raise WorkflowError("DP-FedAvg needs uniform weights (fixed public denominator)")
            if getattr(self.dp, "adaptive", None) is not None:
                raise WorkflowError("adaptive clipping is not supported by SecAggWorkflow")
            # every registered node in every round: no sampling to amplify by
            check_dp_fedavg(self.dp, Participation.everyone(), where="SecAggWorkflow")
            if (
                self.round_cost is not None
                and self.round_cost(1).params != self.dp.round_cost().params
            ):
                raise AccountingAssumptionError(
                    "with dp set, round_cost must be the mechanism's own (leave it out)"
                )
            if self.ledger is not None:
                self.round_cost = lambda _r: self.dp.round_cost()
        self._noise_rng = np.random.default_rng()  # OS entropy: the DP noise
        # rounds that ended before their TRAIN exchange -> released_shares; the ledger
        # records them in round order, when their TRAIN exchange comes
        self._ended_unbegun: dict[int, bool] = {}

    # -- the session ---------------------------------------------------------------------

    def run(
        self,
        grid: Grid,
        initial: Sequence[npt.NDArray[Any]],
        *,
        on_round: Callable[[RoundRow, Arrays, ServerOutcome | None], None] | None = None,
    ) -> WorkflowReport:
        """Run every round; ``on_round(row, model, outcome)`` sees each round's row, the
        new model and the unmasked outcome (sum, survivors; None if it aborted)."""
        model: Arrays = [np.asarray(a, dtype=np.float32) for a in initial]
        t0 = time.perf_counter()
        node_ids = wait_for_nodes(grid, self.min_nodes, self.node_wait)
        index_of, registry = self._assign(grid, node_ids)
        node_of = {i: nid for nid, i in index_of.items()}
        self.nodes.clear()
        self.nodes.update(node_of)
        # the registry fixes the client indices (active); otherwise one index per node
        n = registry.size if registry is not None else len(index_of)
        if self.dp is not None:  # the fixed denominator is the whole population
            check_dp_fedavg(self.dp, Participation.everyone(n), where="SecAggWorkflow")
        cfg = self._config(n, registry)
        dim = input_dimension(model, weighted=self.dp is None)
        srv = PipelineServer(cfg, rounds=self.rounds, dimension=dim, registry=registry)
        rows: list[RoundRow] = []
        exchanges: list[dict[str, Any]] = []
        round_start: dict[int, int] = {}
        stopped = False
        bootstrap_seconds = 0.0
        while not srv.done and not stopped:
            g, kind, tr = srv.exchange, srv.kind, srv.train_round
            if kind is ExchangeKind.TRAIN and tr is not None:
                if not bootstrap_seconds:  # identity hello + BOOT_KEYS + BOOT_SHARES
                    bootstrap_seconds = time.perf_counter() - t0
                if not self._begin(tr, rows):
                    stopped = True
                    break
                round_start[tr] = len(exchanges)
                srv.bind_context(tr, model_hash(model))
            trained = srv.trained(tr) if kind is ExchangeKind.TRAIN and tr is not None else set()
            out = srv.outgoing()
            msgs = []
            down = 0
            for c, bundle in out.items():
                if c not in node_of:  # a registered client whose node is not here
                    continue
                rec = ConfigRecord(
                    {
                        "bundle": bundle,
                        "kind": kind.value,
                        "exchange": g,
                        "clip": float(self.clip),
                        "weighting": self.weighting,
                        "max-weight": float(self.max_weight),
                    }
                )
                if self.dp is not None:
                    rec["l2-clip"] = float(self.dp.clip_norm)
                content = RecordDict({SECAGG_KEY: rec})
                down += len(bundle)
                if c in trained and tr is not None:
                    rec["train-round"] = tr
                    content[ARRAYS_KEY] = ArrayRecord(model)
                    content[CONFIG_KEY] = ConfigRecord({"server-round": tr})
                    down += sum(a.nbytes for a in model)
                msgs.append(Message(content, node_of[c], "train", group_id=str(tr or 0)))
            event = {"exchange": g, "kind": kind.value, "round": tr, "nodes": sorted(out)}
            if self.hook is not None:
                self.hook.before_exchange(event)
            te = time.perf_counter()
            replies = self._send_and_receive(grid, msgs)
            up = 0
            got: list[int] = []
            errors: list[str] = []
            for m in replies:
                sender = index_of.get(m.metadata.src_node_id)
                if sender is None:
                    continue
                if m.has_error():
                    errors.append(f"client {sender}: {m.error.reason}"[:300])
                    continue
                reply_rec = m.content.config_records.get(SECAGG_KEY)
                data = reply_rec.get("bundle") if reply_rec is not None else None
                if not isinstance(data, bytes):
                    data = b""  # a reply without a bundle is refused like garbage
                up += len(data)
                got.append(sender)
                srv.receive(sender, data)
            ends = srv.close()
            if self.hook is not None:
                self.hook.after_exchange(event | {"replied": sorted(got)})
            exchanges.append(
                {
                    "exchange": g,
                    "kind": kind.value,
                    "round": tr,
                    "seconds": time.perf_counter() - te,
                    "sent": len(msgs),
                    "replied": len(got),
                    "errors": errors,
                    "bytes_down": down,
                    "bytes_up": up,
                }
            )
            for end in ends:
                row = self._finish(end, model, exchanges, round_start, n)
                if row.status == "ok":
                    model = self._apply(model, end)
                rows.append(row)
                if on_round is not None:
                    on_round(row, model, end.outcome)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
        return WorkflowReport(
            rows,
            exchanges,
            model,
            node_of,
            self.setting,
            cfg.describe(),
            bootstrap_seconds,
            peak,
        )

    # -- pieces ----------------------------------------------------------------------------

    def _send_and_receive(self, grid: Grid, msgs: list[Message]) -> list[Message]:
        if self.poll_interval is None:
            return list(grid.send_and_receive(msgs, timeout=self.timeout))
        waiting = set(grid.push_messages(msgs))
        deadline = time.monotonic() + self.timeout
        out: list[Message] = []
        while waiting:
            got = list(grid.pull_messages(waiting))
            out += got
            waiting -= {m.metadata.reply_to_message_id for m in got}
            if not waiting or time.monotonic() >= deadline:
                break
            time.sleep(self.poll_interval)
        return out

    def _assign(self, grid: Grid, node_ids: list[int]) -> tuple[dict[int, int], Registry | None]:
        """Client index of every node; in the active setting from a signed-key hello."""
        if self.setting != "active":
            return {nid: i for i, nid in enumerate(node_ids)}, None
        try:
            sealed = Registry.load(str(self.registry_file))
        except RegistryError as exc:
            raise WorkflowError(str(exc)) from exc
        registry = sealed.identities()
        hello = [
            Message(RecordDict({SECAGG_KEY: ConfigRecord({"hello": True})}), nid, "train")
            for nid in node_ids
        ]
        index_of: dict[int, int] = {}
        for m in grid.send_and_receive(hello, timeout=self.timeout):
            if m.has_error():
                continue
            rec = m.content.config_records.get(SECAGG_KEY)
            if rec is None:
                continue
            idx, pk = rec.get("index"), rec.get("public-key")
            if isinstance(idx, int) and registry.get(idx) == pk and idx not in index_of.values():
                index_of[m.metadata.src_node_id] = idx
        if len(index_of) < self.min_nodes:
            raise WorkflowError(f"only {len(index_of)} nodes proved a registered identity")
        return index_of, sealed

    def _config(self, n: int, registry: Registry | None) -> SecAggConfig:
        """The session's parameters: exactly what the nodes' policy derives (the
        registry's in the active setting), with this workflow's encoding."""
        element_clip = float(self.dp.clip_norm) if self.dp is not None else max(self.clip, 1.0)
        enc = {"bits": self.bits, "clip_min": -element_clip, "clip_max": element_clip}
        bad = set(self.overrides) & set(SECURITY_FIELDS)
        if bad:
            raise WorkflowError(
                f"{sorted(bad)} are fixed by the nodes' security policy; provision another policy"
            )
        policy = registry.policy if registry is not None else self._hbc_policy()
        try:
            cfg: SecAggConfig = policy.derive(n, **(enc | self.overrides))
        except SecAggError as exc:
            raise WorkflowError(f"the policy derives no parameters for n={n}: {exc}") from exc
        return cfg

    def _hbc_policy(self) -> SecurityPolicy:
        if self.policy is not None:
            return self.policy
        return SecurityPolicy.honest_but_curious(dropout_fraction=self.dropout_fraction)

    def _begin(self, r: int, rows: list[RoundRow]) -> bool:
        if self.ledger is None or self.round_cost is None:
            return True
        from dp.errors import BudgetExceededError

        if r in self._ended_unbegun:  # aborted in an earlier exchange: zero cost
            released = self._ended_unbegun.pop(r)
            self.ledger.record_aborted(r, released_shares=released, cost=self.round_cost(r))
            return True
        try:
            self._pending = self.ledger.begin_round(r, self.round_cost(r))
        except BudgetExceededError as exc:
            rows.append(RoundRow(r, "budget_exhausted", [], [], 0.0, 0, 0.0, 0.0, error=str(exc)))
            return False
        return True

    def _finish(
        self,
        end: RoundEnd,
        model: Arrays,
        exchanges: list[dict[str, Any]],
        round_start: dict[int, int],
        n: int,
    ) -> RoundRow:
        ex = exchanges[round_start.get(end.round, len(exchanges) - 1) :]
        secs = sum(e["seconds"] for e in ex)
        senders = max(1, n)
        up = sum(e["bytes_up"] for e in ex) / senders
        down = sum(e["bytes_down"] for e in ex) / senders
        if self.ledger is not None and self.round_cost is not None:
            pending = self.ledger.pending
            if pending is None or pending.round != end.round:
                # its key steps ride on earlier rounds' exchanges: it can abort before
                # its own TRAIN exchange, with nothing reserved, sent or released
                if end.outcome is not None:
                    raise WorkflowError(f"round {end.round} finished without a ledger entry")
                self._ended_unbegun[end.round] = end.released_shares
            elif end.outcome is not None:
                self.ledger.commit(self._pending)
            else:
                self.ledger.record_aborted(end.round, released_shares=end.released_shares)
        if end.outcome is None:
            return RoundRow(
                end.round,
                "aborted",
                [],
                list(range(n)),
                secs,
                len(ex),
                up,
                down,
                end.released_shares,
                f"{type(end.error).__name__}: {end.error}",
            )
        o = end.outcome
        return RoundRow(
            end.round,
            "ok",
            list(o.survivors),
            list(o.dropped),
            secs,
            len(ex),
            up,
            down,
            True,
            extra={"exchange_s": [e["seconds"] for e in ex]},
        )

    def _apply(self, model: Arrays, end: RoundEnd) -> Arrays:
        if end.outcome is None:
            raise WorkflowError(f"round {end.round} has no aggregate to apply")
        total = np.asarray(end.outcome.sum, dtype=np.float64)
        if self.dp is not None:  # the ledger committed this round in _finish
            update = self.dp.release(total, rng=self._noise_rng)
            return unflatten(flatten(model) + self.server_lr * update, model)
        weight = float(total[-1])
        if not weight > 0:
            return model
        new = flatten(model) + self.server_lr * total[:-1] / weight
        return unflatten(new, model)
