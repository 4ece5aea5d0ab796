"""dp.distributed: the distributed discrete Gaussian bound (Kairouz, Liu & Steinke, ICML
2021, Prop. 14 / Thm. 1), the Skellam bound (Agarwal, Kairouz & Liu, NeurIPS 2021,
Thm. 3.5), Poisson subsampling (Zhu & Wang, ICML 2019, Thm. 5), and the parameter choice.

Published reference values: the papers' distributed-mean-estimation experiment (KLS21
Sec. 6 and AKL21 Sec. 6: n in {100, 1000}, d = 250 padded to 256, c = 10, delta = 1e-5,
beta = e^-1/2, k = 2 standard deviations, bits in {12, 16}, target eps in {1, 3, 6})
as calibrated by the authors' own accounting code (google-research/federated,
distributed_dp/accounting_utils.py: ``ddgauss_params`` / ``skellam_params``, which
produced those figures), and two subsampled multi-round settings evaluated with
``ddgauss_epsilon`` / ``skellam_epsilon`` there. For each row the authors' code returned
the scale gamma and local std that reach the target eps; our bounds, given the same
gamma and std, must give the same eps. We also check every bound against the exact
Renyi divergence, computed numerically, of the noise it describes.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import special, stats

from dp.distributed import (
    DistributedAccountant,
    choose_parameters,
    conditional_norm_bound,
    ddg_rdp,
    ddg_tau,
    equivalent_noise_multiplier,
    l1_bound,
    require_noise,
    round_rdp,
    skellam_rdp,
    subsampled_rdp,
)
from dp.errors import (
    BitWidthError,
    CollusionBoundError,
    DistributedDPError,
    NoiseFloorError,
    UnderNoisedRoundError,
)
from dp.rdp import epsilon_from_rdp, rdp_per_step

BETA = math.exp(-0.5)
REF_ORDERS = (*(float(a) for a in range(2, 129)), 256.0)  # the authors' orders

# (noise, n, bits, target eps, gamma, local std in update units): the authors' calibration
DME = [
    ("ddg", 100, 12, 1.0, 0.0728247461431553, 4.067777215888844),
    ("skellam", 100, 12, 1.0, 0.10937459963852181, 4.084753625236715),
    ("ddg", 100, 12, 3.0, 0.06277685204097884, 1.5033943246018793),
    ("skellam", 100, 12, 3.0, 0.09418385440788397, 1.5083987729650157),
    ("ddg", 100, 12, 6.0, 0.061559487288465234, 0.8204141203800654),
    ("skellam", 100, 12, 6.0, 0.0923457362581594, 0.8230999067268581),
    ("ddg", 100, 16, 1.0, 0.00454436672305254, 4.046334518283227),
    ("skellam", 100, 16, 1.0, 0.006816797864963688, 4.046831668989606),
    ("ddg", 100, 16, 3.0, 0.003922580239490775, 1.4968907569613406),
    ("skellam", 100, 16, 3.0, 0.005883904229481015, 1.4970479534164034),
    ("ddg", 100, 16, 6.0, 0.0038471480841983994, 0.8169552187631437),
    ("skellam", 100, 16, 6.0, 0.005770732402897375, 0.8170393810579181),
    ("ddg", 1000, 12, 1.0, 0.6121238826298071, 1.4758690556366694),
    ("skellam", 1000, 12, 1.0, 0.9190295109219858, 1.668256054543927),
    ("ddg", 1000, 12, 3.0, 0.61068170594233, 0.5739901796461141),
    ("skellam", 1000, 12, 3.0, 0.9162194688530239, 0.6172294337018608),
    ("ddg", 1000, 12, 6.0, 0.6106218429514931, 0.5028127734266185),
    ("skellam", 1000, 12, 6.0, 0.9159070548483399, 0.33818066953455905),
    ("ddg", 1000, 16, 1.0, 0.03822720371506391, 1.282377508731994),
    ("skellam", 1000, 16, 1.0, 0.05734122493251909, 1.2844359610494558),
    ("ddg", 1000, 16, 3.0, 0.03815797856117152, 0.47441260067155266),
    ("skellam", 1000, 16, 3.0, 0.05723705401784203, 0.47517505877366384),
    ("ddg", 1000, 16, 6.0, 0.03815026380192568, 0.2589201384989201),
    ("skellam", 1000, 16, 6.0, 0.0572254448116566, 0.25934034636203185),
]

# (noise, q, rounds, n, D, gamma, local std (update units), eps) from the authors' code
SUBSAMPLED = [
    ("ddg", 0.03, 1500, 100, 2**16, 2e-4, 0.12, 6.913406366694894),
    ("skellam", 0.03, 1500, 100, 2**16, 2e-4, 0.12, 6.913406519866037),
    ("ddg", 0.01, 500, 1000, 2**18, 1e-4, 0.03, 2.17676245730277),
    ("skellam", 0.01, 500, 1000, 2**18, 1e-4, 0.03, 2.176762492274499),
]


def _epsilon(
    noise: str,
    *,
    clip: float,
    gamma: float,
    std: float,
    n: int,
    dim: int,
    q: float,
    rounds: int,
    delta: float = 1e-5,
) -> float:
    sigma = std / gamma  # integer units
    l2 = conditional_norm_bound(clip / gamma, dim, BETA)
    l1 = l1_bound(l2, dim)

    def base(a: np.ndarray) -> np.ndarray:
        if noise == "ddg":
            return ddg_rdp(a, l2=l2, l1=l1, sigma=sigma, n=n, dim=dim)
        return skellam_rdp(a, l2=l2, l1=l1, variance=n * sigma**2)

    rdp = rounds * subsampled_rdp(np.asarray(REF_ORDERS), base, q)
    return epsilon_from_rdp(REF_ORDERS, rdp, delta)[0]


@pytest.mark.parametrize(("noise", "n", "bits", "target", "gamma", "std"), DME)
def test_dme_figure_settings_reach_the_published_epsilon(
    noise: str, n: int, bits: int, target: float, gamma: float, std: float
) -> None:
    got = _epsilon(noise, clip=10.0, gamma=gamma, std=std, n=n, dim=256, q=1.0, rounds=1)
    assert got == pytest.approx(target, rel=1e-8)


@pytest.mark.parametrize(("noise", "q", "rounds", "n", "dim", "gamma", "std", "eps"), SUBSAMPLED)
def test_subsampled_rounds_match_the_reference(
    noise: str, q: float, rounds: int, n: int, dim: int, gamma: float, std: float, eps: float
) -> None:
    got = _epsilon(noise, clip=1.0, gamma=gamma, std=std, n=n, dim=dim, q=q, rounds=rounds)
    assert got == pytest.approx(eps, rel=1e-10)


def _dg_pmf(sigma: float, radius: int) -> np.ndarray:
    k = np.arange(-radius, radius + 1)
    w = np.exp(-(k**2) / (2 * sigma**2))
    return w / w.sum()


def _renyi(p: np.ndarray, q: np.ndarray, a: float) -> float:
    with np.errstate(divide="ignore"):
        lp, lq = np.log(p), np.log(q)
    keep = np.isfinite(lp) & np.isfinite(lq)
    return float(special.logsumexp(a * lp[keep] + (1 - a) * lq[keep]) / (a - 1))


@pytest.mark.parametrize("sigma", [0.5, 0.7, 1.0, 2.0])
@pytest.mark.parametrize("n", [2, 3, 6])
def test_ddg_bound_covers_the_exact_divergence_of_a_sum(sigma: float, n: int) -> None:
    """The pmf of the sum of n discrete Gaussians by convolution; D_alpha both ways for
    shifts 1..3 is below Prop. 14 (d = 1)."""
    one = _dg_pmf(sigma, int(30 * sigma) + 10)
    total = one
    for _ in range(n - 1):
        total = np.convolve(total, one)
    for shift in (1, 2, 3):
        moved = np.concatenate([np.zeros(shift), total[:-shift]])
        for a in (1.5, 2.0, 8.0, 32.0):
            exact = max(_renyi(moved, total, a), _renyi(total, moved, a))
            bound = ddg_rdp([a], l2=shift, l1=shift, sigma=sigma, n=n, dim=1)[0]
            assert exact <= bound * (1 + 1e-9)


@pytest.mark.parametrize("mu", [0.5, 2.0, 10.0, 200.0])
def test_skellam_bound_covers_the_exact_divergence(mu: float) -> None:
    k = np.arange(-400, 401)
    base = special.ive(np.abs(k), mu)  # Skellam(mu/2, mu/2): e^-mu I_k(mu)
    for shift in (1, 2, 5):
        moved = special.ive(np.abs(k - shift), mu)
        for a in (2.0, 4.0, 16.0):
            exact = max(_renyi(moved, base, a), _renyi(base, moved, a))
            bound = skellam_rdp([a], l2=shift, l1=shift, variance=mu)[0]
            assert exact <= bound
    # AKL21: the bound approaches the Gaussian's alpha Delta^2 / (2 mu) as mu grows
    assert skellam_rdp([8.0], l2=3, l1=3, variance=1e6)[0] == pytest.approx(8 * 9 / 2e6, rel=1e-4)
    assert math.isinf(skellam_rdp([2.5], l2=1, l1=1, variance=10.0)[0])


def test_ddg_tends_to_the_gaussian_and_tau_is_the_papers() -> None:
    assert ddg_tau(1, 0.7) == 0.0
    k = np.arange(1, 50)
    assert ddg_tau(50, 0.8) == pytest.approx(
        10 * np.sum(np.exp(-2 * np.pi**2 * 0.64 * k / (k + 1)))
    )
    alphas = np.array([1.5, 2.0, 10.0, 100.0])
    gauss = alphas * 4.0**2 / (2 * 100 * 3.0**2)
    np.testing.assert_allclose(
        ddg_rdp(alphas, l2=4.0, l1=16.0, sigma=3.0, n=100, dim=2**20), gauss, rtol=1e-12
    )
    with pytest.raises(DistributedDPError):
        ddg_rdp([2.0], l2=1, l1=1, sigma=0.4, n=2, dim=1)


@settings(max_examples=25)
@given(q=st.floats(1e-4, 0.9), z=st.floats(0.6, 8.0))
def test_zhu_wang_bounds_the_exact_subsampled_gaussian(q: float, z: float) -> None:
    orders = tuple(float(a) for a in range(2, 80))
    general = subsampled_rdp(np.asarray(orders), lambda a: a / (2 * z * z), q)
    exact = rdp_per_step(sample_rate=q, noise_multiplier=z, orders=orders)
    # dp.rdp's log A is itself accurate to ~1e-16 absolute (log(1 + x) for tiny x)
    assert np.all(general >= exact * (1 - 1e-9) - 1e-14)
    assert np.all(general <= np.asarray(orders) / (2 * z * z) + 1e-12)  # min with q = 1


def test_parameter_choice_meets_its_targets() -> None:
    setting = {
        "dim": 100_000,
        "clip_norm": 1.0,
        "noise_multiplier": 1.0,
        "bits": 20,
        "n_max": 100,
        "n_min": 80,
        "n_colluders": 10,
    }
    p = choose_parameters(**setting)  # type: ignore[arg-type]
    assert p.padded_dim == 2**17 and p.honest_min == 70
    assert p.local_sigma == pytest.approx(p.norm_bound / math.sqrt(70))
    assert p.wrap_probability <= 1e-6
    assert p.tau * p.padded_dim <= 1e-6
    coarser = choose_parameters(**setting, gamma=p.gamma * 1.1)  # type: ignore[arg-type]
    assert coarser.wrap_probability < p.wrap_probability
    with pytest.raises(BitWidthError):  # the chosen gamma is the finest that fits
        choose_parameters(**setting, gamma=p.gamma * 0.9)  # type: ignore[arg-type]
    info = p.describe()
    assert info["noise"] == "ddg" and info["sampler_tv"] < 2.0**-100
    assert p.encoding()["norm_bound"] == p.norm_bound
    assert p.sample_noise().shape == (p.padded_dim,)
    sk = choose_parameters(
        dim=1000, clip_norm=1.0, noise_multiplier=1.0, bits=16, n_max=50, n_min=50, kind="skellam"
    )
    assert sk.wrap_probability <= 1e-6 and sk.tau == 0.0


def test_impossible_settings_are_refused_by_name() -> None:
    common = {"dim": 10_000, "clip_norm": 1.0, "noise_multiplier": 1.0}
    with pytest.raises(BitWidthError):  # 1000 clients' rounding alone overflow 10 bits
        choose_parameters(**common, bits=10, n_max=1000, n_min=1000)
    with pytest.raises(NoiseFloorError):  # tiny noise: tau is not negligible
        choose_parameters(dim=10, clip_norm=1.0, noise_multiplier=0.01, bits=8, n_max=4, n_min=4)
    with pytest.raises(CollusionBoundError):
        choose_parameters(**common, bits=20, n_max=10, n_min=5, n_colluders=5)
    with pytest.raises(CollusionBoundError):
        choose_parameters(**common, bits=20, n_max=10, n_min=11)
    with pytest.raises(DistributedDPError):
        choose_parameters(**common, bits=20, n_max=10, n_min=10, kind="binomial")  # type: ignore[arg-type]


def test_accountant_keeps_two_views_and_refuses_under_noised_rounds() -> None:
    p = choose_parameters(
        dim=1000, clip_norm=1.0, noise_multiplier=1.2, bits=20, n_max=100, n_min=80, n_colluders=10
    )
    acc = DistributedAccountant()
    assert acc.epsilon(1e-5) == (0.0, 0.0)
    for _ in range(20):
        acc.compose(p, honest_shares=70, consumer_shares=95, sample_rate=0.05)
    server, consumer = acc.epsilon(1e-5)
    assert 0.0 < consumer < server < math.inf
    # the server view: no amplification, n = n_min - n_C: close to the Gaussian at z
    gauss = epsilon_from_rdp(acc.orders, 20 * np.asarray(acc.orders) / (2 * 1.2**2), 1e-5)[0]
    assert server == pytest.approx(gauss, rel=1e-6)
    z_eq = equivalent_noise_multiplier(p, noise_shares=70)
    assert z_eq == pytest.approx(1.2, rel=1e-9)
    with pytest.raises(UnderNoisedRoundError):
        acc.compose(p, honest_shares=69)
    lenient = DistributedAccountant()
    lenient.compose(p, honest_shares=30, strict=False)  # accounted with the noise present
    planned = DistributedAccountant()
    planned.compose(p, honest_shares=70)
    assert lenient.epsilon(1e-5)[0] > 1.3 * planned.epsilon(1e-5)[0]
    with pytest.raises(UnderNoisedRoundError):
        require_noise(p, 10)
    more = round_rdp(p, noise_shares=200)
    assert np.all(more <= round_rdp(p, noise_shares=70))
    alphas = np.asarray(acc.orders)
    frac = alphas != np.floor(alphas)
    assert np.all(np.isinf(round_rdp(p, noise_shares=70, sample_rate=0.1)[frac]))


def test_wrap_bound_is_a_tail_bound_of_the_sum() -> None:
    """The per-round bound is the union of per-coordinate Chernoff bounds; check the
    per-coordinate piece against the normal tail it dominates."""
    p = choose_parameters(
        dim=4096,
        clip_norm=1.0,
        noise_multiplier=1.0,
        bits=16,
        n_max=20,
        n_min=20,
        wrap_probability_target=1e-3,
    )
    level = 2.0 ** (p.bits - 1) - 1 - p.n_max
    var = (p.n_max * p.clip_norm / p.gamma) ** 2 / p.padded_dim + p.n_max * p.local_variance
    normal = 2 * stats.norm.sf(level / math.sqrt(var)) * p.padded_dim
    assert normal <= p.wrap_probability <= 1e-3
