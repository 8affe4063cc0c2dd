"""The suite's statistics, in one module that imports no torch (and no pandas): numbers in, numbers out.

- over seeds: `summarize` (mean ± sample std), `t_interval`, `paired_difference` (treatment - control
  paired by seed, the verdict's pairing);
- the verdict's rules (docs/method.md, 'The verdict's rules'): a cell's bounds, each side at its level
  (Bonferroni over the row's treatments, the look's level from analysis/sequential.py), its word read
  off them, and the margin test (non-superiority); a claim's word from its rows: reproduced,
  contradicted (intersection-union) or inconclusive;
- planning only: the power of a paired t test (noncentral t, statsmodels' `TTestPower`), the
  detectable difference and the seeds a fixed design would need to decide;
- the probability of improvement over the control, paired by seed and averaged over tasks, with a
  bootstrap that resamples seeds jointly across the rows sharing them (Agarwal et al. 2021 estimate
  it from unpaired runs; rliable itself is not a dependency: its `arch<8` pin does not import beside
  pandas 3), complete separation named rather than given a zero-width interval;
- the A/A rate with its exact (Clopper-Pearson) upper bound;
- the learning-rate decision's standard errors (grporm/tuning/decisions.py's close-call rule): binomial SE of a
  validation score, of a mean of scores, and the SE of paired differences.

Formerly analysis/stats.py, analysis/inference.py and the SE helpers of grporm/tuning/decisions.py. It sits in
`grporm` (not `analysis/`) because the tuning rules below the analysis layer use it too.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import numpy as np
from scipy import optimize
from scipy import stats as _scipy_stats
from statsmodels.stats.power import TTestPower

MIN_SEEDS = 3  # cells with fewer seeds are marked (dagger): their spread says little


@dataclass(frozen=True)
class Summary:
    """Mean, sample std (ddof=1; NaN with one value), count, min and max of one cell's values."""

    mean: float
    std: float
    n: int
    low: float
    high: float

    @property
    def few(self) -> bool:
        return 0 < self.n < MIN_SEEDS


@dataclass(frozen=True)
class PairedDiff:
    """treatment - control over the seeds both have: mean, sample std, n, and the CI bounds
    (NaN with fewer than two pairs, where no interval exists)."""

    mean: float
    std: float
    n: int
    ci_low: float
    ci_high: float
    seeds: tuple[int, ...] = ()

    @property
    def few(self) -> bool:
        return 0 < self.n < MIN_SEEDS


def _finite(values: Iterable) -> list[float]:
    out = []
    for value in values:
        if value is None:
            continue
        value = float(value)
        if math.isfinite(value):
            out.append(value)
    return out


def summarize(values: Iterable) -> Summary:
    """Summary of the finite values (None / NaN are missing, not zero)."""
    vals = _finite(values)
    n = len(vals)
    if n == 0:
        return Summary(math.nan, math.nan, 0, math.nan, math.nan)
    mean = math.fsum(vals) / n
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in vals) / (n - 1)) if n > 1 else math.nan
    return Summary(mean, std, n, min(vals), max(vals))


def t_interval(mean: float, std: float, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Two-sided Student-t interval for a mean of n values; (NaN, NaN) when n < 2."""
    if n < 2 or not math.isfinite(std):
        return math.nan, math.nan
    if std == 0:  # scipy wants a positive scale; identical differences give a zero-width interval
        return mean, mean
    low, high = _scipy_stats.t.interval(confidence, n - 1, loc=mean, scale=std / math.sqrt(n))
    return float(low), float(high)


def paired_difference(treatment: Mapping[int, float], control: Mapping[int, float],
                      confidence: float = 0.95) -> PairedDiff:
    """Pairs by seed (seeds present, with finite values, on both sides); the interval is on the mean
    of the per-seed differences, which removes the seed's shared effect (same split, same head init)."""
    seeds = tuple(sorted(s for s in treatment if s in control
                         and _finite([treatment[s]]) and _finite([control[s]])))
    diffs = summarize(float(treatment[s]) - float(control[s]) for s in seeds)
    low, high = t_interval(diffs.mean, diffs.std, diffs.n, confidence)
    return PairedDiff(diffs.mean, diffs.std, diffs.n, low, high, seeds)


# -- the verdict's rules ----------------------------------------------------------------------
ALPHA, POWER = 0.05, 0.80
_T_POWER = TTestPower()
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


def power(difference: float, std: float, n: int, alpha: float = ALPHA, sides: int = 2) -> float:
    """Probability that a paired t test at level alpha rejects, for n pairs whose differences have true
    mean `difference` and standard deviation `std` (noncentral t, exact: statsmodels' `TTestPower`).
    sides=2: the two-sided test; sides=1: the one-sided test in the direction of the difference (the
    verdict's tests). The power is symmetric in the difference's sign."""
    if n < 2 or not (std > 0 and math.isfinite(std)):
        return math.nan
    effect = abs(difference) / std
    if sides == 1:
        return float(_T_POWER.power(effect_size=effect, nobs=n, alpha=alpha, alternative="larger"))
    both = float(_T_POWER.power(effect_size=effect, nobs=n, alpha=alpha, alternative="two-sided"))
    if math.isfinite(both):
        return both
    # rejecting on the wrong side is tiny and NaN in scipy's far tail: the far side alone
    return float(_T_POWER.power(effect_size=effect, nobs=n, alpha=alpha / 2, alternative="larger"))


def detectable(std: float, n: int, alpha: float = ALPHA, target_power: float = POWER, sides: int = 2) -> float:
    """Smallest true mean difference that the test finds with `target_power` (exact power); planning only."""
    if n < 2 or not (std > 0 and math.isfinite(std)):
        return math.nan
    se = std / math.sqrt(n)
    high = se
    while power(high, std, n, alpha, sides) < target_power:  # bracket the root; power grows with the difference
        high *= 2
    return float(optimize.brentq(lambda d: power(d, std, n, alpha, sides) - target_power, 0.0, high, xtol=1e-10 * high))


def seeds_needed(std: float, target: float, alpha: float = ALPHA, target_power: float = POWER,
                 most: int = 500, sides: int = 2) -> int | None:
    """Fewest pairs whose detectable difference is at most `target` (None: more than `most`): the
    first n whose power at `target` reaches `target_power`, found by bisection (power grows with n)."""
    if not (std > 0 and math.isfinite(std)):
        return 2 if std == 0 else None  # no spread: two pairs decide
    enough = lambda n: power(target, std, n, alpha, sides) >= target_power  # noqa: E731
    if not enough(most):
        return None
    low, high = 1, most  # enough(high); not enough(low) (no test with one pair)
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if enough(middle) else (middle, high)
    return high


def bounds(mean: float, std: float, n: int, level: float) -> tuple[float, float]:
    """(lower, upper) Student-t bounds of a mean of n paired differences, each side at `level`: the
    lower bound exceeds x exactly when the one-sided test of H0: mean <= x rejects at `level`, the
    upper bound falls below x when H0: mean >= x does. (NaN, NaN) below 2 pairs."""
    if n < 2 or not (math.isfinite(mean) and math.isfinite(std)):
        return math.nan, math.nan
    half = float(_scipy_stats.t.isf(level, n - 1)) * std / math.sqrt(n)
    return mean - half, mean + half


def one_sided_p(mean: float, std: float, n: int, null: float = 0.0, above: bool = True) -> float:
    """p of the one-sided paired t test of H0: true mean <= null (above) or >= null (not above)."""
    if n < 2 or not (math.isfinite(mean) and math.isfinite(std)):
        return math.nan
    if std == 0:
        return 0.0 if (mean > null if above else mean < null) else 1.0
    t = (mean - null) / (std / math.sqrt(n))
    return float(_scipy_stats.t.sf(t if above else -t, n - 1))


def cell_word(low: float, high: float) -> str:
    """ahead when the lower bound is above 0, behind when the upper bound is below 0, no difference
    otherwise; '' without an interval. The word is read off the interval shown, so no displayed
    interval excludes 0 next to 'no difference'."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return ""
    return AHEAD if low > 0 else BEHIND if high < 0 else NO_DIFFERENCE


def below_margin(high: float, margin: float) -> bool:
    """The non-superiority test H0: difference >= margin rejected (the upper bound below the margin)."""
    return math.isfinite(high) and high < margin


def claim_word(rows: Sequence[Mapping[str, tuple[float, float]]], margin: float) -> str:
    """A claim's word from its rows (one per backbone / shared axes), each {treatment: (lower, upper)}
    at the row's level. Reproduced: one treatment ahead (lower > 0) on every row. Contradicted: on
    every row every treatment's upper bound below the margin (intersection-union: each row's and each
    treatment's test at the level, no further correction). Otherwise inconclusive."""
    rows = [{t: b for t, b in row.items() if all(map(math.isfinite, b))} for row in rows]
    if not rows or any(not row for row in rows):
        return INCONCLUSIVE
    shared = set.intersection(*(set(row) for row in rows))
    if any(all(row[t][0] > 0 for row in rows) for t in shared):
        return REPRODUCED
    if all(high < margin for row in rows for _, high in row.values()):
        return CONTRADICTED
    return INCONCLUSIVE


def seeds_to_decide(mean: float, std: float, margin: float, level: float, target_power: float = POWER,
                    most: int = 500) -> int | float | None:
    """Planning only: the seeds of a fixed design (one look at `level` per side) that decide a cell
    with `target_power` if its true difference were the observed mean at the observed spread: the test
    whose null is farther from the mean (superiority, H0: <= 0, or non-superiority, H0: >= margin).
    NaN when the spread is unknown (one pair): no figure, rather than "more than `most`"; None beyond `most`."""
    if not (math.isfinite(mean) and math.isfinite(std)):
        return math.nan
    return seeds_needed(std, max(mean, margin - mean), level, target_power, most, sides=1)


def seed_improvement(rows: Sequence[Mapping[int, tuple[float, float]]]) -> np.ndarray:
    """rows x seeds matrix of paired improvements: per row (task) and seed, 1 when the treatment's
    run beats the control's of that seed, 0.5 on a tie, 0 when it loses, NaN where the row lacks the
    seed. Columns: the sorted union of the rows' seeds."""
    seeds = sorted({s for row in rows for s in row})
    out = np.full((len(rows), len(seeds)), np.nan)
    for i, row in enumerate(rows):
        for j, s in enumerate(seeds):
            if s in row:
                x, y = row[s]
                out[i, j] = 1.0 if x > y else 0.0 if x < y else 0.5
    return out


def paired_improvement_probability(wins: np.ndarray) -> float:
    """P(improvement) paired by seed: each row's share of seeds improved, averaged over the rows."""
    if wins.size == 0 or np.isnan(wins).all():
        return math.nan
    return float(np.nanmean(np.nanmean(wins, axis=1)))


def seed_bootstrap(wins: np.ndarray, reps: int = 2000, confidence: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile interval of `paired_improvement_probability`, resampling seeds with replacement,
    one draw for every row at once: rows that share a seed share its runs and its data draw, so they
    are resampled together, not as if independent."""
    if wins.size == 0 or np.isnan(wins).all():
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    drawn = wins[:, rng.integers(0, wins.shape[1], (reps, wins.shape[1]))]  # rows x reps x seeds
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a resample may miss every seed of a row
        draws = np.nanmean(np.nanmean(drawn, axis=2), axis=0)
    draws = draws[np.isfinite(draws)]
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(draws, [tail, 100 - tail])
    return float(low), float(high)


def separation(wins: np.ndarray) -> str:
    """'all' when every seed of every row improves, 'none' when none does, 'rows' when each row's seeds
    all go one way (the rows differ), '' otherwise: complete separation, where resampling seeds cannot
    move the estimate and an interval would have no width."""
    finite = wins[np.isfinite(wins)]
    if finite.size == 0:
        return ""
    if (finite == 1).all() or (finite == 0).all():
        return "all" if finite[0] == 1 else "none"
    rows = [row[np.isfinite(row)] for row in wins]
    return "rows" if all(r.size == 0 or (r == r[0]).all() for r in rows) else ""


def clopper_pearson_upper(k: int, n: int, confidence: float = 0.95) -> float:
    """One-sided upper confidence bound of a rate after k events in n trials (exact, Clopper-Pearson)."""
    if n <= 0:
        return math.nan
    return 1.0 if k >= n else float(_scipy_stats.beta.ppf(confidence, k + 1, n - k))


def exclusion_rate(excludes_zero: Sequence[bool]) -> float:
    """Share of an A/A control's cells whose interval excludes 0 (nominal: alpha)."""
    return float(np.mean(excludes_zero)) if len(excludes_zero) else math.nan


# -- the learning-rate decision's standard errors (grporm/tuning/decisions.py) ----------------------------------
def binomial_se(p: float, n: int) -> float:
    return math.sqrt(max(p * (1 - p), 0.0) / n) if n > 0 else math.nan


def mean_binomial_se(scores: list[float], sizes: list[int]) -> float:
    """Binomial SE of the mean of k independent scores p_i on n_i validation images:
    sqrt(sum p_i (1 - p_i) / n_i) / k (each seed validates on its own draw)."""
    if not scores or any(n <= 0 for n in sizes):
        return math.nan
    return math.sqrt(sum(max(p * (1 - p), 0.0) / n for p, n in zip(scores, sizes))) / len(scores)


def paired_se(a: list[float], b: list[float]) -> float:
    """Standard error of the mean of the paired differences a_i - b_i: their sample std (k - 1) / sqrt(k)."""
    diffs = [x - y for x, y in zip(a, b)]
    k = len(diffs)
    if k < 2:
        return math.nan
    mean = sum(diffs) / k
    return math.sqrt(sum((d - mean) ** 2 for d in diffs) / (k - 1) / k)
