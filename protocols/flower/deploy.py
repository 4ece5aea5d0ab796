"""A real Flower deployment on loopback: one SuperLink and N SuperNodes as processes.

:class:`LocalDeployment` is what the Flower tests and benchmarks stand on. It starts
``flower-superlink`` and ``flower-supernode`` (Flower 1.42: every API over HTTP on the
SuperLink's one ``--port``) in a private ``FLWR_HOME`` with its own ``config.toml``, so
nothing in ``~`` matters, on free loopback ports, each process in its own session and
with its output in a log file under the run directory. ``start()`` returns once every
SuperNode is registered *and* listed online by the SuperLink's Control API;
``run()`` runs ``flwr run APP local --stream`` and returns the JSON the ServerApp wrote
to the file named by run-config key ``result-file``; ``kill_node(i)`` SIGKILLs a
SuperNode with its ClientApp children; ``stop()`` ends everything and checks that no
process is left.

How processes are found: Flower detaches some children into new sessions (the
SuperLink's SuperExec) and orphans others when a parent dies, so process groups alone
cannot reach the whole tree. Every process we start gets a unique token in its
environment (``SECAGG_FLOWER_DEPLOYMENT``) plus its role (``SECAGG_FLOWER_ROLE``), which
every descendant inherits; on Linux the harness finds a deployment's processes by
reading ``/proc/*/environ``. Elsewhere it falls back to the process groups it created.

Failure injection is deterministic through :mod:`protocols.flower.sync`: with
``on_event`` the harness passes run-config key ``sync-dir`` and answers the ServerApp's
:class:`~protocols.flower.sync.ExchangeHook` events, calling ``on_event`` in between
(where a test may call :meth:`LocalDeployment.kill_node`).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
import uuid
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, NoReturn

from protocols.flower.errors import (
    DeploymentStartError,
    FlowerDeploymentError,
    FlowerRunError,
    FlowerRunTimeoutError,
    LeftoverProcessError,
)
from protocols.flower.sync import SYNC_DIR_KEY, SyncWatcher

__all__ = [
    "RESULT_FILE_KEY",
    "SYNC_DIR_KEY",
    "LocalDeployment",
    "app_config_keys",
    "free_ports",
    "toml_value",
]

RESULT_FILE_KEY = "result-file"
MARKER_ENV = "SECAGG_FLOWER_DEPLOYMENT"
ROLE_ENV = "SECAGG_FLOWER_ROLE"
NodeConfigValue = str | int | float | bool

# Flower phones home (update check, telemetry) unless told not to; this machine is
# offline and the checks only cost time.
_QUIET_ENV = {
    "FLWR_TELEMETRY_ENABLED": "0",
    "FLWR_DISABLE_UPDATE_CHECK": "1",
    "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
    "PYTHONUNBUFFERED": "1",
}
_POLL = 0.05
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_NODE_ID = re.compile(r"SuperNode ID: (\d+)")
_RUN_ID = re.compile(r"Successfully started run (\d+)")
_PORT_CLASH = ("address already in use", "errno 98", "eaddrinuse")


# --------------------------------------------------------------------------- helpers


_issued_ports: set[int] = set()
_port_lock = threading.Lock()


def _port_window() -> tuple[int, int]:
    """A port range below the kernel's ephemeral range, so that outgoing connections
    (which take ephemeral ports) cannot grab a port between our probe and the bind."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    return (15000, max(low - 1, 20000)) if low > 20000 else (40000, 60000)


def free_ports(count: int) -> list[int]:
    """``count`` distinct loopback TCP ports that are free now and that this process has
    not handed out before (so deployments started in sequence never share one)."""
    low, high = _port_window()
    ports: list[int] = []
    with _port_lock:
        for _ in range(1000 * count):
            if len(ports) == count:
                break
            port = random.randint(low, high)  # noqa: S311 (not a secret)
            if port in _issued_ports or port in ports:
                continue
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    continue
            ports.append(port)
        if len(ports) < count:
            raise FlowerDeploymentError(f"found only {len(ports)} of {count} free ports")
        _issued_ports.update(ports)
    return ports


def toml_value(value: NodeConfigValue) -> str:
    """``value`` as a TOML literal (Flower configs hold bool, int, float, str only)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        # JSON string escapes are valid TOML basic-string escapes; TOML also forbids a
        # raw DEL, which JSON leaves alone.
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    raise TypeError(f"config values must be bool, int, float or str, not {type(value).__name__}")


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def toml_document(config: Mapping[str, NodeConfigValue]) -> str:
    """A flat TOML document (one ``key = value`` per line)."""
    return "".join(f"{_toml_key(k)} = {toml_value(v)}\n" for k, v in config.items())


def _cli_config_arg(config: Mapping[str, NodeConfigValue]) -> str:
    """``k=v k2=v2`` for ``--node-config``; Flower splits it with a regex that allows
    quoted strings without inner quotes, so strings go in single (literal) quotes."""
    parts = []
    for key, value in config.items():
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", key):
            raise ValueError(f"node-config key {key!r} has characters Flower cannot parse")
        if isinstance(value, str):
            if "'" not in value and "\n" not in value:
                text = f"'{value}'"
            elif '"' not in value and "\\" not in value and "\n" not in value:
                text = f'"{value}"'
            else:
                raise ValueError(f"node-config value {value!r} cannot be quoted for Flower")
        else:
            text = toml_value(value)
        parts.append(f"{key}={text}")
    return " ".join(parts)


def app_config_keys(app_dir: str | os.PathLike[str]) -> list[str]:
    """The run-config keys a Flower app declares (``[tool.flwr.app.config]``, nested
    tables flattened with dots, as Flower does)."""
    with (Path(app_dir) / "pyproject.toml").open("rb") as f:
        config = tomllib.load(f).get("tool", {}).get("flwr", {}).get("app", {}).get("config", {})

    def flat(table: Mapping[str, Any], prefix: str) -> list[str]:
        keys: list[str] = []
        for key, value in table.items():
            name = f"{prefix}{key}"
            keys += flat(value, name + ".") if isinstance(value, dict) else [name]
        return keys

    return flat(config, "")


def _executable(name: str) -> str:
    """The Flower CLI ``name`` next to this interpreter (the venv), else on PATH."""
    here = Path(sys.executable).parent / name
    if here.exists():
        return str(here)
    found = shutil.which(name)
    if found is None:
        raise FlowerDeploymentError(
            f"{name} not found next to {sys.executable} or on PATH; install the Flower "
            "extra: pip install 'secagg[flower]'"
        )
    return found


def tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a log file, colour codes removed ('' if absent)."""
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(_ANSI.sub("", text).splitlines()[-lines:])


def _proc_state(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "?"
    return stat.rsplit(")", 1)[-1].split()[0]


def marked_pids(token: str, role: str | None = None) -> list[int]:
    """Live (non-zombie) processes whose environment carries deployment ``token`` (and
    role ``role``, when given). Empty where ``/proc`` does not exist."""
    want = f"{MARKER_ENV}={token}".encode()
    want_role = f"{ROLE_ENV}={role}".encode() if role is not None else None
    found = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for name in entries:
        if not name.isdigit():
            continue
        try:
            environ = Path(f"/proc/{name}/environ").read_bytes()
        except OSError:
            continue
        items = environ.split(b"\0")
        if want not in items or (want_role is not None and want_role not in items):
            continue
        if _proc_state(int(name)) in ("Z", "X", "?"):
            continue
        found.append(int(name))
    return sorted(found)


def _signal_pids(pids: Iterable[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def _emergency_kill(token: str, groups: list[int]) -> None:
    """Last resort when a deployment object is collected or the interpreter exits
    without ``stop()``: SIGKILL whatever carries its token."""
    for pgid in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
    _signal_pids(marked_pids(token), signal.SIGKILL)


@dataclass
class _Proc:
    role: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    port: int | None = None

    def alive(self) -> bool:
        return self.popen.poll() is None


class _PortClashError(Exception):
    """A port was taken between the probe and the bind; start again on new ports."""


# --------------------------------------------------------------------------- deployment


class LocalDeployment:
    """One SuperLink and ``num_nodes`` SuperNodes on loopback, as separate processes.

    ``node_config(i)`` adds to (or overrides) SuperNode ``i``'s node config, which
    always holds ``partition-id = i`` and ``num-partitions = num_nodes``. ``env`` is added
    to every process's environment. ``run_dir`` holds ``flwr-home/`` (``FLWR_HOME``),
    ``logs/`` and ``runs/``; when not given, a temporary directory is made and removed
    by ``stop()`` unless something failed or ``keep_run_dir`` is set. A given
    ``run_dir`` is never removed.
    """

    def __init__(
        self,
        num_nodes: int,
        *,
        run_dir: str | os.PathLike[str] | None = None,
        keep_run_dir: bool = False,
        node_config: Callable[[int], Mapping[str, NodeConfigValue]] | None = None,
        env: Mapping[str, str] | None = None,
        startup_timeout: float = 60.0,
        stop_grace: float = 3.0,
    ) -> None:
        if num_nodes < 1:
            raise ValueError("num_nodes must be at least 1")
        self.num_nodes = num_nodes
        self.startup_timeout = startup_timeout
        self.stop_grace = stop_grace
        self._node_config = node_config
        self._extra_env = dict(env or {})
        self._own_run_dir = run_dir is None
        self._keep = keep_run_dir or run_dir is not None
        self.run_dir = Path(run_dir) if run_dir is not None else Path("")
        self.token = uuid.uuid4().hex
        self.port: int | None = None
        self.node_ports: list[int] = []
        self._superlink: _Proc | None = None
        self._nodes: list[_Proc] = []
        self._node_ids: dict[int, int] = {}
        self._killed: set[int] = set()
        self._runs = 0
        self._active_cli: _Proc | None = None
        self._control: Any = None
        self._started = False
        self._stopped = False
        self.failed = False
        self.startup_s: float | None = None
        self._groups: list[int] = []
        self._finalizer = weakref.finalize(self, _emergency_kill, self.token, self._groups)

    # ------------------------------------------------------------------ properties

    @property
    def address(self) -> str:
        """The SuperLink's ``host:port`` (all Flower APIs share it)."""
        if self.port is None:
            raise FlowerDeploymentError("deployment not started")
        return f"127.0.0.1:{self.port}"

    @property
    def flwr_home(self) -> Path:
        """This deployment's private ``FLWR_HOME``."""
        return self.run_dir / "flwr-home"

    @property
    def log_dir(self) -> Path:
        """Where each process's log file lives."""
        return self.run_dir / "logs"

    @property
    def killed_nodes(self) -> frozenset[int]:
        """Indices of the SuperNodes killed with :meth:`kill_node`."""
        return frozenset(self._killed)

    def node_ids(self) -> dict[int, int]:
        """SuperNode index -> Flower node id (from each SuperNode's startup log)."""
        return dict(self._node_ids)

    def node_index(self, node_id: int) -> int:
        """The index of the SuperNode with Flower id ``node_id``."""
        for index, nid in self._node_ids.items():
            if nid == node_id:
                return index
        raise KeyError(node_id)

    def pids(self, role: str | None = None) -> list[int]:
        """Live processes of this deployment (optionally only those of ``role``:
        ``superlink``, ``supernode-<i>``, ``flwr-cli``), descendants included."""
        found = set(marked_pids(self.token, role))
        if not os.path.isdir("/proc"):  # no /proc: the processes we started ourselves
            found |= {p.popen.pid for p in self._procs() if p.alive()}
        return sorted(found)

    def log_tail(self, role: str = "superlink", lines: int = 40) -> str:
        """The end of a process's log (``superlink``, ``supernode-<i>``)."""
        for proc in self._procs():
            if proc.role == role:
                return tail(proc.log_path, lines)
        return tail(self.log_dir / f"{role}.log", lines)

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> LocalDeployment:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            self.stop()
            return
        self.failed = True
        try:
            self.stop()
        except FlowerDeploymentError as stop_exc:  # don't hide the original error
            exc.add_note(f"and stopping the deployment failed: {stop_exc}")

    def start(self) -> LocalDeployment:
        """Start the SuperLink and the SuperNodes; return when all nodes are online."""
        if self._started:
            return self
        if self._stopped:
            raise FlowerDeploymentError("a stopped deployment cannot be started again")
        if self._own_run_dir:
            self.run_dir = Path(tempfile.mkdtemp(prefix="flwr-deploy-"))
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.flwr_home.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        t0 = time.monotonic()
        try:
            for attempt in range(3):
                try:
                    self._start_once(deadline=t0 + self.startup_timeout, attempt=attempt)
                    break
                except _PortClashError:
                    self._terminate(self._procs(), grace=1.0)
                    self._superlink, self._nodes = None, []
            else:
                raise DeploymentStartError(
                    "ports kept clashing on three attempts", run_dir=self.run_dir
                )
        except BaseException:
            self.failed = True
            with contextlib.suppress(FlowerDeploymentError):
                self.stop()
            raise
        self._started = True
        self.startup_s = time.monotonic() - t0
        return self

    def stop(self) -> None:
        """Stop every process of the deployment (SIGTERM, then SIGKILL after
        ``stop_grace`` seconds) and check that none is left; remove the temporary run
        directory if nothing failed. Raises :class:`LeftoverProcessError` if a process
        survives SIGKILL. Safe to call twice."""
        if self._stopped:
            return
        self._stopped = True
        procs = self._procs()
        if self._active_cli is not None:
            procs.append(self._active_cli)
        if self._control is not None:
            with contextlib.suppress(Exception):
                self._control.close()
            self._control = None
        leftovers = self._terminate(procs, grace=self.stop_grace)
        self._finalizer.detach()
        if leftovers:
            self.failed = True
            raise LeftoverProcessError(
                f"processes of the deployment survived SIGKILL: {leftovers}",
                pids=leftovers,
                run_dir=self.run_dir,
            )
        if self._own_run_dir and not self._keep and not self.failed:
            shutil.rmtree(self.run_dir, ignore_errors=True)

    def kill_node(self, index: int) -> None:
        """SIGKILL SuperNode ``index`` and everything it started (its SuperExec, its
        ClientApp processes); returns once none of them is alive."""
        if not 0 <= index < len(self._nodes):
            raise IndexError(f"no SuperNode {index} (have {len(self._nodes)})")
        proc = self._nodes[index]
        role = proc.role
        deadline = time.monotonic() + 10.0
        while True:
            if proc.alive():
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.popen.pid, signal.SIGKILL)
            _signal_pids(marked_pids(self.token, role), signal.SIGKILL)
            if not proc.alive() and not marked_pids(self.token, role):
                break
            if time.monotonic() > deadline:
                raise FlowerDeploymentError(
                    f"SuperNode {index} still has processes after SIGKILL: "
                    f"{marked_pids(self.token, role)}",
                    run_dir=self.run_dir,
                )
            time.sleep(_POLL)
        self._killed.add(index)

    # ------------------------------------------------------------------ runs

    def run(
        self,
        app_dir: str | os.PathLike[str],
        run_config: Mapping[str, NodeConfigValue] | None = None,
        *,
        timeout: float,
        on_event: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Run the Flower app in ``app_dir`` on this deployment and return its result.

        ``run_config`` overrides the app's ``[tool.flwr.app.config]`` (the keys must
        exist there), plus ``result-file`` (where the ServerApp must write its JSON
        result) and ``sync-dir`` (for :class:`~protocols.flower.sync.ExchangeHook`;
        empty unless ``on_event`` is given). Raises :class:`FlowerRunTimeoutError` after
        ``timeout`` seconds (the run is stopped), :class:`FlowerRunError` if the run did
        not complete or wrote no result; an exception raised by ``on_event`` is
        re-raised here after the run ends.
        """
        self._require_running()
        wanted = {*(run_config or {}), RESULT_FILE_KEY, SYNC_DIR_KEY}
        unknown = sorted(wanted - set(app_config_keys(app_dir)))
        if unknown:
            raise FlowerRunError(
                f"run-config keys {unknown} are not in [tool.flwr.app.config] of "
                f"{Path(app_dir) / 'pyproject.toml'} (Flower refuses unknown keys)"
            )
        index = self._runs
        self._runs += 1
        run_root = self.run_dir / "runs" / f"{index:03d}"
        run_root.mkdir(parents=True, exist_ok=True)
        result_file = run_root / "result.json"
        sync_dir = run_root / "sync"
        config: dict[str, NodeConfigValue] = dict(run_config or {})
        config[RESULT_FILE_KEY] = str(result_file)
        config[SYNC_DIR_KEY] = str(sync_dir) if on_event is not None else ""
        config_path = run_root / "run-config.toml"
        config_path.write_text(toml_document(config))
        log_path = run_root / "flwr-run.log"
        argv = [
            _executable("flwr"),
            "run",
            str(Path(app_dir).resolve()),
            "local",
            "--stream",
            "--run-config",
            str(config_path),
        ]
        watcher = SyncWatcher(sync_dir, on_event) if on_event is not None else None
        if watcher is not None:
            watcher.start()
        cli = self._spawn("flwr-cli", argv, log_path)
        self._active_cli = cli
        try:
            rc = self._wait_run(cli, timeout=timeout, log_path=log_path)
        finally:
            if watcher is not None:
                watcher.stop()
            self._active_cli = None
        if watcher is not None and watcher.error is not None:
            self.failed = True
            raise watcher.error
        run_id = self._run_id(log_path)
        if rc != 0 or run_id is None:
            self._run_failed(f"flwr run exited with code {rc}", log_path)
        status = self.run_status(run_id)
        if status != "finished:completed":
            self._run_failed(f"run {run_id} ended with status {status!r}", log_path)
        if not result_file.exists():
            self._run_failed(f"run {run_id} wrote no {RESULT_FILE_KEY} ({result_file})", log_path)
        result: dict[str, Any] = json.loads(result_file.read_text())
        return result

    def run_status(self, run_id: int) -> str:
        """The SuperLink's status of a run, e.g. ``finished:completed``."""
        from flwr.proto.control_pb2 import ListRunsRequest

        res = self._call("ListRuns", ListRunsRequest(run_id=run_id))
        run = res.run_dict.get(run_id)
        if run is None:
            return "unknown"
        return f"{run.status.status}:{run.status.sub_status}".rstrip(":")

    def stop_run(self, run_id: int) -> None:
        """Ask the SuperLink to stop a run (``flwr stop``)."""
        from flwr.proto.control_pb2 import StopRunRequest

        self._call("StopRun", StopRunRequest(run_id=run_id))

    def list_nodes(self) -> list[dict[str, Any]]:
        """The SuperNodes the SuperLink knows (``flwr supernode ls``): one dict per node
        with ``node-id``, ``status`` (``online``/``offline``...), ``online-until``."""
        from flwr.proto.control_pb2 import ListNodesRequest

        res = self._call("ListNodes", ListNodesRequest())
        return [
            {
                "node-id": int(n.node_id),
                "status": str(n.status),
                "online-until": float(n.online_until),
                "heartbeat-interval": float(n.heartbeat_interval),
            }
            for n in res.nodes_info
        ]

    def _call(self, method: str, request: Any) -> Any:
        """One Control API call through Flower's own HTTP client, in this process (the
        ``flwr`` CLI does the same but costs seconds of interpreter start per call)."""
        if self._control is None:
            from flwr.cli.cli_client_interceptor import CliClientHttpInterceptor
            from flwr.supercore.control import ControlHttpClient
            from flwr.supercore.interceptors.http.runtime_version import (
                RuntimeVersionHttpInterceptor,
            )

            self._control = ControlHttpClient.from_server_address(
                server_address=self.address,
                insecure=True,
                root_certificates=None,
                interceptors=[
                    CliClientHttpInterceptor(),
                    RuntimeVersionHttpInterceptor(component_name="flwr CLI"),
                ],
            )
        try:
            return getattr(self._control, method)(request)
        except Exception as exc:  # flwr raises its own transport/status errors
            raise FlowerDeploymentError(
                f"Control API {method} failed: {exc!r}",
                run_dir=self.run_dir,
                log_tail=self.log_tail("superlink", 20),
            ) from exc

    def flwr_json(self, *args: str, timeout: float = 60.0) -> dict[str, Any]:
        """Run a ``flwr`` CLI command against this deployment with ``--format json``."""
        proc = subprocess.run(  # noqa: S603 (our own venv's CLI, fixed arguments)
            [_executable("flwr"), *args, "--format", "json"],
            capture_output=True,
            env=self._env("flwr-cli"),
            cwd=self.run_dir,
            timeout=timeout,
            check=False,
        )
        text = proc.stdout.decode("utf-8", "replace")
        start = text.find("{")
        try:
            out: dict[str, Any] = json.loads(text[start:]) if start >= 0 else {}
        except json.JSONDecodeError:
            out = {}
        if proc.returncode != 0 or not out.get("success", False):
            raise FlowerDeploymentError(
                f"flwr {' '.join(args)} failed (exit {proc.returncode})",
                run_dir=self.run_dir,
                log_tail=_ANSI.sub("", text + proc.stderr.decode("utf-8", "replace"))[-4000:],
            )
        return out

    # ------------------------------------------------------------------ internals

    def _procs(self) -> list[_Proc]:
        return ([self._superlink] if self._superlink is not None else []) + list(self._nodes)

    def _env(self, role: str) -> dict[str, str]:
        env = {**os.environ, **_QUIET_ENV, **self._extra_env}
        # Flower starts its helpers (flower-superexec, flwr-serverapp, flwr-clientapp)
        # by name, so the directory of the flwr we run must come first on PATH.
        bin_dir = str(Path(_executable("flwr")).parent)
        env["PATH"] = os.pathsep.join([bin_dir, env.get("PATH", os.defpath)])
        env["FLWR_HOME"] = str(self.flwr_home)
        env[MARKER_ENV] = self.token
        env[ROLE_ENV] = role
        return env

    def _spawn(self, role: str, argv: list[str], log_path: Path, port: int | None = None) -> _Proc:
        with log_path.open("ab") as log:
            popen = subprocess.Popen(  # noqa: S603 (our own venv's CLIs, fixed arguments)
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self._env(role),
                cwd=self.run_dir,
                start_new_session=True,
            )
        self._groups.append(popen.pid)
        return _Proc(role, popen, log_path, port)

    def _start_once(self, *, deadline: float, attempt: int) -> None:
        ports = free_ports(1 + self.num_nodes)
        self.port, self.node_ports = ports[0], ports[1:]
        (self.flwr_home / "config.toml").write_text(
            '[superlink]\ndefault = "local"\n\n'
            f'[superlink.local]\naddress = "{self.address}"\ninsecure = true\n'
        )
        suffix = f".{attempt}" if attempt else ""
        sl_log = self.log_dir / f"superlink{suffix}.log"
        self._superlink = self._spawn(
            "superlink",
            [
                _executable("flower-superlink"),
                "--insecure",
                "--disable-runtime-dependency-installation",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
            ],
            sl_log,
            self.port,
        )
        ready = f"Uvicorn running on http://127.0.0.1:{self.port}"
        self._wait_for(
            lambda: ready in tail(sl_log, 200),
            [self._superlink],
            deadline,
            "the SuperLink to listen",
        )
        self._nodes = []
        for i, port in enumerate(self.node_ports):
            cfg: dict[str, NodeConfigValue] = {"partition-id": i, "num-partitions": self.num_nodes}
            if self._node_config is not None:
                cfg.update(self._node_config(i))
            self._nodes.append(
                self._spawn(
                    f"supernode-{i}",
                    [
                        _executable("flower-supernode"),
                        "--insecure",
                        "--superlink",
                        self.address,
                        "--host",
                        "127.0.0.1",
                        "--port",
                        str(port),
                        "--node-config",
                        _cli_config_arg(cfg),
                    ],
                    self.log_dir / f"supernode-{i}{suffix}.log",
                    port,
                )
            )

        def all_registered() -> bool:
            for i, node in enumerate(self._nodes):
                if i not in self._node_ids:
                    m = _NODE_ID.search(tail(node.log_path, 400))
                    if m is None:
                        return False
                    self._node_ids[i] = int(m.group(1))
            return True

        self._node_ids = {}
        self._wait_for(all_registered, self._procs(), deadline, "every SuperNode to register")
        want = set(self._node_ids.values())

        def all_online() -> bool:
            try:
                nodes = self.list_nodes()
            except FlowerDeploymentError:
                return False
            return want <= {n["node-id"] for n in nodes if n["status"] == "online"}

        self._wait_for(
            all_online, self._procs(), deadline, "the SuperLink to list every SuperNode online"
        )

    def _wait_for(
        self, cond: Callable[[], bool], procs: list[_Proc], deadline: float, what: str
    ) -> None:
        """Poll ``cond`` until true; fail early if one of ``procs`` exits."""
        while True:
            for proc in procs:
                if not proc.alive():
                    text = tail(proc.log_path, 60)
                    if any(s in text.lower() for s in _PORT_CLASH):
                        raise _PortClashError(proc.role)
                    raise DeploymentStartError(
                        f"{proc.role} exited with code {proc.popen.returncode} while waiting "
                        f"for {what}",
                        run_dir=self.run_dir,
                        log_tail=text,
                    )
            if cond():
                return
            if time.monotonic() > deadline:
                raise DeploymentStartError(
                    f"timed out after {self.startup_timeout:.0f} s waiting for {what}",
                    run_dir=self.run_dir,
                    log_tail="\n".join(f"[{p.role}]\n{tail(p.log_path, 15)}" for p in procs),
                )
            time.sleep(_POLL)

    def _wait_run(self, cli: _Proc, *, timeout: float, log_path: Path) -> int:
        deadline = time.monotonic() + timeout
        while True:
            try:
                return cli.popen.wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                pass
            if self._superlink is not None and not self._superlink.alive():
                self._terminate([cli], grace=1.0)
                self.failed = True
                raise FlowerRunError(
                    "the SuperLink died during the run",
                    run_dir=self.run_dir,
                    log_tail=self.log_tail("superlink"),
                )
            if time.monotonic() > deadline:
                run_id = self._run_id(log_path)
                if run_id is not None:
                    with contextlib.suppress(FlowerDeploymentError):
                        self.stop_run(run_id)
                self._terminate([cli], grace=1.0)
                self.failed = True
                raise FlowerRunTimeoutError(
                    f"run {run_id} did not finish in {timeout:.0f} s; stopped",
                    run_dir=self.run_dir,
                    log_tail=tail(log_path, 60),
                )

    @staticmethod
    def _run_id(log_path: Path) -> int | None:
        m = _RUN_ID.search(tail(log_path, 10_000))
        return int(m.group(1)) if m else None

    def _run_failed(self, message: str, log_path: Path) -> NoReturn:
        self.failed = True
        raise FlowerRunError(message, run_dir=self.run_dir, log_tail=tail(log_path, 60))

    def _require_running(self) -> None:
        if not self._started or self._stopped:
            raise FlowerDeploymentError("deployment is not running (call start())")

    def _terminate(self, procs: list[_Proc], *, grace: float) -> list[int]:
        """SIGTERM ``procs`` (with their groups) and, when stopping everything, every
        marked process; SIGKILL what is left after ``grace``. Returns survivors."""
        everything = {p.role for p in procs} >= {p.role for p in self._procs()}

        def targets() -> list[int]:
            pids = {p.popen.pid for p in procs if p.alive()}
            if everything:
                pids |= set(marked_pids(self.token))
            else:
                for p in procs:
                    pids |= set(marked_pids(self.token, p.role))
            return sorted(pids)

        for sig, wait_s in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
            for p in procs:
                if p.alive():
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(p.popen.pid, sig)
            _signal_pids(targets(), sig)
            end = time.monotonic() + wait_s
            while targets() and time.monotonic() < end:
                time.sleep(_POLL)
            if not targets():
                break
        for p in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.popen.wait(timeout=1.0)
        return targets()
