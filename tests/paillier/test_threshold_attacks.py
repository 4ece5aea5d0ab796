"""A coalition of corrupt members and the aggregator against the committee.

t - 1 corrupt members fail to decrypt one client and fail to difference two subsets;
the same attack code with t corrupt members succeeds (the control); without the
agreement quorum the split-view differencing succeeds with t - 1 (why q exists).
"""

from __future__ import annotations

import pytest

from secagg.paillier.threshold_attacks import Target, run_coalition_attack
from tests.paillier.test_threshold_vectors import deal


@pytest.mark.parametrize("target", ["single", "difference"])
@pytest.mark.parametrize(("t", "members"), [(3, 5), (2, 3), (3, 4)])
def test_t_minus_1_members_and_the_aggregator_recover_nothing(
    target: Target, t: int, members: int
) -> None:
    report = run_coalition_attack(deal(t, members), list(range(1, t)), target=target)
    assert not report.succeeded
    assert report.exact_fraction < 0.1  # chance level is 2^-16 per element
    assert report.max_abs_error > 1000
    assert report.refusals  # honest members refused, each with a named error


@pytest.mark.parametrize("target", ["single", "difference"])
@pytest.mark.parametrize(("t", "members"), [(3, 5), (2, 3), (3, 4)])
def test_control_t_members_recover_the_victim_exactly(target: Target, t: int, members: int) -> None:
    report = run_coalition_attack(deal(t, members), list(range(1, t + 1)), target=target)
    assert report.succeeded and report.max_abs_error == 0


def test_refusals_name_the_rule_that_stopped_each_step() -> None:
    single = run_coalition_attack(deal(3, 5), [1, 2], target="single")
    reasons = " ".join(single.refusals.values())
    assert "InsufficientContributorsError" in reasons and "ProductMismatchError" in reasons
    diff = run_coalition_attack(deal(3, 5), [1, 2], target="difference")
    reasons = " ".join(diff.refusals.values())
    assert "SecondSubsetError" in reasons and "QuorumError" in reasons


def test_without_agreement_the_split_view_differences_two_subsets() -> None:
    """Members that only decrypt one subset each, without the quorum, are not enough."""
    weak = run_coalition_attack(deal(3, 5), [1, 2], target="difference", agreement=False)
    assert weak.succeeded
    assert weak.shares_obtained["split-full"] == (1, 2, 3, 4)
    assert weak.shares_obtained["split-subset"] == (1, 2, 5)
    still = run_coalition_attack(deal(3, 5), [1, 2], target="single", agreement=False)
    assert not still.succeeded  # the key-holder checks still stop a single decryption
