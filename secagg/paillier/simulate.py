"""``simulate``: one in-process Paillier round, returning the common AggregationResult.

Every party runs in this process but talks only in bytes: clients send signed
contributions to the aggregator (recorded in the transcript), the aggregator sends the
key holder a decryption request, the key holder answers with the decrypted sum. Dropped
clients never deliver their ciphertexts; a client whose update cannot be encoded (NaN,
Inf) or whose contribution does not validate is excluded with its named error recorded
in ``params["rejected"]``; the mean is over the contributors.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from secagg.errors import EncodingError, SecAggError
from secagg.paillier.codec import encode_public_key
from secagg.paillier.config import PaillierConfig
from secagg.paillier.encrypt import Encryptor, ObfuscatorStore
from secagg.paillier.errors import PaillierConfigError
from secagg.paillier.gmp import require_gmpy2
from secagg.paillier.keys import KeyPair, generate_keypair
from secagg.paillier.roles import Aggregator, Client, KeyHolder, check_min_contributors
from secagg.result import AggregationResult, Transcript, client_key

ROUND_INDEX = 1
SESSION_ID_BYTES = 16


def _check_vectors(vectors: Sequence[npt.ArrayLike]) -> tuple[int, int]:
    """(number of clients, vector length); every vector must be 1-D of one length."""
    if isinstance(vectors, np.ndarray) and vectors.ndim == 2:
        vectors = list(vectors)
    if len(vectors) == 0:
        raise EncodingError("simulate needs at least one client vector")
    lengths = set()
    for i, v in enumerate(vectors):
        shape = np.shape(v)
        if len(shape) != 1 or shape[0] == 0:
            raise EncodingError(f"vector of client {i} must be a non-empty 1-D vector, got {shape}")
        lengths.add(shape[0])
    if len(lengths) != 1:
        raise EncodingError(f"client vectors differ in length: {sorted(lengths)}")
    return len(vectors), lengths.pop()


def _check_dropouts(dropouts: Iterable[int] | None, n: int) -> set[int]:
    out: set[int] = set()
    for i in dropouts or ():
        if isinstance(i, bool) or not isinstance(i, int | np.integer) or not 0 <= i < n:
            raise PaillierConfigError(f"dropout index {i!r} is not a client index in [0, {n})")
        out.add(int(i))
    return out


def simulate(
    vectors: Sequence[npt.ArrayLike],
    config: PaillierConfig | None = None,
    dropouts: Iterable[int] | None = None,
    seed: int | None = None,
    *,
    keypair: KeyPair | None = None,
) -> AggregationResult:
    """Run one Paillier round over ``vectors`` (one 1-D float vector per client).

    Args:
        vectors: the clients' updates, all of one length.
        config: round parameters; ``None`` for :class:`PaillierConfig` defaults.
        dropouts: indices of clients that never deliver their ciphertexts.
        seed: seeds the quantisation rounding only (encryption randomness, session ids
            and signing keys always come from the OS).
        keypair: an existing key pair (e.g. one generated once for many rounds).

    Returns an :class:`AggregationResult`; ``bytes_sent`` is keyed ``"server"`` (the
    aggregator, which plays the server's role: its decryption request), ``"key_holder"``
    (public key to each client, then the decrypted sum) and ``client/<i>``. Raises
    :class:`InsufficientContributorsError` when fewer than ``min_contributors`` clients
    contribute validly.
    """
    require_gmpy2()
    cfg = config or PaillierConfig()
    n, d = _check_vectors(vectors)
    dropped_in = _check_dropouts(dropouts, n)
    if cfg.key_holder is not None and not 0 <= cfg.key_holder < n:
        raise PaillierConfigError(f"key_holder {cfg.key_holder} is not a client index")
    packing = cfg.packing(n)
    min_contributors = check_min_contributors(cfg.resolved_min_contributors(n), packing)
    timings: dict[str, float] = {}

    t0 = time.perf_counter()
    if keypair is None:
        keypair = generate_keypair(
            cfg.key_bits,
            short_exponent=cfg.randomness == "short_exponent",
            insecure_test_key=cfg.insecure_test_key,
        )
    timings["keygen"] = time.perf_counter() - t0
    pk = keypair.public
    if pk.bits != cfg.key_bits:
        raise PaillierConfigError(f"keypair has {pk.bits} bits, config says {cfg.key_bits}")
    pk_bytes = encode_public_key(pk)
    session_id = os.urandom(SESSION_ID_BYTES)
    signing = {i: Ed25519PrivateKey.generate() for i in range(n)}
    roster = {i: k.public_key() for i, k in signing.items()}
    senders = [i for i in range(n) if i not in dropped_in]
    workers = cfg.resolved_workers(len(senders) * packing.num_plaintexts(d), os.cpu_count() or 1)
    rngs = np.random.default_rng(seed).spawn(n)

    aggregator = Aggregator(
        pk,
        packing,
        roster,
        session_id=session_id,
        round_index=ROUND_INDEX,
        num_elements=d,
        min_contributors=min_contributors,
    )
    key_holder = KeyHolder(
        keypair, packing, roster, session_id=session_id, min_contributors=min_contributors
    )
    transcript = Transcript()
    bytes_sent = {client_key(i): 0 for i in range(n)}
    rejected: dict[int, SecAggError] = {}
    with Encryptor(pk, workers=workers, randomness=cfg.randomness) as encryptor:
        stores: dict[int, ObfuscatorStore] = {}
        if cfg.precompute:
            t0 = time.perf_counter()
            for i in senders:  # offline: before any update exists
                stores[i] = encryptor.precompute(packing.num_plaintexts(d))
            timings["precompute"] = time.perf_counter() - t0
        payloads: dict[int, bytes] = {}
        t0 = time.perf_counter()
        for i in senders:
            client = Client(
                i, pk, packing, signing_key=signing[i], rounding=cfg.rounding, encryptor=encryptor
            )
            try:
                payloads[i] = client.contribute(
                    vectors[i],
                    session_id=session_id,
                    round_index=ROUND_INDEX,
                    rng=rngs[i],
                    obfuscators=stores.get(i),
                )
            except SecAggError as exc:  # e.g. NaN/Inf: this client cannot contribute
                rejected[i] = exc
        timings["encrypt"] = time.perf_counter() - t0
        timings["encrypt_per_client"] = timings["encrypt"] / max(1, len(payloads))

    t0 = time.perf_counter()
    for i, payload in payloads.items():
        bytes_sent[client_key(i)] = len(payload)
        if cfg.record_transcript:
            transcript.add("ciphertexts", i, "contribution", payload)
        aggregator.receive(i, payload)
    rejected.update(aggregator.rejected)
    request = aggregator.request()
    timings["aggregate"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    response = key_holder.decrypt(request)
    timings["decrypt"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    outcome = aggregator.finish(response)
    timings["decode"] = time.perf_counter() - t0

    survivors = outcome.contributors
    bytes_sent["server"] = len(request)  # the aggregator is this backend's server
    bytes_sent["key_holder"] = len(pk_bytes) * n + len(response)
    params = {
        **packing.describe(),
        **cfg.describe(),
        "num_clients": n,
        "num_elements": d,
        "ciphertexts_per_client": packing.num_plaintexts(d),
        "ciphertext_bytes": pk.ciphertext_bytes,
        "key_id": pk.key_id.hex(),
        "session_id": session_id.hex(),
        "round": ROUND_INDEX,
        "min_contributors": min_contributors,
        "workers": workers,
        "seed": seed,
        "rejected": {i: f"{type(e).__name__}: {e}" for i, e in sorted(rejected.items())},
    }
    return AggregationResult(
        sum=outcome.sum,
        mean=outcome.sum / len(survivors),
        survivors=survivors,
        dropped=tuple(i for i in range(n) if i not in survivors),
        timings=timings,
        bytes_sent=bytes_sent,
        transcript=transcript if cfg.record_transcript else None,
        params=params,
    )
