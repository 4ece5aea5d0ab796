"""Vectorised samplers for symmetric integer noise: inverse-CDF tables over OS randomness.

Why: the exact samplers of :mod:`dp.samplers` cost microseconds a draw, seconds per
client at d = 10^6. Here a draw costs one 64-bit word from ``os.urandom`` and a table
lookup in numpy, and the law sampled is within a computed, stated statistical distance
of the exact one.

How a table samples (:class:`SymmetricTable`): the magnitude |X| has cumulative
thresholds T_j = floor(2^127 F(j)), F(j) = P(|X| <= j) computed in big-integer fixed
point (320 bits), with T_K = 2^127 so that the last entry absorbs the tail beyond K. A
draw is a 127-bit uniform W: the top 63 bits come with the sign bit in one word; the low
64 bits are read only when the top bits tie with a threshold (probability about
K 2^-63, so almost never) and are then drawn fresh, which gives exactly the law of a
full 127-bit W. |X| = #{j : T_j <= W}. A guide table on the top bits makes the search
O(1) for almost every draw. No floating-point number touches a sample.

Statistical distance (``tv_bound``, per coordinate) from the exact law: at most
(K + 1) 2^-127 for the threshold rounding, plus the tail mass beyond K (K is chosen so
that it is below 2^-130), plus the fixed-point error of the weights; about 2^-110 for
the largest tables. For the release of N coordinates the joint distance is at most
N * tv_bound, and an (eps, delta)-DP guarantee of the exact mechanism holds for the
sampled one with delta + (1 + e^eps) N tv_bound: :func:`delta_slack` computes it.

Large sigma: a table covers sigma <= ``TABLE_MAX_SIGMA``. Beyond, a discrete Gaussian is
drawn as X = B + k Y with B ~ N_Z(0, sigma_b^2), Y ~ N_Z(0, sigma_y^2) (recursively, see
:class:`FastDiscreteGaussian`): by Poisson summation P(X = x) is proportional to
rho_sigma(x) (1 + theta(x)), sigma^2 = sigma_b^2 + k^2 sigma_y^2, with
|theta| <= 2 sum_(m>=1) exp(-2 pi^2 s^2 m^2), s^2 = sigma_b^2 sigma_y^2 / sigma^2, so X is
within 2.1 * that (about 2^-226 at s^2 >= 8) of N_Z(0, sigma^2). A Skellam of large
variance is a sum of m Skellam shares (exact: the law is closed under sums).
"""

from __future__ import annotations

import decimal
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from functools import lru_cache

import numpy as np
from numpy.typing import NDArray

from dp.errors import SamplerParameterError
from dp.samplers import as_fraction
from dp.secure_random import random_words

I64 = NDArray[np.int64]
Shape = int | Sequence[int]

TABLE_MAX_SIGMA = 2**14
"""Largest standard deviation sampled from one table (about 230 000 entries, 12 MB)."""

MAX_SKELLAM_SHARES = 256
"""A Skellam of variance above this many table variances is refused (cost would grow)."""

_WORK_BITS = 320
_THRESHOLD_BITS = 127
_TAIL_LOG2 = -130
_DEC = decimal.Context(prec=110)  # ~365 bits, above _WORK_BITS
_BASE_SIGMA = 2**13
_LEVEL_FACTOR = 2**11  # k; with sigma_b = 2^13: s^2 >= 2^26 / (2 k^2) = 8 at every split
_MASK64 = (1 << 64) - 1
_MASK63 = (1 << 63) - 1
_MASK32 = (1 << 32) - 1


def _count(shape: Shape) -> tuple[tuple[int, ...], int]:
    dims = (int(shape),) if isinstance(shape, int | np.integer) else tuple(int(s) for s in shape)
    if any(s < 0 for s in dims):
        raise SamplerParameterError(f"shape must be non-negative, got {dims}")
    return dims, math.prod(dims)


@dataclass(frozen=True, eq=False)
class SymmetricTable:
    """Inverse-CDF sampler of a symmetric law on the integers (see the module doc)."""

    label: str
    parameter: Fraction
    thresholds: tuple[int, ...] = field(repr=False)
    tv_bound: float
    hi: NDArray[np.uint64] = field(init=False, repr=False)
    lo: NDArray[np.uint64] = field(init=False, repr=False)
    guide: NDArray[np.int64] = field(init=False, repr=False)
    shift: int = field(init=False, repr=False)
    bucket_mask: np.uint64 = field(init=False, repr=False)

    def __post_init__(self) -> None:
        t = self.thresholds
        object.__setattr__(self, "hi", np.array([x >> 64 for x in t], dtype=np.uint64))
        object.__setattr__(self, "lo", np.array([x & _MASK64 for x in t], dtype=np.uint64))
        bits = min(21, max(10, (len(t)).bit_length() + 2))
        shift = 63 - bits
        starts = np.arange((1 << bits) + 1, dtype=np.uint64) << np.uint64(shift)
        first = np.searchsorted(self.hi, starts, side="left").astype(np.int64)
        # one word per bucket: the first candidate index, and (above bit 32) how many
        # thresholds fall inside the bucket (0: the answer is known without a search)
        guide = first[:-1] | ((first[1:] - first[:-1]) << np.int64(32))
        object.__setattr__(self, "guide", guide)
        object.__setattr__(self, "shift", shift)
        object.__setattr__(self, "bucket_mask", np.uint64((1 << bits) - 1))

    @property
    def support(self) -> int:
        """K: every draw has |X| <= K."""
        return len(self.thresholds) - 1

    def magnitude_law(self) -> list[Fraction]:
        """The exact law of |X| this table samples: Q_j = (T_j - T_(j-1)) / 2^127."""
        prev, out = 0, []
        for t in self.thresholds:
            out.append(Fraction(t - prev, 1 << _THRESHOLD_BITS))
            prev = t
        return out

    def sample(self, count: int) -> I64:
        """``count`` independent draws (int64), one OS word each (plus rare tie words)."""
        return self.lookup(random_words(count))

    def lookup(self, words: NDArray[np.uint64]) -> I64:
        """The draws that 64-bit ``words`` map to (top bit: sign; the other 63: the top of
        W; a tie with a threshold reads 64 fresh bits). :meth:`sample` feeds OS words."""
        if not isinstance(words, np.ndarray) or words.dtype != np.uint64 or words.ndim != 1:
            raise SamplerParameterError("lookup needs a 1-D uint64 array of words")
        bucket = (words >> np.uint64(self.shift)) & self.bucket_mask
        packed = self.guide[bucket.view(np.intp)]
        ambiguous = np.flatnonzero(packed >> np.int64(32))
        out = packed & np.int64(_MASK32)
        if ambiguous.size:
            out[ambiguous] = self._search(words[ambiguous] & np.uint64(_MASK63))
        sign = words.view(np.int64) >> np.int64(63)  # the top bit: 0 or -1
        out ^= sign
        out -= sign
        return out

    def _search(self, top: NDArray[np.uint64]) -> I64:
        """Magnitudes for draws whose bucket holds thresholds; ties read 64 more bits."""
        lt = np.searchsorted(self.hi, top, side="left").astype(np.int64)
        le = np.searchsorted(self.hi, top, side="right").astype(np.int64)
        ties = np.flatnonzero(lt != le)
        if ties.size:
            fresh = random_words(ties.size)
            for i, low in zip(ties.tolist(), fresh.tolist(), strict=True):
                start, stop = int(lt[i]), int(le[i])
                lt[i] = start + int(np.searchsorted(self.lo[start:stop], low, side="right"))
        return lt


def _thresholds(magnitudes: list[int]) -> tuple[int, ...]:
    """floor(2^127 * cumulative / total), the last forced to 2^127 (absorbs the tail)."""
    total = sum(magnitudes)
    out, acc = [], 0
    for m in magnitudes[:-1]:
        acc += m
        out.append((acc << _THRESHOLD_BITS) // total)
    out.append(1 << _THRESHOLD_BITS)
    return tuple(out)


def _fixed(value: decimal.Decimal) -> int:
    return int(_DEC.multiply(value, decimal.Decimal(1 << _WORK_BITS)))


def _dec(frac: Fraction) -> decimal.Decimal:
    return _DEC.divide(decimal.Decimal(frac.numerator), decimal.Decimal(frac.denominator))


@lru_cache(maxsize=64)
def discrete_gaussian_table(sigma2: Fraction) -> SymmetricTable:
    """Table for N_Z(0, sigma2): weights exp(-j^2 / (2 sigma2)) by the exact recurrence
    w_(j+1) = w_j a b^j, a = exp(-1/(2 sigma2)), b = exp(-1/sigma2), in fixed point."""
    sigma = math.sqrt(sigma2)
    if not 0.0 < sigma <= TABLE_MAX_SIGMA:
        raise SamplerParameterError(f"table sigma must be in (0, {TABLE_MAX_SIGMA}], got {sigma}")
    support = _gaussian_support(float(sigma2))
    one = 1 << _WORK_BITS
    a = _fixed(_DEC.exp(_dec(-1 / (2 * sigma2))))
    b = _fixed(_DEC.exp(_dec(-1 / sigma2)))
    weights, w, c = [one], one, a
    for _ in range(support):
        w = (w * c) >> _WORK_BITS
        c = (c * b) >> _WORK_BITS
        weights.append(w)
    if weights[-1] <= 0 or c <= 0:
        raise SamplerParameterError(f"sigma {sigma} is too small for a discrete Gaussian table")
    weight_error = (support + 1) ** 2 / c + (support + 1) / weights[-1]
    magnitudes = [weights[0]] + [2 * x for x in weights[1:]]
    tail = _gaussian_tail(support, float(sigma2))
    tv = (support + 1) * 2.0**-_THRESHOLD_BITS + 1.01 * (tail + weight_error)
    label = f"discrete_gaussian(sigma^2={float(sigma2):.6g})"
    return _checked_table(label, sigma2, magnitudes, tv)


def _gaussian_tail(support: int, sigma2: float) -> float:
    """Upper bound on P(|X| > support) / rho(0) for N_Z(0, sigma2): a geometric series
    from rho(support + 1), whose ratios exp(-(2j + 1) / (2 sigma2)) only decrease."""
    ratio = math.exp(-(2 * support + 3) / (2.0 * sigma2))
    return 2.0 * math.exp(-((support + 1) ** 2) / (2.0 * sigma2)) / (1.0 - ratio)


def _gaussian_support(sigma2: float) -> int:
    """The smallest K (searched in steps of sigma/16) whose tail is below 2^-130."""
    sigma = math.sqrt(sigma2)
    support = max(1, math.ceil(13.0 * sigma))
    step = max(1, math.ceil(sigma / 16.0))
    while _gaussian_tail(support, sigma2) > 2.0**_TAIL_LOG2:
        support += step
    return support


def _checked_table(
    label: str, parameter: Fraction, magnitudes: list[int], tv: float
) -> SymmetricTable:
    """The table, refused when its distance bound is not below 2^-100."""
    if not tv <= 2.0**-100:
        raise SamplerParameterError(f"{label}: table distance bound {tv:.3g} above 2^-100")
    return SymmetricTable(label, parameter, _thresholds(magnitudes), tv)


def _bessel_ratio_weights(lam: Fraction, top: int) -> list[int]:
    """Values proportional to I_k(2 lam), k = 0..top, by Miller's backward recurrence
    I_(k-1) = I_(k+1) + (k / lam) I_k from (I_(top+1), I_top) = (0, 1), in big integers
    kept at _WORK_BITS significant bits (a shared exponent per value, aligned at the end)."""
    p, q = lam.numerator, lam.denominator
    nxt, cur = 0, 1 << _WORK_BITS
    values, shifts, total_shift = [cur], [0], 0
    for k in range(top, 0, -1):
        prev = nxt + (cur * k * q) // p
        nxt, cur = cur, prev
        extra = cur.bit_length() - 2 * _WORK_BITS
        if extra > 0:
            nxt, cur = nxt >> extra, cur >> extra
            total_shift += extra
        values.append(cur)
        shifts.append(total_shift)
    values.reverse()
    shifts.reverse()
    return [
        v >> (total_shift - s) if total_shift - s < 4 * _WORK_BITS else 0
        for v, s in zip(values, shifts, strict=True)
    ]


@lru_cache(maxsize=64)
def skellam_table(lam: Fraction) -> SymmetricTable:
    """Table for Poisson(lam) - Poisson(lam), P(k) = e^(-2 lam) I_k(2 lam), variance 2 lam.

    The weights come from Miller's algorithm started far in the tail (index K + 6 sigma +
    40, where the start error is below 2^-200 relative); normalising by their sum uses
    sum_k I_k(x) = e^x, so no special function is evaluated."""
    sigma = math.sqrt(2.0 * lam)
    if not 0.0 < sigma <= TABLE_MAX_SIGMA:
        raise SamplerParameterError(f"table sigma must be in (0, {TABLE_MAX_SIGMA}], got {sigma}")
    top = math.ceil(20.0 * sigma) + 60
    weights = _bessel_ratio_weights(lam, top)
    total = weights[0] + 2 * sum(weights[1:])
    limit = total >> -_TAIL_LOG2
    support, tail = len(weights) - 1, 0
    while support > 1 and tail + 2 * weights[support] <= limit:
        tail += 2 * weights[support]
        support -= 1
    if support >= top - math.ceil(6.0 * sigma) - 40:
        raise SamplerParameterError(f"Skellam table for lam {float(lam)} lost precision")
    weights = weights[: support + 1]
    magnitudes = [weights[0]] + [2 * x for x in weights[1:]]
    start_error = 2.0**-200
    tv = (support + 1) * 2.0**-_THRESHOLD_BITS + 1.01 * (2.0**_TAIL_LOG2 + start_error)
    return _checked_table(f"skellam(lam={float(lam):.6g})", lam, magnitudes, tv)


def smoothing_error(s2: float) -> float:
    """2 sum_(m>=1) exp(-2 pi^2 s2 m^2), bounded by a geometric series (see module doc)."""
    first = math.exp(-2.0 * math.pi**2 * s2)
    return 2.0 * first / (1.0 - math.exp(-6.0 * math.pi**2 * s2))


@dataclass(frozen=True, eq=False)
class FastDiscreteGaussian:
    """N_Z(0, sigma2), vectorised: one table up to ``TABLE_MAX_SIGMA``; beyond,
    X = sum_e 2^e B_e + 2^E F with every B_e from the fixed N_Z(0, 2^26) table,
    consecutive exponents at most 11 apart, and F ~ N_Z(0, sigma_F^2), sigma_F in
    [4, 11), the one table built per sigma (under 150 entries: fast to build). Each
    split has smoothing parameter s^2 >= 8 (module doc): at most about 2^-226 of
    distance each.
    ``levels`` lists the (table, multiplier) pairs."""

    sigma2: Fraction
    levels: tuple[tuple[SymmetricTable, int], ...] = field(init=False, repr=False)
    tv_bound: float = field(init=False)

    def __post_init__(self) -> None:
        var = as_fraction(self.sigma2, "sigma2")
        object.__setattr__(self, "sigma2", var)
        if var <= TABLE_MAX_SIGMA**2:
            levels = [(discrete_gaussian_table(var), 1)]
            tv = levels[0][0].tv_bound
        else:
            levels, tv = _decomposition(var)
        if sum(t.support * m for t, m in levels) >= 2**62:
            raise SamplerParameterError(f"sigma^2 = {float(var):.4g} would overflow int64")
        object.__setattr__(self, "levels", tuple(levels))
        object.__setattr__(self, "tv_bound", tv)

    @property
    def max_abs(self) -> int:
        """The largest |X| any draw can have."""
        return sum(table.support * mult for table, mult in self.levels)

    def sample(self, shape: Shape) -> I64:
        """Draws of the given shape (int64)."""
        dims, n = _count(shape)
        out = np.zeros(n, dtype=np.int64)
        for table, mult in self.levels:
            out += table.sample(n) * np.int64(mult)
        return out.reshape(dims)


@lru_cache(maxsize=1)
def _base_table() -> SymmetricTable:
    """N_Z(0, 2^26), kept apart from the cache of per-sigma tables so it is never evicted."""
    return discrete_gaussian_table.__wrapped__(Fraction(_BASE_SIGMA**2))


def _base_exponents(top: int) -> list[int]:
    """Exponents e of the base levels 2^e B under a top level 2^top F: 0 and top - 11 t
    (t >= 1) while positive, so consecutive multipliers differ by at most k = 2^11."""
    step = _LEVEL_FACTOR.bit_length() - 1
    return [0, *sorted(range(top - step, 0, -step))]


def _decomposition(var: Fraction) -> tuple[list[tuple[SymmetricTable, int]], float]:
    """Levels X = sum_e 2^e B_e + 2^E F for var > TABLE_MAX_SIGMA^2, B_e ~ N_Z(0, 2^26),
    and their distance bound: E is the largest exponent leaving sigma_F^2 =
    (var - 2^26 sum_e 4^e) / 4^E >= 16 (then sigma_F^2 < 120). Written as nested
    splits X_i = B_i + 2^(e_(i+1) - e_i) X_(i+1), every split has s^2 >= 8."""
    base2 = Fraction(_BASE_SIGMA**2)

    def residual(top: int) -> Fraction:
        spent = base2 * sum(4**e for e in _base_exponents(top))
        out: Fraction = (var - spent) / 4**top
        return out

    top = max(0, math.floor(math.log2(float(var)) / 2.0) - 5)  # var / 4^top >= 2^10 > 120
    while residual(top + 1) >= 16:
        top += 1
    final2 = residual(top)
    if not 16 <= final2 < 120:
        raise SamplerParameterError(f"no decomposition for sigma^2 = {float(var):.6g}")
    base = _base_table()
    exponents = _base_exponents(top)
    levels = [(base, 1 << e) for e in exponents]
    levels.append((discrete_gaussian_table(final2), 1 << top))
    tv = sum(t.tv_bound for t, _ in levels) + len(exponents) * 2.1 * smoothing_error(8.0)
    return levels, tv


@dataclass(frozen=True, eq=False)
class FastSkellam:
    """Skellam of the given variance (Poisson(v/2) - Poisson(v/2)), vectorised: a sum of
    ``shares`` table draws of variance v / shares each (exact: Skellam adds up)."""

    variance: Fraction
    shares: int = field(init=False)
    table: SymmetricTable = field(init=False, repr=False)
    tv_bound: float = field(init=False)

    def __post_init__(self) -> None:
        var = as_fraction(self.variance, "variance")
        object.__setattr__(self, "variance", var)
        shares = max(1, math.ceil(float(var) / TABLE_MAX_SIGMA**2))
        if shares > MAX_SKELLAM_SHARES:
            raise SamplerParameterError(
                f"Skellam variance {float(var):.4g} needs {shares} table shares "
                f"(> {MAX_SKELLAM_SHARES}); use the discrete Gaussian or fewer bits"
            )
        object.__setattr__(self, "shares", shares)
        object.__setattr__(self, "table", skellam_table(var / (2 * shares)))
        object.__setattr__(self, "tv_bound", shares * self.table.tv_bound)

    def sample(self, shape: Shape) -> I64:
        """Draws of the given shape (int64)."""
        dims, n = _count(shape)
        out = self.table.sample(n)
        for _ in range(self.shares - 1):
            out += self.table.sample(n)
        return out.reshape(dims)


@lru_cache(maxsize=64)
def _gaussian(sigma2: Fraction) -> FastDiscreteGaussian:
    return FastDiscreteGaussian(sigma2)


@lru_cache(maxsize=64)
def _skellam(variance: Fraction) -> FastSkellam:
    return FastSkellam(variance)


def discrete_gaussian_sampler(sigma: float | Fraction) -> FastDiscreteGaussian:
    """The (cached) vectorised sampler of N_Z(0, sigma^2); ``sigma`` in integer units."""
    s = as_fraction(sigma, "sigma")
    return _gaussian(s * s)


def skellam_sampler(variance: float | Fraction) -> FastSkellam:
    """The (cached) vectorised sampler of the symmetric Skellam law of ``variance``."""
    return _skellam(as_fraction(variance, "variance"))


def sample_discrete_gaussian(shape: Shape, sigma: float | Fraction) -> I64:
    """Integer noise N_Z(0, sigma^2) of the given shape, from the OS CSPRNG."""
    return discrete_gaussian_sampler(sigma).sample(shape)


def sample_skellam(shape: Shape, variance: float | Fraction) -> I64:
    """Symmetric Skellam noise of the given variance and shape, from the OS CSPRNG."""
    return skellam_sampler(variance).sample(shape)


def delta_slack(tv_per_draw: float, draws: int, epsilon: float) -> float:
    """What sampling from a law at distance ``tv_per_draw`` adds to delta, for ``draws``
    coordinates in total (all rounds, clients, coordinates): (1 + e^eps) * draws * tv."""
    return (1.0 + math.exp(epsilon)) * draws * tv_per_draw
