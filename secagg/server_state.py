"""Compact per-client records the server keeps between steps: O(n k) bytes, no O(n k)
Python objects.

A server at n = 10^4 with k in the hundreds relays millions of tags, boxes and digests.
Held as Python tuples and dicts that would cost several hundred bytes each; here each
client's items are one sorted id array and one bytes blob, looked up by binary search.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from secagg.commitments import Commitment, Leaf


@dataclass(frozen=True)
class Packed:
    """Fixed-width items keyed by a sorted id array, in one blob."""

    ids: array[int]
    blob: bytes
    width: int

    @classmethod
    def of(cls, items: Iterable[tuple[int, bytes]], width: int) -> Packed:
        """Pack ``(id, item)`` pairs (ids sorted and distinct, items ``width`` bytes)."""
        pairs = list(items)
        return cls(array("i", (i for i, _ in pairs)), b"".join(b for _, b in pairs), width)

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, int | np.integer) and self.index(int(key)) is not None

    def index(self, key: int) -> int | None:
        """Where ``key`` sits, or None (binary search: no per-item objects)."""
        i = bisect_left(self.ids, key)
        return i if i < len(self.ids) and self.ids[i] == key else None

    def get(self, key: int) -> bytes | None:
        """The item of ``key``, or None."""
        i = self.index(key)
        return None if i is None else self.blob[i * self.width : (i + 1) * self.width]

    def parties(self) -> list[int]:
        """Every id, ascending."""
        return list(self.ids)


@dataclass(frozen=True)
class Advert:
    """One accepted key advertisement."""

    channel_public: bytes
    mask_public: bytes
    signature: bytes
    tags: Packed  # receiver -> its MAC for that receiver


@dataclass(frozen=True)
class Dealing:
    """One client's ShareKeys: its boxes and its commitment (leaf digests)."""

    boxes: Packed  # receiver -> box
    seed_digest: bytes
    digests: Packed  # holder -> key digest || mask digest
    signature: bytes

    def receivers(self) -> list[int]:
        """Who it sent boxes to, ascending."""
        return self.boxes.parties()

    def digest(self, holder: int, self_mask: bool) -> bytes | None:
        """The committed digest of ``holder``'s share of one kind."""
        d = self.digests.get(holder)
        if d is None:
            return None
        return d[32:] if self_mask else d[:32]

    def commitment(self, owner: int, advert: Advert, channel_of: dict[int, bytes]) -> Commitment:
        """The full commitment object (for proofs), with the channel keys the owner used."""
        leaves = []
        for h in self.digests.parties():
            d = self.digests.get(h) or b""
            leaves.append(Leaf(h, channel_of.get(h, b"") if h != owner else b"", d[:32], d[32:]))
        boxes = {h: self.boxes.get(h) or b"" for h in self.boxes.parties()}
        return Commitment(
            owner, advert.channel_public, advert.mask_public, self.seed_digest, tuple(leaves), boxes
        )


@dataclass
class ShareBins:
    """Verified unmasking shares per owner, raw (40 bytes each); parsed only to rebuild."""

    threshold: int
    _by_owner: dict[int, list[tuple[int, bytes]]]

    @classmethod
    def empty(cls, threshold: int) -> ShareBins:
        """No shares yet."""
        return cls(threshold, {})

    def add(self, owner: int, holder: int, share: bytes) -> None:
        """Keep a verified share (t suffice once each is verified; extras are dropped)."""
        bucket = self._by_owner.setdefault(owner, [])
        if len(bucket) < self.threshold:
            bucket.append((holder, share))

    def get(self, owner: int) -> list[tuple[int, bytes]]:
        """The verified shares of ``owner``."""
        return self._by_owner.get(owner, [])

    def clear(self) -> None:
        """Forget every share."""
        self._by_owner.clear()
