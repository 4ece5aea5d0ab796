"""The peer check: the same server attacks against Flower's own SecAgg+ client code.

Only runs when the optional ``flwr`` package is installed. It drives the four stage
functions of Flower 1.42's ``secaggplus_mod`` (setup, share keys, collect masked
vectors, unmask) in-process, as a malicious server would, and reports side by side with
this project's protocol:

* **share mixing (dropout lie):** the server lists the victim both as active and as dead
  in the unmask request. Flower's clients answer with the victim's self-mask seed share
  *and* its mask-key share (they do not check that the two lists are disjoint), so with
  t answers the server rebuilds both secrets, strips every mask and reads the victim's
  input. Our clients decide per peer from one signed survivor list and answer once.
* **seed entropy:** Flower seeds its masks with a 32-bit fold of the 32-byte key (a
  Mersenne Twister seeded with the XOR of its eight words). Two different keys with the
  same fold give the same mask: the mask carries at most 32 bits of entropy.
* **seed search (dropout lie, no share mixing):** the server claims the live victim
  dropped after receiving its masked vector (victim only in the dead list), so the
  clients release its mask-key shares; the server strips every pairwise mask and is
  left with the quantized input plus the self mask, a Mersenne Twister seeded with 32
  bits. A vectorised MT19937 sweep (:mod:`protocols.attacks.mt19937`) over those 2^32
  seeds finds the one whose mask leaves an in-range input, and reads the input. The same
  lie against our clients gets the pairwise-mask key too, but the self mask is AES-CTR
  under a 256-bit seed: the same sweep finds nothing and the residual is uniform.

Run ``python -m protocols.attacks.flower_peer [--full] [--workers N]`` for the side-by-side
seed search with a progress bar (``--full``: the blind 2^32 sweep on both sides, ~10 min
each on 2 idle cores).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from protocols.attacks import mt19937
from protocols.attacks.distinguishers import seed_search, uniformity_pvalue


def flower_available() -> bool:
    """True when ``flwr`` can be imported."""
    return importlib.util.find_spec("flwr") is not None


def _flwr(module: str) -> Any:
    """``flwr.<module>``, loosely typed: its stage functions take ``ConfigRecord``s and are
    driven here with plain dicts (as the mod itself does at run time)."""
    return importlib.import_module(f"flwr.{module}")


_SA = "common.secure_aggregation"


@dataclass
class _FlowerRound:
    """One SecAgg+ round of Flower's client code, driven up to the masked vectors."""

    states: dict[int, Any]
    directory: dict[str, tuple[bytes, bytes]]
    masked: dict[int, list[npt.NDArray[Any]]]
    inputs: npt.NDArray[np.float32]
    clip: float = 8.0
    target: int = 1 << 22
    mod: int = 1 << 32


def _flower_round(n: int, threshold: int, d: int, seed: int) -> _FlowerRound:
    """Setup, share keys and collect masked vectors, honestly, with Flower's stage functions."""
    mod = _flwr("client.mod.secure_aggregation.secaggplus_mod")
    common = _flwr("common")
    Key = _flwr(f"{_SA}.secaggplus_constants").Key

    rng = np.random.default_rng(seed)
    rnd = _FlowerRound({}, {}, {}, rng.uniform(-1, 1, (n, d)).astype(np.float32))
    setup = {
        Key.SAMPLE_NUMBER: n,
        Key.SHARE_NUMBER: n,
        Key.THRESHOLD: threshold,
        Key.CLIPPING_RANGE: rnd.clip,
        Key.TARGET_RANGE: rnd.target,
        Key.MOD_RANGE: rnd.mod,
        Key.MAX_WEIGHT: 1.0,
    }
    states = rnd.states
    states.update({c: mod.SecAggPlusState(nid=c) for c in range(n)})
    pks = {c: mod._setup(states[c], dict(setup)) for c in range(n)}
    rnd.directory.update(
        {str(c): (pks[c][Key.PUBLIC_KEY_1], pks[c][Key.PUBLIC_KEY_2]) for c in range(n)}
    )
    boxes: dict[int, list[tuple[int, bytes]]] = {c: [] for c in range(n)}
    for c in range(n):
        out = mod._share_keys(states[c], dict(rnd.directory))
        for dst, ct in zip(out[Key.DESTINATION_LIST], out[Key.CIPHERTEXT_LIST], strict=True):
            boxes[dst].append((c, ct))
    for c in range(n):
        cfg = {
            Key.CIPHERTEXT_LIST: [ct for _, ct in boxes[c]],
            Key.SOURCE_LIST: [s for s, _ in boxes[c]],
        }
        # one example against max_weight 1: the weight factor element is q_ratio = 2^22
        params = common.ndarrays_to_parameters([rnd.inputs[c]])
        out = mod._collect_masked_vectors(states[c], cfg, 1, params)
        rnd.masked[c] = [common.bytes_to_ndarray(b) for b in out[Key.MASKED_PARAMETERS]]
    return rnd


def _strip_pairwise(
    rnd: _FlowerRound, victim: int, sk1: bytes, vec: list[npt.NDArray[Any]]
) -> list[npt.NDArray[Any]]:
    """Remove every pairwise mask from the victim's masked vector, given its key ``sk1``."""
    sym = _flwr(f"{_SA}.crypto.symmetric_encryption")
    arith = _flwr(f"{_SA}.ndarrays_arithmetic")
    utils = _flwr(f"{_SA}.secaggplus_utils")
    asym = _flwr("supercore.primitives.asymmetric")

    shapes = [a.shape for a in vec]
    for c in rnd.states:
        if c == victim:
            continue
        shared = sym.generate_shared_key(
            asym.bytes_to_private_key(sk1), asym.bytes_to_public_key(rnd.directory[str(c)][0])
        )
        mask = utils.pseudo_rand_gen(shared, rnd.mod, shapes)
        # the victim added the mask if its id is larger, subtracted it otherwise
        if victim > c:
            vec = arith.parameters_subtraction(vec, mask)
        else:
            vec = [v + m for v, m in zip(vec, mask, strict=True)]
    return list(arith.parameters_mod(vec, rnd.mod))


def flower_share_mixing(
    n: int = 5, threshold: int = 3, d: int = 16, victim: int = 0, seed: int = 0
) -> dict[str, Any]:
    """Run the share-mixing attack on Flower's client code; report what leaked."""
    mod = _flwr("client.mod.secure_aggregation.secaggplus_mod")
    shamir = _flwr(f"{_SA}.crypto.shamir")
    arith = _flwr(f"{_SA}.ndarrays_arithmetic")
    quant = _flwr(f"{_SA}.quantization")
    Key = _flwr(f"{_SA}.secaggplus_constants").Key
    utils = _flwr(f"{_SA}.secaggplus_utils")

    rnd = _flower_round(n, threshold, d, seed)
    # the malicious unmask request: the victim is listed both as active and as dead
    others = [c for c in range(n) if c != victim]
    active = list(range(n))  # Flower wants at least t active ids
    seed_shares, key_shares = [], []
    for c in others:
        req = {Key.ACTIVE_NODE_ID_LIST: active, Key.DEAD_NODE_ID_LIST: [victim]}
        out = mod._unmask(rnd.states[c], req)
        shares = out[Key.SHARE_LIST]
        seed_shares.append(shares[active.index(victim)])
        key_shares.append(shares[len(active)])
    rd_seed = shamir.combine_shares(seed_shares[:threshold])
    sk1 = shamir.combine_shares(key_shares[:threshold])
    vec = rnd.masked[victim]  # [weight factor (1,), parameters (d,)]
    shapes = [a.shape for a in vec]
    vec = arith.parameters_subtraction(vec, utils.pseudo_rand_gen(rd_seed, rnd.mod, shapes))
    vec = _strip_pairwise(rnd, victim, sk1, vec)
    got = quant.dequantize(vec[1:], rnd.clip, rnd.target)[0]
    err = float(np.max(np.abs(got - rnd.inputs[victim])))
    return {
        "recovered": err < 2 * rnd.clip / rnd.target * 4,
        "max_error": err,
        "seed_shares_released": len(seed_shares),
        "key_shares_released": len(key_shares),
    }


def flower_seed_entropy(d: int = 64) -> dict[str, Any]:
    """Two different 32-byte keys with the same 32-bit fold give Flower the same mask."""
    pseudo_rand_gen = _flwr(f"{_SA}.secaggplus_utils").pseudo_rand_gen

    a = bytearray(os.urandom(32))
    b = bytearray(os.urandom(32))
    # make b fold to the same 32-bit value as a: fix its last word
    fold = 0
    for i in range(0, 28, 4):
        fold ^= int.from_bytes(a[i : i + 4], "little") ^ int.from_bytes(b[i : i + 4], "little")
    fold ^= int.from_bytes(a[28:32], "little")
    b[28:32] = fold.to_bytes(4, "little")
    ma = pseudo_rand_gen(bytes(a), 1 << 32, [(d,)])[0]
    mb = pseudo_rand_gen(bytes(b), 1 << 32, [(d,)])[0]
    return {"different_keys": bytes(a) != bytes(b), "same_mask": bool(np.array_equal(ma, mb))}


# --- seed search after a dropout lie ----------------------------------------------------

#: the default suite's search: the 2^24-aligned slice holding the victim's seed (1/256)
SLICE_BITS = 24


def fold32(seed: bytes) -> int:
    """Flower's 32-bit fold of a mask seed: XOR of its little-endian 32-bit words."""
    out = 0
    for i in range(0, len(seed), 4):
        out ^= int.from_bytes(seed[i : i + 4], "little")
    return out


def _slice(fold: int | None, slice_bits: int | None) -> tuple[int, int]:
    """The seed range to sweep: all 2^32 seeds, or the aligned slice holding ``fold``."""
    if slice_bits is None or fold is None:
        return 0, mt19937.SEED_SPACE
    lo = fold & ~((1 << slice_bits) - 1)
    return lo, lo + (1 << slice_bits)


def _mt_mask(seed: int, d: int) -> npt.NDArray[np.uint32]:
    """``d`` elements of Flower's mask for 32-bit seed ``seed`` (what ``pseudo_rand_gen``
    draws for ``num_range = 2^32``, without importing flwr)."""
    gen = np.random.RandomState(seed)
    return gen.randint(0, (1 << 32) - 1, d, dtype=np.int64).astype(np.uint32)


def flower_seed_search(
    n: int = 5,
    threshold: int = 3,
    d: int = 4096,
    victim: int = 0,
    seed: int = 0,
    *,
    slice_bits: int | None = SLICE_BITS,
    workers: int | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Dropout lie + 2^32 seed search against Flower's client code; report what leaked.

    ``slice_bits=None`` sweeps every 32-bit seed blind. With ``slice_bits=24`` the sweep
    covers only the 2^24-aligned slice (1/256 of the space) that holds the victim's seed
    fold, which is read from the victim's state *only to pick the slice* (so the default
    test suite stays fast); the search itself never looks at it.
    """
    mod = _flwr("client.mod.secure_aggregation.secaggplus_mod")
    shamir = _flwr(f"{_SA}.crypto.shamir")
    quant = _flwr(f"{_SA}.quantization")
    Key = _flwr(f"{_SA}.secaggplus_constants").Key
    utils = _flwr(f"{_SA}.secaggplus_utils")

    rnd = _flower_round(n, threshold, d, seed)
    # the lie: the victim sent its masked vector, but is reported dead (not active)
    others = [c for c in range(n) if c != victim]
    key_shares, seed_shares = [], 0
    for c in others:
        out = mod._unmask(
            rnd.states[c], {Key.ACTIVE_NODE_ID_LIST: others, Key.DEAD_NODE_ID_LIST: [victim]}
        )
        ids, shares = out[Key.NODE_ID_LIST], out[Key.SHARE_LIST]
        key_shares += [s for i, s in zip(ids, shares, strict=True) if i == victim]
        seed_shares += sum(i == victim for i in ids[: len(others)])
    sk1 = shamir.combine_shares(key_shares[:threshold])
    vec = _strip_pairwise(rnd, victim, sk1, rnd.masked[victim])
    shapes = [a.shape for a in vec]
    residual = np.concatenate([a.ravel() for a in vec]).astype(np.uint32)  # q + self mask

    # quantized values (and the weight factor q_ratio <= target) lie in [0, target]
    width = rnd.target
    k = min(len(residual), mt19937.elements_needed(width))
    oracle = fold32(rnd.states[victim].rd_seed) if slice_bits is not None else None
    lo, hi = _slice(oracle, slice_bits)
    res = mt19937.search(
        residual[:k], width=width, lo=lo, hi=hi, workers=workers, progress=progress
    )
    # verify every candidate on the whole vector, with Flower's own generator
    half = rnd.target // 2

    def expand(s: int) -> npt.NDArray[Any]:
        parts = utils.pseudo_rand_gen(s.to_bytes(4, "little"), rnd.mod, shapes)
        return np.concatenate(parts).astype(np.uint32)

    found = seed_search(residual - np.uint32(half), expand, res.seeds, 32, half)
    out_: dict[str, Any] = {
        "recovered": False,
        "max_error": float("inf"),
        "quantum": 2 * rnd.clip / rnd.target,
        "mask_key_shares_released": len(key_shares),
        "self_mask_shares_released": seed_shares,
        "residual_pvalue": uniformity_pvalue(residual, 32),
        "searched": hi - lo,
        "range": (lo, hi),
        "candidates": res.seeds,
        "found": found,
        "seconds": res.seconds,
        "rate": res.rate,
        "workers": res.workers,
    }
    if len(found) == 1:
        q = (residual.astype(np.int64) - expand(found[0])) % rnd.mod
        got = quant.dequantize([q[1:]], rnd.clip, rnd.target)[0]
        err = float(np.max(np.abs(got - rnd.inputs[victim])))
        out_.update(
            recovered=err <= out_["quantum"],
            unmasked_pvalue=uniformity_pvalue(q.astype(np.uint32), 32),
            max_error=err,
            weight_factor=int(q[0]),
            seed_is_victims_fold=found[0] == fold32(rnd.states[victim].rd_seed),
        )
    return out_


def ours_seed_search(
    n: int = 7,
    d: int = 4096,
    victim: int = 0,
    seed: int = 0,
    *,
    lo: int = 0,
    hi: int = 1 << SLICE_BITS,
    workers: int | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """The same dropout lie and MT19937 seed search against this project's clients.

    The server (``WireServer``, active setting) tells every other client the victim
    dropped after it sent its masked input; they release its mask-key shares, the server
    rebuilds the key and strips the pairwise masks. What is left is the encoded input
    plus an AES-CTR self mask under a 256-bit seed: the sweep over ``[lo, hi)`` keeps
    seeds whose Mersenne Twister mask would leave an in-range encoding.
    """
    from protocols.attacks.wire_server import WireServer
    from secagg import SecAggConfig, crypto
    from secagg.context import RoundContext
    from secagg.messages import ShareKind
    from secagg.prg import apply_masks, expand_mask
    from secagg.roundspec import SELF_MASK_LABEL, mask_sign, pairwise_mask_term, pairwise_seed

    cfg = SecAggConfig.default(n, graph="complete", rounding="nearest")
    if cfg.encoding.ring.bits != 32:
        raise ValueError("the MT19937 filter compares 32-bit outputs")
    srv = WireServer(cfg, np.random.default_rng(seed).uniform(-1, 1, (n, d)))
    ring = cfg.encoding.ring
    srv.to_masked_inputs()
    masked = {c: m.vector for c, m in srv.masked.items()}

    # the lie, told consistently: every other client hears that the victim dropped
    everyone = frozenset(masked)
    srv.unmask({c: everyone - {victim} for c in everyone if c != victim})
    key_shares = srv.released.get((victim, ShareKind.MASK_KEY), {})
    self_shares = len(srv.released.get((victim, ShareKind.SELF_MASK), {}))
    key = srv.rebuild(victim, ShareKind.MASK_KEY)
    if key is None:
        raise RuntimeError("the lie did not release t mask-key shares")
    mask_key = crypto.AgreementKeyPair.from_private_bytes(key)
    if mask_key.public_bytes != srv.ads[victim].mask_public:
        raise RuntimeError("the rebuilt mask key is not the victim's")
    ctx = RoundContext(srv.session, srv.round_index)
    peers = [v for v in srv.lists[victim] if srv.mutual(victim, v)]
    terms = [
        pairwise_mask_term(
            pairwise_seed(ctx, victim, mask_key, v, srv.ads[v].mask_public),
            victim,
            v,
            -mask_sign(victim, v),
        )
        for v in sorted(peers)
    ]
    residual = apply_masks(
        masked[victim].copy(), ring, terms, session_id=srv.session, round_index=srv.round_index
    )  # encoded input + self mask

    # check of the stripping only (oracle: the victim's own self-mask seed)
    own = srv.clients[victim].st.self_seed
    if own is None:
        raise RuntimeError("the victim holds no self-mask seed")
    selfmask = expand_mask(
        own,
        d,
        ring,
        session_id=srv.session,
        round_index=srv.round_index,
        parties=(victim, victim),
        label=SELF_MASK_LABEL,
    )
    encoded = ring.reduce(residual - selfmask)
    decoded = ring.to_signed(encoded).astype(np.float64) / srv.cfg.encoding.resolved_scale
    strip_ok = bool(np.max(np.abs(decoded - srv.inputs[victim])) <= srv.cfg.encoding.quantum)

    # encodings are two's complement in [-max_abs, max_abs]: (r - m + max_abs) in [0, 2 max_abs]
    max_abs = srv.cfg.encoding.max_element
    width = 2 * max_abs
    k = min(d, mt19937.elements_needed(width))
    res = mt19937.search(
        residual[:k], shift=max_abs, width=width, lo=lo, hi=hi, workers=workers, progress=progress
    )
    found = seed_search(residual, lambda s: _mt_mask(s, d), res.seeds, 32, max_abs)
    recovered = False
    if len(found) == 1:  # never seen: it would mean an MT mask fits the whole vector
        guess = ring.to_signed(ring.reduce(residual - _mt_mask(found[0], d)))
        got = guess.astype(np.float64) / srv.cfg.encoding.resolved_scale
        recovered = bool(np.max(np.abs(got - srv.inputs[victim])) <= srv.cfg.encoding.quantum)
    return {
        "recovered": recovered,
        "mask_key_shares_released": len(key_shares),
        "self_mask_shares_released": self_shares,
        "pairwise_masks_stripped": strip_ok,
        "residual_pvalue": uniformity_pvalue(residual, 32),
        "searched": hi - lo,
        "candidates": res.seeds,
        "found": found,
        "seconds": res.seconds,
        "rate": res.rate,
        "workers": res.workers,
    }


def main(argv: list[str] | None = None) -> int:
    """Side by side: the seed search against Flower's clients and against ours."""
    ap = argparse.ArgumentParser(prog="python -m protocols.attacks.flower_peer")
    ap.add_argument("--full", action="store_true", help="blind sweep of all 2^32 seeds")
    ap.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    args = ap.parse_args(argv)
    if not flower_available():
        print("flwr is not installed: pip install flwr==1.42.0")
        return 2
    bits = None if args.full else SLICE_BITS
    theirs = flower_seed_search(slice_bits=bits, workers=args.workers, progress=True)
    hi = mt19937.SEED_SPACE if args.full else 1 << SLICE_BITS
    ours = ours_seed_search(hi=hi, workers=args.workers, progress=True)
    for name, r in (("Flower 1.42", theirs), ("this project", ours)):
        print(
            f"{name:13s} mask-key shares {r['mask_key_shares_released']}, self-mask shares "
            f"{r['self_mask_shares_released']}, searched {r['searched']:,} seeds in "
            f"{r['seconds']:.1f} s ({r['rate'] / 1e6:.2f} Mseeds/s, {r['workers']} workers): "
            f"{len(r['candidates'])} candidates, found {r['found']}, residual p = "
            f"{r['residual_pvalue']:.3g}, recovered: {r['recovered']}"
            + (f" (max error {r['max_error']:.2e})" if r["recovered"] else "")
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
