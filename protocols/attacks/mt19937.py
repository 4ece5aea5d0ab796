"""A vectorised MT19937 seed search over the 2^32 seeds of numpy's legacy ``RandomState``.

``np.random.RandomState(s)`` with an int seed runs MT19937's ``init_genrand``:
``mt[0] = s``, ``mt[i] = 1812433253 * (mt[i-1] ^ (mt[i-1] >> 30)) + i (mod 2^32)``; its
first draw twists the state, so output ``j < 227`` needs only ``mt[j]``, ``mt[j+1]`` and
``mt[j+397]``, then tempering. ``randint(0, 2**32 - 1, dtype=np.int64)`` (what Flower's
``pseudo_rand_gen`` calls with ``num_range = 2^32``) takes one 32-bit output per element
through numpy's masked rejection path: the mask is ``0xFFFFFFFF``, so an element *is*
the output unless that output is ``0xFFFFFFFF`` (redrawn, probability 2^-32 per element).

Seeding one ``RandomState`` costs ~180 us, so a sweep over 2^32 seeds would take
hundreds of CPU-hours. Here the ``init_genrand`` recurrence runs on a chunk of
consecutive seeds at once as in-place ``uint32`` numpy operations (four passes per step,
397 steps for the first output). :func:`search` keeps the seeds whose first outputs are
consistent with a *residual* ``r`` (a known vector plus the mask): every seed gets its
first output, only the survivors of that filter get the next ones.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing import get_context
from typing import Any

import numpy as np
import numpy.typing as npt

U32 = npt.NDArray[np.uint32]

N, M = 624, 397
MATRIX_A = 0x9908B0DF
UPPER_MASK, LOWER_MASK = 0x80000000, 0x7FFFFFFF
INIT_MULT = 1812433253
SEED_SPACE = 1 << 32
#: outputs ``j < N - M`` come from the first twist with untwisted ``mt[j + M]``
MAX_OUTPUTS = N - M
#: seeds per vectorised pass: 2 x 256 KiB of working arrays stay in a core's L2
DEFAULT_CHUNK = 1 << 16
#: seeds per task handed to a worker process (the progress bar's step)
DEFAULT_BLOCK = 1 << 22

_MULT = np.uint32(INIT_MULT)
_SHIFT30 = np.uint32(30)


def _step(x: U32, tmp: U32, i: int) -> None:
    """``x = 1812433253 * (x ^ (x >> 30)) + i`` in place (one init_genrand step)."""
    np.right_shift(x, _SHIFT30, out=tmp)
    np.bitwise_xor(x, tmp, out=x)
    np.multiply(x, _MULT, out=x)
    np.add(x, np.uint32(i), out=x)


def _output(mt_j: U32, mt_j1: U32, mt_jm: U32) -> U32:
    """Output ``j`` of the first twist from ``mt[j]``, ``mt[j+1]``, ``mt[j+397]``, tempered."""
    y = (mt_j & np.uint32(UPPER_MASK)) | (mt_j1 & np.uint32(LOWER_MASK))
    v = mt_jm ^ (y >> np.uint32(1)) ^ ((y & np.uint32(1)) * np.uint32(MATRIX_A))
    v ^= v >> np.uint32(11)
    v ^= (v << np.uint32(7)) & np.uint32(0x9D2C5680)
    v ^= (v << np.uint32(15)) & np.uint32(0xEFC60000)
    v ^= v >> np.uint32(18)
    return v  # type: ignore[no-any-return]


def first_outputs(seeds: npt.ArrayLike, count: int) -> U32:
    """The first ``count`` 32-bit outputs of ``RandomState(s)`` for every seed (``len x count``).

    Equals ``RandomState(s).randint(0, 2**32 - 1, size=count, dtype=np.int64)`` unless an
    output is ``0xFFFFFFFF`` (numpy redraws that one).
    """
    if not 0 < count <= MAX_OUTPUTS:
        raise ValueError(f"count must be in 1..{MAX_OUTPUTS}")
    s = np.asarray(seeds, dtype=np.int64).ravel()
    if s.size and (s.min() < 0 or s.max() >= SEED_SPACE):
        raise ValueError("seeds must be in [0, 2^32)")
    x = s.astype(np.uint32)
    tmp = np.empty_like(x)
    head = [x.copy()]  # mt[0..count]
    tail: list[U32] = []  # mt[M..M+count-1]
    for i in range(1, M + count):
        _step(x, tmp, i)
        if i <= count:
            head.append(x.copy())
        if i >= M:
            tail.append(x.copy())
    return np.stack([_output(head[j], head[j + 1], tail[j]) for j in range(count)], axis=1)


def _residual_test(target: U32, shift: int, width: int) -> tuple[U32, np.uint32]:
    """``target + shift mod 2^32`` and ``width`` as uint32, for the filter below."""
    shifted = ((target.astype(np.int64) + shift) % SEED_SPACE).astype(np.uint32)
    return shifted, np.uint32(width)


def scan(
    target: U32, lo: int, hi: int, *, shift: int = 0, width: int, chunk: int = DEFAULT_CHUNK
) -> list[int]:
    """Seeds ``s`` in ``[lo, hi)`` with ``(target[j] - out_j(s) + shift) mod 2^32 <= width``
    for every ``j < len(target)`` (one process; :func:`search` runs many of these)."""
    k = len(target)
    if not 0 < k <= MAX_OUTPUTS:
        raise ValueError(f"target needs 1..{MAX_OUTPUTS} elements")
    if not 0 <= lo <= hi <= SEED_SPACE:
        raise ValueError("seed range must lie in [0, 2^32]")
    want, w = _residual_test(np.asarray(target, dtype=np.uint32), shift, width)
    base = np.arange(chunk, dtype=np.uint32)
    x = np.empty(chunk, dtype=np.uint32)
    tmp = np.empty(chunk, dtype=np.uint32)
    found: list[int] = []
    for start in range(lo, hi, chunk):
        n = min(chunk, hi - start)
        xs, ts = x[:n], tmp[:n]
        np.add(base[:n], np.uint32(start), out=xs)  # start + n <= 2^32: no wrap
        head = [xs.copy()]  # mt[0..k]
        for i in range(1, M + 1):
            _step(xs, ts, i)
            if i <= k:
                head.append(xs.copy())
        out = _output(head[0], head[1], xs)
        idx = np.flatnonzero((want[0] - out) <= w)
        mt = xs[idx]  # mt[M + j - 1] of the survivors
        for j in range(1, k):
            if not idx.size:
                break
            mt = mt.copy()
            _step(mt, np.empty_like(mt), M + j)
            out = _output(head[j][idx], head[j + 1][idx], mt)
            keep = (want[j] - out) <= w
            idx, mt = idx[keep], mt[keep]
        found.extend(int(start + i) for i in idx)
    return found


@dataclass
class SearchResult:
    """Seeds that passed the filter, and what the sweep cost."""

    seeds: list[int]
    scanned: int
    seconds: float
    workers: int

    @property
    def rate(self) -> float:
        """Seeds per second over the whole sweep (wall clock)."""
        return self.scanned / self.seconds if self.seconds > 0 else float("inf")


def _blocks(lo: int, hi: int, block: int) -> list[tuple[int, int]]:
    return [(a, min(hi, a + block)) for a in range(lo, hi, block)]


def search(
    target: Sequence[int] | U32,
    *,
    shift: int = 0,
    width: int,
    lo: int = 0,
    hi: int = SEED_SPACE,
    workers: int | None = None,
    chunk: int = DEFAULT_CHUNK,
    block: int = DEFAULT_BLOCK,
    progress: bool = False,
) -> SearchResult:
    """Every seed in ``[lo, hi)`` whose first outputs fit ``target`` (see :func:`scan`).

    ``workers`` processes (default ``os.cpu_count()``; spawn-safe) each scan blocks of
    ``block`` seeds; ``progress`` shows a tqdm bar in seeds.
    """
    want = np.asarray(target, dtype=np.uint32)
    workers = max(1, workers or os.cpu_count() or 1)
    tasks = _blocks(lo, hi, block)
    found: list[int] = []
    bar: Any = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=hi - lo, unit="seed", unit_scale=True, desc="MT19937 seeds")
    t0 = time.perf_counter()
    try:
        if workers == 1 or len(tasks) == 1:
            for a, b in tasks:
                found += scan(want, a, b, shift=shift, width=width, chunk=chunk)
                if bar is not None:
                    bar.update(b - a)
        else:
            ctx = get_context("spawn")
            with ProcessPoolExecutor(max_workers=min(workers, len(tasks)), mp_context=ctx) as pool:
                futures = {
                    pool.submit(scan, want, a, b, shift=shift, width=width, chunk=chunk): b - a
                    for a, b in tasks
                }
                for fut in as_completed(futures):
                    found += fut.result()
                    if bar is not None:
                        bar.update(futures[fut])
    finally:
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - t0
    return SearchResult(sorted(found), hi - lo, seconds, workers)


def bits_per_element(width: int) -> float:
    """How many bits of the seed one element's filter removes: ``-log2((width + 1) / 2^32)``."""
    return 32.0 - float(np.log2(width + 1))


def elements_needed(width: int, margin_bits: int = 16) -> int:
    """Elements to filter on so a full sweep leaves ~2^-margin_bits false candidates."""
    return min(MAX_OUTPUTS, int(np.ceil((32 + margin_bits) / bits_per_element(width))))
