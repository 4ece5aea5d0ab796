"""``simulate_threshold``: one in-process Paillier round decrypted by a t-of-l committee.

Like :func:`secagg.paillier.simulate`, every party runs here but talks only in bytes:
clients send signed contributions to the aggregator; the aggregator sends the
decryption request to every online member (exchange 1, endorsements back), then the
product with q endorsements (exchange 2, decryption shares and batched proofs back), and
combines. Members run one after another here; in a deployment each is its own machine.
``tamper`` lets a test play a malicious member or network on the share responses.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from secagg.errors import EncodingError, SecAggError
from secagg.paillier.config import PaillierConfig
from secagg.paillier.contribution import Roster
from secagg.paillier.encrypt import Encryptor
from secagg.paillier.errors import PaillierConfigError
from secagg.paillier.gmp import require_gmpy2
from secagg.paillier.roles import Client, check_min_contributors
from secagg.paillier.threshold_aggregator import ThresholdAggregator, ThresholdOutcome, Verify
from secagg.paillier.threshold_keys import ThresholdDeal, generate_threshold_keypair
from secagg.paillier.threshold_member import CommitteeMember
from secagg.result import AggregationResult, Transcript, client_key

ROUND_INDEX = 1
SESSION_ID_BYTES = 16

Tamper = Callable[[int, bytes], bytes]


def _shape(vectors: Sequence[npt.ArrayLike]) -> tuple[int, int]:
    shapes = {np.shape(v) for v in vectors}
    if not vectors or len(shapes) != 1 or len(next(iter(shapes))) != 1:
        raise EncodingError("simulate_threshold needs non-empty 1-D client vectors of one length")
    (d,) = shapes.pop()
    if d == 0:
        raise EncodingError("client vectors are empty")
    return len(vectors), d


def _members(
    deal: ThresholdDeal, cfg: PaillierConfig, n: int, session: bytes, roster: Roster
) -> tuple[dict[int, CommitteeMember], dict[int, Ed25519PublicKey]]:
    """Every member, each with a fresh Ed25519 key in a registry of all of them."""
    signing = {i: Ed25519PrivateKey.generate() for i in deal.public.params.member_ids}
    registry = {i: k.public_key() for i, k in signing.items()}
    packing = cfg.packing(n)
    members = {
        i: CommitteeMember(
            deal.share(i),
            packing,
            roster,
            registry,
            session_id=session,
            min_contributors=cfg.resolved_min_contributors(n),
            signing_key=signing[i],
        )
        for i in deal.public.params.member_ids
    }
    return members, registry


def _contributions(
    vectors: Sequence[npt.ArrayLike],
    cfg: PaillierConfig,
    deal: ThresholdDeal,
    senders: list[int],
    signing: dict[int, Ed25519PrivateKey],
    session: bytes,
    seed: int | None,
) -> tuple[dict[int, bytes], dict[int, SecAggError]]:
    """Each sender's signed contribution under the threshold key's ordinary public key."""
    pk, n = deal.public.public, len(vectors)
    packing = cfg.packing(n)
    d = np.shape(vectors[0])[0]
    rngs = np.random.default_rng(seed).spawn(n)
    workers = cfg.resolved_workers(len(senders) * packing.num_plaintexts(d), os.cpu_count() or 1)
    payloads: dict[int, bytes] = {}
    rejected: dict[int, SecAggError] = {}
    with Encryptor(pk, workers=workers, randomness=cfg.randomness) as enc:
        stores = {i: enc.precompute(packing.num_plaintexts(d)) for i in senders if cfg.precompute}
        for i in senders:
            client = Client(
                i, pk, packing, signing_key=signing[i], rounding=cfg.rounding, encryptor=enc
            )
            try:
                payloads[i] = client.contribute(
                    vectors[i],
                    session_id=session,
                    round_index=ROUND_INDEX,
                    rng=rngs[i],
                    obfuscators=stores.get(i),
                )
            except SecAggError as exc:
                rejected[i] = exc
    return payloads, rejected


def _deal(cfg: PaillierConfig, committee: tuple[int, int]) -> ThresholdDeal:
    """Deal a fresh key for ``cfg.key_bits`` (safe primes: seconds to minutes at 2048)."""
    return generate_threshold_keypair(
        cfg.key_bits,
        threshold=committee[0],
        members=committee[1],
        short_exponent=cfg.randomness == "short_exponent",
        insecure_test_key=cfg.insecure_test_key,
    )


def simulate_threshold(
    vectors: Sequence[npt.ArrayLike],
    config: PaillierConfig | None = None,
    dropouts: Iterable[int] | None = None,
    seed: int | None = None,
    *,
    deal: ThresholdDeal | None = None,
    committee: tuple[int, int] = (3, 5),
    offline_members: Iterable[int] = (),
    tamper: Tamper | None = None,
    verify: Verify = "optimistic",
) -> AggregationResult:
    """Run one round over ``vectors`` with a t-of-l committee instead of a key holder.

    ``committee`` is (t, l) when ``deal`` is ``None`` (a key is then dealt for
    ``config.key_bits``); ``offline_members`` never answer; ``tamper(member, bytes)``
    rewrites a member's share response in transit. Returns an
    :class:`AggregationResult`; ``params`` records the committee, the members whose
    shares were combined, whether proofs were checked and who was excluded.
    """
    require_gmpy2()
    cfg = config or PaillierConfig()
    n, d = _shape(vectors)
    dropped_in = {int(i) for i in (dropouts or ())}
    if not dropped_in <= set(range(n)):
        raise PaillierConfigError(f"dropouts {sorted(dropped_in)} are not client indices")
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    deal = deal or _deal(cfg, committee)
    timings["keygen"] = time.perf_counter() - t0
    tpk = deal.public
    packing = cfg.packing(n)
    min_contributors = check_min_contributors(cfg.resolved_min_contributors(n), packing)
    session = os.urandom(SESSION_ID_BYTES)
    signing = {i: Ed25519PrivateKey.generate() for i in range(n)}
    roster = {i: k.public_key() for i, k in signing.items()}
    members, registry = _members(deal, cfg, n, session, roster)
    online = [m for m in members if m not in set(offline_members)]
    t0 = time.perf_counter()
    senders = [i for i in range(n) if i not in dropped_in]
    payloads, rejected = _contributions(vectors, cfg, deal, senders, signing, session, seed)
    timings["encrypt"] = time.perf_counter() - t0
    agg = ThresholdAggregator(
        tpk,
        packing,
        roster,
        registry,
        session_id=session,
        round_index=ROUND_INDEX,
        num_elements=d,
        min_contributors=min_contributors,
    )
    transcript = Transcript()
    for i, p in payloads.items():
        transcript.add("ciphertexts", i, "contribution", p)
        agg.receive(i, p)
    rejected.update(agg.inner.rejected)
    sent = _committee_exchanges(agg, members, online, agg.request(), tamper, timings)
    t0 = time.perf_counter()
    res = agg.finish(verify=verify)
    timings["combine"] = time.perf_counter() - t0
    out = res.outcome
    params = {
        **packing.describe(),
        **cfg.describe(),
        **_describe(agg, res),
        "num_clients": n,
        "num_elements": d,
        "rejected": {i: f"{type(e).__name__}: {e}" for i, e in sorted(rejected.items())},
        "min_contributors": min_contributors,
    }
    bytes_sent = {client_key(i): len(payloads.get(i, b"")) for i in range(n)}
    bytes_sent.update(sent)
    return AggregationResult(
        sum=out.sum,
        mean=out.sum / len(out.contributors),
        survivors=out.contributors,
        dropped=tuple(i for i in range(n) if i not in out.contributors),
        timings=timings,
        bytes_sent=bytes_sent,
        transcript=transcript if cfg.record_transcript else None,
        params=params,
    )


def _describe(agg: ThresholdAggregator, res: ThresholdOutcome) -> dict[str, object]:
    """The committee's part of ``params``: who was used, checked, excluded, refused."""
    tpk = agg.public_key
    return {
        "key_id": tpk.public.key_id.hex(),
        "committee": f"{tpk.params.threshold}-of-{tpk.params.members}",
        "quorum": tpk.params.quorum if tpk.params.requires_agreement else None,
        "members_used": res.members_used,
        "proofs_verified": res.proofs_verified,
        "excluded": {m: f"{type(e).__name__}: {e}" for m, e in res.excluded.items()},
        "member_errors": {m: f"{type(e).__name__}: {e}" for m, e in agg.member_errors.items()},
    }


def _committee_exchanges(
    agg: ThresholdAggregator,
    members: dict[int, CommitteeMember],
    online: list[int],
    request: bytes,
    tamper: Tamper | None,
    timings: dict[str, float],
) -> dict[str, int]:
    """Exchange 1 (endorse) when t < l, then exchange 2 (shares); bytes per party."""
    sent = {"server": len(request) * len(online)}
    t0 = time.perf_counter()
    if agg.public_key.params.requires_agreement:
        for m in online:
            e = members[m].endorse(request)
            sent[f"member/{m}"] = len(e)
            agg.receive_endorsement(m, e)
        second = agg.share_request()
        targets = sorted(agg.endorsements)
        sent["server"] += len(second) * len(targets)
        timings["endorse"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        replies = {m: members[m].release(second) for m in targets}
    else:
        replies = {m: members[m].decrypt(request) for m in online}
    timings["shares"] = time.perf_counter() - t0
    for m, r in replies.items():
        r = tamper(m, r) if tamper is not None else r
        sent[f"member/{m}"] = sent.get(f"member/{m}", 0) + len(r)
        agg.receive_share(m, r)
    return sent
