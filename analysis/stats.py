"""Statistics over seeds: mean ± std, and GRPO-RM minus CE paired by seed with a t confidence interval."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Mapping

from scipy import stats as _scipy_stats

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
