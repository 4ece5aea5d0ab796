"""The benchmark's clients, spread over worker processes as real clients run in parallel.

Each worker owns the clients ``c`` with ``c % workers == w`` for the whole round: it
makes them (from the provisioning, inherited by fork), runs their steps on the batches
the driver sends, and returns each reply with the client's compute time. Inputs are
made lazily, one at a time, when a client's masked-input step comes. Messages between
the driver and the workers are length-framed bytes (no pickle): ``(client, bytes)``
records in, ``(client, flag, seconds, bytes)`` records out.
"""

from __future__ import annotations

import multiprocessing as mp
import resource
import struct
import sys
import time
from collections.abc import Iterable, Iterator
from multiprocessing.connection import Connection, wait
from typing import Any, cast

import numpy as np

from secagg.client import SecAggClient
from secagg.config import SecAggConfig
from secagg.errors import SecAggError
from secagg.ring import RingArray
from secagg.simulate import Provisioning

_IN = struct.Struct(">II")  # client, length
_OUT = struct.Struct(">IBdI")  # client, has-reply, seconds, length
_STEP = struct.Struct(">BI")  # op, step


class TimedClient(SecAggClient):
    """A client that times its masking (for the ratio to the raw keystream)."""

    mask_seconds = 0.0
    mask_terms = 0

    def _mask(self, x: RingArray, peers: list[int]) -> RingArray:
        t0 = time.perf_counter()
        y = super()._mask(x, peers)
        self.mask_seconds = time.perf_counter() - t0
        self.mask_terms = len(peers) + 1
        return y


def frame_in(items: Iterable[tuple[int, bytes]]) -> bytes:
    """``(client, message)`` records as one blob."""
    return b"".join(_IN.pack(c, len(m)) + m for c, m in items)


def unframe_in(blob: bytes, pos: int = 0) -> Iterator[tuple[int, bytes]]:
    """Inverse of :func:`frame_in`."""
    while pos < len(blob):
        c, n = _IN.unpack_from(blob, pos)
        pos += _IN.size
        yield c, blob[pos : pos + n]
        pos += n


def unframe_out(blob: bytes) -> Iterator[tuple[int, bytes | None, float]]:
    """A worker's replies: ``(client, reply or None, compute seconds)``."""
    pos = 0
    while pos < len(blob):
        c, has, dt, n = _OUT.unpack_from(blob, pos)
        pos += _OUT.size
        yield c, (blob[pos : pos + n] if has else None), dt
        pos += n


def _input(c: int, d: int) -> np.ndarray:
    return np.random.default_rng(c).uniform(-1, 1, d).astype(np.float32)


def _worker_main(
    conn: Connection,
    mine: list[int],
    cfg: SecAggConfig,
    session: bytes,
    d: int,
    prov: Provisioning | None,
) -> None:
    clients = {
        c: TimedClient(
            cfg,
            c,
            session_id=session,
            round_index=0,
            dimension=d,
            trust=prov.trust[c] if prov else None,
        )
        for c in mine
    }
    while True:
        msg = conn.recv_bytes()
        op, step = _STEP.unpack_from(msg)
        if op == ord("A"):  # advertise
            todo = [(c, b"") for c in mine]
        elif op == ord("H"):
            todo = list(unframe_in(msg, _STEP.size))
        elif op == ord("S"):  # stats: mask seconds and terms per client, peak RSS
            rows = [(c, clients[c].mask_seconds, clients[c].mask_terms) for c in mine]
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
            conn.send_bytes(
                struct.pack(">Q", rss) + b"".join(struct.pack(">IdI", *r) for r in rows)
            )
            continue
        else:
            return
        out = []
        for c, data in todo:
            cl = clients[c]
            t0 = time.perf_counter()
            reply: bytes | None
            try:
                if op == ord("A"):
                    reply = cl.advertise()
                else:
                    if step == 2:  # the masked-input step: this client's input, made now
                        cl.set_input(_input(c, d))
                    reply = cl.handle(data)
            except SecAggError:  # an abort shows in the server's stats
                reply = None
            dt = time.perf_counter() - t0
            body = reply or b""
            out.append(_OUT.pack(c, reply is not None, dt, len(body)) + body)
        conn.send_bytes(b"".join(out))


class ClientPool:
    """``workers`` processes holding the round's clients; see the module docs."""

    def __init__(
        self,
        cfg: SecAggConfig,
        session: bytes,
        d: int,
        prov: Provisioning | None,
        workers: int,
    ) -> None:
        ctx: Any = mp.get_context("fork" if sys.platform.startswith("linux") else "spawn")
        n = cfg.num_clients
        self.workers = max(1, min(workers, n))
        self.conns: list[Connection] = []
        self.procs = []
        for w in range(self.workers):
            parent, child = ctx.Pipe()
            mine = list(range(w, n, self.workers))
            p = ctx.Process(
                target=_worker_main, args=(child, mine, cfg, session, d, prov), daemon=True
            )
            p.start()
            child.close()
            self.conns.append(parent)
            self.procs.append(p)

    def advertise(self) -> Iterator[tuple[int, bytes | None, float]]:
        """Every client's advertisement, as the workers finish."""
        for conn in self.conns:
            conn.send_bytes(_STEP.pack(ord("A"), 0))
        yield from self._collect()

    def handle(
        self, step: int, messages: dict[int, bytes], chunk: int = 64
    ) -> Iterator[tuple[int, bytes | None, float]]:
        """Each addressed client's reply to its message, in chunks so the server can
        take the first replies while the clients compute the rest."""
        per: list[list[tuple[int, bytes]]] = [[] for _ in self.conns]
        for c, m in messages.items():
            per[c % self.workers].append((c, m))
        batches = [[items[i : i + chunk] for i in range(0, len(items), chunk)] for items in per]
        pending = 0
        for w, conn in enumerate(self.conns):  # one chunk in flight per worker
            if batches[w]:
                conn.send_bytes(_STEP.pack(ord("H"), step) + frame_in(batches[w].pop(0)))
                pending += 1
        while pending:
            for ready in wait(self.conns):
                conn = cast(Connection, ready)
                blob = conn.recv_bytes()
                pending -= 1
                w = self.conns.index(conn)
                if batches[w]:
                    conn.send_bytes(_STEP.pack(ord("H"), step) + frame_in(batches[w].pop(0)))
                    pending += 1
                yield from unframe_out(blob)

    def _collect(self) -> Iterator[tuple[int, bytes | None, float]]:
        left = list(self.conns)
        while left:
            for ready in wait(left):
                conn = cast(Connection, ready)
                left.remove(conn)
                yield from unframe_out(conn.recv_bytes())

    def stats(self) -> tuple[dict[int, tuple[float, int]], int]:
        """Per client (mask seconds, mask terms), and the workers' summed peak RSS."""
        out: dict[int, tuple[float, int]] = {}
        rss = 0
        for conn in self.conns:
            conn.send_bytes(_STEP.pack(ord("S"), 0))
            blob = conn.recv_bytes()
            rss += struct.unpack_from(">Q", blob)[0]
            for pos in range(8, len(blob), 16):
                c, s, k = struct.unpack_from(">IdI", blob, pos)
                out[c] = (s, k)
        return out, rss

    def close(self) -> None:
        for conn in self.conns:
            conn.send_bytes(_STEP.pack(ord("Q"), 0))
        for p in self.procs:
            p.join(timeout=30)
