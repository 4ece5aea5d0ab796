"""``secagg bench paillier``: packed, pooled Paillier summation vs per-element phe.

One run measures, with a 2048-bit key and N = 10 clients:

- the packed path (16-bit values, slots sized for 1000 clients, one guard bit: 75
  slots of 27 bits) at two vector lengths d: encryption per client (process pool over
  all cores), aggregation (validation + ciphertext product), decryption (CRT, key
  holder's recomputation included), bytes per element; d = 10^6 is *extrapolated*
  linearly from the two measured lengths, and labelled so;
- the same encryption on one core, hence ``encrypt_vs_powmod`` (packed encryption per
  ciphertext / one ``gmpy2.powmod(r, n, n^2)``, the two interleaved) and
  ``pool_speedup`` (one core vs the pool on the same batch, interleaved);
- the per-element phe path (one ``EncryptedNumber`` per value) for the same N clients
  at a smaller d, hence ``packed_speedup_vs_phe`` (whole-round seconds per element,
  phe / packed);
- the optional modes, clearly labelled: short-exponent (DJN) randomness and the online
  cost of encryption with precomputed obfuscators.

Refuses to run without gmpy2 (:class:`secagg.paillier.errors.Gmpy2MissingError`).
"""

from __future__ import annotations

import os
import secrets
import statistics
import time
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from secagg.paillier import (
    Aggregator,
    Client,
    Encryptor,
    KeyHolder,
    PackedEncoder,
    PackingConfig,
    generate_keypair,
)
from secagg.paillier.gmp import require_gmpy2
from secagg.paillier.keys import KeyPair
from secagg.paillier.reference import add_elements, decrypt_elements, encrypt_elements

N_CLIENTS = 10
KEY_BITS = 2048
FLOAT32_BYTES = 4
EXTRAPOLATE_D = 1_000_000


def _time(fn: Any, *args: Any, **kwargs: Any) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - t0, out


def _powmods(kp: KeyPair, count: int) -> list[float]:
    """Seconds of each of ``count`` gmpy2.powmod(r, n, n^2), a fresh r each time."""
    gmpy2 = require_gmpy2()
    n = gmpy2.mpz(kp.public.n)
    n2 = n * n
    times = []
    for _ in range(count):
        r = gmpy2.mpz(secrets.randbelow(kp.public.n - 1) + 1)
        t0 = time.perf_counter()
        gmpy2.powmod(r, n, n2)
        times.append(time.perf_counter() - t0)
    return times


def _ratio_to_powmod(kp: KeyPair, encrypt: Any, count: int, rounds: int) -> float:
    """Time of ``encrypt()`` (``count`` encryptions) / time of ``count`` powmods, the two
    interleaved ``rounds`` times so that both see the same machine load."""
    t_enc = t_pow = 0.0
    for _ in range(rounds):
        t_enc += _time(encrypt)[0]
        t_pow += sum(_powmods(kp, count))
    return t_enc / t_pow


def _packed_round(
    kp: KeyPair, packing: PackingConfig, d: int, encryptor: Encryptor, rng: np.random.Generator
) -> dict[str, Any]:
    """One packed round of N clients at length d; times per phase, bytes, exactness."""
    session = os.urandom(16)
    signing = {i: Ed25519PrivateKey.generate() for i in range(N_CLIENTS)}
    roster = {i: k.public_key() for i, k in signing.items()}
    updates = [rng.uniform(-1, 1, d).astype(np.float32) for _ in range(N_CLIENTS)]
    payloads = {}
    t_enc = 0.0
    for i in range(N_CLIENTS):
        client = Client(
            i, kp.public, packing, signing_key=signing[i], rounding="nearest", encryptor=encryptor
        )
        dt, payloads[i] = _time(client.contribute, updates[i], session_id=session, round_index=1)
        t_enc += dt
    agg = Aggregator(
        kp.public,
        packing,
        roster,
        session_id=session,
        round_index=1,
        num_elements=d,
        min_contributors=N_CLIENTS // 2,
    )
    kh = KeyHolder(kp, packing, roster, session_id=session, min_contributors=N_CLIENTS // 2)
    t0 = time.perf_counter()
    for i, p in payloads.items():
        agg.receive(i, p)
    request = agg.request()
    t_agg = time.perf_counter() - t0
    t_dec, response = _time(kh.decrypt, request)
    t_decode, outcome = _time(agg.finish, response)
    enc = PackedEncoder(packing, rounding="nearest")
    expected = np.sum([enc.quantize(u) - packing.offset for u in updates], axis=0)
    if not np.array_equal(outcome.signed_sums, expected):
        raise AssertionError("packed sum differs from the plaintext sum")  # pragma: no cover
    return {
        "encrypt_total_s": t_enc,
        "encrypt_per_client_s": t_enc / N_CLIENTS,
        "aggregate_s": t_agg,
        "decrypt_s": t_dec,
        "decode_s": t_decode,
        "round_s": t_enc + t_agg + t_dec + t_decode,
        "bytes_per_element": len(payloads[0]) / d,
        "ciphertexts_per_client": packing.num_plaintexts(d),
    }


def _phe_round(
    kp: KeyPair, packing: PackingConfig, d: int, rng: np.random.Generator
) -> dict[str, float]:
    """The per-element phe path for N clients at length d (one core, as phe runs)."""
    enc = PackedEncoder(packing, rounding="nearest")
    signed = [enc.quantize(rng.uniform(-1, 1, d)) - packing.offset for _ in range(N_CLIENTS)]
    t_enc, cts = _time(lambda: [encrypt_elements(kp.public, s) for s in signed])
    t_add, total = _time(add_elements, cts)
    t_dec, sums = _time(decrypt_elements, kp.private, total)
    if not np.array_equal(sums, np.sum(signed, axis=0)):
        raise AssertionError("phe sum differs from the plaintext sum")  # pragma: no cover
    return {
        "encrypt_total_s": t_enc,
        "aggregate_s": t_add,
        "decrypt_s": t_dec,
        "round_s": t_enc + t_add + t_dec,
    }


def _extrapolate(d1: int, y1: float, d2: int, y2: float, d: int) -> float:
    """Linear fit y = a + b*d through two measurements, evaluated at d."""
    b = (y2 - y1) / (d2 - d1)
    return max(0.0, y2 + b * (d - d2))


def run(quick: bool = False, progress: bool = False) -> dict[str, Any]:
    """Measure and return the figures (see the module docstring)."""
    from tqdm import tqdm

    require_gmpy2()
    ds = (750, 3000) if quick else (10_000, 100_000)
    d_phe = 20 if quick else 1000
    cores = os.cpu_count() or 1
    timing_rounds = 2 if quick else 4  # interleaved timing rounds of the ratio-to-powmod figures
    rng = np.random.default_rng(0)
    bar = tqdm(total=7, desc="bench paillier", disable=not progress, leave=False)
    out: dict[str, Any] = {
        "key_bits": KEY_BITS,
        "clients": N_CLIENTS,
        "cores": cores,
        "quick": int(quick),
    }

    bar.set_postfix_str("keygen")
    t_key, kp = _time(generate_keypair, KEY_BITS, short_exponent=True)
    packing = PackingConfig(key_bits=KEY_BITS, value_bits=16, max_clients=1000, guard_bits=1)
    out.update(
        keygen_s=t_key,
        value_bits=16,
        max_clients=1000,
        guard_bits=1,
        slot_bits=packing.slot_bits,
        slots_per_ciphertext=packing.slots,
    )
    powmod = statistics.median(_powmods(kp, 10 if quick else 30))
    out["powmod_s"] = powmod
    bar.update()

    # packed rounds on every core
    with Encryptor(kp.public, workers=cores) as pooled:
        out["pool_start_s"] = _time(pooled.encrypt, [1] * cores)[0]
        rounds = {}
        for d in ds:
            bar.set_postfix_str(f"packed d={d}")
            rounds[d] = _packed_round(kp, packing, d, pooled, rng)
            for k, v in rounds[d].items():
                out[f"packed_d{d}_{k}"] = v
            bar.update()
        # pool speedup: the same batch on one core and on the pool, interleaved so both
        # see the same load from whatever else runs on the machine
        batch = PackedEncoder(packing).encode(rng.uniform(-1, 1, 24 * cores * packing.slots))
        t_one = t_pool = 0.0
        for _ in range(timing_rounds):
            t_one += _time(Encryptor(kp.public, workers=1).encrypt, batch)[0]
            t_pool += _time(pooled.encrypt, batch)[0]
        out["pool_speedup"] = t_one / t_pool

    # the same smaller round on one core: pool speedup and cost per ciphertext
    bar.set_postfix_str(f"packed d={ds[0]}, one core")
    one_core = Encryptor(kp.public, workers=1)
    serial = _packed_round(kp, packing, ds[0], one_core, rng)
    pts = PackedEncoder(packing).encode(rng.uniform(-1, 1, 25 * packing.slots))
    n_ct = N_CLIENTS * serial["ciphertexts_per_client"]
    per_ct_serial = serial["encrypt_total_s"] / n_ct
    per_ct_pooled = rounds[ds[0]]["encrypt_total_s"] / n_ct
    out.update(
        packed_one_core_encrypt_total_s=serial["encrypt_total_s"],
        encrypt_per_ciphertext_one_core_s=per_ct_serial,
        encrypt_per_ciphertext_pooled_s=per_ct_pooled,
        encrypt_vs_powmod=_ratio_to_powmod(
            kp, lambda: one_core.encrypt(pts), len(pts), timing_rounds
        ),
        pool_speedup_round=serial["encrypt_total_s"] / rounds[ds[0]]["encrypt_total_s"],
    )
    bar.update()

    # per-element phe, one EncryptedNumber per value
    bar.set_postfix_str(f"per-element phe d={d_phe}")
    phe = _phe_round(kp, packing, d_phe, rng)
    for k, v in phe.items():
        out[f"phe_d{d_phe}_{k}"] = v
    phe_per_elem = phe["round_s"] / d_phe
    out["phe_encrypt_per_element_s"] = phe["encrypt_total_s"] / (N_CLIENTS * d_phe)
    signed = PackedEncoder(packing).quantize(rng.uniform(-1, 1, 25)) - packing.offset
    out["phe_encrypt_vs_powmod"] = _ratio_to_powmod(
        kp, lambda: encrypt_elements(kp.public, signed), len(signed), timing_rounds
    )
    bar.update()

    d_max = ds[-1]
    packed_per_elem = rounds[d_max]["round_s"] / d_max
    out.update(
        phe_round_s_per_element=phe_per_elem,
        packed_round_s_per_element=packed_per_elem,
        packed_speedup_vs_phe=phe_per_elem / packed_per_elem,
        packed_one_core_round_s_per_element=serial["round_s"] / ds[0],
        packed_speedup_vs_phe_one_core=phe_per_elem / (serial["round_s"] / ds[0]),
        bytes_per_element=rounds[d_max]["bytes_per_element"],
        bytes_vs_float32=rounds[d_max]["bytes_per_element"] / FLOAT32_BYTES,
        ciphertext_bytes_per_element=kp.public.ciphertext_bytes / packing.slots,
    )

    # d = 10^6: extrapolated, not measured
    for key in ("encrypt_per_client_s", "aggregate_s", "decrypt_s", "round_s"):
        out[f"packed_d1e6_{key}_extrapolated"] = _extrapolate(
            ds[0], rounds[ds[0]][key], ds[1], rounds[ds[1]][key], EXTRAPOLATE_D
        )
    out["phe_d1e6_round_s_extrapolated"] = phe_per_elem * EXTRAPOLATE_D

    # optional modes (labelled): short-exponent randomness, precomputed obfuscators
    bar.set_postfix_str("optional modes")
    short = Encryptor(kp.public, randomness="short_exponent")
    r_short = _ratio_to_powmod(kp, lambda: short.encrypt(pts), len(pts), timing_rounds)
    plain = Encryptor(kp.public)
    r_pre = _ratio_to_powmod(kp, lambda: plain.precompute(len(pts)), len(pts), timing_rounds)
    store = plain.precompute(len(pts))
    t_online = _time(plain.encrypt, pts, obfuscators=store)[0]
    big = rounds[d_max]
    online_round = (
        t_online / len(pts) * N_CLIENTS * big["ciphertexts_per_client"]
        + big["aggregate_s"]
        + big["decrypt_s"]
        + big["decode_s"]
    )
    out.update(
        optional_precomputed_online_speedup_vs_phe=phe_per_elem / (online_round / d_max),
        optional_short_exponent_encrypt_vs_powmod=r_short,
        optional_short_exponent_speedup=out["encrypt_vs_powmod"] / r_short,
        optional_precompute_offline_vs_powmod=r_pre,
        optional_precomputed_online_encrypt_vs_powmod=t_online / len(pts) / powmod,
    )
    bar.update()
    bar.close()
    out["note"] = (
        f"packed: N={N_CLIENTS} clients, d in {ds} measured, d=1e6 extrapolated linearly; "
        f"encryption on {cores} core(s) (pool_speedup: one batch, one core vs pool, "
        f"interleaved; pool_speedup_round: the d={ds[0]} round on one core vs pool); "
        f"per-element phe measured at d={d_phe} on one core (phe has no pool); "
        "speedups compare whole-round seconds per element; optional_* modes rest on extra "
        "assumptions (docs/paillier.md)"
    )
    return out
