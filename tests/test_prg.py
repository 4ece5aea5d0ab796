"""Mask expansion: AES-CTR known answers, determinism, domain separation, uniformity."""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from secagg.errors import ConfigError, ContextError, KeyFormatError
from secagg.prg import MaskExpander, expand_mask, keystream, keystream_into
from secagg.ring import Ring

SESSION = b"session-id-0001"


def _mask(seed: bytes, d: int, ring: Ring, **over: object) -> np.ndarray:  # type: ignore[type-arg]
    kw: dict[str, object] = dict(session_id=SESSION, round_index=3, parties=(1, 2), label="pair")
    kw.update(over)
    return expand_mask(seed, d, ring, **kw)  # type: ignore[arg-type]


def test_aes128_ctr_known_answer_sp800_38a() -> None:
    """NIST SP 800-38A, F.5.1 CTR-AES128.Encrypt: keystream = ciphertext XOR plaintext."""
    key = bytes.fromhex("2b7e151628aed2a6abf7158809cf4f3c")
    counter = int("f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff", 16)
    plaintext = bytes.fromhex(
        "6bc1bee22e409f96e93d7e117393172a"
        "ae2d8a571e03ac9c9eb76fac45af8e51"
        "30c81c46a35ce411e5fbc1191a0a52ef"
        "f69f2445df4f9b17ad2b417be66c3710"
    )
    ciphertext = bytes.fromhex(
        "874d6191b620e3261bef6864990db6ce"
        "9806f66b7970fdff8617187bb9fffdff"
        "5ae4df3edbd5d35e5b4f09020db03eab"
        "1e031dda2fbe03d1792170a0f3009cee"
    )
    expected = bytes(p ^ c for p, c in zip(plaintext, ciphertext, strict=True))
    assert keystream(key, 64, offset_blocks=counter).tobytes() == expected
    # starting at the third block gives the tail of the same stream
    assert keystream(key, 32, offset_blocks=counter + 2).tobytes() == expected[32:]


def test_keystream_buffer_contract() -> None:
    with pytest.raises(ConfigError):
        keystream_into(bytes(16), np.empty(10, dtype=np.uint8), 10)  # no 15-byte room
    with pytest.raises(KeyFormatError):
        keystream(bytes(15), 16)
    with pytest.raises(ConfigError):
        keystream(bytes(16), 16, offset_blocks=-1)
    assert keystream(bytes(16), 0).size == 0


def test_deterministic() -> None:
    seed = os.urandom(32)
    for bits in (8, 20, 32, 48, 62):
        ring = Ring(bits)
        assert np.array_equal(_mask(seed, 1000, ring), _mask(seed, 1000, ring))


@pytest.mark.parametrize(
    "change",
    [
        dict(session_id=b"session-id-0002"),
        dict(round_index=4),
        dict(parties=(1, 3)),
        dict(parties=(2, 1)),
        dict(label="self"),
    ],
)
def test_any_context_change_changes_the_mask(change: dict[str, object]) -> None:
    seed = os.urandom(32)
    ring = Ring(32)
    base = _mask(seed, 256, ring)
    other = _mask(seed, 256, ring, **change)
    assert np.count_nonzero(base == other) < 5  # unrelated streams


def test_seed_and_ring_change_the_mask() -> None:
    seed = bytearray(os.urandom(32))
    base = _mask(bytes(seed), 256, Ring(32))
    seed[0] ^= 1
    assert np.count_nonzero(base == _mask(bytes(seed), 256, Ring(32))) < 5
    # the same seed in a smaller ring is not the truncation of the larger one
    low = _mask(bytes(seed), 256, Ring(16))
    assert np.count_nonzero((_mask(bytes(seed), 256, Ring(32)) & 0xFFFF) == low) < 5


@given(st.integers(0, 300), st.integers(0, 300), st.sampled_from([8, 20, 32, 40, 62]))
def test_chunked_expansion_equals_one_shot(offset: int, count: int, bits: int) -> None:
    ring = Ring(bits)
    seed = b"\x07" * 32
    full = _mask(seed, offset + count, ring)
    chunk = _mask(seed, count, ring, offset=offset)
    assert np.array_equal(full[offset:], chunk)
    exp = MaskExpander(ring, offset + count)
    view = exp.expand(
        seed,
        session_id=SESSION,
        round_index=3,
        parties=(1, 2),
        label="pair",
        offset=offset,
        count=count,
    )
    assert np.array_equal(view, chunk)


def test_elements_are_reduced_and_uniform() -> None:
    d = 200_000
    for bits in (8, 20, 32, 62):
        ring = Ring(bits)
        m = _mask(os.urandom(32), d, ring)
        assert m.dtype == ring.dtype and int(m.max()) <= ring.mask
        # top 8 bits of each element: uniform over 256 bins
        top = (m >> np.array(bits - 8, dtype=m.dtype)).astype(np.int64)
        counts = np.bincount(top, minlength=256)
        assert stats.chisquare(counts).pvalue > 1e-4, bits
        low = (m & np.array(0xFF, dtype=m.dtype)).astype(np.int64)
        assert stats.chisquare(np.bincount(low, minlength=256)).pvalue > 1e-4, bits


def test_masked_constant_vector_is_uniform_but_unmasked_is_not() -> None:
    ring = Ring(16)
    x = np.full(100_000, 1234, dtype=np.uint32)
    y = ring.add(x, _mask(os.urandom(32), x.size, ring))
    bins = (y >> np.uint32(8)).astype(np.int64)
    assert stats.chisquare(np.bincount(bins, minlength=256)).pvalue > 1e-4
    raw = (x >> np.uint32(8)).astype(np.int64)
    assert stats.chisquare(np.bincount(raw, minlength=256)).pvalue < 1e-10


@pytest.mark.parametrize("seed", [b"", b"x" * 31, b"x" * 33, "x" * 32])
def test_bad_seed(seed: object) -> None:
    with pytest.raises(KeyFormatError):
        _mask(seed, 10, Ring(32))  # type: ignore[arg-type]


def test_bad_context_and_sizes() -> None:
    seed = bytes(32)
    with pytest.raises(ContextError):
        _mask(seed, 10, Ring(32), session_id=b"short")
    with pytest.raises(ContextError):
        _mask(seed, 10, Ring(32), round_index=-1)
    with pytest.raises(ContextError):
        _mask(seed, 10, Ring(32), parties=(-1, 2))
    with pytest.raises(ConfigError):
        _mask(seed, -1, Ring(32))
    with pytest.raises(ConfigError):
        _mask(seed, 10, Ring(32), offset=-5)
    with pytest.raises(ConfigError):
        MaskExpander(Ring(32), 10).expand(
            seed, session_id=SESSION, round_index=0, parties=(0, 0), label="x", count=11
        )


@given(
    st.integers(1, 5000),
    st.sampled_from([8, 20, 32, 48]),
    st.integers(1, 3),
    st.sampled_from([1, 7, 64, 1024]),
)
def test_apply_masks_equals_one_shot_expansion(d: int, bits: int, threads: int, chunk: int) -> None:
    from secagg.prg import MaskTerm, apply_masks

    ring = Ring(bits)
    rng = np.random.default_rng(d)
    terms = [MaskTerm(bytes([i]) * 32, (i, i + 1), "pair", 1 if i % 2 else -1) for i in range(4)]
    y = ring.reduce(rng.integers(0, 2**40, d).astype(ring.dtype))
    want = y.copy()
    for t in terms:
        m = _mask(t.seed, d, ring, parties=t.parties, label=t.label)
        want = ring.add(want, m) if t.sign > 0 else ring.sub(want, m)
    got = apply_masks(
        y.copy(), ring, terms, session_id=SESSION, round_index=3, chunk=chunk, threads=threads
    )
    assert np.array_equal(got, want)


def test_apply_masks_rejects_bad_arguments() -> None:
    from secagg.prg import MaskTerm, apply_masks

    ring = Ring(32)
    with pytest.raises(ConfigError):
        MaskTerm(bytes(32), (0, 0), "self", 2)
    with pytest.raises(ConfigError):
        apply_masks(np.zeros(4, dtype=np.uint64), ring, [], session_id=SESSION, round_index=0)
    with pytest.raises(ConfigError):
        apply_masks(ring.zeros(4), ring, [], session_id=SESSION, round_index=0, threads=0)
    with pytest.raises(ConfigError):
        apply_masks(ring.zeros(4), ring, [], session_id=SESSION, round_index=0, chunk=0)
