"""Empirical privacy audits: lower bounds on epsilon, with confidence.

* One-run audit (Steinke, Nasr & Jagielski, NeurIPS 2023): m canaries are each included
  with probability 1/2; after one training run the auditor guesses "in" for the k+
  highest scores, "out" for the k- lowest and abstains otherwise. If the run is
  (eps, delta)-DP, the number of correct guesses W out of r = k+ + k- satisfies
  ``P[W >= v] <= f(v) + 2 m delta max_{1<=i<=v} (f(v - i) - f(v)) / i`` with
  ``f(v) = P[Binomial(r, e^eps / (1 + e^eps)) >= v]``. The reported bound is the largest
  eps whose p-value for the observed v stays below 1 - confidence, computed exactly from
  the binomial tail (scipy) and a bisection on eps.
* Multi-run audit (Jagielski, Ullman & Oprea, NeurIPS 2020): runs with and without one
  canary; a threshold on its score gives false positive / negative rates whose
  Clopper-Pearson upper bounds give ``eps >= log((1 - delta - FNR) / FPR)``.

Pure numpy/scipy; the DP-SGD runs that produce the scores are in
:mod:`protocols.attacks.canaries`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import stats

Scores = npt.NDArray[np.float64]


def one_run_p_value(m: int, r: int, v: int, eps: float, delta: float) -> float:
    """Probability of at least ``v`` correct guesses out of ``r`` under (eps, delta)-DP."""
    if not 0 <= v <= r <= m:
        raise ValueError(f"need 0 <= v <= r <= m, got v={v}, r={r}, m={m}")
    q = 1.0 / (1.0 + math.exp(-eps))
    f_v = float(stats.binom.sf(v - 1, r, q))
    if delta == 0.0 or v == 0:
        return f_v
    i = np.arange(1, v + 1)
    f_shift = stats.binom.sf(v - 1 - i, r, q)  # f(v - i)
    alpha = float(np.max((f_shift - f_v) / i))
    return min(1.0, f_v + 2.0 * m * delta * alpha)


def one_run_epsilon(
    m: int, r: int, v: int, delta: float, confidence: float = 0.95, eps_max: float = 50.0
) -> float:
    """Largest eps rejected at ``confidence`` given v correct guesses of r (0 if none)."""
    beta = 1.0 - confidence
    if one_run_p_value(m, r, v, 0.0, delta) > beta:
        return 0.0
    lo, hi = 0.0, eps_max
    for _ in range(60):  # p-value grows with eps: find where it crosses beta
        mid = (lo + hi) / 2
        if one_run_p_value(m, r, v, mid, delta) <= beta:
            lo = mid
        else:
            hi = mid
    return lo


@dataclass(frozen=True)
class OneRunResult:
    """Outcome of a one-run audit."""

    epsilon_lower_bound: float
    guesses: int
    correct: int
    canaries: int
    confidence: float


def one_run_audit(
    scores: Scores,
    included: npt.NDArray[np.bool_],
    *,
    k_pos: int,
    k_neg: int,
    delta: float,
    confidence: float = 0.95,
) -> OneRunResult:
    """Guess "in" for the ``k_pos`` highest scores and "out" for the ``k_neg`` lowest.

    ``k_pos`` / ``k_neg`` must be fixed before looking at the scores (the bound assumes
    the guessing rule does not depend on the secret inclusion bits).
    """
    s = np.asarray(scores, dtype=np.float64)
    inc = np.asarray(included, dtype=bool)
    m = s.shape[0]
    if inc.shape != s.shape or k_pos + k_neg > m:
        raise ValueError("scores and included must have one entry per canary; k+ + k- <= m")
    order = np.argsort(s, kind="stable")
    correct = int(np.sum(inc[order[m - k_pos :]])) if k_pos else 0
    correct += int(np.sum(~inc[order[:k_neg]]))
    r = k_pos + k_neg
    eps = one_run_epsilon(m, r, correct, delta, confidence)
    return OneRunResult(eps, r, correct, m, confidence)


def clopper_pearson_upper(k: int, n: int, alpha: float) -> float:
    """One-sided (1 - alpha) Clopper-Pearson upper bound on a binomial rate k / n."""
    if k >= n:
        return 1.0
    return float(stats.beta.ppf(1.0 - alpha, k + 1, n - k))


@dataclass(frozen=True)
class MultiRunResult:
    """Outcome of a multi-run (Clopper-Pearson) audit."""

    epsilon_lower_bound: float
    threshold: float
    fpr_upper: float
    fnr_upper: float
    runs_in: int
    runs_out: int


def clopper_pearson_audit(
    scores_in: Scores,
    scores_out: Scores,
    *,
    delta: float,
    confidence: float = 0.95,
    thresholds: int = 20,
) -> MultiRunResult:
    """Epsilon lower bound from runs with (``scores_in``) and without the canary.

    The attack says "in" when the score exceeds a threshold; ``thresholds`` candidate
    thresholds (quantiles of the pooled scores) share the error budget (Bonferroni), and
    both directions of the test count (DP is symmetric in the neighbouring pair).
    """
    a = np.asarray(scores_in, dtype=np.float64)
    b = np.asarray(scores_out, dtype=np.float64)
    alpha = (1.0 - confidence) / (2 * thresholds)  # FPR and FNR bounds per threshold
    best = MultiRunResult(0.0, float("nan"), 1.0, 1.0, a.size, b.size)
    pooled = np.concatenate([a, b])
    for t in np.quantile(pooled, np.linspace(0.02, 0.98, thresholds)):
        fp = int(np.sum(b > t))
        fn = int(np.sum(a <= t))
        fpr = clopper_pearson_upper(fp, b.size, alpha)
        fnr = clopper_pearson_upper(fn, a.size, alpha)
        for x, y in ((fpr, fnr), (fnr, fpr)):
            if x <= 0.0 or 1.0 - delta - y <= 0.0:
                continue
            eps = math.log((1.0 - delta - y) / x)
            if eps > best.epsilon_lower_bound:
                best = MultiRunResult(eps, float(t), fpr, fnr, a.size, b.size)
    return best
