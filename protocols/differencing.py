"""Defence against multi-round differencing (So et al., AAAI 2023).

Secure aggregation protects one round. If a round fails and the server re-runs the same
model with a survivor set that differs by one client, the difference of the two sums is
that client's update. :class:`ContributionGuard` tracks, per session, which clients
contributed an input for each model hash, and refuses a second contribution for the same
hash unless the update carries fresh DP noise (DP-SGD on the client, or distributed
noise): then the two releases are two noised mechanisms, both accounted. Without DP a
failed round's retry must use a new model (or other clients).
"""

from __future__ import annotations

from collections.abc import Iterable

from protocols.errors import RepeatedContributionError


class ContributionGuard:
    """(session, model hash) -> clients that contributed; refuses repeats without fresh noise."""

    def __init__(self, session_id: bytes) -> None:
        self.session_id = bytes(session_id)
        self._seen: dict[bytes, set[int]] = {}

    def contributed(self, model_hash: bytes) -> frozenset[int]:
        """Clients that already contributed for ``model_hash`` in this session."""
        return frozenset(self._seen.get(bytes(model_hash), ()))

    def eligible(
        self, model_hash: bytes, candidates: Iterable[int], *, fresh_noise: bool
    ) -> list[int]:
        """The candidates allowed to contribute for ``model_hash``."""
        if fresh_noise:
            return list(candidates)
        seen = self._seen.get(bytes(model_hash), set())
        return [c for c in candidates if c not in seen]

    def check(self, model_hash: bytes, clients: Iterable[int], *, fresh_noise: bool) -> None:
        """Raise :class:`RepeatedContributionError` if any client would repeat."""
        if fresh_noise:
            return
        seen = self._seen.get(bytes(model_hash), set())
        repeats = sorted(c for c in clients if c in seen)
        if repeats:
            raise RepeatedContributionError(repeats, bytes(model_hash))

    def record(self, model_hash: bytes, clients: Iterable[int]) -> None:
        """Note that ``clients`` sent an input for ``model_hash``."""
        self._seen.setdefault(bytes(model_hash), set()).update(clients)
