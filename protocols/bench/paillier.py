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


OPTIONS = ("threshold",)


def run(
    quick: bool = False, progress: bool = False, *, threshold: str | None = None
) -> dict[str, Any]:
    """Measure and return the figures (see the module docstring); with ``threshold``
    (``"t/m"``) the committee benchmark instead (:func:`run_threshold`)."""
    if threshold:
        return run_threshold(threshold, quick=quick, progress=progress)
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


# --- threshold decryption by a committee (``--threshold t/m``) -------------------------

THRESHOLD_D = 100_000
THRESHOLD_D_QUICK = 3_000


def parse_threshold(spec: str) -> tuple[int, int]:
    """``"3/5"`` -> (3, 5), validated as a committee (ThresholdConfigError otherwise)."""
    from secagg.paillier.errors import ThresholdConfigError
    from secagg.paillier.threshold_keys import CommitteeParams

    t, sep, m = spec.partition("/")
    if not sep or not t.isdigit() or not m.isdigit():
        raise ThresholdConfigError(f"--threshold takes t/m, e.g. 3/5; got {spec!r}")
    params = CommitteeParams(int(t), int(m))
    return params.threshold, params.members


def _member_task(
    share: bytes,
    packing: PackingConfig,
    roster: dict[int, bytes],
    registry: dict[int, bytes],
    signing: bytes,
    session: bytes,
    min_contributors: int,
    state: bytes | None,
    phase: str,
    message: bytes,
) -> tuple[bytes, bytes, float]:
    """One member's step in a worker process (as on its own machine): rebuild the member
    from its key-share bytes and state, answer, return (reply, new state, seconds)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from secagg.paillier.threshold_codec import decode_key_share
    from secagg.paillier.threshold_member import CommitteeMember

    t0 = time.perf_counter()
    member = CommitteeMember(
        decode_key_share(share),
        packing,
        {i: Ed25519PublicKey.from_public_bytes(k) for i, k in roster.items()},
        {i: Ed25519PublicKey.from_public_bytes(k) for i, k in registry.items()},
        session_id=session,
        min_contributors=min_contributors,
        signing_key=Ed25519PrivateKey.from_private_bytes(signing),
        state=state,
    )
    reply = member.endorse(message) if phase == "endorse" else member.release(message)
    return reply, member.export_state(), time.perf_counter() - t0


def _raw(key: Any) -> bytes:
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        NoEncryption,
        PrivateFormat,
        PublicFormat,
    )

    if isinstance(key, Ed25519PrivateKey):
        return key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    return bytes(key.public_bytes(Encoding.Raw, PublicFormat.Raw))


def per_ciphertext_costs(deal: Any, kp: KeyPair, count: int, rounds: int) -> dict[str, float]:
    """Seconds per ciphertext (over ``count``, interleaved ``rounds`` times) of a CRT
    decryption, a member's shares, its batched proof, the optimistic combination, the
    combination of t shares and the check of t proofs; ``*_one`` are the seconds of a
    proof (of t proofs) over a single ciphertext, to split fixed from per-ciphertext cost."""
    from secagg.paillier.threshold_proofs import (
        ProofContext,
        combine_optimistic,
        combine_shares,
        decryption_shares,
        prove_shares,
        verify_shares,
    )

    tpk = deal.public
    t = tpk.params.threshold
    cts = Encryptor(tpk.public).encrypt([secrets.randbelow(tpk.public.n) for _ in range(count)])
    crt_cts = Encryptor(kp.public).encrypt([secrets.randbelow(kp.public.n) for _ in range(count)])
    ctx = {
        m: ProofContext(os.urandom(16), 1, m, tpk.committee_id, bytes(32)) for m in range(1, t + 2)
    }

    def verify_all(shares: dict[int, list[int]], proofs: dict[int, Any], k: int) -> None:
        for m in range(1, t + 1):
            verify_shares(tpk, ctx[m], cts[:k], shares[m][:k], proofs[m])

    keys = ("crt", "share", "prove", "prove_one", "optimistic", "combine", "verify", "verify_one")
    tot = dict.fromkeys(keys, 0.0)
    for _ in range(rounds):
        tot["crt"] += _time(lambda: [kp.private.raw_decrypt(c) for c in crt_cts])[0]
        shares, proofs, ones = {}, {}, {}
        for m in range(1, min(t + 1, tpk.params.members) + 1):
            dt, shares[m] = _time(decryption_shares, deal.share(m), cts)
            dp, proofs[m] = _time(prove_shares, deal.share(m), ctx[m], cts, shares[m])
            d1, ones[m] = _time(prove_shares, deal.share(m), ctx[m], cts[:1], shares[m][:1])
            if m == 1:
                tot["share"], tot["prove"], tot["prove_one"] = (
                    tot["share"] + dt,
                    tot["prove"] + dp,
                    tot["prove_one"] + d1,
                )
        if len(shares) > t:
            tot["optimistic"] += _time(combine_optimistic, tpk, shares)[0]
        tot["combine"] += _time(combine_shares, tpk, {m: shares[m] for m in range(1, t + 1)})[0]
        tot["verify"] += _time(verify_all, shares, proofs, count)[0]
        tot["verify_one"] += _time(verify_all, shares, ones, 1)[0]
    per = {k: v / (rounds * count) for k, v in tot.items()}
    per["prove_one"], per["verify_one"] = tot["prove_one"] / rounds, tot["verify_one"] / rounds
    return per


def _amortised(per: dict[str, float], key: str, count: int, batch: int) -> float:
    """Per-ciphertext cost at ``batch`` ciphertexts of a cost a + b k measured at k =
    ``count`` (``per[key]`` per ciphertext) and at k = 1 (``per[key + "_one"]``)."""
    total, one = per[key] * count, per[f"{key}_one"]
    b = (total - one) / (count - 1)
    return b + (one - b) / batch


class _Committee:
    """The members of one benchmark round, each run in a worker process per exchange."""

    def __init__(self, deal: Any, packing: PackingConfig, roster: dict[int, Any], pool: Any):
        from secagg.paillier.threshold_codec import encode_key_share

        tpk = deal.public
        self.keys = {m: Ed25519PrivateKey.generate() for m in tpk.params.member_ids}
        self.registry = {m: k.public_key() for m, k in self.keys.items()}
        self.shares = {m: encode_key_share(deal.share(m)) for m in tpk.params.member_ids}
        self.head = (
            packing,
            {i: _raw(k) for i, k in roster.items()},
            {m: _raw(k) for m, k in self.registry.items()},
        )
        self.pool = pool
        self.states: dict[int, bytes | None] = {}

    def exchange(
        self, name: str, members: list[int], msg: bytes, session: bytes
    ) -> tuple[dict[int, bytes], float, float]:
        """Replies of ``members`` (in parallel), wall seconds, slowest member's seconds."""
        t0 = time.perf_counter()
        futs = {
            m: self.pool.submit(
                _member_task,
                self.shares[m],
                *self.head,
                _raw(self.keys[m]),
                session,
                N_CLIENTS // 2,
                self.states.get(m),
                name,
                msg,
            )
            for m in members
        }
        out = {m: f.result() for m, f in futs.items()}
        self.states.update({m: o[1] for m, o in out.items()})
        wall = time.perf_counter() - t0
        return {m: o[0] for m, o in out.items()}, wall, max(o[2] for o in out.values())


def _threshold_round(
    deal: Any, packing: PackingConfig, d: int, encryptor: Encryptor, pool: Any, rng: Any
) -> dict[str, Any]:
    """One round of N clients at length d decrypted by the committee, members in a pool."""
    from secagg.paillier.threshold_aggregator import ThresholdAggregator

    tpk = deal.public
    session = os.urandom(16)
    signing = {i: Ed25519PrivateKey.generate() for i in range(N_CLIENTS)}
    roster = {i: k.public_key() for i, k in signing.items()}
    committee = _Committee(deal, packing, roster, pool)
    updates = [rng.uniform(-1, 1, d).astype(np.float32) for _ in range(N_CLIENTS)]
    t_enc, payloads = _time(
        lambda: {
            i: Client(
                i,
                tpk.public,
                packing,
                signing_key=signing[i],
                rounding="nearest",
                encryptor=encryptor,
            ).contribute(updates[i], session_id=session, round_index=1)
            for i in range(N_CLIENTS)
        }
    )
    t0 = time.perf_counter()
    agg = ThresholdAggregator(
        tpk,
        packing,
        roster,
        committee.registry,
        session_id=session,
        round_index=1,
        num_elements=d,
        min_contributors=N_CLIENTS // 2,
    )
    for i, p in payloads.items():
        agg.receive(i, p)
    request = agg.request()
    t_agg = time.perf_counter() - t0
    ends, t_endorse, c_endorse = committee.exchange(
        "endorse", list(tpk.params.member_ids), request, session
    )
    for m, e in ends.items():
        agg.receive_endorsement(m, e)
    askers = sorted(agg.endorsements)[: tpk.params.threshold + 1]  # t + 1 suffice
    replies, t_release, c_release = committee.exchange(
        "release", askers, agg.share_request(), session
    )
    t0 = time.perf_counter()
    for m, r in replies.items():
        agg.receive_share(m, r)
    out = agg.finish()
    t_combine = time.perf_counter() - t0
    enc = PackedEncoder(packing, rounding="nearest")
    expected = np.sum([enc.quantize(u) - packing.offset for u in updates], axis=0)
    if out.proofs_verified or not np.array_equal(out.outcome.signed_sums, expected):
        raise AssertionError("committee sum differs from the plaintext sum")  # pragma: no cover
    return {
        "encrypt_total_s": t_enc,
        "aggregate_s": t_agg,
        "endorse_s": t_endorse,
        "release_s": t_release,
        "combine_decode_s": t_combine,
        "round_s": t_enc + t_agg + t_endorse + t_release + t_combine,
        "round_one_machine_per_member_s": t_enc + t_agg + c_endorse + c_release + t_combine,
        "member_release_max_s": c_release,
    }


def _per_ciphertext_figures(deal: Any, kp: KeyPair, d: int, quick: bool) -> dict[str, Any]:
    """The per-ciphertext ratios to one CRT decryption, amortised at the round's size."""
    count = 10 if quick else 40
    per = per_ciphertext_costs(deal, kp, count, 2 if quick else 3)
    batch = PackingConfig(key_bits=KEY_BITS, value_bits=16, max_clients=1000).num_plaintexts(d)
    member = per["share"] + _amortised(per, "prove", count, batch)
    verified = per["combine"] + _amortised(per, "verify", count, batch)
    return dict(
        crt_decrypt_per_ciphertext_s=per["crt"],
        ciphertexts_per_round=batch,
        member_share_per_ciphertext_s=member,
        member_share_only_vs_crt=per["share"] / per["crt"],
        member_proof_fixed_s=per["prove_one"],
        combine_per_ciphertext_s=per["optimistic"],
        combine_verified_per_ciphertext_s=verified,
        member_share_vs_crt=member / per["crt"],
        combine_vs_crt=per["optimistic"] / per["crt"],
        combine_verified_vs_crt=verified / per["crt"],
        member_share_vs_crt_measured_batch=(per["share"] + per["prove"]) / per["crt"],
        combine_verified_vs_crt_measured_batch=(per["combine"] + per["verify"]) / per["crt"],
        measured_batch=count,
    )


def run_threshold(spec: str, quick: bool = False, progress: bool = False) -> dict[str, Any]:
    """``--threshold t/m``: a committee's decryption costs against today's key holder."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from tqdm import tqdm

    from secagg.paillier.threshold_keys import generate_threshold_keypair

    require_gmpy2()
    t, members = parse_threshold(spec)
    d = THRESHOLD_D_QUICK if quick else THRESHOLD_D
    cores = os.cpu_count() or 1
    rng = np.random.default_rng(0)
    bar = tqdm(
        total=4, desc=f"bench paillier --threshold {spec}", disable=not progress, leave=False
    )
    out: dict[str, Any] = {
        "key_bits": KEY_BITS,
        "clients": N_CLIENTS,
        "cores": cores,
        "quick": int(quick),
        "threshold": t,
        "members": members,
        "d": d,
    }
    bar.set_postfix_str("keygen (safe primes)")
    out["threshold_keygen_s"], deal = _time(
        generate_threshold_keypair, KEY_BITS, threshold=t, members=members
    )
    out["keygen_s"], kp = _time(generate_keypair, KEY_BITS)
    out["quorum"] = deal.public.params.quorum if deal.public.params.requires_agreement else 0
    bar.update()
    bar.set_postfix_str("per ciphertext")
    out.update(_per_ciphertext_figures(deal, kp, d, quick))
    bar.update()
    packing = PackingConfig(key_bits=KEY_BITS, value_bits=16, max_clients=1000, guard_bits=1)
    ctx = multiprocessing.get_context("spawn")
    with (
        Encryptor(kp.public, workers=cores) as pooled,
        ProcessPoolExecutor(min(members, cores), mp_context=ctx) as pool,
    ):
        bar.set_postfix_str(f"single key holder d={d}")
        single = _packed_round(kp, packing, d, pooled, rng)
        bar.update()
        bar.set_postfix_str(f"committee d={d}")
        with Encryptor(deal.public.public, workers=cores) as tpooled:
            committee = _threshold_round(deal, packing, d, tpooled, pool, rng)
        bar.update()
    bar.close()
    for k, v in single.items():
        out[f"single_d{d}_{k}"] = v
    for k, v in committee.items():
        out[f"committee_d{d}_{k}"] = v
    out["round_vs_single_keyholder"] = committee["round_s"] / single["round_s"]
    out["round_vs_single_keyholder_one_machine_per_member"] = (
        committee["round_one_machine_per_member_s"] / single["round_s"]
    )
    out["note"] = (
        f"{t}-of-{members} committee, 2048-bit key, N={N_CLIENTS} clients, d={d}; member share "
        "= c^(2 Delta s_i) without CRT plus its share of the batched proof, the proof's fixed "
        "part (3 full powmods) amortised over the round's ciphertexts_per_round from a fit "
        "a + b k of proofs over measured_batch and 1 ciphertexts (*_measured_batch: raw, at "
        "measured_batch); combine = "
        "optimistic (two t-subsets of t+1 shares agree, no proof checked); combine_verified = "
        f"t proofs checked, then t shares combined; members run in a spawn pool of "
        f"{min(members, cores)} process(es) on {cores} core(s) (round_s, measured) and, as if "
        "each had its own machine, the slowest member per exchange "
        "(round_one_machine_per_member_s); t+1 endorsers are asked for shares"
    )
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m protocols.bench.paillier --threshold t/m [--quick] [--json]``."""
    import argparse
    import json
    import sys

    from protocols.bench import format_table

    p = argparse.ArgumentParser(prog="python -m protocols.bench.paillier")
    p.add_argument("--threshold", default=None, metavar="T/M", help="committee, e.g. 3/5")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if args.threshold:
        result = run_threshold(args.threshold, quick=args.quick, progress=not args.json)
    else:
        result = run(quick=args.quick, progress=not args.json)
    if args.json:
        json.dump(result, sys.stdout, indent=2, sort_keys=True)
        sys.stdout.write("\n")
    else:
        print(format_table(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
