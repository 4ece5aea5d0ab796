"""Exact samplers for integer noise, in rational arithmetic, from the OS CSPRNG.

These are the reference samplers: slow (microseconds per draw, pure Python) but exact,
with no floating-point value anywhere on the path from random bits to sample, so no low
bit of an output depends on rounding (the attack of Mironov, CCS 2012, on floating-point
Laplace noise). The vectorised tables of :mod:`dp.fast_samplers` are tested against them.

* :func:`bernoulli_exp`, :func:`discrete_laplace`, :func:`discrete_gaussian` are
  Algorithms 1-3 of Canonne, Kamath & Steinke, "The Discrete Gaussian for Differential
  Privacy" (NeurIPS 2020), with every parameter a :class:`~fractions.Fraction`.
* :func:`poisson` is exact for rational rates: Poisson(m + f) is the sum of m draws of
  Poisson(1) and one of Poisson(f); Poisson(lambda <= 1) is rejection sampling from the
  Geometric(1/2) proposal P(k) = 2^-(k+1), accepted with the rational probability
  (2 lambda)^k / (2 k!) <= 1 (acceptance rate e^lambda / 4). Cost O(lambda).
* :func:`skellam` is the difference of two independent Poisson(lambda) draws
  (variance 2 lambda): closed under summation, so n clients' shares add to one Skellam.
"""

from __future__ import annotations

import math
import numbers
from fractions import Fraction

from dp.errors import SamplerParameterError
from dp.secure_random import bernoulli, geometric_half, random_below, random_bit

Rational = Fraction | int | float


def as_fraction(value: object, name: str, *, minimum: Fraction = Fraction(0)) -> Fraction:
    """``value`` as an exact :class:`Fraction` (floats convert exactly), > ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise SamplerParameterError(f"{name} must be a real number, got {type(value).__name__}")
    if isinstance(value, numbers.Rational):
        frac = Fraction(int(value.numerator), int(value.denominator))
    else:
        as_float = float(value)
        if not math.isfinite(as_float):
            raise SamplerParameterError(f"{name} must be finite, got {value!r}")
        frac = Fraction(as_float)
    if frac <= minimum:
        raise SamplerParameterError(f"{name} must be > {minimum}, got {value!r}")
    return frac


def _bernoulli_exp_unit(gamma: Fraction) -> bool:
    """Bernoulli(exp(-gamma)) for gamma in [0, 1] (CKS20 Algorithm 1, first part)."""
    k = 1
    while bernoulli(gamma / k):
        k += 1
    return k % 2 == 1


def bernoulli_exp(gamma: Fraction) -> bool:
    """True with probability exactly exp(-gamma), gamma a rational >= 0 (CKS20 Alg. 1)."""
    if gamma < 0:
        raise SamplerParameterError(f"gamma must be >= 0, got {gamma}")
    while gamma > 1:
        if not _bernoulli_exp_unit(Fraction(1)):
            return False
        gamma -= 1
    return _bernoulli_exp_unit(gamma)


def discrete_laplace(scale: Rational) -> int:
    """X with P(X = x) proportional to exp(-|x| / scale) (CKS20 Algorithm 2)."""
    t_over_s = as_fraction(scale, "scale")
    s, t = t_over_s.denominator, t_over_s.numerator
    while True:
        u = random_below(t)
        if not bernoulli_exp(Fraction(u, t)):
            continue
        v = 0
        while bernoulli_exp(Fraction(1)):
            v += 1
        y = (u + t * v) // s
        negative = random_bit()
        if negative and y == 0:
            continue
        return -y if negative else y


def discrete_gaussian(sigma2: Rational) -> int:
    """X with P(X = x) proportional to exp(-x^2 / (2 sigma2)) (CKS20 Algorithm 3)."""
    var = as_fraction(sigma2, "sigma2")
    t = math.isqrt(var.numerator // var.denominator) + 1  # floor(sigma) + 1
    while True:
        y = discrete_laplace(t)
        gap = abs(y) - var / t
        if bernoulli_exp(gap * gap / (2 * var)):
            return y


def _poisson_at_most_one(lam: Fraction) -> int:
    """Poisson(lam) for 0 <= lam <= 1 by rejection from Geometric(1/2) (see module doc)."""
    if lam == 0:
        return 0
    num, den = lam.numerator, lam.denominator
    while True:
        k = geometric_half()
        # accept with (2 lam)^k / (2 k!) = (2 num)^k / (2 k! den^k)
        if bernoulli(Fraction((2 * num) ** k, 2 * math.factorial(k) * den**k)):
            return k


def poisson(lam: Rational) -> int:
    """Poisson(lam), exactly, for a rational rate lam > 0 (cost O(lam))."""
    rate = as_fraction(lam, "lam")
    whole = rate.numerator // rate.denominator
    total = _poisson_at_most_one(rate - whole)
    one = Fraction(1)
    for _ in range(whole):
        total += _poisson_at_most_one(one)
    return total


def skellam(lam: Rational) -> int:
    """Poisson(lam) - Poisson(lam): the symmetric Skellam law, variance 2 lam."""
    rate = as_fraction(lam, "lam")
    return poisson(rate) - poisson(rate)
