"""The Paillier benchmark: registered, refuses without gmpy2, meets the size goal."""

from __future__ import annotations

import phe.util
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocols.bench import BENCHMARKS, run_benchmark
from secagg.paillier import KeyPair, PackingConfig
from secagg.paillier.codec import encode_ciphertexts
from secagg.paillier.contribution import sign_contribution
from secagg.paillier.errors import Gmpy2MissingError


def test_registered() -> None:
    assert BENCHMARKS["paillier"] == "protocols.bench.paillier"


def test_refuses_without_gmpy2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(phe.util, "HAVE_GMP", False)
    with pytest.raises(Gmpy2MissingError):
        run_benchmark("paillier", quick=True)


def test_bytes_per_element_goal(big_keypair: KeyPair) -> None:
    """2048-bit key, 16-bit values, 1000 clients, 1 guard bit: a signed contribution of
    10^5 elements costs at most 1.75x its float32 size (sizes are fixed-width, so any
    unit of Z*_(n^2) stands in for the ciphertexts)."""
    packing = PackingConfig(key_bits=2048, value_bits=16, max_clients=1000, guard_bits=1)
    d = 100_000
    body = encode_ciphertexts(big_keypair.public, packing, d, [1] * packing.num_plaintexts(d))
    msg = sign_contribution(
        Ed25519PrivateKey.generate(),
        session_id=bytes(16),
        round_index=1,
        client_id=0,
        public_key=big_keypair.public,
        ciphertexts=body,
    )
    assert len(msg) / d <= 1.75 * 4


@pytest.mark.slow
def test_quick_benchmark_runs() -> None:
    out = run_benchmark("paillier", quick=True)
    for key in ("packed_speedup_vs_phe", "encrypt_vs_powmod", "bytes_per_element", "pool_speedup"):
        assert isinstance(out[key], float) and out[key] > 0
