"""``secagg bench secagg``: the masking protocol at n clients x d elements, with dropouts.

The server runs in its own process (as it would in a deployment) and measures its own
compute time per step and its resident-memory growth; one extra run of the headline
configuration under ``tracemalloc`` gives the peak of its own allocations (tracing is off
in the timed runs, since it slows every allocation several-fold). The clients run
in this process, one after the other, with their inputs generated lazily so no more than
one input vector exists at a time. Client masking time is reported as a ratio to the raw
AES-CTR keystream time for the same number of mask bytes, measured in this process.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import struct
import sys
import time
import tracemalloc
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from protocols.bench.flower_peer import flower_available, flower_server_unmask_s
from secagg.client import SecAggClient, new_session_id
from secagg.config import SecAggConfig
from secagg.errors import SecAggError
from secagg.prg import KEY_BYTES, keystream_into
from secagg.ring import RingArray
from secagg.server import SecAggServer

#: Flower 1.42 SecAgg+ measured on this kind of machine (n = 100, d = 10^6, 14 neighbours,
#: 10% dropout): server unmasking time, an external anchor (not measured in this run).
FLOWER_ANCHOR_UNMASK_S = 7.3
#: Flower's pure-Python Shamir takes minutes per round at n = 500; compare up to n = 100.
FLOWER_MAX_N = 100


# --- the server process ------------------------------------------------------------------


def _rss_bytes() -> int:
    """Current resident set size of this process (Linux /proc; 0 elsewhere)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # pragma: no cover - not Linux
        return 0


def _server_main(
    conn: Connection, cfg: SecAggConfig, session: bytes, d: int, trace_memory: bool
) -> None:
    """Serve one round over ``conn``: R(eceive), C(lose step), S(tats), Q(uit).

    Timing runs leave ``tracemalloc`` off (it slows every allocation several-fold); the
    memory run turns it on and reports the peak of the server's own allocations.
    """
    if trace_memory:
        tracemalloc.start()
    rss0 = _rss_bytes()
    rss_peak = rss0
    server = SecAggServer(
        cfg, session_id=session, round_index=0, dimension=d, record_transcript=False
    )
    busy = 0.0
    while True:
        msg = conn.recv_bytes()
        op = msg[:1]
        t0 = time.perf_counter()
        if op == b"R":
            (sender,) = struct.unpack_from(">I", msg, 1)
            server.receive(sender, msg[5:])
            busy += time.perf_counter() - t0
            rss_peak = max(rss_peak, _rss_bytes())
        elif op == b"C":
            done = server.step.value in ("done", "aborted")
            out = {} if done else server.close_step()
            busy += time.perf_counter() - t0
            parts = [struct.pack(">I", len(out))]
            for c, data in out.items():
                parts.append(struct.pack(">II", c, len(data)))
                parts.append(data)
            conn.send_bytes(b"".join(parts))
            rss_peak = max(rss_peak, _rss_bytes())
        elif op == b"S":
            peak = tracemalloc.get_traced_memory()[1] if trace_memory else None
            stats = {
                "timings": server.timings,
                "busy_s": busy,
                "peak_bytes": peak,
                "rss_growth_bytes": rss_peak - rss0,
                "step": server.step.value,
                "error": repr(server.error) if server.error else None,
                "survivors": sorted(server.survivors),
                "rejected": {str(k): repr(v) for k, v in server.rejected.items()},
            }
            conn.send_bytes(json.dumps(stats).encode())
        else:
            return


class _RemoteServer:
    def __init__(self, cfg: SecAggConfig, session: bytes, d: int, trace_memory: bool) -> None:
        ctx: Any = mp.get_context("fork" if sys.platform.startswith("linux") else "spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(
            target=_server_main, args=(child, cfg, session, d, trace_memory), daemon=True
        )
        self.proc.start()
        child.close()

    def receive(self, sender: int, data: bytes) -> None:
        self.conn.send_bytes(b"R" + struct.pack(">I", sender) + data)

    def close_step(self) -> dict[int, bytes]:
        self.conn.send_bytes(b"C")
        blob = self.conn.recv_bytes()
        (count,) = struct.unpack_from(">I", blob, 0)
        pos, out = 4, {}
        for _ in range(count):
            c, n = struct.unpack_from(">II", blob, pos)
            pos += 8
            out[c] = blob[pos : pos + n]
            pos += n
        return out

    def stats(self) -> dict[str, Any]:
        self.conn.send_bytes(b"S")
        result: dict[str, Any] = json.loads(self.conn.recv_bytes())
        return result

    def close(self) -> None:
        self.conn.send_bytes(b"Q")
        self.proc.join(timeout=30)


# --- one configuration ---------------------------------------------------------------------


class _TimedClient(SecAggClient):
    mask_seconds = 0.0
    mask_terms = 0

    def _mask(self, x: RingArray, peers: list[int]) -> RingArray:
        t0 = time.perf_counter()
        y = super()._mask(x, peers)
        self.mask_seconds = time.perf_counter() - t0
        self.mask_terms = len(peers) + 1
        return y


def _keystream_gbps(nbytes: int, reps: int = 5) -> float:
    key = os.urandom(KEY_BYTES)
    buf = np.empty(nbytes + 32, dtype=np.uint8)
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        keystream_into(key, buf, nbytes)
        best = min(best, time.perf_counter() - t0)
    return nbytes / best / 1e9


def run_config(
    n: int,
    d: int,
    dropout: float,
    *,
    setting: str = "honest_but_curious",
    config: SecAggConfig | None = None,
    trace_memory: bool = False,
) -> dict[str, Any]:
    """Run one round and return its figures (default parameters unless ``config``).

    With ``trace_memory`` the server runs under tracemalloc: its peak allocations are
    exact but its times are inflated, so timing figures come from untraced runs.
    """
    cfg = config or SecAggConfig.default(
        n,
        setting=setting,  # type: ignore[arg-type]
        graph="secagg+" if n > 10 else None,
    )
    session = new_session_id()
    rng = np.random.default_rng(n * 7 + d)
    ndrop = round(dropout * n)
    dropped = set(range(ndrop))  # vanish after ShareKeys: their masks must be rebuilt
    server = _RemoteServer(cfg, session, d, trace_memory)
    try:
        clients = {
            c: _TimedClient(cfg, c, session_id=session, round_index=0, dimension=d)
            for c in range(n)
        }
        client_time = dict.fromkeys(range(n), 0.0)
        sent = dict.fromkeys(range(n), 0)

        def deliver(c: int, data: bytes | None) -> None:
            if data is not None:
                sent[c] += len(data)
                server.receive(c, data)

        for c, cl in clients.items():
            t0 = time.perf_counter()
            msg = cl.advertise()
            client_time[c] += time.perf_counter() - t0
            deliver(c, msg)
        step = 0
        while True:
            out = server.close_step()
            if not out:
                break
            step += 1
            for c, data in out.items():
                if step >= 2 and c in dropped:
                    continue
                cl = clients[c]
                t0 = time.perf_counter()
                if step == 2:  # the masked-input step: generate this client's input now
                    cl.set_input(rng.uniform(-1, 1, d).astype(np.float32))
                try:
                    reply = cl.handle(data)
                except SecAggError:  # an abort shows in the server's stats
                    reply = None
                client_time[c] += time.perf_counter() - t0
                deliver(c, reply)
        stats = server.stats()
    finally:
        server.close()
    if stats["error"]:
        raise RuntimeError(f"round failed at n={n}, d={d}: {stats['error']}")
    live = [c for c in range(n) if c not in dropped]
    mask_s = np.mean([clients[c].mask_seconds for c in live])
    mask_bytes = np.mean([clients[c].mask_terms for c in live]) * d * cfg.encoding.ring.itemsize
    ks = _keystream_gbps(int(d * cfg.encoding.ring.itemsize))
    survivors = len(stats["survivors"])
    up = np.mean([sent[c] for c in live])
    row: dict[str, Any] = {
        "n": n,
        "d": d,
        "dropout": dropout,
        "k": cfg.num_clients - 1 if cfg.neighbours is None else cfg.neighbours,
        "threshold": cfg.threshold,
        "survivors": survivors,
        "client_compute_s": float(np.mean([client_time[c] for c in live])),
        "client_mask_s": float(mask_s),
        "client_mask_vs_keystream": float(mask_s / (mask_bytes / (ks * 1e9))),
        "keystream_gbps": ks,
        "server_compute_s": stats["busy_s"],
        "server_unmask_s": stats["timings"].get("unmasking", 0.0),
        "server_s_per_survivor_ms": 1e3 * stats["busy_s"] / survivors,
        "server_rss_growth_mib": stats["rss_growth_bytes"] / 2**20,
        "bytes_up_per_client": float(up),
        "bytes_up_per_element": float(up / d),
    }
    if trace_memory:
        row["server_peak_mib"] = stats["peak_bytes"] / 2**20
    elif flower_available() and n <= FLOWER_MAX_N:
        k = row["k"]
        flwr_s = flower_server_unmask_s(n, d, k, cfg.threshold, dropped)
        row["flower_server_unmask_s"] = flwr_s
        row["flower_server_unmask_ratio"] = flwr_s / row["server_unmask_s"]
    return row


def run(quick: bool = False, progress: bool = False) -> dict[str, Any]:
    """The grid of the issue (or a small one with ``quick``) and the headline figures."""
    from tqdm import tqdm

    if quick:
        grid = [(n, 100_000, p) for n in (10, 100) for p in (0.0, 0.1)]
        head = (100, 100_000, 0.1)
    else:
        grid = [(n, d, p) for n in (10, 100, 500) for d in (100_000, 1_000_000) for p in (0.0, 0.1)]
        head = (100, 1_000_000, 0.1)
    rows = []
    for n, d, p in tqdm(grid, desc="bench secagg", disable=not progress, leave=False):
        rows.append(run_config(n, d, p))
    h = next(r for r in rows if (r["n"], r["d"], r["dropout"]) == head)
    # Flower's anchor configuration: 14 neighbours, threshold 8, no corruption tolerance
    anchor_cfg = SecAggConfig(
        num_clients=head[0], threshold=8, neighbours=14, setting="honest_but_curious"
    )
    anchor = run_config(head[0], head[1], head[2], config=anchor_cfg)
    anchor["config"] = "flower-anchor (k=14, t=8)"
    # the headline configuration once more, under tracemalloc, for the memory figure
    traced = run_config(*head, trace_memory=True)
    out: dict[str, Any] = {
        "headline_config": {"n": head[0], "d": head[1], "dropout": head[2], "k": h["k"]},
        "client_mask_vs_keystream": h["client_mask_vs_keystream"],
        "server_unmask_s": h["server_unmask_s"],
        "server_peak_mib": traced["server_peak_mib"],
        "server_rss_growth_mib": h["server_rss_growth_mib"],
        "server_s_per_survivor_ms": h["server_s_per_survivor_ms"],
        "bytes_up_per_element": h["bytes_up_per_element"],
        "anchor_config_server_unmask_s": anchor["server_unmask_s"],
        "configs": [*rows, anchor],
    }
    if not quick:  # same n, d, k, t and dropout as the external anchor
        speedup = FLOWER_ANCHOR_UNMASK_S / anchor["server_unmask_s"]
        out["server_unmask_speedup_vs_flower_anchor"] = speedup
    if "flower_server_unmask_ratio" in anchor:  # Flower's own code, measured in this run
        out["flower_server_unmask_ratio"] = anchor["flower_server_unmask_ratio"]
        out["flower_server_unmask_ratio_default_params"] = h["flower_server_unmask_ratio"]
    return out
