"""The verdict's statistical rules as pure functions of numbers (docs/method.md, 'The verdict's rules').

- power and the detectable difference of a two-sided paired t test, exactly (noncentral t);
- Holm's step-down correction for the treatments compared in one row;
- a claim's word from its rows: reproduced, contradicted or inconclusive;
- the probability of improvement over the control, averaged over tasks, with a stratified bootstrap
  interval (Agarwal et al. 2021, the rliable estimator; rliable itself is not a dependency: its
  `arch<8` pin does not import beside pandas 3).
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
from scipy import optimize
from scipy import stats as _scipy_stats

ALPHA, POWER = 0.05, 0.80
REPRODUCED, CONTRADICTED, INCONCLUSIVE = "reproduced", "contradicted", "inconclusive"
AHEAD, BEHIND, NO_DIFFERENCE = "ahead", "behind", "no difference"


def paired_p(mean: float, std: float, n: int) -> float:
    """Two-sided p-value of a one-sample t test of n paired differences against 0 (NaN below 2 pairs)."""
    if n < 2 or not (math.isfinite(mean) and math.isfinite(std)):
        return math.nan
    if std == 0:
        return 1.0 if mean == 0 else 0.0
    t = mean / (std / math.sqrt(n))
    return float(2 * _scipy_stats.t.sf(abs(t), n - 1))


def power(difference: float, std: float, n: int, alpha: float = ALPHA) -> float:
    """Probability that a two-sided paired t test at level alpha rejects, for n pairs whose
    differences have true mean `difference` and standard deviation `std` (noncentral t, exact)."""
    if n < 2 or not (std > 0 and math.isfinite(std)):
        return math.nan
    df = n - 1
    critical = _scipy_stats.t.ppf(1 - alpha / 2, df)
    shift = abs(difference) / (std / math.sqrt(n))  # the power is symmetric in the difference's sign
    far = float(_scipy_stats.nct.sf(critical, df, shift))
    near = float(_scipy_stats.nct.cdf(-critical, df, shift))  # rejecting on the wrong side: tiny, NaN in scipy's far tail
    return far + (near if math.isfinite(near) else 0.0)


def detectable(std: float, n: int, alpha: float = ALPHA, target_power: float = POWER) -> float:
    """Smallest true mean difference that the test finds with `target_power` (exact power)."""
    if n < 2 or not (std > 0 and math.isfinite(std)):
        return math.nan
    se = std / math.sqrt(n)
    high = se
    while power(high, std, n, alpha) < target_power:  # bracket the root; power grows with the difference
        high *= 2
    return float(optimize.brentq(lambda d: power(d, std, n, alpha) - target_power, 0.0, high, xtol=1e-10 * high))


def seeds_needed(std: float, target: float, alpha: float = ALPHA, target_power: float = POWER,
                 most: int = 500) -> int | None:
    """Fewest pairs whose detectable difference is at most `target` (None: more than `most`): the
    first n whose power at `target` reaches `target_power`, found by bisection (power grows with n)."""
    if not (std > 0 and math.isfinite(std)):
        return None
    enough = lambda n: power(target, std, n, alpha) >= target_power  # noqa: E731
    if not enough(most):
        return None
    low, high = 1, most  # enough(high); not enough(low) (no test with one pair)
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if enough(middle) else (middle, high)
    return high


def holm(p_values: Mapping[str, float]) -> dict[str, float]:
    """Holm's step-down adjusted p-values (family-wise error over the given tests); NaN stays NaN."""
    finite = sorted((p, name) for name, p in p_values.items() if math.isfinite(p))
    m = len(finite)
    adjusted: dict[str, float] = {name: math.nan for name in p_values}
    running = 0.0
    for i, (p, name) in enumerate(finite):
        running = max(running, min(1.0, (m - i) * p))
        adjusted[name] = running
    return adjusted


def word(mean: float, p_adjusted: float, alpha: float = ALPHA) -> str:
    """ahead / behind when the (adjusted) test rejects, else no difference; '' without a test."""
    if not math.isfinite(p_adjusted):
        return ""
    if p_adjusted < alpha:
        return AHEAD if mean > 0 else BEHIND
    return NO_DIFFERENCE


def claim_word(rows: Sequence[tuple[Mapping[str, str], float]], target: float) -> str:
    """A claim's word from its rows (one per backbone): each row is (word per reading, detectable
    difference of the row). Reproduced: some reading is ahead on every row. Contradicted: no reading
    is ahead on any row, and every row can detect `target`. Otherwise inconclusive."""
    if not rows:
        return INCONCLUSIVE
    readings = set.intersection(*(set(words) for words, _ in rows))
    if any(all(words[r] == AHEAD for words, _ in rows) for r in readings):
        return REPRODUCED
    nothing_ahead = all(w != AHEAD for words, _ in rows for w in words.values())
    powered = all(math.isfinite(d) and d <= target for _, d in rows)
    return CONTRADICTED if nothing_ahead and powered else INCONCLUSIVE


def improvement_probability(treatment: Sequence[float], control: Sequence[float]) -> float:
    """P(X > Y) + P(X = Y) / 2 for one run of each drawn at random (Mann-Whitney U / (n_x n_y))."""
    x = np.asarray(treatment, dtype=float)[:, None]
    y = np.asarray(control, dtype=float)[None, :]
    return float(np.mean((x > y) + 0.5 * (x == y)))


def mean_improvement_probability(tasks: Sequence[tuple[Sequence[float], Sequence[float]]]) -> float:
    """The probability of improvement averaged over tasks (each task: treatment runs, control runs)."""
    return float(np.mean([improvement_probability(x, y) for x, y in tasks])) if tasks else math.nan


def stratified_bootstrap(tasks: Sequence[tuple[Sequence[float], Sequence[float]]], reps: int = 2000,
                         confidence: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile interval of `mean_improvement_probability`, resampling runs with replacement within
    each task and each side (the strata), as rliable's StratifiedIndependentBootstrap does."""
    if not tasks:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    draws = np.zeros(reps)
    for x, y in tasks:  # every resample of a task at once: (reps, n) draws of each side
        x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
        xs = x[rng.integers(0, x.size, (reps, x.size))][:, :, None]
        ys = y[rng.integers(0, y.size, (reps, y.size))][:, None, :]
        draws += np.mean((xs > ys) + 0.5 * (xs == ys), axis=(1, 2))
    draws /= len(tasks)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(draws, [tail, 100 - tail])
    return float(low), float(high)


def exclusion_rate(excludes_zero: Sequence[bool]) -> float:
    """Share of an A/A control's cells whose interval excludes 0 (nominal: alpha)."""
    return float(np.mean(excludes_zero)) if len(excludes_zero) else math.nan
