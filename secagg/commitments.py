"""Verifiable shares: what an owner commits to when it deals, and the proofs that name it.

With exactly t shares of a secret, one holder sending a well-formed wrong share would
make the server rebuild a wrong seed and the round end with a wrong sum. So every share
is checkable:

* the owner commits, per holder, to digests of both shares it deals (a domain-separated
  SHA-256 of a share's 279 uniform bits hides it), to a digest of its self-mask seed, and
  to the channel key it encrypted each holder's box for; in the active setting it signs
  the commitment with its registered Ed25519 identity (one signature per round);
* each holder checks the shares in its box against the digests on delivery;
* the server checks every released share against them, names and excludes a holder
  whose share does not match (:class:`~secagg.errors.BadShareError`), and interpolates
  from verified shares only; the rebuilt mask key must match the advertised public key
  and the rebuilt seed its committed digest.

An owner that dealt shares it did not commit to cannot make the sum wrong: a holder
finds it on delivery and complains (revealing its channel key for the round, which
opens nothing else of value once the round aborts), or the server finds that verified
shares interpolate to another secret. Either way the round aborts naming the owner,
with a proof anyone holding the registry can check (:func:`verify_proof`), so each
corrupt client can force at most one abort before it is excluded.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from secagg import crypto, shamir
from secagg.context import RoundContext
from secagg.errors import (
    DecryptionError,
    InconsistentSharesError,
    KeyFormatError,
    SecAggError,
    ShamirError,
    SignatureError,
)
from secagg.messages import ShareKind
from secagg.roundspec import unpack_box

DIGEST_BYTES = 32


_SHARE_FIELDS = struct.Struct(">IIB")  # owner, holder, kind; then the 43-byte share
_OWNER = struct.Struct(">I")
_LEAF_FIELDS = struct.Struct(">II?")  # owner, holder, whether a box (and channel key) follow


def share_digest(
    ctx: RoundContext, owner: int, holder: int, kind: ShareKind, share: bytes
) -> bytes:
    """The digest an owner commits to for one share it deals to ``holder``."""
    head = ctx.prefix("share-digest") + _SHARE_FIELDS.pack(owner, holder, int(kind))
    return hashlib.sha256(head + share).digest()


def seed_digest(ctx: RoundContext, owner: int, seed: bytes) -> bytes:
    """The digest of an owner's 32-byte self-mask seed (uniform: the digest hides it)."""
    head = ctx.prefix("self-mask-seed-digest") + _OWNER.pack(owner)
    return hashlib.sha256(head + seed).digest()


def box_digest(box: bytes) -> bytes:
    """Digest of an encrypted share box (empty for the owner's own shares)."""
    return hashlib.sha256(box).digest() if box else b""


@dataclass(frozen=True)
class Leaf:
    """What an owner commits to for one holder."""

    holder: int
    channel_public: bytes  # the holder's channel key the box was sealed to (b"" for itself)
    key_digest: bytes
    mask_digest: bytes

    def hash(self, ctx: RoundContext, owner: int, box: bytes) -> bytes:
        """This leaf's hash, binding the box too (the owner's own leaf has neither box
        nor channel key: a flag byte tells the two layouts apart)."""
        boxed = bool(box)
        head = ctx.prefix("commit-leaf") + _LEAF_FIELDS.pack(owner, self.holder, boxed)
        middle = self.channel_public + box_digest(box) if boxed else b""
        return hashlib.sha256(head + middle + self.key_digest + self.mask_digest).digest()

    def digest_of(self, kind: ShareKind) -> bytes:
        """The committed digest of the share of ``kind``."""
        return self.mask_digest if kind is ShareKind.SELF_MASK else self.key_digest


@dataclass(frozen=True)
class Commitment:
    """An owner's whole dealing of one round: its keys, its seed digest and one leaf per
    present holder (in holder order), with the boxes they bind."""

    owner: int
    channel_public: bytes
    mask_public: bytes
    seed_digest: bytes
    leaves: tuple[Leaf, ...]
    boxes: Mapping[int, bytes]  # holder -> box (absent for the owner itself)

    def leaf(self, holder: int) -> Leaf | None:
        """The leaf for ``holder``, if the owner dealt to it."""
        for lf in self.leaves:
            if lf.holder == holder:
                return lf
        return None

    def payload(self, ctx: RoundContext, registry: bytes) -> bytes:
        """The bytes the owner signs."""
        h = hashlib.sha256()
        for lf in self.leaves:
            h.update(lf.hash(ctx, self.owner, self.boxes.get(lf.holder, b"")))
        return ctx.encode(
            "share-commitment",
            registry,
            self.owner,
            self.channel_public,
            self.mask_public,
            self.seed_digest,
            len(self.leaves),
            h.digest(),
        )

    def check_share(self, ctx: RoundContext, holder: int, kind: ShareKind, share: bytes) -> bool:
        """Whether ``share`` is the one committed for (holder, kind); constant time."""
        lf = self.leaf(holder)
        if lf is None:
            return False
        want = lf.digest_of(kind)
        return hmac.compare_digest(share_digest(ctx, self.owner, holder, kind, share), want)


# --- proofs ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SignedAdvertisement:
    """A holder's round keys with its Ed25519 signature (checked only inside proofs)."""

    client: int
    channel_public: bytes
    mask_public: bytes
    signature: bytes


def advertisement_payload(ctx: RoundContext, registry: bytes, ad: SignedAdvertisement) -> bytes:
    """What a client signs when it advertises its two round keys."""
    return ctx.encode("advertise-keys", registry, ad.client, ad.channel_public, ad.mask_public)


@dataclass(frozen=True)
class BadBoxProof:
    """A holder's complaint: the owner's signed box does not open to the shares it
    committed, under the key derived from the holder's revealed round channel key."""

    ctx: RoundContext
    commitment: Commitment
    signature: bytes
    holder_ad: SignedAdvertisement
    holder_channel_private: bytes


@dataclass(frozen=True)
class BadDealingProof:
    """Verified shares of one secret that interpolate to something else than the
    owner committed (its seed digest, or its advertised mask public key)."""

    ctx: RoundContext
    commitment: Commitment
    signature: bytes
    kind: ShareKind
    shares: tuple[tuple[int, bytes], ...]  # (holder, share bytes)


DealingProof = BadBoxProof | BadDealingProof


def verify_proof(
    proof: DealingProof,
    registry: bytes,
    identity_keys: Mapping[int, bytes],
    expected: tuple[int, int] | None = None,
) -> bool:
    """True when ``proof`` shows its owner misbehaved, checked with public data only: the
    owner's signed commitment, (for a box) the holder's signed advertisement.
    ``expected``: the (share index, threshold) the registry's graph and policy fix for the
    box's holder; a committed share with another header is then proof too."""
    c = proof.commitment
    try:
        crypto.verify_signature(
            identity_keys[c.owner], proof.signature, c.payload(proof.ctx, registry)
        )
        if isinstance(proof, BadBoxProof):
            ad = proof.holder_ad
            payload = advertisement_payload(proof.ctx, registry, ad)
            crypto.verify_signature(identity_keys[ad.client], ad.signature, payload)
    except (SignatureError, KeyError):
        return False
    if isinstance(proof, BadDealingProof):
        return dealing_is_bad(proof)
    return box_is_bad(proof, expected)


def dealing_is_bad(proof: BadDealingProof) -> bool:
    """Whether the proof's verified shares interpolate to another secret than committed
    (signatures not checked: :func:`verify_proof` does that)."""
    c, ctx = proof.commitment, proof.ctx
    try:
        parsed = [shamir.Share.from_bytes(s) for _, s in proof.shares]
    except ShamirError:
        return False
    if not parsed or not all(c.check_share(ctx, h, proof.kind, s) for h, s in proof.shares):
        return False  # only shares the owner committed to can prove anything
    try:
        secret = shamir.combine(parsed[: parsed[0].threshold])
    except InconsistentSharesError:
        return True  # shares the owner committed to that are not of one 32-byte secret
    except ShamirError:
        return False
    if proof.kind is ShareKind.SELF_MASK:
        return not hmac.compare_digest(seed_digest(ctx, c.owner, secret), c.seed_digest)
    try:
        pub = crypto.AgreementKeyPair.from_private_bytes(secret).public_bytes
    except KeyFormatError:
        return True
    return not hmac.compare_digest(pub, c.mask_public)


def shares_have_header(shares: tuple[bytes, ...], index: int, threshold: int) -> bool:
    """Whether every share parses and carries the holder's ``index`` and ``threshold``."""
    try:
        parsed = [shamir.Share.from_bytes(s) for s in shares]
    except ShamirError:
        return False
    return all(p.index == index and p.threshold == threshold for p in parsed)


def box_is_bad(proof: BadBoxProof, expected: tuple[int, int] | None = None) -> bool:
    """Whether the owner's box does not open to its committed shares under the key the
    holder's revealed channel key derives, or (with ``expected``, the holder's share
    index and the threshold) holds shares with another header (signatures not checked:
    the honest-but-curious server trusts its own records; :func:`verify_proof` checks
    them)."""
    c, ctx, ad = proof.commitment, proof.ctx, proof.holder_ad
    try:
        mine = crypto.AgreementKeyPair.from_private_bytes(proof.holder_channel_private)
    except KeyFormatError:
        return False
    lf, box = c.leaf(ad.client), c.boxes.get(ad.client)
    if lf is None or box is None or mine.public_bytes != ad.channel_public:
        return False
    if lf.channel_public != ad.channel_public:
        return False  # the owner says it was given another key: word against word
    try:
        key = crypto.derive_channel_key(mine.exchange(c.channel_public), ctx, c.owner, ad.client)
        plain = crypto.open_sealed(key, box, crypto.share_aad(ctx, c.owner, ad.client))
        key_share, mask_share = unpack_box(plain, c.owner, ad.client)
    except (DecryptionError, KeyFormatError, SecAggError):
        return True  # a signed box that does not open under the holder's real key
    if not (
        c.check_share(ctx, ad.client, ShareKind.MASK_KEY, key_share)
        and c.check_share(ctx, ad.client, ShareKind.SELF_MASK, mask_share)
    ):
        return True
    return expected is not None and not shares_have_header((key_share, mask_share), *expected)


def holder_shares_ok(
    ctx: RoundContext,
    owner: int,
    holder: int,
    key_share: bytes,
    mask_share: bytes,
    key_digest: bytes,
    mask_digest: bytes,
) -> bool:
    """The holder's check on delivery: both shares match the relayed digests."""
    a = share_digest(ctx, owner, holder, ShareKind.MASK_KEY, key_share)
    b = share_digest(ctx, owner, holder, ShareKind.SELF_MASK, mask_share)
    return hmac.compare_digest(a, key_digest) & hmac.compare_digest(b, mask_digest)


def interpolate_verified(shares: Sequence[shamir.Share]) -> bytes:
    """Rebuild from exactly t verified shares (any t suffice once each is checked)."""
    return shamir.combine(list(shares[: shares[0].threshold]))
