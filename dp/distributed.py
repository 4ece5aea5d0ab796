"""Distributed DP: accounting of discrete noise added by the clients in the ring, and the
choice of scale, bit width and local noise.

Noise. Each honest client adds integer noise of std sigma (integer units) to its rotated,
clipped, scaled, conditionally rounded update (:mod:`secagg.discrete_encoding`): a
discrete Gaussian (``ddg``) or a symmetric Skellam (``skellam``). The server learns only
the ring sum, whose noise is the sum of the honest clients' shares.

Bounds used (all in integer units; Delta_2, Delta_1 the L2 / L1 bounds of one client's
rounded vector, D the padded dimension, n the number of noise shares the adversary does
not know):

* DDG, Kairouz, Liu & Steinke (ICML 2021), Proposition 14 (the RDP form of Theorem 1):
  for sigma >= 1/2 and every order alpha >= 1 the sum of n shares N_Z(0, sigma^2)^D is
  (alpha, eps(alpha))-RDP with eps(alpha) = min( alpha Delta_2^2 / (2 n sigma^2) + tau D,
  alpha/2 (Delta_2^2/(n sigma^2) + 2 Delta_1 tau / (sqrt(n) sigma) + tau^2 D),
  alpha/2 (Delta_2 / (sqrt(n) sigma) + tau sqrt(D))^2 ),
  tau = 10 sum_(k=1)^(n-1) exp(-2 pi^2 sigma^2 k / (k+1)) (:func:`ddg_tau`). The first term
  is not linear in alpha; as zCDP it gives rho = Delta_2^2/(2 n sigma^2) + tau D (alpha >= 1).
* Skellam, Agarwal, Kairouz & Liu (NeurIPS 2021), Theorem 3.5 with mu = the total noise
  variance: eps(alpha) = alpha Delta_2^2 / (2 mu) + min(((2 alpha - 1) Delta_2^2 +
  6 Delta_1) / (4 mu^2), 3 Delta_1 / (2 mu)), at integer orders alpha > 1.
* Poisson subsampling at rate q (the view of model consumers): the general upper bound of
  Zhu & Wang (ICML 2019), Theorem 5, for any mechanism with RDP eps(l) at integer
  l = 2..alpha, taken with min(., eps(alpha)): dp_accounting has no subsampled RDP for a
  sum of discrete Gaussians, and this bound holds for every mechanism, so it is an upper
  bound for this one. Fractional orders get no amplification (infinite RDP there).
* (eps, delta) from RDP: :func:`dp.rdp.epsilon_from_rdp` (the improved conversion), with
  the samplers' statistical distance added to delta (:meth:`DistributedAccountant.epsilon`).

Adjacency: one client's update replaced by zero (it still takes part and adds its noise
share), so the difference of the sums is one rounded vector (norm <= Delta_2) and the
noise shares are the same on both sides; this is the adjacency under which the papers
state their bounds. Against the server (who chose the participants) q = 1 and n counts
the honest survivors who do not collude with it, at least n_min - n_C; against model
consumers q is the sampling rate and n the survivors whose noise they do not know.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from scipy import special

from dp.errors import (
    BitWidthError,
    CollusionBoundError,
    DistributedDPError,
    NoiseFloorError,
    UnderNoisedRoundError,
)
from dp.fast_samplers import (
    FastDiscreteGaussian,
    FastSkellam,
    discrete_gaussian_sampler,
    skellam_sampler,
)
from dp.mechanisms import rounded_sensitivity
from dp.rdp import FloatArray, epsilon_from_rdp
from dp.validation import (
    check_clip_norm,
    check_count,
    check_delta,
    check_noise_multiplier,
    check_sample_rate,
)

NoiseKind = Literal["ddg", "skellam"]
NOISE_KINDS: tuple[NoiseKind, ...] = ("ddg", "skellam")

ORDERS: tuple[float, ...] = (
    tuple(1.0 + x / 10.0 for x in range(1, 10))
    + tuple(float(a) for a in range(2, 65))
    + (72.0, 80.0, 96.0, 112.0, 128.0, 160.0, 192.0, 256.0, 384.0, 512.0, 768.0, 1024.0)
)
"""RDP orders of the distributed accounting (fractional ones count only without sampling)."""

BaseRdp = Callable[[FloatArray], FloatArray]


# --- the bounds ---------------------------------------------------------------------


def ddg_tau(n: int, sigma: float) -> float:
    """tau = 10 sum_(k=1)^(n-1) exp(-2 pi^2 sigma^2 k / (k+1)) (KLS21, Theorem 1)."""
    count = check_count(n, "n", minimum=1)
    if count == 1:
        return 0.0
    k = np.arange(1, count, dtype=np.float64)
    return float(10.0 * np.sum(np.exp(-2.0 * math.pi**2 * sigma**2 * k / (k + 1.0))))


def ddg_rdp(
    orders: FloatArray | Sequence[float],
    *,
    l2: float,
    l1: float,
    sigma: float,
    n: int,
    dim: int,
) -> FloatArray:
    """KLS21 Proposition 14: RDP at each order (>= 1) of the sum of n shares of
    N_Z(0, sigma^2)^dim for a difference of L2 norm <= l2 and L1 norm <= l1."""
    if sigma < 0.5:
        raise DistributedDPError(f"KLS21 Prop. 14 needs sigma >= 1/2, got {sigma}")
    alphas = np.asarray(orders, dtype=np.float64)
    if np.any(alphas < 1.0):
        raise DistributedDPError("RDP orders must be >= 1")
    tau = ddg_tau(n, sigma)
    scale = math.sqrt(n) * sigma
    a2, a1 = l2 / scale, l1 / scale
    first = alphas * a2**2 / 2.0 + tau * dim
    second = alphas / 2.0 * (a2**2 + 2.0 * a1 * tau + tau**2 * dim)
    third = alphas / 2.0 * (a2 + tau * math.sqrt(dim)) ** 2
    out: FloatArray = np.minimum(np.minimum(first, second), third)
    return out


def skellam_rdp(
    orders: FloatArray | Sequence[float], *, l2: float, l1: float, variance: float
) -> FloatArray:
    """AKL21 Theorem 3.5 at each integer order > 1 (inf at other orders): Skellam noise of
    total ``variance`` mu on a difference of L2 norm <= l2, L1 norm <= l1."""
    alphas = np.asarray(orders, dtype=np.float64)
    mu = float(variance)
    extra = np.minimum(
        ((2.0 * alphas - 1.0) * l2**2 + 6.0 * l1) / (4.0 * mu**2), 3.0 * l1 / (2.0 * mu)
    )
    out: FloatArray = alphas * l2**2 / (2.0 * mu) + extra
    integer = (alphas == np.floor(alphas)) & (alphas > 1.0)
    return np.where(integer, out, np.inf)


def subsampled_rdp(orders: FloatArray | Sequence[float], base: BaseRdp, q: float) -> FloatArray:
    """Zhu & Wang (ICML 2019) Theorem 5 under Poisson sampling at rate q, for a mechanism
    whose RDP at integer orders is ``base``; min with the unsampled RDP; inf at
    fractional orders (unless q = 1: then the unsampled RDP)."""
    rate = check_sample_rate(q)
    alphas = np.asarray(orders, dtype=np.float64)
    plain = base(alphas)
    if rate == 1.0:
        return plain
    integer = (alphas == np.floor(alphas)) & (alphas >= 2.0)
    out = np.full(alphas.shape, np.inf)
    if not integer.any():
        return out
    ints = alphas[integer].astype(np.int64)
    top = int(ints.max())
    l_grid = np.arange(0, top + 1, dtype=np.float64)
    eps_l = np.zeros(top + 1)
    eps_l[2:] = base(l_grid[2:])
    a = ints[:, None].astype(np.float64)
    ell = l_grid[None, :]
    valid = ell <= a
    log_q, log_1q = math.log(rate), math.log1p(-rate)
    log_c = special.gammaln(a + 1) - special.gammaln(ell + 1) - special.gammaln(a - ell + 1)
    terms = np.log(3.0) + log_c + ell * log_q + (a - ell) * log_1q + (ell - 1.0) * eps_l
    terms[:, 2] -= np.log(3.0)  # l = 2 has coefficient 1, not 3
    terms[:, 0] = -np.inf
    terms[:, 1] = -np.inf
    terms = np.where(valid, terms, -np.inf)
    # the l <= 1 part is (1-q)^(a-1) (a q - q + 1) = 1 + expm1(first): keep the 1 apart so
    # that log(1 + small) does not lose the small part to rounding
    first = (a[:, 0] - 1.0) * log_1q + np.log1p((a[:, 0] - 1.0) * rate)
    rest = special.logsumexp(terms, axis=1)
    with np.errstate(over="ignore"):
        small = np.log1p(np.expm1(first) + np.exp(np.minimum(rest, 0.0)))
    large = np.logaddexp(first, rest)
    bound = np.where(rest <= 0.0, small, large) / (a[:, 0] - 1.0)
    out[integer] = np.minimum(bound, plain[integer])
    return out


# --- parameter choice ----------------------------------------------------------------


def l1_bound(l2: float, dim: int) -> float:
    """L1 bound of an integer vector of L2 norm <= l2 in dimension dim: min(sqrt(dim) l2,
    l2^2) (each nonzero integer coordinate has |v| <= v^2)."""
    return min(math.sqrt(dim) * l2, l2 * l2)


def conditional_norm_bound(scaled_clip: float, dim: int, beta: float) -> float:
    """KLS21's L2 bound (integer units) after conditional rounding of a vector of norm
    <= ``scaled_clip`` = C / gamma: :func:`dp.rounded_sensitivity` at granularity 1."""
    return rounded_sensitivity(scaled_clip, granularity=1.0, dim=dim, conditional=True, beta=beta)


@dataclass(frozen=True)
class DistributedDPParams:
    """One configuration of distributed DP: what clients, server and ledger need.

    Integer units throughout except ``clip_norm`` and ``gamma`` (update units). Build it
    with :func:`choose_parameters`, which checks it."""

    kind: NoiseKind
    dim: int
    clip_norm: float
    noise_multiplier: float
    bits: int
    gamma: float
    beta: float
    n_max: int
    n_min: int
    n_colluders: int
    padded_dim: int = field(init=False)
    norm_bound: float = field(init=False)
    l1_bound: float = field(init=False)
    local_sigma: float = field(init=False)

    def __post_init__(self) -> None:
        if self.kind not in NOISE_KINDS:
            raise DistributedDPError(f"noise kind must be one of {NOISE_KINDS}, got {self.kind!r}")
        _check_counts(self.n_max, self.n_min, self.n_colluders)
        check_count(self.dim, "dim", minimum=1)
        check_count(self.bits, "bits", minimum=8)
        check_clip_norm(self.clip_norm)
        check_clip_norm(self.gamma, "gamma")
        check_noise_multiplier(self.noise_multiplier)
        padded = 1 << (self.dim - 1).bit_length()
        object.__setattr__(self, "padded_dim", padded)
        bound = conditional_norm_bound(self.clip_norm / self.gamma, padded, self.beta)
        object.__setattr__(self, "norm_bound", bound)
        object.__setattr__(self, "l1_bound", l1_bound(bound, padded))
        sigma = self.noise_multiplier * bound / math.sqrt(self.honest_min)
        object.__setattr__(self, "local_sigma", sigma)

    @property
    def honest_min(self) -> int:
        """n_min - n_C: honest noise shares guaranteed to be present and unknown to the
        server; the local noise is sized for them."""
        return self.n_min - self.n_colluders

    @property
    def scale(self) -> float:
        """1 / gamma: integer units per update unit."""
        return 1.0 / self.gamma

    @property
    def local_variance(self) -> float:
        """sigma_local^2 = z^2 Delta_2^2 / (n_min - n_C)."""
        return self.local_sigma**2

    @property
    def tau(self) -> float:
        """KLS21's tau at the largest number of shares n_max (0 for Skellam)."""
        return ddg_tau(self.n_max, self.local_sigma) if self.kind == "ddg" else 0.0

    @property
    def wrap_probability(self) -> float:
        """Upper bound on P(some coordinate of an n_max-client sum wraps), per round."""
        return wrap_probability(self)

    def sampler(self) -> FastDiscreteGaussian | FastSkellam:
        """The vectorised CSPRNG sampler of one client's noise."""
        if self.kind == "ddg":
            return discrete_gaussian_sampler(self.local_sigma)
        return skellam_sampler(self.local_variance)

    def sample_noise(self) -> NDArray[np.int64]:
        """One client's noise vector (int64, length D)."""
        return self.sampler().sample(self.padded_dim)

    def encoding(self) -> dict[str, float | int]:
        """Keyword arguments of ``secagg.discrete_encoding.DiscreteEncodingConfig``."""
        return {
            "dim": self.dim,
            "clip_norm": self.clip_norm,
            "scale": self.scale,
            "norm_bound": self.norm_bound,
            "bits": self.bits,
        }

    def describe(self) -> dict[str, float | int | str]:
        """A JSON-friendly summary (for the ledger's ``extra`` and reports)."""
        return {
            "noise": self.kind,
            "dim": self.dim,
            "padded_dim": self.padded_dim,
            "clip_norm": self.clip_norm,
            "noise_multiplier": self.noise_multiplier,
            "bits": self.bits,
            "gamma": self.gamma,
            "beta": self.beta,
            "norm_bound": self.norm_bound,
            "l1_bound": self.l1_bound,
            "local_sigma": self.local_sigma,
            "n_max": self.n_max,
            "n_min": self.n_min,
            "n_colluders": self.n_colluders,
            "tau": self.tau,
            "wrap_probability": self.wrap_probability,
            "sampler_tv": self.sampler().tv_bound,
        }


def _skellam_tail(signal_var: float, noise_var: float, level: float) -> float:
    """min_theta exp(theta^2 v_s / 2 + V (cosh theta - 1) - theta L): the Chernoff bound on
    P(Y + N >= L) for Y sub-Gaussian(v_s) and N Skellam of variance V."""

    def slope(t: float) -> float:
        return t * signal_var + noise_var * math.sinh(t) - level

    lo, hi = 0.0, 1.0
    while slope(hi) < 0.0:
        hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if slope(mid) < 0.0 else (lo, mid)
    t = hi
    exponent = t * t * signal_var / 2.0 + noise_var * (math.cosh(t) - 1.0) - t * level
    return math.exp(min(0.0, exponent))


def wrap_probability(params: DistributedDPParams) -> float:
    """Union bound over D coordinates of P(|sum| > 2^(b-1) - 1) for n_max clients.

    A coordinate of the sum is (rotated sum of the clipped updates) / gamma, sub-Gaussian
    over the public signs with variance proxy (n_max C / gamma)^2 / D (Hoeffding), plus
    the rounding errors (|.| < n_max in all), plus the noise: n_max sigma^2-sub-Gaussian
    for the DDG (CKS20), a Skellam of variance n_max sigma^2 (Chernoff with its MGF)."""
    level = 2.0 ** (params.bits - 1) - 1.0 - params.n_max
    if level <= 0.0:
        return 1.0
    signal_var = (params.n_max * params.clip_norm / params.gamma) ** 2 / params.padded_dim
    noise_var = params.n_max * params.local_variance
    if params.kind == "ddg":
        per = 2.0 * math.exp(-(level**2) / (2.0 * (signal_var + noise_var)))
    else:
        per = 2.0 * _skellam_tail(signal_var, noise_var, level)
    return min(1.0, params.padded_dim * per)


def _check_counts(n_max: int, n_min: int, n_colluders: int) -> tuple[int, int, int]:
    top = check_count(n_max, "n_max", minimum=1)
    low = check_count(n_min, "n_min", minimum=1)
    bad = check_count(n_colluders, "n_colluders", minimum=0)
    if low > top:
        raise CollusionBoundError(f"n_min {low} exceeds n_max {top}")
    if low - bad < 1:
        raise CollusionBoundError(
            f"n_min - n_C = {low - bad}: no honest share is guaranteed (n_min {low}, n_C {bad})"
        )
    return top, low, bad


def _noise_floor_ok(params: DistributedDPParams, max_tau_slack: float) -> bool:
    """sigma >= 1/2 (Prop. 14) and tau D <= max_tau_slack for the DDG; sigma >= 1/2 for
    Skellam (its table needs some spread)."""
    if params.local_sigma < 0.5:
        return False
    return params.kind != "ddg" or params.tau * params.padded_dim <= max_tau_slack


def choose_parameters(
    *,
    dim: int,
    clip_norm: float,
    noise_multiplier: float,
    bits: int,
    n_max: int,
    n_min: int,
    n_colluders: int = 0,
    kind: NoiseKind = "ddg",
    beta: float = math.exp(-0.5),
    wrap_probability_target: float = 1e-6,
    max_tau_slack: float = 1e-6,
    gamma: float | None = None,
) -> DistributedDPParams:
    """The finest scale gamma at which an n_max-client sum wraps with probability at most
    ``wrap_probability_target`` per round, with sigma_local = z Delta_2 / sqrt(n_min - n_C)
    (or check a given ``gamma``). Refused: :class:`BitWidthError` (no gamma fits b bits),
    :class:`NoiseFloorError` (the noise at that gamma is below the floor of
    :func:`_noise_floor_ok`), :class:`CollusionBoundError` (counts)."""
    if not 0.0 < wrap_probability_target < 1.0:
        raise DistributedDPError("wrap_probability_target must be in (0, 1)")
    c = check_clip_norm(clip_norm)

    def make(g: float) -> DistributedDPParams:
        return DistributedDPParams(
            kind, dim, c, noise_multiplier, bits, g, beta, n_max, n_min, n_colluders
        )

    make(c)  # validates every argument once, before the search

    def fits(g: float) -> bool:
        return wrap_probability(make(g)) <= wrap_probability_target

    if gamma is not None:
        chosen = make(check_clip_norm(gamma, "gamma"))
        if not fits(chosen.gamma):
            raise BitWidthError(
                f"gamma {gamma} wraps {bits} bits with probability "
                f"{chosen.wrap_probability:.3g} > {wrap_probability_target}"
            )
    else:
        chosen = make(_finest_gamma(c, fits, bits, n_max))
    if not _noise_floor_ok(chosen, max_tau_slack):
        raise NoiseFloorError(
            f"local sigma {chosen.local_sigma:.4g} (tau D = {chosen.tau * chosen.padded_dim:.3g})"
            f" is below the floor at the finest gamma that fits {bits} bits; use more bits, "
            "a larger noise multiplier or fewer clients"
        )
    return chosen


def _finest_gamma(clip: float, fits: Callable[[float], bool], bits: int, n_max: int) -> float:
    """Bisection in log gamma for the smallest gamma that ``fits`` (monotone in gamma)."""
    coarse = clip * 1e6  # C / gamma = 1e-6: only the rounding's own norm is left
    if not fits(coarse):
        raise BitWidthError(
            f"{bits} bits cannot hold the noisy sum of {n_max} clients at any scale: "
            "use more bits, a smaller noise multiplier or fewer clients"
        )
    fine = clip / 2.0**30  # C / gamma = 2^30: the largest integer norm allowed
    if fits(fine):
        return fine
    lo, hi = math.log(fine), math.log(coarse)
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        lo, hi = (lo, mid) if fits(math.exp(mid)) else (mid, hi)
    return math.exp(hi)


# --- per-round accounting -------------------------------------------------------------


def round_rdp(
    params: DistributedDPParams,
    *,
    noise_shares: int,
    sample_rate: float = 1.0,
    orders: tuple[float, ...] = ORDERS,
) -> FloatArray:
    """RDP of one round in which ``noise_shares`` honest shares of the local noise are in
    the sum and unknown to the adversary, under Poisson sampling at ``sample_rate``."""
    n = check_count(noise_shares, "noise_shares", minimum=1)
    l2, l1, dim = params.norm_bound, params.l1_bound, params.padded_dim

    def base(alphas: FloatArray) -> FloatArray:
        if params.kind == "ddg":
            return ddg_rdp(alphas, l2=l2, l1=l1, sigma=params.local_sigma, n=n, dim=dim)
        return skellam_rdp(alphas, l2=l2, l1=l1, variance=n * params.local_variance)

    return subsampled_rdp(np.asarray(orders, dtype=np.float64), base, sample_rate)


def equivalent_noise_multiplier(params: DistributedDPParams, *, noise_shares: int) -> float:
    """For the DDG without sampling: z_eq = (l2^2 + 2 tau D)^-1/2, l2 = Delta_2 /
    (sqrt(n) sigma), so that the Gaussian RDP alpha / (2 z_eq^2) bounds Prop. 14's first
    term at every alpha >= 1. Usable by an RDP accountant at q = 1 only (not by a PLD
    accountant, not with subsampling)."""
    if params.kind != "ddg":
        raise DistributedDPError("an equivalent noise multiplier is stated for the DDG only")
    n = check_count(noise_shares, "noise_shares", minimum=1)
    l2 = params.norm_bound / (math.sqrt(n) * params.local_sigma)
    return 1.0 / math.sqrt(l2**2 + 2.0 * ddg_tau(n, params.local_sigma) * params.padded_dim)


def require_noise(params: DistributedDPParams, honest_present: int) -> None:
    """:class:`UnderNoisedRoundError` unless at least n_min - n_C honest noise shares are
    in the sum: such a round must abort before unmasking."""
    if check_count(honest_present, "honest_present") < params.honest_min:
        raise UnderNoisedRoundError(
            f"{honest_present} honest noise shares present, the noise was sized for "
            f"{params.honest_min} (n_min {params.n_min} - n_C {params.n_colluders})"
        )


@dataclass
class DistributedAccountant:
    """Running RDP of distributed-DP rounds, in both views: against the server and its
    colluders (no sampling amplification) and against model consumers (sampled)."""

    orders: tuple[float, ...] = ORDERS
    server: FloatArray = field(init=False)
    consumer: FloatArray = field(init=False)
    draws: int = field(init=False, default=0)
    max_tv: float = field(init=False, default=0.0)
    rounds: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self.server = np.zeros(len(self.orders))
        self.consumer = np.zeros(len(self.orders))

    def compose(
        self,
        params: DistributedDPParams,
        *,
        honest_shares: int,
        consumer_shares: int | None = None,
        sample_rate: float = 1.0,
        total_shares: int | None = None,
        strict: bool = True,
    ) -> None:
        """Add one round: ``honest_shares`` noise shares unknown to the server,
        ``consumer_shares`` unknown to consumers (default the same), ``total_shares``
        drawn in all (for the sampling slack; default n_max). With ``strict`` a round
        with fewer than n_min - n_C honest shares is refused (:func:`require_noise`: it
        must abort before unmasking); without, it is accounted with the noise present."""
        if strict:
            require_noise(params, honest_shares)
        shares = honest_shares if consumer_shares is None else consumer_shares
        self.server = self.server + round_rdp(
            params, noise_shares=honest_shares, orders=self.orders
        )
        self.consumer = self.consumer + round_rdp(
            params, noise_shares=shares, sample_rate=sample_rate, orders=self.orders
        )
        drawn = params.n_max if total_shares is None else total_shares
        self.draws += check_count(drawn, "total_shares") * params.padded_dim
        self.max_tv = max(self.max_tv, params.sampler().tv_bound)
        self.rounds += 1

    def epsilon(self, delta: float) -> tuple[float, float]:
        """(server, consumer) epsilon at ``delta``, the samplers' distance included:
        eps is computed at delta - s with s = (1 + e^eps1) draws tv, eps1 = eps(delta/2);
        inf when s is not below delta / 2 (only for eps1 above about 40 at real sizes)."""
        d = check_delta(delta)
        if self.rounds == 0:
            return 0.0, 0.0
        return self._epsilon(self.server, d), self._epsilon(self.consumer, d)

    def _epsilon(self, curve: FloatArray, delta: float) -> float:
        upper = epsilon_from_rdp(self.orders, curve, delta / 2.0)[0]
        slack = (1.0 + math.exp(min(upper, 700.0))) * self.draws * self.max_tv
        if not slack < delta / 2.0:
            return math.inf
        return epsilon_from_rdp(self.orders, curve, delta - slack)[0]
