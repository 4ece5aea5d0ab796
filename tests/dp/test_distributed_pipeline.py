"""Distributed DP end to end, without the cryptography: clients encode (rotation, clip,
scale, conditional rounding, + their CSPRNG noise, wrap into Z_(2^b)); the ring sum of the
wrapped vectors (what unmasking yields) is decoded. Over many simulated rounds the
decoded sum is unbiased up to the stated rounding bias, its error variance is the
accounted noise, and the ring wraps no more often than the parameter choice allows."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
from scipy import stats

from dp.distributed import DistributedDPParams, choose_parameters
from secagg.discrete_encoding import DiscreteEncoder, DiscreteEncodingConfig, rounding_bias_bound

ALPHA = 1e-6


def _encoder(p: DistributedDPParams) -> DiscreteEncoder:
    return DiscreteEncoder(DiscreteEncodingConfig(**p.encoding()))  # type: ignore[arg-type]


def _round(p: DistributedDPParams, enc: DiscreteEncoder, xs: np.ndarray) -> tuple[np.ndarray, bool]:
    """One round: (decoded sum, whether any coordinate wrapped)."""
    seed = os.urandom(16)
    wrapped, exact = [], np.zeros(p.padded_dim, dtype=np.int64)
    for x in xs:
        values = enc.quantize(x, seed=seed).values
        noise = p.sample_noise()
        exact += values + noise
        wrapped.append(enc.wrap(values, noise))
    total = enc.ring.sum(wrapped)
    return enc.decode_sum(total, seed=seed), bool(np.any(enc.unwrap(total) != exact))


def test_decoded_sum_is_unbiased_with_the_accounted_variance() -> None:
    n, d, rounds = 10, 500, 300
    p = choose_parameters(dim=d, clip_norm=1.0, noise_multiplier=0.8, bits=24, n_max=n, n_min=n)
    enc = _encoder(p)
    rng = np.random.default_rng(0)  # the clients' data, not noise
    xs = rng.normal(size=(n, d))
    xs /= np.linalg.norm(xs, axis=1, keepdims=True) * 1.25  # norms 0.8 < C
    truth = xs.sum(axis=0)
    errors = np.array([_round(p, enc, xs)[0] - truth for _ in range(rounds)])
    # variance: the noise n sigma^2 plus each client's rounding (at most 1/4), times gamma^2
    low = p.gamma**2 * n * p.local_variance
    high = p.gamma**2 * (n * p.local_variance + n / 4.0)
    ci = stats.chi2.ppf([ALPHA / 2, 1 - ALPHA / 2], errors.size) / errors.size
    var = float(np.mean(errors**2))
    assert low * ci[0] <= var <= high * ci[1]
    # bias: n clients' conditional-rounding bias (gamma * bound each) plus sampling error
    bias = np.linalg.norm(errors.mean(axis=0))
    sampling = math.sqrt(d * high / rounds) * (1 + 6 / math.sqrt(d))
    assert bias <= n * p.gamma * rounding_bias_bound(p.beta) + sampling
    # the noise the server sees is what the ledger accounts: std z * Delta_2 (update units)
    noise_std = p.gamma * math.sqrt(n) * p.local_sigma
    assert noise_std == pytest.approx(p.noise_multiplier * p.norm_bound * p.gamma, rel=1e-12)


def test_wraps_are_no_more_frequent_than_configured() -> None:
    n, d, rounds, target = 8, 256, 400, 0.05
    p = choose_parameters(
        dim=d,
        clip_norm=1.0,
        noise_multiplier=0.5,
        bits=12,
        n_max=n,
        n_min=n,
        wrap_probability_target=target,
    )
    assert p.wrap_probability <= target
    aligned = np.tile(np.ones(d) / math.sqrt(d), (n, 1))  # the worst case: equal updates
    wraps = sum(_round(p, _encoder(p), aligned)[1] for _ in range(rounds))
    assert stats.binomtest(wraps, rounds, target, alternative="greater").pvalue > ALPHA
    # control: the same scale in three fewer bits does wrap, and the check sees it
    small = DistributedDPParams(p.kind, d, 1.0, 0.5, 9, p.gamma, p.beta, n, n, 0)
    assert small.wrap_probability > target
    wraps_small = sum(_round(small, _encoder(small), aligned)[1] for _ in range(40))
    assert wraps_small > 0
