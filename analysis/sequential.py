"""Seeds until decided: the levels of a verdict that is looked at after every batch of seeds, and a
simulation that shows its error rates (docs/method.md, 'The verdict's rules'). numpy and scipy only.

The procedure: a design starts with n0 seeds per cell (the smallest count of the experiment's
matrix), looks, and adds `batch` seeds to the arms whose cells are still undecided, up to `max_seeds`
(VerdictConfig). The looks are at n0, n0 + batch, ..., and at max_seeds. Look k spends the level
alpha * (f(t_k) - f(t_{k-1})) of an alpha-spending function f (t = seeds / max_seeds, Lan & DeMets
1983; Jennison & Turnbull 2000, ch. 7), and the tests of all looks are joined by the union bound
(Bonferroni over looks): a cell's error over every look is at most the sum of its looks' levels,
alpha, whatever the correlation between looks, whichever look it stops at and whatever rule stops it.
No look schedule is needed in advance beyond (n0, batch, max_seeds). With max_seeds null the design
is fixed: one look at the full alpha.

Interface (for `grporm run --until-decided` and the verdict):

- `looks(n0, batch, max_seeds) -> tuple[int, ...]`: the seed counts at which the verdict looks;
- `look_index(n_seeds, n0, batch, max_seeds) -> int`: the look a cell with n_seeds seeds is at;
- `look_level(n_seeds, n0, batch, max_seeds, alpha) -> float`: the level that look spends (before the
  split over the row's treatments, which analysis/verdict.py makes: alpha_look / m per side);
- `is_last_look(n_seeds, n0, batch, max_seeds) -> bool`: no seeds can be added to a cell any more;
- `simulate(...)`, `simulation_table(...)`: the error rates under repeated looks by simulation;
  `python -m grporm.analysis.simulate` (make simulate) prints the table of docs/method.md.

The verdict frame (analysis/verdict.py, `verdict_frame`) carries per cell `decided` (its word can no
longer change its claim: the claim is decided, or the cell is ahead, or below the margin) and
`last_look`; `analysis.verdict.undecided_treatments(frame)` names the (experiment, treatment) pairs
whose cells still need seeds.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
from scipy import stats as _stats

from grporm.stats import ALPHA, seeds_needed


# -- alpha-spending functions: f(t) for t in [0, 1], f(0) = 0, f(1) = 1, increasing ------------------
def _pocock(t: float, alpha: float) -> float:
    """Lan-DeMets Pocock type: spends evenly, so a large effect decides at an early look."""
    return math.log(1 + (math.e - 1) * t)


def _obrien_fleming(t: float, alpha: float) -> float:
    """Lan-DeMets O'Brien-Fleming type: spends almost nothing early, nearly all of alpha at the cap."""
    if t <= 0:
        return 0.0
    z = _stats.norm.isf(alpha / 2)
    return float(2 * _stats.norm.sf(z / math.sqrt(t))) / alpha


SPENDING: dict[str, Callable[[float, float], float]] = {"pocock": _pocock, "obrien_fleming": _obrien_fleming}
# O'Brien-Fleming type: under the union bound it keeps nearly the power of a fixed design at the cap
# and still stops early at a clear effect; Pocock type stops earlier at a large effect but loses power
# at a moderate one, needing more runs than the fixed design of the same power (the simulation table,
# docs/method.md, shows both).
DEFAULT_SPENDING = "obrien_fleming"


def looks(n0: int, batch: int, max_seeds: int | None) -> tuple[int, ...]:
    """Seed counts at which the verdict looks: n0, n0 + batch, ... below max_seeds, then max_seeds
    (a smaller last batch when the cap is off the grid); (n0,) for a fixed design or a cap at or
    below n0 (the cap never removes seeds the design has)."""
    if n0 < 1 or batch < 1:
        raise ValueError(f"n0 and batch must be at least 1 (got n0={n0}, batch={batch})")
    if max_seeds is None or max_seeds <= n0:
        return (n0,)
    return tuple(range(n0, max_seeds, batch)) + (max_seeds,)


def look_index(n_seeds: int, n0: int, batch: int, max_seeds: int | None) -> int:
    """The look (0-based) of a cell with n_seeds seeds: the last scheduled look at or below n_seeds
    (fewer than n0 seeds, e.g. a failed run: the first look; more than the cap: the last)."""
    schedule = looks(n0, batch, max_seeds)
    return max(0, sum(1 for n in schedule if n <= n_seeds) - 1)


def spent(schedule: Sequence[int], alpha: float = ALPHA, spending: str = DEFAULT_SPENDING) -> tuple[float, ...]:
    """The level each look of `schedule` spends: alpha (f(t_k) - f(t_{k-1})), t_k = n_k / n_last;
    they sum to alpha."""
    f = SPENDING[spending]
    cap = schedule[-1]
    cumulative = [alpha * f(n / cap, alpha) for n in schedule]
    cumulative[-1] = alpha  # f(1) = 1 exactly, without rounding
    return tuple(c - p for c, p in zip(cumulative, [0.0, *cumulative[:-1]]))


def look_level(n_seeds: int, n0: int, batch: int, max_seeds: int | None, alpha: float = ALPHA,
               spending: str = DEFAULT_SPENDING) -> float:
    """The level the look of a cell with n_seeds seeds spends (full alpha for a fixed design)."""
    schedule = looks(n0, batch, max_seeds)
    return spent(schedule, alpha, spending)[look_index(n_seeds, n0, batch, max_seeds)]


def is_last_look(n_seeds: int, n0: int, batch: int, max_seeds: int | None) -> bool:
    return look_index(n_seeds, n0, batch, max_seeds) == len(looks(n0, batch, max_seeds)) - 1


# -- simulation ----------------------------------------------------------------------------------------
def _bounds(cum: np.ndarray, cum2: np.ndarray, n: int, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper bounds, each side at `level`, of the mean of the first n differences."""
    mean = cum / n
    var = np.maximum(cum2 - n * mean ** 2, 0.0) / (n - 1)
    half = _stats.t.isf(level, n - 1) * np.sqrt(var / n)
    return mean - half, mean + half


def simulate(deltas: Sequence[float], sigma: float = 2.0, margin: float = 1.0, n0: int = 5, batch: int = 2,
             max_seeds: int | None = 20, alpha: float = ALPHA, reps: int = 2000, seed: int = 0,
             spending: str | None = DEFAULT_SPENDING) -> dict[str, float]:
    """`reps` synthetic rows of one claim: m = len(deltas) treatments against one control, paired
    differences normal with means `deltas` and standard deviation sigma, correlated 0.5 (the control's
    run is shared); the rule of analysis/verdict.py (Bonferroni over the m treatments, each side at
    alpha_look / m) at every look; an arm stops when its cell is ahead or below the margin, the row
    when its claim is decided. spending=None: the naive procedure, full alpha at every look.
    Returns the rates of each claim word, the mean seeds of the control (the row's most) and the
    mean runs (control plus treatments)."""
    m = len(deltas)
    schedule = looks(n0, batch, max_seeds)
    levels = spent(schedule, alpha, spending) if spending else (alpha,) * len(schedule)
    rng = np.random.default_rng(seed)
    cap = schedule[-1]
    shared = rng.normal(0.0, sigma / math.sqrt(2), (reps, 1, cap))
    diffs = np.asarray(deltas, float)[None, :, None] + rng.normal(0.0, sigma / math.sqrt(2), (reps, m, cap)) - shared
    cum, cum2 = np.cumsum(diffs, axis=2), np.cumsum(diffs ** 2, axis=2)
    low, high = np.full((reps, m), -np.inf), np.full((reps, m), np.inf)
    seeds = np.zeros((reps, m), dtype=int)
    active = np.ones((reps, m), dtype=bool)
    done = np.zeros(reps, dtype=bool)
    control = np.zeros(reps, dtype=int)
    for n, level in zip(schedule, levels):
        look = active & ~done[:, None]
        lo, hi = _bounds(cum[:, :, n - 1], cum2[:, :, n - 1], n, level / m)
        low, high = np.where(look, lo, low), np.where(look, hi, high)
        seeds = np.where(look, n, seeds)
        control = np.where(look.any(axis=1), n, control)
        reproduced, contradicted = (low > 0).any(axis=1), (high < margin).all(axis=1)
        done |= reproduced | contradicted
        active &= ~((low > 0) | (high < margin))
    reproduced = (low > 0).any(axis=1)
    contradicted = ~reproduced & (high < margin).all(axis=1)
    return {"reproduced": float(reproduced.mean()), "contradicted": float(contradicted.mean()),
            "inconclusive": float((~reproduced & ~contradicted).mean()), "seeds": float(control.mean()),
            "runs": float((control + seeds.sum(axis=1)).mean())}


# (name, the treatments' true differences in units of the margin): at Δ = 0 *reproduced* is the error,
# at Δ = δ *contradicted* is; elsewhere the rates are power
SCENARIOS = (("no effect (Δ = 0)", (0.0, 0.0, 0.0)),
             ("one at the margin (Δ = δ)", (1.0, 0.0, 0.0)),
             ("all at the margin (Δ = δ)", (1.0, 1.0, 1.0)),
             ("one improves (Δ = 2δ)", (2.0, 0.0, 0.0)),
             ("one improves (Δ = 3δ)", (3.0, 0.0, 0.0)),
             ("all behind (Δ = −3δ)", (-3.0, -3.0, -3.0)))


def simulation_rows(reps: int = 2000, sigma: float = 2.0, margin: float = 1.0, n0: int = 5, batch: int = 2,
                    max_seeds: int = 20, alpha: float = ALPHA, seed: int = 0) -> list[list[str]]:
    """The simulation table's rows: per scenario and procedure, the rate of each claim word, the mean
    seeds and runs, and the fixed design of the same power (for the scenarios where a treatment improves)."""
    rows = []
    for i, (name, units) in enumerate(SCENARIOS):
        deltas = [u * margin for u in units]
        for procedure in (DEFAULT_SPENDING, *(k for k in SPENDING if k != DEFAULT_SPENDING), None):
            out = simulate(deltas, sigma, margin, n0, batch, max_seeds, alpha, reps, seed + i, procedure)
            fixed = "—"
            if max(deltas) > margin and out["reproduced"] > 0:
                # one look at α/m per side, the power the sequential procedure reached
                n = seeds_needed(sigma, max(deltas), alpha / len(deltas), out["reproduced"], sides=1)
                fixed = "—" if n is None else f"{n} seeds, {n * (len(deltas) + 1)} runs"
            rows.append([name, procedure or "naive (full α at every look)", f"{out['reproduced']:.3f}",
                         f"{out['contradicted']:.3f}", f"{out['inconclusive']:.3f}", f"{out['seeds']:.1f}",
                         f"{out['runs']:.1f}", fixed])
    return rows


def simulation_table(reps: int = 2000, **settings) -> str:
    """The simulation as a Markdown table with its settings (make simulate)."""
    sigma, margin = settings.get("sigma", 2.0), settings.get("margin", 1.0)
    n0, batch, cap = settings.get("n0", 5), settings.get("batch", 2), settings.get("max_seeds", 20)
    alpha = settings.get("alpha", ALPHA)
    header = ["Scenario", "Levels", "Reproduced", "Contradicted", "Inconclusive", "Mean seeds", "Mean runs",
              "Fixed design of the same power"]
    lines = [f"{reps} synthetic rows per scenario: m = 3 treatments against one control, paired differences "
             f"normal (σ = {sigma:g} points, correlated 0.5 through the shared control run), δ = {margin:g}, "
             f"n0 = {n0}, batch {batch}, cap {cap} (looks at {', '.join(map(str, looks(n0, batch, cap)))}), "
             f"α = {alpha:g}.", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in simulation_rows(reps, **settings)]
    return "\n".join(lines) + "\n"


def looks_lines(document: dict) -> list[str]:
    """A search's looks.json (grporm/plan/sequential_runner.py) in words: the looks and their levels, the claims'
    words at each, the seeds per row and arm at the last, CPU-minutes per decided claim. Shown at the
    end of `grporm run --until-decided` and in the experiment's report."""
    design, made = document.get("design") or {}, document.get("looks") or []
    counts = list(design.get("counts") or [])[:len(made)]
    stopped = {"decided": "every primary claim decided", "cap": "stopped at the cap with claims undecided",
               "no verdict": "no verdict (no control with a treatment)"}.get(document.get("stopped"), "still running")
    out = [f"{document.get('experiment')}: {len(made)} look(s) at {', '.join(str(n) for n in counts)} seeds per cell "
           f"(batch {design.get('batch')}, cap {design.get('max_seeds')}); {stopped}"]
    for i, look in enumerate(made):
        level = f" (α {look['level']:.3g})" if look.get("level") is not None else ""
        claims = ", ".join(f"{c} {w}" for c, w in (look.get("claims") or {}).items()) or "no claim"
        out.append(f"  look {i}{level}: {claims}; undecided: {', '.join(look.get('undecided') or []) or 'none'}; "
                   f"{float(look.get('cpu_minutes') or 0):.1f} CPU-minutes so far")
    if made:
        last = made[-1]
        for row, arms in (last.get("seeds_per_row") or {}).items():
            out.append(f"  seeds, {row}: " + ", ".join(f"{arm} {n}" for arm, n in arms.items()))
        claims = last.get("claims") or {}
        decided = [c for c, w in claims.items() if w != "inconclusive"]
        minutes = float(last.get("cpu_minutes") or 0)
        per = f"{minutes / len(decided):.1f} CPU-minutes per decided claim" if decided else "no claim decided"
        out.append(f"  {len(decided)} of {len(claims)} primary claim(s) decided; {minutes:.1f} CPU-minutes in all, {per}")
    return out
