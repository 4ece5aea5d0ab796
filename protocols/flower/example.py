"""The Flower example app (``examples/flower-app``) and ``secagg flower-demo``, its driver.

The example trains the demo's model on Flower's deployment engine: a ServerApp running
:class:`~protocols.flower.workflow.SecAggWorkflow` (SecAgg+ masking) and a ClientApp
doing the same DP-SGD local training as ``secagg run`` behind
:func:`~protocols.flower.mod.secagg_mod`. This module holds what the app and the driver
share (which experiment configs the app runs, the per-round table) and the driver,
:func:`run_flower_demo`: one SuperLink and N SuperNodes on loopback
(:class:`~protocols.flower.deploy.LocalDeployment`), the run, the table, and a clean stop
(also on Ctrl-C).

Flower decides who drops out, so the app runs every client every round and simulates no
dropouts: :func:`flower_config` sets ``clients.dropout_fraction = 0`` and
``clients.per_round`` to all, and refuses what the app cannot run (another backend than
masking, DP-FedAvg, Poisson client sampling).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from protocols.errors import ExperimentConfigError
from protocols.experiment import ExperimentConfig

EXAMPLE_DIR = Path(__file__).resolve().parents[2] / "examples" / "flower-app"
EXAMPLE_CONFIG = EXAMPLE_DIR / "experiment.toml"
SETTINGS = {"hbc": "honest_but_curious", "active": "active"}

# run-config keys of the example app (its pyproject.toml lists them with defaults)
EXPERIMENT_KEY = "experiment"  # a TOML path (relative to the app) or the config as JSON
OUT_DIR_KEY = "out-dir"  # the ServerApp's ledger.jsonl goes here ("" keeps it in memory)
PROGRESS_KEY = "progress-file"  # the ServerApp appends each round's row here (JSON lines)
# node-config key: where a SuperNode's clients keep their DP ledgers between messages
NODE_DIR_KEY = "secagg-node-dir"


# --------------------------------------------------------------------------- configs


def check_flower_config(cfg: ExperimentConfig) -> None:
    """Refuse a config the example app cannot run as ``secagg run`` would."""
    c, b, dp = cfg.clients, cfg.backend, cfg.dp
    if b.name != "masking":
        raise ExperimentConfigError("backend.name", "the Flower app runs SecAgg+ masking only")
    if dp.mechanism == "dp_fedavg":
        raise ExperimentConfigError(
            "dp.mechanism", "the Flower app runs dp_sgd (client-side) or none, not dp_fedavg"
        )
    if c.sampling != "uniform" or (c.per_round or c.num_clients) != c.num_clients:
        raise ExperimentConfigError(
            "clients.per_round", "the Flower app trains every client every round"
        )
    if c.dropout_fraction != 0.0:
        raise ExperimentConfigError(
            "clients.dropout_fraction", "must be 0 on Flower (Flower decides who drops)"
        )
    from protocols.backends import MaskingBackend
    from secagg.errors import ConfigError

    graph = None if b.graph == "auto" else b.graph
    backend = MaskingBackend(
        setting=b.setting, graph=graph, bits=b.bits, dropout_fraction=b.design_dropout_fraction
    )
    try:  # the workflow's parameters: refuse here rather than inside the ServerApp
        backend.config(c.num_clients, max(b.clip, 1.0))
    except ConfigError as exc:
        raise ExperimentConfigError("backend.graph", f"{c.num_clients} clients: {exc}") from None


def flower_config(
    cfg: ExperimentConfig,
    *,
    nodes: int | None = None,
    rounds: int | None = None,
    setting: str | None = None,
) -> tuple[ExperimentConfig, list[str]]:
    """``cfg`` made runnable by the app, with the command line's overrides
    (``nodes`` -> ``clients.num_clients``, ``setting``: ``hbc`` or ``active``); returns
    the config and notes on what was changed."""
    notes: list[str] = []
    changes: dict[str, dict[str, Any]] = {}
    c = cfg.clients
    if c.dropout_fraction != 0.0:
        notes.append(f"clients.dropout_fraction {c.dropout_fraction} -> 0 (Flower decides)")
        changes.setdefault("clients", {})["dropout_fraction"] = 0.0
    if c.per_round is not None:
        notes.append(f"clients.per_round {c.per_round} -> every client")
    if nodes is not None:
        changes.setdefault("clients", {})["num_clients"] = nodes
    if rounds is not None:
        changes["experiment"] = {"rounds": rounds}
    if setting is not None:
        if setting not in SETTINGS:
            raise ExperimentConfigError("backend.setting", f"use hbc or active, got {setting!r}")
        changes["backend"] = {"setting": SETTINGS[setting]}
    raw = cfg.to_dict()
    raw["clients"].pop("per_round", None)
    for name, values in changes.items():
        raw[name].update(values)
    out = ExperimentConfig.from_dict(raw)
    check_flower_config(out)
    return out, notes


def example_config() -> ExperimentConfig:
    """The example's own config (``examples/flower-app/experiment.toml``)."""
    return ExperimentConfig.from_toml(EXAMPLE_CONFIG)


def load_app_config(run_config: Mapping[str, Any], app_dir: Path) -> ExperimentConfig:
    """The experiment a run of the app trains: run-config ``experiment`` holds the config
    as a JSON object, or a TOML path (relative paths are under ``app_dir``)."""
    spec = str(run_config.get(EXPERIMENT_KEY, "") or "experiment.toml").strip()
    if spec.startswith("{"):
        cfg = ExperimentConfig.from_dict(json.loads(spec))
    else:
        path = Path(spec)
        cfg = ExperimentConfig.from_toml(path if path.is_absolute() else app_dir / path)
    check_flower_config(cfg)
    return cfg


# --------------------------------------------------------------------------- the table

TABLE_HEADER = (
    f"{'round':>5} {'status':>16} {'surv':>4} {'acc':>6} {'loss':>8} {'epsilon':>8} "
    f"{'exch':>4} {'up kB':>7} {'down kB':>7} {'s':>6}"
)


def format_row(row: Mapping[str, Any]) -> str:
    """One row of the per-round table (``round`` counts from 0, as ``secagg run``)."""
    acc = "-" if row.get("accuracy") is None else f"{row['accuracy']:.3f}"
    loss = "-" if row.get("loss") is None else f"{row['loss']:.4f}"
    eps = "-" if row.get("epsilon") is None else f"{row['epsilon']:.3f}"
    return (
        f"{row['round']:>5} {row['status']:>16} {row['survivors']:>4} {acc:>6} {loss:>8} "
        f"{eps:>8} {row['exchanges']:>4} {row['bytes_up'] / 1e3:>7.1f} "
        f"{row['bytes_down'] / 1e3:>7.1f} {row['seconds']:>6.2f}"
    )


class _ProgressPrinter:
    """Prints each row the ServerApp appends to the progress file, as it appears."""

    def __init__(self, path: Path, out: TextIO | None) -> None:
        self.path, self.out = path, out
        self._offset = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> _ProgressPrinter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5.0)
        self._poll()

    def _loop(self) -> None:
        while not self._stop.wait(0.2):
            self._poll()

    def _poll(self) -> None:
        try:
            with self.path.open("rb") as f:
                f.seek(self._offset)
                data = f.read()
        except OSError:
            return
        end = data.rfind(b"\n") + 1  # whole lines only
        self._offset += end
        for line in data[:end].decode().splitlines():
            if line.strip() and self.out is not None:
                print(format_row(json.loads(line)), file=self.out, flush=True)


# --------------------------------------------------------------------------- the driver


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Within: SIGTERM raises KeyboardInterrupt, so the deployment is stopped cleanly."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _client_epsilons(node_dirs: list[Path], accountant: str, rounds: list[int]) -> list[float]:
    """For each FedAvg round in ``rounds``: the max over clients of their cumulative
    epsilon after it (as ``secagg run`` reports it), read from the clients' own ledgers
    (node-local files, readable here: one machine)."""
    from dp.ledger import read_ledger

    per_client = [
        [(e.round, float(e.epsilon_cumulative.get(accountant))) for e in read_ledger(p).entries]
        for d in node_dirs
        for p in d.glob("run-*/client_ledgers/client-*.jsonl")
    ]
    return [
        max((max((eps for r, eps in c if r <= rnd), default=0.0) for c in per_client), default=0.0)
        for rnd in rounds
    ]


def default_timeout(cfg: ExperimentConfig) -> float:
    """Seconds a whole run may take: generous for a 2-core machine (each Flower exchange
    starts one process per node; a training one imports torch and Opacus)."""
    n = cfg.clients.num_clients
    per_round = 30.0 + 6.0 * n * (3 if cfg.backend.setting == "active" else 2)
    return 120.0 + cfg.experiment.rounds * per_round


def run_flower_demo(
    out_dir: str | os.PathLike[str],
    *,
    config: ExperimentConfig | None = None,
    nodes: int | None = None,
    rounds: int | None = None,
    setting: str | None = None,
    timeout: float | None = None,
    table: TextIO | None = None,
    quiet: bool = False,
    keep_logs: bool = False,
    keep_history: bool = False,
) -> dict[str, Any]:
    """Start a SuperLink and N SuperNodes on loopback, run the example app, print the
    per-round table, stop every process; write ``results.json`` (plus ``config.toml``,
    the server's ``ledger.jsonl``, the clients' ledgers under ``nodes/``) to ``out_dir``
    and return the results. N is ``nodes`` or the config's ``clients.num_clients``;
    ``keep_history`` adds the global model after every round (``history``)."""
    from protocols.demo import _write_toml
    from protocols.flower.deploy import LocalDeployment, NodeConfigValue
    from protocols.flower.records import IDENTITY_FILE, REGISTRY_FILE, provision_identities
    from protocols.report import write_json

    cfg, notes = flower_config(
        config if config is not None else example_config(),
        nodes=nodes,
        rounds=rounds,
        setting=setting,
    )
    out = Path(out_dir).resolve()
    if (out / "results.json").exists() or (out / "ledger.jsonl").exists():
        raise FileExistsError(f"{out} already holds a flower-demo report; pick another --out")
    out.mkdir(parents=True, exist_ok=True)
    _write_toml(out / "config.toml", cfg.to_dict())
    say = None if quiet else (table if table is not None else sys.stdout)
    n = cfg.clients.num_clients
    active = cfg.backend.setting == "active"
    node_dirs = [out / "nodes" / f"node-{i}" for i in range(n)]
    identities: list[Path] = []
    run_config: dict[str, NodeConfigValue] = {
        EXPERIMENT_KEY: json.dumps(cfg.to_dict()),
        OUT_DIR_KEY: str(out),
        PROGRESS_KEY: str(out / "progress.jsonl"),
        "keep-history": keep_history,
    }
    if active:
        identities, registry = provision_identities(out / "identities", n)
        run_config["registry-file"] = str(registry)

    def node_config(i: int) -> dict[str, NodeConfigValue]:
        extra: dict[str, NodeConfigValue] = {NODE_DIR_KEY: str(node_dirs[i])}
        if active:
            extra[IDENTITY_FILE] = str(identities[i])
            extra[REGISTRY_FILE] = str(run_config["registry-file"])
        return extra

    for note in notes:
        if say:
            print(f"note: {note}", file=say)
    mode = "active" if active else "honest-but-curious"
    dp_note = "DP-SGD on every client" if cfg.dp.mechanism == "dp_sgd" else "no DP"
    if say:
        print(
            f"Flower: 1 SuperLink + {n} SuperNodes on loopback; SecAgg+ ({mode}), {dp_note}, "
            f"{cfg.experiment.rounds} rounds",
            file=say,
            flush=True,
        )
    t0 = time.perf_counter()
    dep = LocalDeployment(n, node_config=node_config, keep_run_dir=keep_logs)
    try:
        with _sigterm_as_interrupt(), dep:
            startup = time.perf_counter() - t0
            if say:
                print(f"deployment up in {startup:.1f} s; running the app", file=say, flush=True)
                print(TABLE_HEADER, file=say, flush=True)
            with _ProgressPrinter(out / "progress.jsonl", say):
                result = dep.run(
                    EXAMPLE_DIR,
                    run_config,
                    timeout=timeout if timeout is not None else default_timeout(cfg),
                )
    except KeyboardInterrupt:
        # stopped on request: the deployment's temporary logs are of no use
        if not keep_logs and dep.run_dir.name.startswith("flwr-deploy-") and not dep.pids():
            shutil.rmtree(dep.run_dir, ignore_errors=True)
        raise
    total = time.perf_counter() - t0
    rows = result["rounds"]
    client_eps: list[float | None] = (
        list(_client_epsilons(node_dirs, cfg.dp.accountant, [r["round"] for r in rows]))
        if cfg.dp.mechanism == "dp_sgd"
        else [None] * len(rows)
    )
    for row, ceps in zip(rows, client_eps, strict=True):
        row["client_epsilon"] = ceps
    result.update(
        {
            "num_nodes": n,
            "startup_s": startup,
            "wall_s": total,
            "final_client_epsilon": client_eps[-1] if client_eps else None,
            "notes": notes,
        }
    )
    write_json(out / "results.json", result)
    if say:
        acc, eps = result["final_accuracy"], result["final_epsilon"]
        ceps = result["final_client_epsilon"]
        eps_txt = (
            "no DP"
            if eps is None or ceps is None
            else f"epsilon {ceps:.2f} (max over clients; server bound {eps:.2f}) at delta "
            f"{cfg.dp.delta:g}"
        )
        acc_txt = "-" if acc is None else f"{acc:.3f}"
        print(
            f"\nfinal accuracy {acc_txt}, loss {result['final_loss']:.4f}, {eps_txt}; "
            f"{len(result['rounds'])} rounds in {result['total_s']:.0f} s "
            f"(whole demo {total:.0f} s, every process stopped)\nreport: {out}/",
            file=say,
        )
    return result


__all__ = [
    "EXAMPLE_DIR",
    "TABLE_HEADER",
    "check_flower_config",
    "example_config",
    "flower_config",
    "format_row",
    "load_app_config",
    "run_flower_demo",
]
