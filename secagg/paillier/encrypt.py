"""Fast encryption of packed plaintexts: phe raw encryption over a process pool.

Paillier encryption is ``c = (1 + n)^m * r^n mod n^2`` with ``g = n + 1``; the first
factor is one multiplication (``1 + n*m``), the obfuscator ``r^n mod n^2`` is one full
powmod and is all of the cost. Three ways to pay for it:

- ``standard`` (default): phe's ``raw_encrypt`` with a fresh ``r`` from the OS, the
  chunks spread over a process pool so every core does powmods. Security rests on the
  decisional composite residuosity (DCR) assumption only.
- precomputation (optional, any mode): obfuscators are computed offline, before the
  update exists, and stored; online encryption is then one modular multiplication per
  ciphertext. Each obfuscator is used once and must be kept as secret as the update.
- ``short_exponent`` (optional, Damgard-Jurik-Nielsen): the obfuscator is ``h_s^a mod
  n^2`` for the public base ``h_s = (-x^2)^n`` and a random ``a`` of ``key_bits / 4`` bits,
  about 4x cheaper. It rests on an additional assumption (a short-exponent power of h_s is
  indistinguishable from a random n-th residue); see docs/paillier.md.

The pool is optional (``workers=1`` runs in-process), started on first use, never at
import; it is a ``spawn`` pool so workers inherit no memory of the parent (no private
key), and tasks carry only the public modulus, plaintexts and counts.
"""

from __future__ import annotations

import multiprocessing
import os
import secrets
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from types import TracebackType
from typing import Any, Literal

from secagg.paillier.errors import PaillierConfigError, RandomnessExhaustedError
from secagg.paillier.gmp import require_gmpy2
from secagg.paillier.keys import PublicKey

Randomness = Literal["standard", "short_exponent"]
RANDOMNESS_MODES: tuple[Randomness, ...] = ("standard", "short_exponent")
#: Smallest short exponent allowed: 2^(bits/2) generic work must stay >= 2^128.
MIN_SHORT_EXPONENT_BITS = 256
_TASKS_PER_WORKER = 4


# --- worker functions (top level, so a spawn pool can import them) --------------------


def _encrypt_standard(n: int, plaintexts: Sequence[int]) -> list[int]:
    """phe raw encryption of each plaintext, a fresh r from ``random.SystemRandom`` each."""
    from phe.paillier import PaillierPublicKey

    require_gmpy2()
    pk = PaillierPublicKey(n)
    return [int(pk.raw_encrypt(int(m))) for m in plaintexts]


def _obfuscators_standard(n: int, count: int) -> list[int]:
    """``count`` values r^n mod n^2 for uniform r in [1, n)."""
    gmpy2 = require_gmpy2()
    nn, n2 = gmpy2.mpz(n), gmpy2.mpz(n) * gmpy2.mpz(n)
    return [int(gmpy2.powmod(secrets.randbelow(n - 1) + 1, nn, n2)) for _ in range(count)]


def _obfuscators_short(n: int, base: int, exponent_bits: int, count: int) -> list[int]:
    """``count`` values h_s^a mod n^2 for uniform a of ``exponent_bits`` bits (DJN)."""
    gmpy2 = require_gmpy2()
    n2, h = gmpy2.mpz(n) * gmpy2.mpz(n), gmpy2.mpz(base)
    return [int(gmpy2.powmod(h, secrets.randbits(exponent_bits), n2)) for _ in range(count)]


def _encrypt_short(n: int, base: int, exponent_bits: int, plaintexts: Sequence[int]) -> list[int]:
    """Encrypt with short-exponent obfuscators (one short powmod each)."""
    obf = _obfuscators_short(n, base, exponent_bits, len(plaintexts))
    return _apply_obfuscators(n, plaintexts, obf)


def _apply_obfuscators(n: int, plaintexts: Sequence[int], obfuscators: Sequence[int]) -> list[int]:
    """``(1 + n*m) * obf mod n^2`` for each pair: encryption once the powmod is paid."""
    gmpy2 = require_gmpy2()
    nn = gmpy2.mpz(n)
    n2 = nn * nn
    return [int((nn * m + 1) * o % n2) for m, o in zip(plaintexts, obfuscators, strict=True)]


# --- precomputed randomness ----------------------------------------------------------


class ObfuscatorStore:
    """Obfuscators computed offline for one public key; each is handed out once.

    Reusing an obfuscator for two plaintexts would reveal their difference, so values
    are removed as they are taken and an empty store raises
    :class:`RandomnessExhaustedError` rather than repeat one.
    """

    def __init__(self, public_key: PublicKey, values: list[int]) -> None:
        self.key_id = public_key.key_id
        self._values = values

    def __len__(self) -> int:
        return len(self._values)

    def take(self, count: int) -> list[int]:
        """Remove and return ``count`` obfuscators."""
        if count > len(self._values):
            raise RandomnessExhaustedError(
                f"{count} obfuscators needed, {len(self._values)} precomputed; precompute more"
            )
        out = self._values[len(self._values) - count :]
        del self._values[len(self._values) - count :]
        return out

    def __reduce__(self) -> Any:
        raise TypeError("precomputed obfuscators are secret; they are never pickled")


# --- the encryptor -------------------------------------------------------------------


class Encryptor:
    """Encrypts packed plaintexts under one public key, on one or all cores.

    Args:
        public_key: the session's public key.
        workers: processes to use; 1 runs in this process, ``None`` uses every core.
        randomness: ``"standard"`` or ``"short_exponent"`` (needs the key's DJN base).
        short_exponent_bits: exponent length in the short-exponent mode (default
            ``key_bits // 4``, at least 256).
        executor: an existing executor to use instead of starting a pool (not closed).
    """

    def __init__(
        self,
        public_key: PublicKey,
        *,
        workers: int | None = 1,
        randomness: Randomness = "standard",
        short_exponent_bits: int | None = None,
        executor: Executor | None = None,
    ) -> None:
        require_gmpy2()
        if workers is None:
            workers = os.cpu_count() or 1
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise PaillierConfigError(f"workers must be a positive int or None, got {workers!r}")
        if randomness not in RANDOMNESS_MODES:
            raise PaillierConfigError(f"randomness must be one of {RANDOMNESS_MODES}")
        if randomness == "short_exponent" and public_key.short_exponent_base is None:
            raise PaillierConfigError(
                "short-exponent randomness needs a public key generated with short_exponent=True"
            )
        bits = short_exponent_bits or max(MIN_SHORT_EXPONENT_BITS, public_key.bits // 4)
        if isinstance(bits, bool) or not isinstance(bits, int) or bits < MIN_SHORT_EXPONENT_BITS:
            raise PaillierConfigError(
                f"short_exponent_bits must be an int >= {MIN_SHORT_EXPONENT_BITS}, got {bits!r}"
            )
        self.public_key = public_key
        self.workers = workers
        self.randomness: Randomness = randomness
        self.short_exponent_bits = bits
        self._executor = executor
        self._owns_executor = False

    # -- pool -------------------------------------------------------------------------

    def _pool(self) -> Executor | None:
        if self._executor is None and self.workers > 1:
            ctx = multiprocessing.get_context("spawn")
            self._executor = ProcessPoolExecutor(max_workers=self.workers, mp_context=ctx)
            self._owns_executor = True
        return self._executor

    def _map_chunks(
        self, fn: Callable[..., list[int]], head: tuple[int, ...], items: Sequence[int] | int
    ) -> list[int]:
        """Run ``fn(*head, chunk)`` over chunks of ``items`` (a list, or a count)."""
        pool = self._pool()
        total = items if isinstance(items, int) else len(items)
        if pool is None or total <= 1:
            return fn(*head, items)
        tasks = max(1, min(total, self.workers * _TASKS_PER_WORKER))
        step = -(-total // tasks)
        futures = []
        for lo in range(0, total, step):
            hi = min(total, lo + step)
            chunk: int | list[int] = hi - lo if isinstance(items, int) else list(items[lo:hi])
            futures.append(pool.submit(fn, *head, chunk))
        out: list[int] = []
        for f in futures:
            out.extend(f.result())
        return out

    def close(self) -> None:
        """Shut the pool down if this encryptor started it."""
        if self._owns_executor and self._executor is not None:
            self._executor.shutdown()
            self._executor = None
            self._owns_executor = False

    def __enter__(self) -> Encryptor:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- encryption -------------------------------------------------------------------

    def precompute(self, count: int) -> ObfuscatorStore:
        """Compute ``count`` obfuscators offline (on the pool) for later encryptions."""
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise PaillierConfigError(f"count must be a non-negative int, got {count!r}")
        pk = self.public_key
        if self.randomness == "short_exponent":
            if pk.short_exponent_base is None:
                raise PaillierConfigError("short-exponent randomness needs the key's DJN base")
            head: tuple[int, ...] = (pk.n, pk.short_exponent_base, self.short_exponent_bits)
            values = self._map_chunks(_obfuscators_short, head, count)
        else:
            values = self._map_chunks(_obfuscators_standard, (pk.n,), count)
        return ObfuscatorStore(pk, values)

    def encrypt(
        self, plaintexts: Sequence[int], *, obfuscators: ObfuscatorStore | None = None
    ) -> list[int]:
        """Encrypt each plaintext (an int in [0, n)); one ciphertext per plaintext."""
        pk = self.public_key
        for m in plaintexts:
            if isinstance(m, bool) or not isinstance(m, int) or not 0 <= m < pk.n:
                raise PaillierConfigError("plaintexts must be ints in [0, n)")
        if obfuscators is not None:
            if obfuscators.key_id != pk.key_id:
                raise PaillierConfigError("obfuscators were precomputed for another key")
            return _apply_obfuscators(pk.n, plaintexts, obfuscators.take(len(plaintexts)))
        if self.randomness == "short_exponent":
            if pk.short_exponent_base is None:
                raise PaillierConfigError("short-exponent randomness needs the key's DJN base")
            head: tuple[int, ...] = (pk.n, pk.short_exponent_base, self.short_exponent_bits)
            return self._map_chunks(_encrypt_short, head, plaintexts)
        return self._map_chunks(_encrypt_standard, (pk.n,), plaintexts)
