"""Encryption: correctness of every randomness mode, the pool, and what the pool sees."""

from __future__ import annotations

import multiprocessing
import pickle
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any

import gmpy2
import pytest

from secagg.paillier import Encryptor, KeyPair
from secagg.paillier.encrypt import _apply_obfuscators
from secagg.paillier.errors import PaillierConfigError, RandomnessExhaustedError
from secagg.paillier.keys import PublicKey


def _plaintexts(pk: PublicKey, k: int) -> list[int]:
    return [(7919 * i * i + 3) % pk.n for i in range(k)] + [pk.n - 1, 0]


def _decrypts_to(kp: KeyPair, cts: list[int], pts: list[int]) -> None:
    assert [kp.private.raw_decrypt(c) for c in cts] == pts
    assert len(set(cts)) == len(cts)  # fresh randomness each time


@pytest.mark.parametrize("mode", ["standard", "short_exponent"])
def test_encrypt_decrypts(keypair: KeyPair, mode: str) -> None:
    pts = _plaintexts(keypair.public, 6)
    enc = Encryptor(keypair.public, workers=1, randomness=mode)  # type: ignore[arg-type]
    _decrypts_to(keypair, enc.encrypt(pts), pts)


def test_raw_encryption_equals_phe(keypair: KeyPair) -> None:
    """Online precomputed encryption is phe's raw encryption with the same r."""
    pk = keypair.public
    r, m = 123456789, 987654321
    obf = int(gmpy2.powmod(r, pk.n, pk.nsquare))
    assert _apply_obfuscators(pk.n, [m], [obf]) == [pk.to_phe().raw_encrypt(m, r_value=r)]


@pytest.mark.parametrize("mode", ["standard", "short_exponent"])
def test_precomputed_obfuscators(keypair: KeyPair, mode: str) -> None:
    pts = _plaintexts(keypair.public, 4)
    enc = Encryptor(keypair.public, workers=1, randomness=mode)  # type: ignore[arg-type]
    store = enc.precompute(len(pts) + 1)
    _decrypts_to(keypair, enc.encrypt(pts, obfuscators=store), pts)
    assert len(store) == 1  # used ones are gone
    with pytest.raises(RandomnessExhaustedError):
        enc.encrypt(pts, obfuscators=store)
    with pytest.raises(TypeError):
        pickle.dumps(store)


def test_obfuscators_are_bound_to_their_key(keypair: KeyPair, small_keypair: KeyPair) -> None:
    store = Encryptor(small_keypair.public).precompute(2)
    with pytest.raises(PaillierConfigError):
        Encryptor(keypair.public).encrypt([1, 2], obfuscators=store)


def test_process_pool(keypair: KeyPair) -> None:
    pts = _plaintexts(keypair.public, 9)
    with Encryptor(keypair.public, workers=2) as enc:
        assert enc._executor is None  # not started before first use
        _decrypts_to(keypair, enc.encrypt(pts), pts)
        store = enc.precompute(3)
        assert enc._executor is not None
    assert enc._executor is None and not multiprocessing.active_children()
    _decrypts_to(keypair, Encryptor(keypair.public).encrypt(pts[:3], obfuscators=store), pts[:3])


class _RecordingExecutor(Executor):
    """Runs tasks in-process and records every argument a pool would have received."""

    def __init__(self) -> None:
        self.args: list[Any] = []

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        self.args.extend(args)
        f: Future[Any] = Future()
        f.set_result(fn(*args))
        return f


def test_pool_receives_no_secret(keypair: KeyPair) -> None:
    """Tasks carry only public numbers and plaintexts: no private key, no factor of n."""
    rec = _RecordingExecutor()
    enc = Encryptor(keypair.public, workers=2, executor=rec)
    pts = _plaintexts(keypair.public, 5)
    _decrypts_to(keypair, enc.encrypt(pts), pts)
    enc.precompute(3)
    assert rec.args
    p, q = keypair.private.to_phe().p, keypair.private.to_phe().q
    flat = [x for a in rec.args for x in (a if isinstance(a, list) else [a])]
    assert all(type(x) is int for x in flat)
    n = keypair.public.n
    assert all(x % p and x % q for x in flat if x > 1 and x % n)  # only n shares a factor
    pickle.dumps(rec.args)


def test_import_starts_no_process() -> None:
    code = (
        "import multiprocessing, secagg.paillier, secagg.paillier.encrypt;"
        "print(len(multiprocessing.active_children()))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "0"


@pytest.mark.parametrize(
    "kwargs",
    [{"workers": 0}, {"workers": True}, {"randomness": "fast"}, {"short_exponent_bits": 100}],
)
def test_bad_encryptor_parameters(keypair: KeyPair, kwargs: dict[str, Any]) -> None:
    with pytest.raises(PaillierConfigError):
        Encryptor(keypair.public, **kwargs)


def test_short_exponent_needs_published_base(small_keypair: KeyPair) -> None:
    with pytest.raises(PaillierConfigError, match="short_exponent=True"):
        Encryptor(small_keypair.public, randomness="short_exponent")


def test_plaintext_range_checked(keypair: KeyPair) -> None:
    enc = Encryptor(keypair.public)
    for bad in (-1, keypair.public.n, 1.5):
        with pytest.raises(PaillierConfigError):
            enc.encrypt([bad])  # type: ignore[list-item]
