"""Every share is verifiable and every bad party named: a wrong share, an inconsistent
dealing or a box that does not match its commitment never gives a wrong sum. Each case
has a control: the same misbehaviour against a server that skips the checks gives a
silently wrong sum."""

from __future__ import annotations

import numpy as np
import pytest

from secagg import SecAggConfig, commitments, shamir
from secagg.client import SecAggClient
from secagg.errors import BadShareError, DealerMisbehaviourError, RoundAbortedError
from secagg.messages import ShareKind
from secagg.server import SecAggServer
from secagg.simulate import InProcessRound

from .harness import expected_sum

GUARANTEES = ("ACT-15",)
N, D = 7, 16
CFG = SecAggConfig.default(N, rounding="nearest", graph="complete")
XS = np.random.default_rng(4).uniform(-1, 1, (N, D))
BAD_HOLDER, OWNER = 1, 3


def _shift(value: tuple[int, ...], index: int, used: list[int]) -> tuple[int, ...]:
    """The share at ``index`` changed so that interpolating the shares at ``used`` moves
    the secret's lowest limb by one: a well-formed but wrong secret, what a careful
    corrupt party would aim for (a random change would mostly be refused as not a
    32-byte secret)."""
    lam = int(shamir.lagrange_at(used, 0)[used.index(index)])
    return ((value[0] + pow(lam, -1, shamir.PRIME)) % shamir.PRIME, *value[1:])


def _off_by_one(raw: bytes, used: list[int]) -> bytes:
    s = shamir.Share.from_bytes(raw)
    return shamir.Share(
        s.index, s.threshold, s.num_shares, _shift(s.value, s.index, used)
    ).to_bytes()


class WrongShareHolder(SecAggClient):
    """A corrupt holder: releases a well-formed but wrong share of OWNER's seed."""

    def _release(self, out: list[tuple[int, ShareKind]]) -> bytes:
        if self.id == BAD_HOLDER and OWNER in self.st.held:
            k, m = self.st.held[OWNER]
            # the t shares of OWNER the server will hold: those of the clients that
            # answer the unmasking request (complete graph: index = id + 1)
            used = sorted(c + 1 for c in range(N) if c not in _late(3))[: CFG.threshold]
            self.st.held[OWNER] = (k, _off_by_one(m, used))
        return super()._release(out)


class WrongIndexDealer(SecAggClient):
    """A corrupt owner: commits to, boxes and signs shares whose header index is shifted
    by one (values unchanged), so every holder's digests match."""

    def _deal(self):  # type: ignore[no-untyped-def]
        if self.id == OWNER:
            real = shamir.split

            def tampered(secret: bytes, n: int, t: int):  # type: ignore[no-untyped-def]
                return [
                    shamir.Share(s.index % n + 1, s.threshold, s.num_shares, s.value)
                    for s in real(secret, n, t)
                ]

            shamir.split = tampered  # type: ignore[assignment]
            try:
                return super()._deal()
            finally:
                shamir.split = real  # type: ignore[assignment]
        return super()._deal()


class InconsistentDealer(SecAggClient):
    """A corrupt owner: one holder's self-mask share is off its polynomial, but the
    commitment names that very share (the holder's check on delivery passes)."""

    def _deal(self):  # type: ignore[no-untyped-def]
        if self.id == OWNER:
            real = shamir.split

            def tampered(secret: bytes, n: int, t: int):  # type: ignore[no-untyped-def]
                shares = real(secret, n, t)
                if secret == self.st.self_seed:  # the seed's sharing: spoil the first share
                    s = shares[0]
                    used = list(range(1, t + 1))  # the server's first t: holders 0..t-1
                    shares[0] = shamir.Share(
                        s.index, s.threshold, s.num_shares, _shift(s.value, 1, used)
                    )
                return shares

            shamir.split = tampered  # type: ignore[assignment]
            try:
                return super()._deal()
            finally:
                shamir.split = real  # type: ignore[assignment]
        return super()._deal()


class WideDealer(SecAggClient):
    """A corrupt owner whose spoiled share makes the seed's top limb wider than 16 bits:
    the shares interpolate to no 32-byte secret at all."""

    def _deal(self):  # type: ignore[no-untyped-def]
        if self.id == OWNER:
            real = shamir.split

            def tampered(secret: bytes, n: int, t: int):  # type: ignore[no-untyped-def]
                shares = real(secret, n, t)
                if secret == self.st.self_seed:
                    s = shares[0]
                    lam = int(shamir.lagrange_at(list(range(1, t + 1)), 0)[0])
                    top = (s.value[-1] + pow(lam, -1, shamir.PRIME) * 2**20) % shamir.PRIME
                    shares[0] = shamir.Share(s.index, t, n, (*s.value[:-1], top))
                return shares

            shamir.split = tampered  # type: ignore[assignment]
            try:
                return super()._deal()
            finally:
                shamir.split = real  # type: ignore[assignment]
        return super()._deal()


class BadBoxDealer(SecAggClient):
    """A corrupt owner: the box it seals (and signs) for BAD_HOLDER holds other shares
    than the digests it commits to."""

    def _seal_box(self, holder: int, plaintext: bytes) -> bytes:
        if self.id == OWNER and holder == BAD_HOLDER:
            plaintext = plaintext[:-1] + bytes([plaintext[-1] ^ 1])
        return super()._seal_box(holder, plaintext)


class FalseComplainer(SecAggClient):
    """A corrupt holder that complains about an honest owner's box."""

    def _open_box(self, sender: int, box: bytes, kd: bytes, md: bytes) -> bytes | None:
        if self.id == BAD_HOLDER and sender == OWNER:
            return self._complain(sender)
        return super()._open_box(sender, box, kd, md)


class UncheckedServer(SecAggServer):
    """Weakened: takes released shares and rebuilt secrets without checking them."""

    def _check_unmask(self, sender, msg):  # type: ignore[no-untyped-def]
        return [(o, k, raw) for o, k, raw in msg.shares]

    def _matches(self, owner: int, kind: ShareKind, secret: bytes) -> bool:
        return True


def _late(late: int) -> list[int]:
    """The clients that vanish before unmasking (neither of the misbehaving ones)."""
    return [c for c in range(N) if c not in (BAD_HOLDER, OWNER)][:late]


def _round(
    factory: type[SecAggClient], *, unchecked: bool = False, late: int = 3
) -> InProcessRound:
    """``late`` clients other than the misbehaving ones vanish before unmasking, so the
    server has exactly t (late = 3) or t + 1 (late = 2) shares of each seed."""
    drop = _late(late)
    rnd = InProcessRound(XS, CFG, dict.fromkeys(drop, "consistency_check"), client_factory=factory)
    if unchecked:
        rnd.server = UncheckedServer(
            CFG, session_id=rnd.session_id, round_index=0, dimension=D, registry=rnd.registry
        )
    return rnd


def test_a_wrong_share_with_exactly_t_shares_aborts_and_names_its_holder() -> None:
    assert CFG.threshold == 4
    rnd = _round(WrongShareHolder)
    with pytest.raises(RoundAbortedError):  # t - 1 verified responses left: no sum at all
        rnd.run()
    assert isinstance(rnd.server.rejected[BAD_HOLDER], BadShareError)


def test_a_wrong_share_with_one_spare_is_excluded_and_the_sum_is_exact() -> None:
    rnd = _round(WrongShareHolder, late=2)
    res = rnd.run()
    assert isinstance(rnd.server.rejected[BAD_HOLDER], BadShareError)
    assert np.array_equal(res.sum, expected_sum(CFG, XS, res.survivors))


def test_a_wrong_share_gives_a_silently_wrong_sum_without_the_checks() -> None:
    """Control: the pre-fix server interpolates the wrong share into a wrong seed."""
    rnd = _round(WrongShareHolder, unchecked=True)
    res = rnd.run()
    err = float(np.max(np.abs(res.sum - expected_sum(CFG, XS, res.survivors))))
    assert err > 1.0  # the issue measured 15.6 against 2e-8


def test_inconsistent_dealing_aborts_naming_the_dealer_with_a_transferable_proof() -> None:
    rnd = _round(InconsistentDealer, late=0)
    with pytest.raises(DealerMisbehaviourError) as info:
        rnd.run()
    err = info.value
    assert err.owner == OWNER and isinstance(err.proof, commitments.BadDealingProof)
    reg = rnd.registry
    assert reg is not None
    assert commitments.verify_proof(err.proof, reg.digest, reg.identities())
    forged = commitments.BadDealingProof(
        err.proof.ctx, err.proof.commitment, bytes(64), err.proof.kind, err.proof.shares
    )
    assert not commitments.verify_proof(forged, reg.digest, reg.identities())


def test_a_dealing_of_no_32_byte_secret_is_proven_as_well() -> None:
    rnd = _round(WideDealer, late=0)
    with pytest.raises(DealerMisbehaviourError) as info:
        rnd.run()
    reg = rnd.registry
    assert reg is not None and info.value.owner == OWNER
    assert commitments.verify_proof(info.value.proof, reg.digest, reg.identities())


def test_inconsistent_dealing_gives_a_wrong_sum_without_the_checks() -> None:
    rnd = _round(InconsistentDealer, unchecked=True, late=0)
    res = rnd.run()
    assert float(np.max(np.abs(res.sum - expected_sum(CFG, XS, res.survivors)))) > 1.0


def test_a_bad_box_is_complained_about_and_the_round_aborts_naming_its_dealer() -> None:
    rnd = _round(BadBoxDealer, late=0)
    with pytest.raises(DealerMisbehaviourError) as info:
        rnd.run()
    err = info.value
    assert err.owner == OWNER and isinstance(err.proof, commitments.BadBoxProof)
    reg = rnd.registry
    assert reg is not None
    assert commitments.verify_proof(err.proof, reg.digest, reg.identities())


def test_a_false_complaint_drops_the_complainer_and_the_round_goes_on() -> None:
    rnd = _round(FalseComplainer, late=0)
    res = rnd.run()
    assert BAD_HOLDER not in res.survivors and BAD_HOLDER in rnd.server.rejected
    assert np.array_equal(res.sum, expected_sum(CFG, XS, res.survivors))


def test_a_dealing_with_wrong_share_indices_names_the_dealer_not_the_holders() -> None:
    """Each holder checks its shares' header against the registry's graph on delivery
    and complains; the proof convinces anyone who knows the header the graph fixes.
    Before, holders accepted and the server rejected every honest holder at unmasking."""
    rnd = InProcessRound(XS, CFG, client_factory=WrongIndexDealer)
    with pytest.raises(DealerMisbehaviourError) as info:
        rnd.run()
    err, reg = info.value, rnd.registry
    assert err.owner == OWNER and isinstance(err.proof, commitments.BadBoxProof) and reg
    holder = err.proof.holder_ad.client
    header = (rnd.server.graph.share_index(OWNER, holder), CFG.threshold)
    assert commitments.verify_proof(err.proof, reg.digest, reg.identities(), header)
    assert not commitments.verify_proof(err.proof, reg.digest, reg.identities())  # no header
