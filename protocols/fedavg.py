"""The FedAvg round loop: sample clients, train locally (optionally DP-SGD), aggregate
securely through the :class:`~protocols.privacy_layer.PrivacyLayer`, update the global
model, account every round, and keep one :class:`RoundRecord` per round.

One round, in order:

1. ``begin_round`` on the server ledger (budget guard; a refusal stops training with
   nothing written);
2. sample participants: for DP-FedAvg, Poisson with secret coins from the OS CSPRNG,
   drawn by the privacy layer (its accounting checks the rate, the population and the
   fixed denominator); otherwise uniform without replacement (or Poisson) from the
   experiment's seeded generator, leaving out clients that already contributed for this
   exact model hash without fresh DP noise (a failed round leaves the model unchanged;
   see :mod:`protocols.differencing`);
3. local training on a copy of the global model; a client whose training raises drops
   out of the round (it never shows up: dropout at ``start``); a simulated fraction of
   the rest vanishes at ``dropout_step``;
4. secure aggregation of (weighted, clipped) updates, signed with the model hash;
5. failed round (too few survivors, ...): ``record_aborted`` in the ledger and the global
   model is left unchanged; otherwise ``commit`` and only then update the model.

DP-SGD (sample-level): one :class:`dp.DPSGDClient` per client identity, reused across
rounds; the record's ``epsilon`` is the **max over participating clients** of their
cumulative sample-level epsilon, and the server ledger composes an upper bound of every
client's per-round cost (largest sample rate and step count, same sigma).
DP-FedAvg (user-level): L2 clip on clients, Gaussian noise added by the server to the
secure sum after the ledger commit (central noise; the server is trusted for noise).
"""

from __future__ import annotations

import math
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from protocols.backends import make_backend
from protocols.data import FederatedData
from protocols.experiment import ExperimentConfig
from protocols.params import ParamSpec, flatten_model, load_flat, model_hash
from protocols.participation import Participation
from protocols.privacy_layer import PrivacyLayer

DEFAULT_HIDDEN = (64,)
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def loss_function(name: str) -> LossFn:
    """``cross_entropy``, ``mse`` or ``half_mse`` (0.5 * mean squared error, whose gradient
    for a linear model is (1/m) sum_j (f(x_j) - y_j) x_j)."""
    if name == "cross_entropy":
        return nn.functional.cross_entropy
    if name == "mse":
        return nn.functional.mse_loss
    if name == "half_mse":
        return lambda out, y: 0.5 * nn.functional.mse_loss(out, y)
    raise ValueError(f"unknown loss {name!r}")


@dataclass
class RoundRecord:
    """What one round did and cost (one row of the per-round table and results JSON).

    ``epsilon``: cumulative epsilon after the round (DP-SGD: max over participating
    clients, sample-level; DP-FedAvg: the server ledger's, user-level; ``None`` without
    DP). ``bytes_up``/``bytes_down``: per participating client, on average (down counts
    the float32 model and the server's protocol messages). ``timings``: seconds per phase.
    """

    round: int
    status: str  # "ok", "failed", "budget_exhausted", "no_clients"
    participants: list[int]
    survivors: list[int]
    failed_training: list[int]
    accuracy: float | None
    loss: float
    epsilon: float | None
    epsilon_bound: float | None
    released_shares: bool
    bytes_up: float
    bytes_down: float
    timings: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    ledger_head: str | None = None  # the server ledger's head after the round: keep it

    def to_json(self) -> dict[str, Any]:
        """JSON-friendly dict (with ``survivors`` as a count and ``survivor_ids``)."""
        d = asdict(self)
        d["survivor_ids"] = d.pop("survivors")
        d["survivors"] = len(self.survivors)
        d["participant_ids"] = d.pop("participants")
        d["participants"] = len(self.participants)
        return d


@dataclass
class FedAvgResult:
    """All round records plus the final model's evaluation."""

    records: list[RoundRecord]
    final_accuracy: float | None
    final_loss: float
    model: nn.Module
    ledger_path: Path | None
    history: list[np.ndarray] = field(default_factory=list)


class ClientTrainingError(RuntimeError):
    """Raised by a fault injector to simulate a client whose training step fails."""


class FedAvg:
    """Runs an :class:`ExperimentConfig` on given data (see the module docs).

    ``fail`` is a hook ``(round, client) -> bool``: True makes that client's training
    raise (a real failure, which becomes a dropout). ``keep_history`` keeps the flat global
    model after every round (tests compare backends step for step).
    """

    def __init__(
        self,
        cfg: ExperimentConfig,
        data: FederatedData,
        model: nn.Module,
        *,
        out_dir: str | Path | None = None,
        fail: Callable[[int, int], bool] | None = None,
        keep_history: bool = False,
    ) -> None:
        self.cfg = cfg
        self.data = data
        self.model = model
        self.spec = ParamSpec.of(model)
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.fail = fail
        self.keep_history = keep_history
        self.loss_fn = loss_function(cfg.training.loss)
        c = cfg.clients
        self.num_clients = c.num_clients
        if len(data.clients) != c.num_clients:
            raise ValueError(f"{len(data.clients)} client datasets, config says {c.num_clients}")
        self.per_round = c.per_round or c.num_clients
        self.rng = np.random.default_rng(cfg.experiment.seed)
        self.worker = _clone(model)
        self._dp_clients: dict[int, Any] = {}
        self.ledger = self._make_ledger()
        self.layer = self._make_layer()

    # -- setup --------------------------------------------------------------------------

    def _ledger_settings(self) -> dict[str, Any]:
        dp = self.cfg.dp
        settings: dict[str, Any] = {
            "delta": dp.delta,
            "target_epsilon": dp.target_epsilon,
            "guard_accountant": dp.accountant,
            "meta": {
                "experiment": self.cfg.experiment.name[:200],
                "level": (
                    "user" if dp.mechanism == "dp_fedavg" else "sample (upper bound over clients)"
                ),
            },
        }
        if dp.mechanism == "dp_fedavg":
            settings["population"] = self.num_clients
        return settings

    def _make_ledger(self) -> Any:
        if self.cfg.dp.mechanism == "none":
            return None
        from dp import PrivacyLedger

        if self.out_dir is None:
            return PrivacyLedger.in_memory(**self._ledger_settings())
        self.out_dir.mkdir(parents=True, exist_ok=True)
        return PrivacyLedger.create(self.out_dir / "ledger.jsonl", **self._ledger_settings())

    def _make_layer(self) -> PrivacyLayer:
        b, dp = self.cfg.backend, self.cfg.dp
        if b.name == "masking":
            params: dict[str, Any] = {
                "setting": b.setting,
                "graph": None if b.graph == "auto" else b.graph,
                "bits": b.bits,
                "dropout_fraction": b.design_dropout_fraction,
            }
        elif b.name == "paillier":
            params = {
                "key_bits": b.key_bits,
                "value_bits": b.value_bits,
                "insecure_test_key": b.insecure_test_key,
            }
        else:
            params = {}
        backend = make_backend(b.name, **params)
        mech = None
        if dp.mechanism == "dp_fedavg":
            from dp import DPFedAvg, rounded_sensitivity

            q = self.per_round / self.num_clients
            quantum = backend.quantum(self.num_clients, dp.clip_norm)
            sens = (
                rounded_sensitivity(dp.clip_norm, granularity=quantum, dim=self.spec.dimension)
                if quantum > 0
                else None
            )
            mech = DPFedAvg(
                clip_norm=dp.clip_norm,
                noise_multiplier=dp.noise_multiplier,
                expected_clients=q * self.num_clients,
                sample_rate=q,
                sensitivity=sens,
            )
        sizes = self.data.sizes
        participation = (
            Participation.poisson(self.per_round / self.num_clients, self.num_clients)
            if mech is not None
            else None
        )
        return PrivacyLayer(
            backend=backend,
            clip=b.clip,
            weighting=self.cfg.clients.weighting,
            max_weight=float(self.cfg.clients.max_examples or max(sizes)),
            dp=mech,
            ledger=self.ledger,
            seed=self.cfg.experiment.seed,
            noise_seed=self.cfg.experiment.seed + 1,
            participation=participation,
        )

    # -- one round ------------------------------------------------------------------------

    def _sample(self, candidates: list[int]) -> list[int]:
        if self.cfg.clients.sampling == "poisson":
            q = self.per_round / self.num_clients
            return sorted(c for c in candidates if self.rng.random() < q)
        k = min(self.per_round, len(candidates))
        return sorted(int(c) for c in self.rng.choice(candidates, size=k, replace=False))

    def _loader(self, client: int, rnd: int) -> DataLoader[Any]:
        ds = self.data.clients[client]
        bs = self.cfg.training.batch_size or len(ds)
        gen = torch.Generator().manual_seed(_seed(self.cfg.experiment.seed, rnd, client, 0))
        return DataLoader(ds, batch_size=bs, shuffle=bs < len(ds), generator=gen)

    def _dp_client(self, client: int) -> Any:
        if client not in self._dp_clients:
            from dp import DPSGDClient

            dp = self.cfg.dp
            path = None
            if self.out_dir is not None:
                (self.out_dir / "client_ledgers").mkdir(parents=True, exist_ok=True)
                path = self.out_dir / "client_ledgers" / f"client-{client}.jsonl"
            self._dp_clients[client] = DPSGDClient(
                f"client-{client}",
                max_grad_norm=dp.max_grad_norm,
                delta=dp.delta,
                noise_multiplier=dp.noise_multiplier,
                epochs_per_round=self.cfg.training.local_epochs,
                accountant=dp.accountant,  # type: ignore[arg-type]
                ledger_path=path,
            )
        return self._dp_clients[client]

    def _train_client(self, client: int, rnd: int, start: np.ndarray) -> np.ndarray:
        """Local training from the global vector ``start``; returns the update."""
        torch.manual_seed(_seed(self.cfg.experiment.seed, rnd, client, 1))
        if self.fail is not None and self.fail(rnd, client):
            raise ClientTrainingError(f"client {client} failed in round {rnd}")
        load_flat(self.worker, start)
        self.worker.train()
        t = self.cfg.training
        opt = torch.optim.SGD(self.worker.parameters(), lr=t.lr)
        loader = self._loader(client, rnd)
        if self.cfg.dp.mechanism == "dp_sgd":
            self._dp_client(client).train_round(
                self.worker, opt, loader, loss_fn=self.loss_fn, round_id=rnd
            )
        else:
            for _ in range(t.local_epochs):
                for x, y in loader:
                    opt.zero_grad(set_to_none=True)
                    self.loss_fn(self.worker(x), y).backward()  # type: ignore[no-untyped-call]
                    opt.step()
        update: np.ndarray = flatten_model(self.worker) - start
        return update

    def _dp_sgd_cost(self) -> Any:
        """Per-round sample-level cost that bounds every client's (largest q and steps)."""
        from dp import round_cost

        dp, t = self.cfg.dp, self.cfg.training
        steps_per_epoch = [max(1, math.ceil(n / (t.batch_size or n))) for n in self.data.sizes]
        return round_cost(
            mechanism="dp_sgd",
            noise_location="local",
            sample_rate=1.0 / min(steps_per_epoch),
            noise_multiplier=dp.noise_multiplier,
            steps=t.local_epochs * max(steps_per_epoch),
            clip_norm=dp.max_grad_norm,
            extra={"bound": "max over clients"},
        )

    def run_round(
        self, rnd: int, global_vec: np.ndarray, mhash: bytes
    ) -> tuple[RoundRecord, np.ndarray]:
        """One round from the global vector; returns the record and the new global vector."""
        timings: dict[str, float] = {}
        fresh = self.cfg.dp.mechanism == "dp_sgd"
        candidates = self.layer.guard.eligible(mhash, range(self.num_clients), fresh_noise=fresh)
        t0 = time.perf_counter()
        from dp.errors import BudgetExceededError

        try:
            ticket = self.layer.begin_round(self._dp_sgd_cost() if fresh else None)
        except BudgetExceededError as exc:
            return self._record(rnd, "budget_exhausted", [], [], [], None, error=exc), global_vec
        # DP-FedAvg: the layer drew the cohort with secret Poisson coins (amplification)
        participants = (
            list(ticket.cohort) if ticket.cohort is not None else self._sample(list(candidates))
        )
        timings["dp"] = time.perf_counter() - t0
        updates: dict[int, np.ndarray] = {}
        failed: list[int] = []
        t0 = time.perf_counter()
        for c in participants:
            try:
                updates[c] = self._train_client(c, rnd, global_vec)
            except (Exception, BudgetExceededError):  # a failing client becomes a dropout
                failed.append(c)
        timings["local_training"] = time.perf_counter() - t0
        if not updates:
            self.layer.abandon_round(ticket)
            return self._record(rnd, "no_clients", participants, [], failed, None), global_vec
        live = sorted(updates)
        n_drop = math.floor(self.cfg.clients.dropout_fraction * len(live))
        step = self.cfg.clients.dropout_step
        drops = {int(c): step for c in self.rng.choice(live, size=n_drop, replace=False)}
        # The round was set up for every participant: failed ones never show up.
        drops.update(dict.fromkeys(failed, "start"))
        updates.update({c: np.zeros(self.spec.dimension) for c in failed})
        weights = {c: float(len(self.data.clients[c])) for c in participants}
        out = self.layer.aggregate(
            updates,
            model_hash=mhash,
            weights=weights,
            dropouts=drops,
            fresh_noise=fresh,
            ticket=ticket,
        )
        timings.update(_phase_times(out))
        timings["dp"] += out.timings.get("dp_release", 0.0)
        if out.status == "failed":
            rec = self._record(rnd, "failed", participants, [], failed, out, error=out.error)
            rec.timings.update(timings)
            return rec, global_vec
        if out.update is None:
            raise RuntimeError(f"round {rnd}: the backend reported success without an update")
        new_vec = global_vec + self.cfg.training.server_lr * out.update
        rec = self._record(rnd, "ok", participants, list(out.survivors), failed, out)
        rec.timings.update(timings)
        return rec, new_vec

    def _epsilon(self, participants: list[int]) -> tuple[float | None, float | None]:
        if self.ledger is None:
            return None, None
        bound = self.ledger.epsilon(accountant=self.cfg.dp.accountant)
        if self.cfg.dp.mechanism == "dp_fedavg":
            return bound, bound
        eps = [self._dp_clients[c].epsilon() for c in self._dp_clients]
        return (max(eps) if eps else 0.0), bound

    def _record(
        self,
        rnd: int,
        status: str,
        participants: list[int],
        survivors: list[int],
        failed: list[int],
        out: Any,
        *,
        error: BaseException | None = None,
    ) -> RoundRecord:
        eps, bound = self._epsilon(participants)
        up = down = 0.0
        model_bytes = 4.0 * self.spec.dimension
        res = getattr(out, "aggregation", None)
        if res is not None:
            clients = [v for k, v in res.bytes_sent.items() if k.startswith("client/")]
            up = float(np.mean(clients)) if clients else 0.0
            down = model_bytes + res.bytes_sent.get("server", 0) / max(1, len(res.bytes_sent) - 1)
        return RoundRecord(
            round=rnd,
            status=status,
            participants=participants,
            survivors=survivors,
            failed_training=failed,
            accuracy=None,
            loss=float("nan"),
            epsilon=eps,
            epsilon_bound=bound,
            released_shares=bool(getattr(out, "released_shares", False)),
            bytes_up=up,
            bytes_down=down if participants else 0.0,
            error=None if error is None else f"{type(error).__name__}: {error}",
            ledger_head=None if getattr(self.ledger, "path", None) is None else self.ledger.head,
        )

    # -- the loop ---------------------------------------------------------------------------

    def evaluate(self, vector: np.ndarray) -> tuple[float | None, float]:
        """(accuracy or None for regression, loss) of ``vector`` on the held-out set."""
        load_flat(self.worker, vector)
        self.worker.eval()
        x, y = self.data.test.tensors
        with torch.no_grad():
            out = self.worker(x)
            loss = float(self.loss_fn(out, y))
            acc = (
                float((out.argmax(1) == y).float().mean())
                if self.data.task == "classification"
                else None
            )
        return acc, loss

    def run(
        self,
        *,
        progress: bool = False,
        table: TextIO | None = None,
        label: str = "",
    ) -> FedAvgResult:
        """Run every round; ``progress`` shows tqdm on stderr, ``table`` gets one row per round."""
        from tqdm import tqdm

        vec = flatten_model(self.model)
        history = [vec.copy()] if self.keep_history else []
        records: list[RoundRecord] = []
        if table is not None:
            print(_TABLE_HEADER, file=table, flush=True)
        bar = tqdm(
            range(self.cfg.experiment.rounds),
            desc=label or self.cfg.experiment.name,
            disable=not progress,
            file=sys.stderr,
            leave=False,
        )
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*Secure RNG turned off.*")
            for rnd in bar:
                load_flat(self.model, vec)
                mhash = model_hash(self.model)
                rec, vec = self.run_round(rnd, vec, mhash)
                t0 = time.perf_counter()
                rec.accuracy, rec.loss = self.evaluate(vec)
                rec.timings["evaluate"] = time.perf_counter() - t0
                records.append(rec)
                if self.keep_history:
                    history.append(vec.copy())
                if table is not None:
                    print(_row(rec), file=table, flush=True)
                if rec.status == "budget_exhausted":
                    break
        bar.close()
        load_flat(self.model, vec)
        acc, loss = self.evaluate(vec)
        for client in self._dp_clients.values():
            client.close()
        if self.ledger is not None:
            self.ledger.close()
        return FedAvgResult(
            records,
            acc,
            loss,
            self.model,
            None if self.ledger is None else self.ledger.path,
            history,
        )


def _phase_times(out: Any) -> dict[str, float]:
    """Client-side encode/mask time and server aggregation time of the backend."""
    res = out.aggregation
    agg = out.timings.get("aggregate", 0.0)
    if res is None:
        return {"encode_mask": 0.0, "server_aggregate": agg}
    client = sum(v for k, v in res.timings.items() if "client" in k)
    return {"encode_mask": client, "server_aggregate": max(0.0, agg - client)}


_TABLE_HEADER = (
    f"{'round':>5} {'status':>8} {'part':>4} {'surv':>4} {'acc':>6} {'loss':>8} "
    f"{'epsilon':>8} {'up kB':>8} {'train s':>7} {'agg s':>6} ledger head"
)


def _row(r: RoundRecord) -> str:
    acc = "-" if r.accuracy is None else f"{r.accuracy:.3f}"
    eps = "-" if r.epsilon is None else f"{r.epsilon:.3f}"
    agg = r.timings.get("encode_mask", 0.0) + r.timings.get("server_aggregate", 0.0)
    return (
        f"{r.round:>5} {r.status:>8} {len(r.participants):>4} {len(r.survivors):>4} {acc:>6} "
        f"{r.loss:>8.4f} {eps:>8} {r.bytes_up / 1e3:>8.1f} "
        f"{r.timings.get('local_training', 0.0):>7.2f} {agg:>6.2f} {r.ledger_head or '-'}"
    )


def _seed(*parts: int) -> int:
    """A reproducible 63-bit seed from integers (unlike hash(), stable across processes)."""
    return int(np.random.SeedSequence(list(parts)).generate_state(2, np.uint64)[0] >> np.uint64(1))


def _clone(model: nn.Module) -> nn.Module:
    import copy

    return copy.deepcopy(model)


def build_data(cfg: ExperimentConfig) -> FederatedData:
    """The federated dataset an experiment config describes."""
    from protocols import data

    d, c, seed = cfg.data, cfg.clients, cfg.experiment.seed
    if d.dataset == "digits":
        return data.digits(
            c.num_clients,
            split=d.split,
            alpha=d.alpha,
            test_fraction=d.test_fraction,
            min_client_size=d.min_client_size,
            seed=seed,
        )
    return data.synthetic_linear(
        c.num_clients, samples_per_client=d.samples_per_client, dim=d.dim, noise=d.noise, seed=seed
    )


def build(cfg: ExperimentConfig, **kwargs: Any) -> FedAvg:
    """A :class:`FedAvg` with the data and model the config describes."""
    from protocols.models import build_model

    fd = build_data(cfg)
    model = build_model(
        cfg.model.kind,
        fd.in_features,
        fd.out_features,
        cfg.model.hidden if cfg.model.hidden is not None else DEFAULT_HIDDEN,
        cfg.experiment.seed,
    )
    return FedAvg(cfg, fd, model, **kwargs)


def run_experiment(
    cfg: ExperimentConfig,
    *,
    out_dir: str | Path | None = None,
    progress: bool = False,
    table: TextIO | None = None,
    label: str = "",
    **kwargs: Any,
) -> FedAvgResult:
    """Build and run an experiment."""
    return build(cfg, out_dir=out_dir, **kwargs).run(progress=progress, table=table, label=label)


def records_json(records: Sequence[RoundRecord]) -> list[dict[str, Any]]:
    """Records as JSON-friendly dicts."""
    return [r.to_json() for r in records]


__all__ = [
    "ClientTrainingError",
    "FedAvg",
    "FedAvgResult",
    "RoundRecord",
    "build",
    "build_data",
    "loss_function",
    "records_json",
    "run_experiment",
]
