"""The client-side differencing rule (issue 13, item 2): a persisted, strictly
increasing round counter, a participation cap per window, and a secret sketch that
sees M + epsilon."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import dp
from protocols.client_guard import (
    SKETCH_BUCKETS,
    ClientGuard,
    ContributionPolicy,
    ContributionRefusedError,
    model_sketch,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _model(seed: int, d: int = 1000) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=d)


def test_the_counter_must_increase_and_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "guard.json"
    g = ClientGuard(path=path)
    assert g.admit(3, _model(0)).counter == 3
    with pytest.raises(ContributionRefusedError, match="not above"):
        g.admit(3, _model(1))
    again = ClientGuard(path=path)  # the client restarts
    assert again.last_counter == 3
    with pytest.raises(ContributionRefusedError, match="not above"):
        again.admit(2, _model(2))
    assert again.admit(4, _model(3)).noise_std == 0.0


def test_a_nearly_equal_model_is_a_repeat_whatever_its_hash(tmp_path: Path) -> None:
    g = ClientGuard(path=tmp_path / "g.json")
    m = _model(0)
    g.admit(0, m)
    for eps in (1e-12, 1e-6, 1e-3):
        with pytest.raises(ContributionRefusedError, match="fresh DP noise"):
            g.admit(1, m + eps * _model(9))
    assert g.admit(1, m + 0.5 * _model(9)).repeat_of is None  # moved: a new model


def test_a_repeat_with_noise_is_charged_before_it_is_noised() -> None:
    ledger = dp.PrivacyLedger.in_memory(delta=1e-5)
    pol = ContributionPolicy(repeat_noise_multiplier=2.0, clip_norm=0.5)
    g = ClientGuard(pol, ledger=ledger)
    m = _model(0)
    g.admit(0, m)
    adm = g.admit(1, m)
    assert adm.repeat_of == 0 and adm.noise_std == pytest.approx(1.0)
    assert len(ledger.entries) == 1 and ledger.epsilon() > 0
    noised = g.prepare(np.full(1000, 0.01), adm)
    clipped = np.full(1000, 0.01) * min(1.0, 0.5 / np.linalg.norm(np.full(1000, 0.01)))
    assert 0.9 < np.std(noised - clipped) < 1.1  # the accounted std, 1000 draws
    g2 = ClientGuard(pol)  # no ledger to charge: the repeat is refused
    g2.admit(0, m)
    with pytest.raises(ContributionRefusedError, match="ledger"):
        g2.admit(1, m)
    assert g2.last_counter == 0  # nothing recorded for the refused one


def test_the_cap_per_window_holds_whatever_the_counters() -> None:
    clock = Clock()
    g = ClientGuard(ContributionPolicy(max_per_window=3, window_s=60.0), clock=clock)
    for c in range(3):
        g.admit(c, _model(c))
    with pytest.raises(ContributionRefusedError, match="cap"):
        g.admit(10, _model(10))
    clock.now += 61.0
    g.admit(11, _model(11))


def test_a_tampered_state_file_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "g.json"
    ClientGuard(path=path).admit(0, _model(0))
    for bad in ("{", '{"version": 1}', '{"version": 9, "key": "00"}', "[]"):
        path.write_text(bad)
        with pytest.raises(ContributionRefusedError, match="does not load"):
            ClientGuard(path=path)


def test_the_sketch_estimates_distances_under_a_secret_key() -> None:
    a, b = _model(0, 10_000), _model(1, 10_000)
    key = b"\x01" * 32
    sa, sb = model_sketch(key, a), model_sketch(key, b)
    assert sa.shape == (SKETCH_BUCKETS,)
    ratio = np.linalg.norm(sa - sb) / np.linalg.norm(a - b)
    assert 0.7 < ratio < 1.3
    assert not np.allclose(model_sketch(b"\x02" * 32, a), sa)


@pytest.mark.parametrize(
    "bad",
    [
        dict(max_per_window=0),
        dict(window_s=0),
        dict(window_s=True),
        dict(repeat_distance=-1),
        dict(history=True),
        dict(history=10, max_per_window=11),
        dict(max_repeats_per_model=-1),
        dict(scale_floor=float("nan")),
    ],
)
def test_bad_policies_get_a_named_error(bad: dict[str, object]) -> None:
    with pytest.raises(ContributionRefusedError):
        ContributionPolicy(**bad)  # type: ignore[arg-type]


def test_near_zero_models_are_compared_on_the_absolute_floor() -> None:
    g = ClientGuard()
    w = _model(0)
    g.admit(0, 1e-6 * w)
    with pytest.raises(ContributionRefusedError, match="fresh DP noise"):
        g.admit(1, 1.5e-6 * w)  # a 50% relative change, 5e-7 * |w| in absolute terms


def test_a_reordered_renamed_or_padded_record_is_the_same_model_and_nan_is_refused() -> None:
    g = ClientGuard()
    a, b = _model(0, 500), _model(1, 300)
    g.admit(0, {"w": a, "b": b})
    for same in ({"b": b, "w": a}, {"w": a, "b": b, "pad": np.zeros(7)}, {"x": a, "y": b}):
        with pytest.raises(ContributionRefusedError, match="fresh DP noise"):
            g.admit(1, same)
    assert g.admit(1, {"w": a + 1.0, "b": b}).repeat_of is None  # really moved
    bad = _model(2)
    bad[3] = np.nan
    with pytest.raises(ContributionRefusedError, match="not finite"):
        g.admit(2, {"w": bad})


def test_noised_repeats_are_bounded_per_model_and_by_the_budget() -> None:
    ledger = dp.PrivacyLedger.in_memory(delta=1e-5)
    g = ClientGuard(ContributionPolicy(repeat_noise_multiplier=1.0), ledger=ledger)
    m = _model(0)
    g.admit(0, m)
    g.admit(1, m)  # one noised repeat allowed (max_repeats_per_model = 1)
    with pytest.raises(ContributionRefusedError, match="repeated 1 times"):
        g.admit(2, m)
    tight = dp.PrivacyLedger.in_memory(delta=1e-5, target_epsilon=0.5)
    pol = ContributionPolicy(repeat_noise_multiplier=1.0, max_repeats_per_model=5)
    g2 = ClientGuard(pol, ledger=tight)
    g2.admit(0, m)
    with pytest.raises(ContributionRefusedError, match="ledger refuses"):
        g2.admit(1, m)  # z = 1 costs more than 0.5: the budget guard refuses first
    assert g2.last_counter == 0


def test_zero_models_of_different_tasks_are_not_repeats() -> None:
    """A node reused for another task whose model also starts at zero contributes; the
    same zero model again is a repeat (found by `secagg bench flower`, which reuses its
    nodes across model sizes)."""
    g = ClientGuard()
    g.admit(0, {"0": np.zeros(100)})
    g.admit(1, {"0": np.zeros(1000)})
    with pytest.raises(ContributionRefusedError, match="fresh DP noise"):
        g.admit(2, {"0": np.zeros(1000)})
