"""The vectorised RDP of the subsampled Gaussian agrees with dp_accounting's loops."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dp.rdp import DEFAULT_ORDERS, epsilon_from_rdp, rdp_per_step


@settings(max_examples=30)
@given(q=st.floats(1e-4, 0.999), sigma=st.floats(0.5, 20.0))
def test_matches_dp_accounting(q: float, sigma: float) -> None:
    from dp_accounting.rdp import rdp_privacy_accountant as ref_lib

    ref = np.asarray(ref_lib._compute_rdp_poisson_subsampled_gaussian(q, sigma, DEFAULT_ORDERS))
    ours = rdp_per_step(sample_rate=q, noise_multiplier=sigma)
    finite = np.isfinite(ref)
    assert np.array_equal(np.isfinite(ours), finite)
    np.testing.assert_allclose(ours[finite], ref[finite], rtol=1e-6, atol=1e-15)
    for delta in (1e-5, 1e-9):
        want = ref_lib.compute_epsilon(DEFAULT_ORDERS, ref * 1000, delta)[0]
        got = epsilon_from_rdp(DEFAULT_ORDERS, ours * 1000, delta)[0]
        assert got == pytest.approx(want, rel=1e-6, abs=1e-12)


def test_full_batch_closed_form() -> None:
    alphas = np.asarray(DEFAULT_ORDERS)
    np.testing.assert_allclose(
        rdp_per_step(sample_rate=1.0, noise_multiplier=2.0), alphas / 8.0, rtol=1e-12
    )


def test_result_is_read_only() -> None:
    out = rdp_per_step(sample_rate=0.1, noise_multiplier=1.0)
    with pytest.raises(ValueError):
        out[0] = 0.0


def test_classic_conversion_is_larger() -> None:
    curve = 500 * rdp_per_step(sample_rate=0.01, noise_multiplier=1.0)
    classic = epsilon_from_rdp(DEFAULT_ORDERS, curve, 1e-5, conversion="classic")[0]
    improved = epsilon_from_rdp(DEFAULT_ORDERS, curve, 1e-5)[0]
    assert classic > improved > 0
