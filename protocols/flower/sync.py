"""Lock-step events between a ServerApp and the test harness, for deterministic faults.

A ServerApp runs in a process that Flower starts; a test cannot reach into it. To kill a
SuperNode *exactly* before (or after) a given exchange, the ServerApp calls
:meth:`ExchangeHook.before_exchange` / :meth:`ExchangeHook.after_exchange`, which write
the event as a JSON file into the run's ``sync-dir`` and block until the harness writes
the matching acknowledgement. The harness side is :class:`SyncWatcher`: a thread that
watches the directory, calls the test's ``on_event(event)`` (which may kill a node) and
then acknowledges. With an empty or absent ``sync-dir`` the hook does nothing, so
benchmarks pay nothing for it.

Files, one pair per event, numbered in the order the ServerApp emits them::

    000000.event.json   {"phase": "before", "seq": 0, "round": 1, "index": 0, ...}
    000000.ack.json     {"ok": true}   or {"ok": false, "error": "..."}

Both are written to a temporary name and renamed, so a reader never sees half a file.
"""

from __future__ import annotations

import json
import os
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from protocols.flower.errors import SyncAbortedError, SyncTimeoutError

SYNC_DIR_KEY = "sync-dir"
SYNC_TIMEOUT_KEY = "sync-timeout"
DEFAULT_SYNC_TIMEOUT = 120.0
POLL_INTERVAL = 0.01


def event_path(sync_dir: Path, seq: int) -> Path:
    """Where event number ``seq`` is written."""
    return sync_dir / f"{seq:06d}.event.json"


def ack_path(sync_dir: Path, seq: int) -> Path:
    """Where the acknowledgement of event number ``seq`` is written."""
    return sync_dir / f"{seq:06d}.ack.json"


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write ``obj`` as JSON to ``path`` so that readers see all of it or nothing."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, sort_keys=True))
    os.replace(tmp, path)


class ExchangeHook:
    """ServerApp side: announce each exchange and wait for the harness to allow it.

    ``sync_dir`` empty or ``None`` makes every call a no-op. ``timeout`` bounds the wait
    for one acknowledgement (:class:`SyncTimeoutError` after it).
    """

    def __init__(
        self, sync_dir: str | os.PathLike[str] | None, *, timeout: float = DEFAULT_SYNC_TIMEOUT
    ) -> None:
        self.sync_dir = Path(sync_dir) if sync_dir else None
        self.timeout = timeout
        self._seq = 0

    @classmethod
    def from_run_config(cls, run_config: Mapping[str, Any]) -> ExchangeHook:
        """The hook the harness asked for through run-config keys ``sync-dir`` (and
        optionally ``sync-timeout``, seconds)."""
        sync_dir = str(run_config.get(SYNC_DIR_KEY, "") or "")
        timeout = float(run_config.get(SYNC_TIMEOUT_KEY, DEFAULT_SYNC_TIMEOUT) or 0.0)
        return cls(sync_dir or None, timeout=timeout if timeout > 0 else DEFAULT_SYNC_TIMEOUT)

    @property
    def enabled(self) -> bool:
        """True when events go to a harness (``sync-dir`` was given)."""
        return self.sync_dir is not None

    def before_exchange(self, event: Mapping[str, Any]) -> None:
        """Announce an exchange about to be sent; returns once the harness has acted."""
        self._emit("before", event)

    def after_exchange(self, event: Mapping[str, Any]) -> None:
        """Announce an exchange whose replies are in; returns once the harness has acted."""
        self._emit("after", event)

    def _emit(self, phase: str, event: Mapping[str, Any]) -> None:
        if self.sync_dir is None:
            return
        seq = self._seq
        self._seq += 1
        payload = {**event, "phase": phase, "seq": seq, "time": time.time()}
        write_json_atomic(event_path(self.sync_dir, seq), payload)
        ack = ack_path(self.sync_dir, seq)
        deadline = time.monotonic() + self.timeout
        while not ack.exists():
            if time.monotonic() > deadline:
                raise SyncTimeoutError(
                    f"no acknowledgement of event {seq} ({phase}) in {self.sync_dir} "
                    f"after {self.timeout:.0f} s"
                )
            time.sleep(POLL_INTERVAL)
        reply = json.loads(ack.read_text())
        if not reply.get("ok", False):
            raise SyncAbortedError(
                f"harness failed on event {seq} ({phase}): {reply.get('error', '?')}"
            )


class SyncWatcher:
    """Harness side: a thread that answers a ServerApp's :class:`ExchangeHook` events.

    For each event, in order, it calls ``on_event(event)`` and then writes the
    acknowledgement. If ``on_event`` raises, the acknowledgement says so (the ServerApp
    then raises :class:`SyncAbortedError`), the exception is kept in ``error`` and no
    further handler is called. ``events`` lists every event seen.
    """

    def __init__(
        self,
        sync_dir: Path,
        on_event: Callable[[dict[str, Any]], None] | None,
        *,
        poll_interval: float = POLL_INTERVAL,
    ) -> None:
        self.sync_dir = sync_dir
        self.on_event = on_event
        self.poll_interval = poll_interval
        self.events: list[dict[str, Any]] = []
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="flower-sync", daemon=True)

    def __enter__(self) -> SyncWatcher:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Create the directory and start answering events."""
        self.sync_dir.mkdir(parents=True, exist_ok=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread (events after this are not acknowledged)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10.0)

    def _loop(self) -> None:
        seq = 0
        while not self._stop.is_set():
            path = event_path(self.sync_dir, seq)
            if not path.exists():
                self._stop.wait(self.poll_interval)
                continue
            event: dict[str, Any] = json.loads(path.read_text())
            self.events.append(event)
            reply: dict[str, Any] = {"ok": True}
            if self.error is not None:
                reply = {"ok": False, "error": f"earlier handler failed: {self.error!r}"}
            elif self.on_event is not None:
                try:
                    self.on_event(event)
                except Exception as exc:  # the run must learn of it, then the caller
                    self.error = exc
                    reply = {"ok": False, "error": "".join(traceback.format_exception(exc))}
            write_json_atomic(ack_path(self.sync_dir, seq), reply)
            seq += 1
