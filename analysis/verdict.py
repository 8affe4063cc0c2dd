"""The verdict of every experiment with a control: each treatment (arm, or method without an arm axis)
against the control, paired by seed and every other shared axis, claim by claim, under the rules of
analysis/inference.py: bounds at the look's level (analysis/sequential.py) split over the row's
treatments (Bonferroni), cell words read off the bounds, claim words at the declared margin δ, the
probability of improvement paired by seed, the A/A rate with its upper bound.

An experiment states its comparison in its YAML (`verdict:`, grporm.config.VerdictConfig), stored in
each run's record; without one the default rule applies: the control is the arm or method named
`ce`, else the one arm whose method is CE (grporm/plan/declaration.py), every other fine-tuned arm or
method is a treatment, every metric the runs recorded is a row.
Inputs are the records alone (`RunSet`); `verdict_frame` is the one table every output is made from.

For `grporm run --until-decided`: the frame's `decided` column (per cell: its word can no longer change
its claim) and `last_look` (no seeds can be added: a fixed design, or the cap reached);
`undecided_treatments(frame)` -> {(experiment, treatment)} whose cells still need seeds, and
`undecided_cells(frame)` the same per row. The first look n0 of an experiment with `max_seeds` is
`comparisons(..., first_seeds={experiment: n0})`, else the declaration's `first_seeds` when it has
one, else the fewest seeds of any of the experiment's cells (exact while every arm has its design's
seeds, or one cell still has them).
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from pydantic import ValidationError

import grporm.analysis.inference as inf
import grporm.analysis.sequential as seq
from grporm.analysis.records import ID_COLUMNS, RunSet, check_results_folder, load_history, load_runs, metric_columns
from grporm.analysis.render import file_links, frame_csv, latex_grid, markdown_grid
from grporm.analysis.sections import SHOT_GROUPS, Column, run_values
from grporm.analysis.stats import paired_difference
from grporm.config import Claim, RunConfig, VerdictConfig
from grporm.errors import GrpormError
from grporm.plan.declaration import ambiguous, default_control, trains
from grporm.plan.measures import MEASURES, claim_title, measure_problem, split

NAME = "verdict"
TITLE = "Verdict: every comparison with its control"
ARM, METHOD = "arm", "method"
PICK_AXIS = "tune.pick"     # a runner-up run's axis (grporm/plan/experiment.py)
RUNNER_UP = "runner_up"
SCALE = 100.0               # every measure is a fraction: shown in points
SHAKY = "‡"
BOOTSTRAP_REPS = 2000
# Columns the forest plot and the Python API read: keep their names. Points throughout. p: one-sided,
# in the direction of the mean (the word's test); p_margin: the non-superiority test's (H0: diff >= δ);
# level: each side's level (alpha_look / family); ci_low, ci_high: the bounds at that level, the
# interval the word is read from; detectable, seeds_needed: planning only, they decide nothing.
FRAME_COLUMNS = ("experiment", "claim", "primary", "measure", "dataset", "backbone", "axes", "treatment", "role",
                 "control", "n", "diff", "ci_low", "ci_high", "p", "p_margin", "level", "alpha_look", "family", "look",
                 "last_look", "margin", "word", "below_margin", "decided", "row_upper", "detectable", "power_target",
                 "seeds_needed", "close_call", "edge", "runner_up_word", "no_rerun", "claim_word", "runs", "evidence")
DEFAULT = VerdictConfig()
ROLE_MARK = {"aa": " (A/A)", "reference": " (reference)"}  # how the arms that are no treatment are named


@dataclass
class Comparison:
    """One experiment's verdict: rows (FRAME_COLUMNS), the aggregate per treatment, notes."""

    experiment: str
    declaration: VerdictConfig
    declared: bool
    axis: str
    frame: pd.DataFrame
    aggregate: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


# -- reading the records -----------------------------------------------------------------------------
def _pick(record: dict) -> str:
    return ((record.get("tuning") or {}).get("pick")) or "winner"


def declaration(run_set: RunSet, paths) -> tuple[VerdictConfig, bool, list[str]]:
    """The experiment's declaration from its records: the latest finished run's, where any has one;
    (declaration, declared?, notes). A declaration without a control gets the default one
    (grporm/plan/declaration.py: the arm named `ce`, else the one CE arm); None when that is ambiguous (the
    notes say why)."""
    found: dict[str, tuple[str, dict]] = {}
    for path in paths:
        record = run_set.records.get(path) or {}
        stated = (record.get("config") or {}).get("verdict") if isinstance(record.get("config"), dict) else None
        if stated is not None:
            key = json.dumps(stated, sort_keys=True)
            stamp = str(record.get("finished_at") or "")
            if key not in found or stamp > found[key][0]:
                found[key] = (stamp, stated)
    stated, declared, notes = None, False, []
    if found:
        stamp, stated = max(found.values(), key=lambda item: item[0])
        notes = [f"The runs' records hold {len(found)} different `verdict:` declarations: the latest finished "
                 "run's is used."] if len(found) > 1 else []
    try:
        out = VerdictConfig.from_stored(stated) if stated is not None else DEFAULT
        declared = stated is not None
    except ValidationError as err:
        out = DEFAULT
        notes += [f"The stored `verdict:` declaration is invalid ({err.errors()[0]['msg']}); the default rule is used."]
    if out.control is None:
        runs = run_set.runs[run_set.runs["path"].isin(set(paths))] if not run_set.runs.empty else run_set.runs
        found_candidates, axis = candidates(runs)
        control = default_control(found_candidates)
        why = ambiguous(found_candidates, axis)
        where = f"`{runs['experiment'].iloc[0]}`: " if not runs.empty else ""
        notes += [f"{where}{why}; no verdict."] if why else []
        out = out.model_copy(update={"control": control})
    return out, declared, notes


def candidates(runs: pd.DataFrame) -> tuple[dict[str, set[str]], str]:
    """{arm (or method): its methods} of the runs that train, and the axis (the records' side of
    grporm.plan.declaration.candidates_of)."""
    axis = _axis(runs) if not runs.empty else METHOD
    out: dict[str, set[str]] = {}
    for _, run in runs.iterrows():
        if trains(str(run["method"])):
            out.setdefault("" if _blank(run[axis]) else str(run[axis]), set()).add(str(run["method"]))
    return out, axis


def _axis(runs: pd.DataFrame) -> str:
    has_arm = ARM in runs.columns and runs[ARM].fillna("").astype(str).ne("").any()
    return ARM if has_arm else METHOD


def _blank(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value == ""


class _Values:
    """Per-run values of measures, history.csv read once per run."""

    def __init__(self, run_set: RunSet):
        self.run_set = run_set
        self.histories: dict[str, pd.DataFrame | None] = {}

    def history(self, path: str) -> pd.DataFrame | None:
        if path not in self.histories:
            self.histories[path] = load_history(path)
        return self.histories[path]

    def of(self, spec: str, paths) -> pd.Series:
        name, condition = split(spec)
        measure = MEASURES.get(name)
        if measure.family == "history":
            out = {}
            for path in paths:
                history = self.history(path)
                if history is not None and measure.metric in history and (history["epoch"] == 1).any():
                    value = float(history.loc[history["epoch"] == 1, measure.metric].iloc[0])
                    if math.isfinite(value):
                        out[path] = value
            return pd.Series(out, dtype=float)
        metrics = self.run_set.metrics
        metrics = metrics[metrics["path"].isin(set(paths))]
        return run_values(metrics, Column("", "", measure.family, measure.metric, condition))

    def recorded(self, paths) -> list[str]:
        """The default rows: every measure the runs recorded (clean head/SR/kNN@20, convergence,
        OOD mean, transfer per target, imbalance per shot group, mIoU), SR for the shifted sets."""
        metrics = self.run_set.metrics
        metrics = metrics[metrics["path"].isin(set(paths))]
        present = set(zip(metrics["family"], metrics["metric"]))
        specs = [p for p in ("sr", "knn20", "head") if ("clean", MEASURES.get(p).metric) in present]
        specs += [s for s in ("first_epoch_knn20",) if not self.of(s, paths).empty]
        sr = MEASURES.get("sr").metric
        if ("ood", sr) in present:
            specs.append("ood_sr")
        shifted = metrics[metrics["metric"] == sr]
        specs += [f"transfer_sr/{t}" for t in sorted(set(shifted.loc[shifted["family"] == "transfer", "condition"]))]
        groups = set(shifted.loc[shifted["family"] == "imbalance", "condition"])
        specs += [f"imbalance_sr/{g}" for g in [g for g in SHOT_GROUPS if g in groups] + sorted(groups - set(SHOT_GROUPS))]
        specs += ["miou"] if ("seg", "miou") in present else []
        return specs


# -- one experiment ------------------------------------------------------------------------------------
def _by_seed(runs: pd.DataFrame, values: pd.Series) -> dict[int, float]:
    out: dict[int, list[float]] = {}
    for path, seed in zip(runs["path"], runs["seed"]):
        if path in values.index and math.isfinite(float(values[path])):
            out.setdefault(int(seed), []).append(float(values[path]))
    return {seed: sum(v) / len(v) for seed, v in out.items()}


def _flag(run_set: RunSet, runs: pd.DataFrame, key: str) -> bool:
    """Did any of these runs train at a decision flagged `key` (close_call, edge)?"""
    return any(bool(((run_set.records.get(p) or {}).get("tuning") or {}).get(key)) for p in runs["path"])


def first_look(runs: pd.DataFrame, keys: list[str], declared: VerdictConfig, first_seeds: int | None = None) -> int:
    """n0, the seeds of the first look: given, or the declaration's `first_seeds` where it has one, or
    the fewest seeds of any cell (arm x data set x backbone x shared axes) at its winner."""
    stated = first_seeds if first_seeds is not None else getattr(declared, "first_seeds", None)
    if stated is not None:
        return int(stated)
    winners = runs[runs["_pick"] != RUNNER_UP]
    counts = winners.groupby([*keys, "_who"], dropna=False)["seed"].nunique() if len(winners) else pd.Series(dtype=int)
    return max(1, int(counts.min())) if len(counts) else 1


def compare_experiment(run_set: RunSet, experiment: str, values: _Values, first_seeds: int | None = None) -> Comparison:
    """The verdict of one experiment, or a Comparison with an empty frame and the reason in notes."""
    runs = run_set.runs[run_set.runs["experiment"] == experiment]
    declared, is_declared, notes = declaration(run_set, runs["path"])
    axis = _axis(runs)
    runs = runs[runs["method"].map(trains)]  # pretrained rows are neither control nor treatment
    picks = runs["path"].map(lambda p: _pick(run_set.records.get(p) or {}))
    runs = runs.assign(_pick=picks.values, _who=runs[axis].fillna("").astype(str).values)
    empty = pd.DataFrame(columns=list(FRAME_COLUMNS))
    control_runs = runs[runs["_who"] == declared.control]
    if not declared.compare:  # declared to compare nothing (a noise floor): no verdict, nothing to say
        return Comparison(experiment, declared, is_declared, axis, empty)
    if declared.control is None:  # no default control: the notes say why
        return Comparison(experiment, declared, is_declared, axis, empty, notes=notes)
    if control_runs.empty:
        where = "arm" if axis == ARM else "method"
        return Comparison(experiment, declared, is_declared, axis, empty, notes=notes + [
            f"`{experiment}`: no {where} named `{declared.control}` (the control) among its finished runs; no verdict."])
    skip = {axis, PICK_AXIS, "seed"}
    axes = [c for c in runs.columns if c not in skip and c in _axis_columns(run_set)]
    shared = [c for c in axes if control_runs[c].map(lambda v: not _blank(v)).all()]
    nested = [c for c in axes if c not in shared]
    if nested:  # an axis only the treatments have: part of the treatment's name
        runs = runs.assign(_who=[who if role_of(who, declared) == "control" else
                                 who + "".join(f", {c}={row[c]}" for c in nested if not _blank(row[c]))
                                 for who, (_, row) in zip(runs["_who"], runs.iterrows())])
    keys = ["dataset", "backbone", *shared]
    schedule = (first_look(runs, keys, declared, first_seeds), declared.batch, declared.max_seeds)
    claims = declared.claims or [Claim(name=claim_title(s), measure=s) for s in values.recorded(runs["path"])]
    lines: list[dict] = []
    for claim in claims:
        problem = measure_problem(claim.measure)
        if problem is not None:
            notes.append(f"`{experiment}` claim {claim.name}: {problem}; not judged.")
            continue
        value = values.of(claim.measure, runs["path"])
        for key, group in runs.groupby(keys, sort=True, dropna=False):
            lines += _row_lines(run_set, experiment, claim, dict(zip(keys, key)), shared, group, value, declared, schedule)
    frame = pd.DataFrame(lines, columns=list(FRAME_COLUMNS)) if lines else empty
    if frame.empty:
        notes.append(f"`{experiment}`: no finished treatment shares a seed (and its other axes) with the control "
                     f"`{declared.control}`; no verdict.")
    frame = with_claim_words(frame)
    comparison = Comparison(experiment, declared, is_declared, axis, frame, notes=notes)
    comparison.aggregate = _aggregate(runs, frame, values, claims, keys, declared)
    return comparison


def evidence_key(record: dict) -> str:
    """What a run is as evidence, whichever experiment ran it: its config without the experiment's name,
    the evaluation settings and the verdict declaration (they change what is measured of a model, not
    the model), and its learning rate. Two experiments' runs with one key trained the same model on
    the same data draw: cross-study counts count them once."""
    config = dict(record.get("config") or {})
    config.pop("verdict", None)
    try:
        payload = RunConfig.from_stored(config).hash_payload()
    except (ValidationError, TypeError, ValueError):  # a record too old or too partial to validate
        payload = {k: v for k, v in config.items() if k not in ("tracking", "run_id", "axes")}
    # the record's own identity and matrix values too: a partial config may validate at defaults
    payload["identity"] = [record.get(k) for k in ("dataset", "backbone", "method", "seed")]
    payload["matrix"] = {k: v for k, v in (record.get("axes") or {}).items() if k != "seed"}
    payload.pop("experiment", None)
    payload.pop("eval", None)
    text = json.dumps([payload, record.get("lr")], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _axis_columns(run_set: RunSet) -> set[str]:
    """The matrix axes of the runs (the columns `load_runs` adds beside its fixed ones)."""
    fixed = set(ID_COLUMNS) | set(metric_columns(run_set.knn_ks))
    return {c for c in run_set.runs.columns if c not in fixed}


def role_of(who: str, declared: VerdictConfig, method: str | None = None, control_method: str | None = None) -> str:
    """control, aa (a declared A/A control), reference (an arm with the control's own method, e.g. CE with
    twice the steps: a claim is about a method beating the control's, so it never reproduces one) or
    treatment."""
    if who == declared.control:
        return "control"
    if who.split(",")[0] in declared.aa:
        return "aa"
    return "reference" if method is not None and method == control_method else "treatment"


def _levels(n: int, family: int, schedule: tuple[int, int, int | None]) -> tuple[float, float, int, bool]:
    """(each side's level, the look's alpha, look number from 1, last look?) of a cell of n seeds in a
    family of `family` treatments (Bonferroni)."""
    n0, batch, cap = schedule
    alpha_look = seq.look_level(n, n0, batch, cap, inf.ALPHA)
    return alpha_look / max(1, family), alpha_look, seq.look_index(n, n0, batch, cap) + 1, seq.is_last_look(n, n0, batch, cap)


def _judged(cell, level: float, margin: float) -> dict:
    """A cell's numbers at `level` per side, in points: bounds, word, p of the word's test, the margin test."""
    mean, std = SCALE * cell.mean, SCALE * cell.std
    low, high = inf.bounds(mean, std, cell.n, level)
    return {"diff": mean, "ci_low": low, "ci_high": high, "word": inf.cell_word(low, high),
            "p": inf.one_sided_p(mean, std, cell.n, 0.0, above=mean >= 0),
            "p_margin": inf.one_sided_p(mean, std, cell.n, margin, above=False),
            "below_margin": inf.below_margin(high, margin)}


def _row_lines(run_set: RunSet, experiment: str, claim: Claim, key: dict, shared: list[str], group: pd.DataFrame,
               value: pd.Series, declared: VerdictConfig, schedule: tuple[int, int, int | None]) -> list[dict]:
    """The lines of one row (claim x data set x backbone x shared axes), one per treatment and A/A arm."""
    winners, runner_ups = group[group["_pick"] != RUNNER_UP], group[group["_pick"] == RUNNER_UP]
    control, control_ru = (g[g["_who"] == declared.control] for g in (winners, runner_ups))
    base = _by_seed(control, value)
    if not base:
        return []
    # The sensitivity of a cell: each side whose own decision is a close call at its runner-up, the
    # other side at its winner (a side whose decision is clear keeps it).
    control_close, control_edge = _flag(run_set, control, "close_call"), _flag(run_set, control, "edge")
    control_moves = control_close and not control_ru.empty
    cells = {}
    for who, runs in winners[winners["_who"] != declared.control].groupby("_who", sort=True):
        cell = paired_difference(_by_seed(runs, value), base)
        if cell.n:
            cells[who] = (cell, runs)
    if not cells:
        return []
    control_method = str(control["method"].iloc[0])
    roles = {who: role_of(who, declared, str(runs["method"].iloc[0]), control_method) for who, (_, runs) in cells.items()}
    alt = {}
    for who, (_, runs) in cells.items():
        mine_ru = runner_ups[runner_ups["_who"] == who]
        moves = _flag(run_set, runs, "close_call") and not mine_ru.empty
        if roles[who] == "aa":
            # A/A like with like: the anchor's runner-up only against the control's runner-up (a
            # learning-rate difference is no A/A failure); without both, no sensitivity cell.
            if (moves or control_moves) and not mine_ru.empty and not control_ru.empty:
                alt[who] = paired_difference(_by_seed(mine_ru, value), _by_seed(control_ru, value))
        elif moves or control_moves:
            treated = _by_seed(mine_ru if moves else runs, value)
            alt[who] = paired_difference(treated, _by_seed(control_ru, value) if control_moves else base)
    treatments = [w for w in cells if roles[w] == "treatment"]
    family = max(1, sum(cells[w][0].n >= 2 for w in treatments))
    margin = float(declared.margin)
    spread = [c.std ** 2 for c, _ in cells.values() if c.n >= 2 and math.isfinite(c.std)]
    std = SCALE * math.sqrt(sum(spread) / len(spread)) if spread else math.nan
    out = []
    for who, (cell, runs) in cells.items():
        aa = roles[who] != "treatment"  # an A/A control or a reference: judged alone, outside the family
        level, alpha_look, look, last = _levels(cell.n, 1 if aa else family, schedule)
        judged = _judged(cell, level, margin)
        runner_up_word = ""
        if who in alt and alt[who].n:
            other = alt[who]
            runner_up_word = _judged(other, _levels(other.n, 1 if aa else family, schedule)[0], margin)["word"]
        close = control_close or _flag(run_set, runs, "close_call")
        used = pd.concat([control[control["seed"].isin(cell.seeds)], runs[runs["seed"].isin(cell.seeds)]])
        out.append({
            "experiment": experiment, "claim": claim.name, "primary": bool(claim.primary), "measure": claim.measure,
            "dataset": str(key["dataset"]), "backbone": str(key["backbone"]),
            "axes": ", ".join(f"{k}={key[k]}" for k in shared), "treatment": who,
            "role": roles[who], "control": declared.control, "n": cell.n, **judged,
            "level": level, "alpha_look": alpha_look, "family": 1 if aa else family, "look": look, "last_look": last,
            "margin": margin, "decided": False, "row_upper": math.nan,
            # planning only: the smallest difference a fixed design of n seeds finds with 80% power at
            # the row's fixed-design level, from the row's pooled spread
            "detectable": inf.detectable(std, cell.n, inf.ALPHA / (1 if aa else family), sides=1),
            "power_target": inf.POWER,
            "seeds_needed": inf.seeds_to_decide(judged["diff"], SCALE * cell.std, margin, inf.ALPHA / (1 if aa else family))
            if cell.n >= 2 else math.nan,  # one pair: no spread to plan from
            "close_call": close, "edge": control_edge or _flag(run_set, runs, "edge"),
            "runner_up_word": runner_up_word, "no_rerun": close and who not in alt, "claim_word": "",
            "runs": tuple(sorted(zip(used["run_id"], used["config_hash"]))),
            "evidence": tuple(sorted(evidence_key(run_set.records.get(p) or {}) for p in used["path"])),
        })
    return out


ROW = ["dataset", "backbone", "axes"]


def with_claim_words(frame: pd.DataFrame) -> pd.DataFrame:
    """Per claim one word from its rows' treatment bounds at the margin (inference.claim_word); per row
    the largest upper bound of its treatments and the seeds a fixed design would need to decide it
    (planning: the most any undecided treatment cell needs); per cell `decided`."""
    if frame.empty:
        return frame
    frame = frame.copy()
    for _, lines in frame.groupby(["experiment", "claim"], sort=False):
        treated = lines[lines["role"] == "treatment"]
        rows = [dict(zip(row["treatment"], zip(row["ci_low"], row["ci_high"])))
                for _, row in treated.groupby(ROW, sort=False)]
        margin = float(lines["margin"].iloc[0])
        word = inf.claim_word(rows, margin) if len(treated) else inf.INCONCLUSIVE
        frame.loc[lines.index, "claim_word"] = word
        settled = word != inf.INCONCLUSIVE
        open_cell = (lines["role"] == "treatment") & ~((lines["word"] == inf.AHEAD) | lines["below_margin"].astype(bool))
        frame.loc[lines.index, "decided"] = ~open_cell | settled
        for _, row in lines.groupby(ROW, sort=False):
            mine = row[row["role"] == "treatment"]
            frame.loc[row.index, "row_upper"] = mine["ci_high"].max() if len(mine) else math.nan
            needed = [v for v in mine.loc[~frame.loc[mine.index, "decided"].astype(bool), "seeds_needed"]
                      if v is None or v == v]
            # NaN: nothing left to decide in the row; inf: more than 500 seeds
            frame.loc[row.index, "seeds_needed"] = (math.nan if settled or not needed else
                                                    max(math.inf if v is None else float(v) for v in needed))
    frame["decided"] = frame["decided"].astype(bool)
    frame["seeds_needed"] = frame["seeds_needed"].astype(float)
    return frame


def undecided_cells(frame: pd.DataFrame) -> pd.DataFrame:
    """The treatment cells of undecided claims that still need seeds and can get them (not at their
    last look): the lines of the frame."""
    if frame.empty:
        return frame
    return frame[(frame["role"] == "treatment") & ~frame["decided"].astype(bool) & ~frame["last_look"].astype(bool)]


def undecided_treatments(frame: pd.DataFrame) -> set[tuple[str, str]]:
    """{(experiment, treatment)} whose cells in an undecided claim still need seeds (what
    `grporm run --until-decided` adds a batch of seeds to, with the control of their rows). A
    treatment is its arm's (or method's) name, then ', axis=value' for an axis only treatments have."""
    cells = undecided_cells(frame)
    return set(zip(cells["experiment"], cells["treatment"])) if len(cells) else set()


def _aggregate(runs: pd.DataFrame, frame: pd.DataFrame, values: _Values, claims, keys, declared) -> list[dict]:
    """Per treatment: the probability of improvement over the control paired by seed (the share of seeds
    whose treatment run beats the control's, ties half), averaged over the rows it has (tasks), with a
    95% bootstrap interval that resamples seeds jointly over the rows (winner runs); complete
    separation (every seed one way) is named instead of given an interval without width."""
    if frame.empty:
        return []
    winners = runs[runs["_pick"] != RUNNER_UP]
    tasks: dict[str, list[dict[int, tuple[float, float]]]] = {}
    for claim in claims:
        if measure_problem(claim.measure) is not None:
            continue
        value = values.of(claim.measure, winners["path"])
        for _, group in winners.groupby(keys, sort=True, dropna=False):
            base = _by_seed(group[group["_who"] == declared.control], value)
            if not base:
                continue
            for who, mine in group[group["_who"] != declared.control].groupby("_who", sort=True):
                treated = _by_seed(mine, value)
                pairs = {s: (treated[s], base[s]) for s in treated if s in base}
                if pairs:
                    tasks.setdefault(who, []).append(pairs)
    out = []
    for who, task in sorted(tasks.items()):
        wins = inf.seed_improvement(task)
        split_ = inf.separation(wins)
        low, high = (math.nan, math.nan) if split_ else inf.seed_bootstrap(wins, reps=BOOTSTRAP_REPS)
        role = frame.loc[frame["treatment"] == who, "role"]
        out.append({"experiment": frame["experiment"].iloc[0], "treatment": who,
                    "role": role.iloc[0] if len(role) else role_of(who, declared),
                    "probability": inf.paired_improvement_probability(wins), "ci_low": low, "ci_high": high,
                    "tasks": len(task), "seeds": wins.shape[1], "separation": split_})
    return out


# -- every experiment ----------------------------------------------------------------------------------
def comparisons(run_set: RunSet, first_seeds: dict[str, int] | None = None) -> list[Comparison]:
    """Every experiment's verdict; `first_seeds`: {experiment: n0} of experiments whose first look is
    known (seeds until decided), else as `first_look` finds it."""
    if run_set.runs.empty:
        return []
    values = _Values(run_set)
    return [c for e in sorted(set(run_set.runs["experiment"]))
            if (c := compare_experiment(run_set, e, values, (first_seeds or {}).get(e)))]


def verdict_frame(run_set: RunSet, first_seeds: dict[str, int] | None = None) -> pd.DataFrame:
    """One row per (experiment, claim, data set/backbone/other axes, treatment or A/A arm): differences
    and bounds in points at the cell's level (the look's alpha over the row's treatments), the word,
    the margin test, decided, the row's largest upper bound and (planning) the seeds a fixed design
    would need, the close-call flag and runner-up word, the claim's word, and the runs (run id, config
    hash) and their evidence keys behind the line (FRAME_COLUMNS)."""
    frames = [c.frame for c in comparisons(run_set, first_seeds) if not c.frame.empty]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(FRAME_COLUMNS))


def merged(folders: list[Path]) -> RunSet:
    """The finished runs of several results folders as one RunSet, the one rule of `grporm compare` and
    `grporm.verdict`: an experiment found in more than one folder is kept apart, named
    `<folder>/<experiment>`; within a folder a run finished twice counts once (the other is in
    `excluded`, see `dropped`); overlapping folders (`A` and `A/sub`) are refused, they would count the
    same runs twice."""
    folders = [Path(f) for f in folders]
    for folder in folders:
        check_results_folder(folder)
    resolved = [f.resolve() for f in folders]
    if len(set(resolved)) != len(folders):
        raise GrpormError("a results folder is given twice; give each once")
    for inner, inner_path in zip(folders, resolved):
        for outer, outer_path in zip(folders, resolved):
            if inner_path != outer_path and inner_path.is_relative_to(outer_path):
                raise GrpormError(f"results folder {inner} lies inside {outer}: its runs would count twice; give only {outer}")
    sets = [(str(f), load_runs(f)) for f in folders]
    seen: dict[str, int] = {}
    for _, s in sets:
        for e in set(s.runs["experiment"]) if not s.runs.empty else ():
            seen[e] = seen.get(e, 0) + 1
    runs, metrics, records, excluded = [], [], {}, []
    for label, s in sets:
        rename = {e: f"{label.rstrip('/')}/{e}" for e, count in seen.items() if count > 1}
        if not s.runs.empty:
            runs.append(s.runs.assign(experiment=s.runs["experiment"].replace(rename)))
            metrics.append(s.metrics.assign(experiment=s.metrics["experiment"].replace(rename)))
        records.update(s.records)
        excluded += s.excluded
    if not runs:
        return RunSet(runs=pd.DataFrame(), excluded=excluded)
    knn_ks = tuple(sorted({k for _, s in sets for k in s.knn_ks}))
    return RunSet(runs=pd.concat(runs, ignore_index=True), excluded=excluded,
                  metrics=pd.concat(metrics, ignore_index=True), records=records,
                  roots=tuple(Path(f) for f in folders), knn_ks=knn_ks)


def dropped(run_set: RunSet) -> list[str]:
    """One line per run left out as a duplicate of another (same config and seed), to say so."""
    return [f"{path}: {reason}" for path, reason in run_set.excluded if reason.startswith("duplicate of run")]


# -- rendering -----------------------------------------------------------------------------------------
def _signed(value: float) -> str:
    return f"{value:+.1f}".replace("-", "−")


def _p(value: float) -> str:
    return "—" if not math.isfinite(value) else "<0.001" if value < 0.001 else f"{value:.3f}"


def cell_text(line) -> str:
    if line is None:
        return "not run"
    text = _signed(line["diff"])
    if math.isfinite(line["ci_low"]):
        below = ", below δ" if line["below_margin"] and line["word"] != inf.BEHIND else ""
        text += f" [{_signed(line['ci_low'])}, {_signed(line['ci_high'])}] {line['word']}{below} (p {_p(line['p'])})"
    if line["runner_up_word"]:
        text += f" (runner-up: {line['runner_up_word']})"
    return text + (f" {SHAKY}" if line["no_rerun"] else "")


def _number(value: float) -> str:
    return "—" if not math.isfinite(value) else f"{value:.1f}"


def _needed(value) -> str:
    """The planning seeds: '—' when nothing is left to decide, '> 500' beyond the search."""
    value = float(value) if value is not None else math.inf
    return "—" if math.isnan(value) else "> 500" if math.isinf(value) else str(int(value))


def _range(values, fmt: str = "{:.3g}") -> str:
    shown = list(dict.fromkeys(fmt.format(v) for v in sorted(values) if math.isfinite(v)))
    return "—" if not shown else shown[0] if len(shown) == 1 else f"{shown[0]}–{shown[-1]}"


def _columns(frame: pd.DataFrame) -> list[str]:
    return [w for role in ("treatment", "reference", "aa") for w in dict.fromkeys(frame.loc[frame["role"] == role, "treatment"])]


def _grid(c: Comparison) -> tuple[list[str], list[list[str]]]:
    frame = c.frame
    who = _columns(frame)
    keys = [k for k in ("dataset", "axes") if frame[k].nunique() > 1 or (k == "axes" and frame[k].ne("").any())]
    header = ["Claim", *[{"dataset": "Data set", "axes": "Axes"}[k] for k in keys], "Backbone", "Seeds",
              "Level (each side)", "Largest upper bound", "Seeds to decide (planning)"]
    roles = dict(zip(frame["treatment"], frame["role"]))
    header += [f"`{w}`" + ROLE_MARK.get(roles[w], "") for w in who]
    rows = []
    for (claim, *_), lines in frame.groupby(["claim", *ROW], sort=False):
        first = lines.iloc[0]
        by = {line["treatment"]: line for _, line in lines.iterrows()}
        treated = lines[lines["role"] == "treatment"]
        rows.append([claim, *[str(first[k]) for k in keys], first["backbone"], _range(lines["n"], "{:.0f}"),
                     _range(treated["level"]) if len(treated) else "—", _signed(first["row_upper"])
                     if math.isfinite(first["row_upper"]) else "—", _needed(first["seeds_needed"])]
                    + [cell_text(by.get(w)) for w in who])
    return header, rows


def _looks_text(declared: VerdictConfig) -> str:
    if declared.max_seeds is None:
        return "a fixed design (one look at the full α)"
    return (f"seeds until decided: looks after every {declared.batch} seeds up to {declared.max_seeds} per cell, α spent "
            f"over the looks by the {seq.DEFAULT_SPENDING.replace('_', '-')}-type function (union bound)")


def legend(note: str = "") -> str:
    return (
        "Each cell: the treatment (column) minus the control of its experiment, paired by seed and by every other "
        "axis the control shares (data set, backbone, matrix values), in points: mean [lower, upper bound], the word "
        "and p. **One rule for bounds and words**: each row's treatments are one family of m; each bound is a "
        "one-sided Student-t bound at level α / m (α = 5% at a fixed design's one look; with seeds until decided, the "
        "part of 5% the look spends), so the interval shown is the two-sided interval with α / m on each side "
        "(**Level**). **Word**: *ahead* when the lower bound is above 0, *behind* when the upper bound is below 0, "
        "*no difference* otherwise (never *equal*); p = the one-sided p of the test in the direction of the mean, "
        "below the Level exactly when the word is ahead or behind. *below δ*: the upper bound is below the "
        "experiment's margin δ (the smallest improvement that matters): the non-superiority test (H0: difference "
        "≥ δ) rejects. **Claim words**: *reproduced* = one treatment ahead on every row of the claim; "
        "*contradicted* = on every row every treatment's upper bound below δ (intersection-union); *inconclusive* "
        "otherwise, with the row's **largest upper bound** and **seeds to decide (planning)**: the seeds a fixed "
        "design at the row's level would need for 80% power to decide its undecided cells if their true "
        "differences were the observed ones (noncentral t; a plan, never a decision). A/A controls (A/A) and "
        "references are judged alone (m = 1), outside the family, and never decide a claim. **P(improvement)** = "
        "share of seeds whose treatment run beats the control's run of the same seed (ties half), averaged over "
        f"the rows (tasks), with a 95% bootstrap interval ({BOOTSTRAP_REPS} resamples of seeds, each drawn seed "
        "taken in every row at once, since the rows of a seed share its runs and its data draw); when every seed "
        "improves on every row (or none does), resampling cannot move it and no interval is given: the words say "
        "so. **A/A**: k of N cells whose interval excludes 0, with the one-sided 95% Clopper-Pearson upper bound "
        "of the rate. Main cells use the runs at each learning-rate decision's winner; *(runner-up: word)* = the "
        "word with the runs at the runner-up learning rate for the side(s) whose decision was a close call (an A/A "
        f"control only runner-up against runner-up); {SHAKY} = a close call and no runner-up run. *not run*: no "
        "such treatment in that row." + note)


def _aa_line(c: Comparison, arm: str) -> str:
    cells = c.frame[(c.frame["treatment"].str.split(",").str[0] == arm) & c.frame["ci_low"].map(math.isfinite)]
    if cells.empty:
        return ""
    k, n = int(cells["word"].isin([inf.AHEAD, inf.BEHIND]).sum()), len(cells)
    nominal = 2 * cells["level"].max()
    return (f"A/A `{arm}`: {k} of {n} cells excluded 0 (the rate at most {inf.clopper_pearson_upper(k, n):.0%}, "
            f"one-sided 95% Clopper-Pearson; nominal at most {nominal:.0%}, half on each side).")


def _claim_line(claim: str, lines: pd.DataFrame) -> str:
    first = lines.iloc[0]
    name, _ = split(first["measure"])
    treated = lines[lines["role"] == "treatment"]
    ahead = sorted(set(treated.loc[treated["word"] == inf.AHEAD, "treatment"]))
    text = (f"- {claim} ({'primary' if first['primary'] else 'secondary'}; `{first['measure']}`: "
            f"{MEASURES.get(name).doc}): **{first['claim_word']}**"
            + (f"; ahead somewhere: {', '.join(f'`{a}`' for a in ahead)}" if ahead else ""))
    if first["claim_word"] == inf.INCONCLUSIVE and len(treated):
        rows = lines.drop_duplicates(ROW)
        worst = rows.loc[rows["row_upper"].idxmax()] if rows["row_upper"].map(math.isfinite).any() else None
        if worst is not None:
            text += f"; largest upper bound {_signed(worst['row_upper'])} points ({_row_name(worst)}) against δ = {first['margin']:g}"
        needed = [float(v) for v in rows["seeds_needed"] if not math.isnan(float(v))]
        if needed:
            text += f"; a fixed design would need {_needed(max(needed))} seeds to decide it (planning only)"
    return text + "."


def _experiment_markdown(c: Comparison) -> list[str]:
    parts = [f"#### `{c.experiment}`", ""]
    source = "declared in its `verdict:`" if c.declared else "default rule (no `verdict:` in its records)"
    aa = ", ".join(f"`{a}`" for a in c.declaration.aa) or "none"
    parts += [f"Control: `{c.declaration.control}` ({'arm' if c.axis == ARM else 'method'}); A/A: {aa}; "
              f"margin δ = {c.declaration.margin:g} point{'s' * (c.declaration.margin != 1)}; {_looks_text(c.declaration)}; claims: {source}.", ""]
    header, rows = _grid(c)
    parts += [markdown_grid(header, rows, "l" * 2 + "r" * (len(header) - 2)).rstrip("\n"), ""]
    parts += ["Claims:", ""]
    parts += [_claim_line(claim, lines) for claim, lines in c.frame.groupby("claim", sort=False)]
    parts.append("")
    if c.aggregate:
        rows = [[f"`{a['treatment']}`" + ROLE_MARK.get(a["role"], ""), _improvement(a), str(a["tasks"]), str(a["seeds"])]
                for a in c.aggregate]
        parts += [markdown_grid(["Treatment", "P(improvement) [95%]", "Tasks", "Seeds"], rows, "lrrr").rstrip("\n"), ""]
    for a in c.declaration.aa:
        line = _aa_line(c, a)
        parts += [line, ""] if line else []
    edges = sorted(set(c.frame.loc[c.frame["edge"].astype(bool), "treatment"]))
    if edges:
        parts += ["Learning rate on a grid edge (the grid did not bracket the optimum) for the control or: "
                  + ", ".join(f"`{e}`" for e in edges) + ".", ""]
    return parts


def _improvement(a: dict) -> str:
    if a.get("separation") == "all":
        return f"{a['probability']:.2f} (every seed improves on every row: complete separation, no interval)"
    if a.get("separation") == "none":
        return f"{a['probability']:.2f} (no seed improves on any row: complete separation, no interval)"
    if a.get("separation") == "rows":
        return (f"{a['probability']:.2f} (every seed one way on each row: complete separation within rows, "
                "no interval)")
    return f"{a['probability']:.2f} [{a['ci_low']:.2f}, {a['ci_high']:.2f}]"


def verdict_markdown(found: list[Comparison]) -> str:
    parts = [legend(), ""]
    for c in found:
        if not c.frame.empty:
            parts += _experiment_markdown(c) + ([f"- {n}" for n in c.notes] + [""] if c.notes else [])
    without = [n for c in found if c.frame.empty for n in c.notes]
    if without:
        parts += ["Experiments without a verdict:", ""] + [f"- {n}" for n in without] + [""]
    return "\n".join(parts)


SUMMARY_LEGEND = (
    "One line per claim of each experiment, from the full verdict tables (`verdict.md`, bounds and p values "
    "there): primary or secondary, the claim word; the treatments *ahead* of and *behind* the control (bounds at "
    "α / m per side, m the row's treatments), with the rows (backbone, and axes where an experiment has more) "
    "where they are; the largest upper bound of any treatment over the claim's rows (contradicted: below δ on "
    "every row); for an inconclusive claim the seeds a fixed design would need to decide it (planning only); the "
    "A/A control's cells whose interval excludes 0; and every cell whose word turns when the close-call side "
    "trains at its runner-up learning rate. P(improvement): each treatment's share of seeds beating the "
    "control's run of the seed, averaged over the experiment's rows, 95% bootstrap interval over seeds.")


def _row_name(line) -> str:
    return line["backbone"] + (f" {line['axes']}" if line["axes"] else "")


def _where(lines: pd.DataFrame) -> str:
    return ", ".join(dict.fromkeys(_row_name(line) for _, line in lines.iterrows()))


def _named(lines: pd.DataFrame, word: str) -> str:
    """'`a`, `b` (rows); `c` (rows)': the treatments with `word`, those with the same rows together."""
    hits = lines[lines["word"] == word]
    by_rows: dict[str, list[str]] = {}
    for treatment, rows in hits.groupby("treatment", sort=False):
        by_rows.setdefault(_where(rows), []).append(f"`{treatment}`")
    return "; ".join(f"{', '.join(names)} ({rows})" for rows, names in by_rows.items()) or "—"


def _count(words: list[str]) -> str:
    return ", ".join(f"{words.count(w)} {w}" for w in (inf.REPRODUCED, inf.CONTRADICTED, inf.INCONCLUSIVE))


def headline(found: list[Comparison]) -> list[str]:
    """The claims counted, primary first with the family each is judged at, and the A/A cells of every
    experiment with runs shared between experiments counted once."""
    claims = [(bool(lines["primary"].iloc[0]), lines["claim_word"].iloc[0]) for c in found if not c.frame.empty
              for _, lines in c.frame.groupby("claim", sort=False)]
    if not claims:
        return []
    primary = [w for p, w in claims if p]
    secondary = [w for p, w in claims if not p]
    out = [f"**{len(primary)} primary claim{'s' * (len(primary) != 1)}**, each at α = {inf.ALPHA:g} one-sided over its "
           f"rows' treatments (Bonferroni within a row; every row must agree; no correction across claims): "
           f"{_count(primary)}."
           + (f" Secondary claims ({len(secondary)}, reported beside, not counted above): {_count(secondary)}."
              if secondary else "")]
    aa = pd.concat([c.frame[(c.frame["role"] == "aa") & c.frame["ci_low"].map(math.isfinite)] for c in found
                    if not c.frame.empty] or [pd.DataFrame(columns=list(FRAME_COLUMNS))])
    if len(aa):
        # one piece of evidence once: a cell on the same measure from the same runs in two experiments
        distinct = aa.assign(_excludes=aa["word"].isin([inf.AHEAD, inf.BEHIND])).drop_duplicates(["measure", "evidence"])
        k, n = int(distinct["_excludes"].sum()), len(distinct)
        shared = len(aa) - n
        out.append(f"A/A, every experiment: {k} of {n} cells excluded 0 (the rate at most "
                   f"{inf.clopper_pearson_upper(k, n):.0%}, one-sided 95% Clopper-Pearson)"
                   + (f"; {shared} more cell{'s' * (shared != 1)} rest on runs another experiment shares, counted once"
                      if shared else "") + ".")
    return out


def summary_markdown(found: list[Comparison]) -> str:
    """The verdict at a glance: the headline, one line per (experiment, claim), then P(improvement) per experiment."""
    claims, improvements = [], []
    for c in (c for c in found if not c.frame.empty):
        for claim, lines in c.frame.groupby("claim", sort=False):
            treated, aa = lines[lines["role"] == "treatment"], lines[(lines["role"] == "aa") & lines["ci_low"].map(math.isfinite)]
            turns = lines[lines["runner_up_word"].astype(bool) & (lines["runner_up_word"] != lines["word"])]
            word = lines["claim_word"].iloc[0]
            rows = lines.drop_duplicates(ROW)
            needed = [float(v) for v in rows["seeds_needed"] if not math.isnan(float(v))]
            claims.append([f"`{c.experiment}`", claim, "primary" if lines["primary"].iloc[0] else "secondary",
                           f"**{word}**", _named(treated, inf.AHEAD), _named(treated, inf.BEHIND),
                           _signed(rows["row_upper"].max()) if rows["row_upper"].map(math.isfinite).any() else "—",
                           _range(lines["n"], "{:.0f}"),
                           _needed(max(needed)) if word == inf.INCONCLUSIVE and needed else "—",
                           f"{int(aa['word'].isin([inf.AHEAD, inf.BEHIND]).sum())} of {len(aa)}" if len(aa) else "—",
                           "; ".join(f"`{r['treatment']}` ({_row_name(r)}): {r['word']} → {r['runner_up_word']}"
                                     for _, r in turns.iterrows()) or "—"])
        if c.aggregate:
            ranked = sorted(c.aggregate, key=lambda a: -a["probability"])
            improvements.append([f"`{c.experiment}`", "; ".join(
                f"`{a['treatment']}`{ROLE_MARK.get(a['role'], '')} {_improvement(a)}" for a in ranked)])
    if not claims:
        return ""
    header = ["Experiment", "Claim", "Kind", "Word", "Ahead of the control", "Behind the control",
              "Largest upper bound (points)", "Seeds", "Seeds to decide (planning)", "A/A cells excluding 0",
              "Word at the runner-up lr"]
    parts = [SUMMARY_LEGEND, "", *[f"{line}\n" for line in headline(found)],
             markdown_grid(header, claims, "l" * 6 + "rrrrl").rstrip("\n"), ""]
    if improvements:
        parts += [markdown_grid(["Experiment", "P(improvement) over the control [95%], best first"], improvements,
                                "ll").rstrip("\n"), ""]
    return "\n".join(parts)


def verdict_latex(found: list[Comparison]) -> str:
    out = []
    for c in found:
        if c.frame.empty:
            continue
        header, rows = _grid(c)
        cells = [[x.replace("−", "-").replace(SHAKY, "(lr?)").replace("δ", "delta") for x in row] for row in rows]
        out.append(latex_grid(f"{TITLE}: {c.experiment}", [h.replace("`", "") for h in header], cells,
                              "l" * 2 + "r" * (len(header) - 2)))
    return "\n".join(out)


def verdict_csv(frame: pd.DataFrame) -> str:
    """The frame, numbers unrounded (points), runs as 'run_id:config_hash' and evidence keys separated by spaces."""
    return frame_csv(frame.assign(runs=frame["runs"].map(lambda rs: " ".join(f"{i}:{h}" for i, h in rs)),
                                  evidence=frame["evidence"].map(" ".join)))


def aggregate_frame(found: list[Comparison]) -> pd.DataFrame:
    return pd.DataFrame([a for c in found for a in c.aggregate],
                        columns=["experiment", "treatment", "role", "probability", "ci_low", "ci_high", "tasks", "seeds",
                                 "separation"])


def verdict_files(found: list[Comparison]) -> dict[str, str]:
    """{file suffix: text}: the Markdown (legend, tables, claim words, aggregate, A/A rate), LaTeX, the frame as CSV."""
    frames = [c.frame for c in found if not c.frame.empty]
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(FRAME_COLUMNS))
    return {".md": f"# {TITLE}\n\n" + verdict_markdown(found), "_summary.md": summary_markdown(found),
            ".tex": verdict_latex(found),
            ".csv": verdict_csv(frame), "_aggregate.csv": frame_csv(aggregate_frame(found))}


def verdict_section(run_set: RunSet) -> tuple[list[str], dict[str, str]]:
    """(REPORT.md lines, {file suffix: text}) for every experiment with a control; the Markdown file
    also carries the legend and the claim words, since the README embeds it whole."""
    found = comparisons(run_set)
    parts = [f"## {TITLE}", ""]
    if not any(not c.frame.empty for c in found):
        why = [f"- {n}" for c in found for n in c.notes]
        return parts + ["No experiment has finished runs of a control and a treatment; section skipped.", ""] + why + [""], {}
    files = verdict_files(found)
    sources = [f"- `{c.experiment}` / {claim} / {backbone}{' / ' + axes if axes else ''}: " + ", ".join(
        f"{i} ({h})" for i, h in sorted({r for rs in lines["runs"] for r in rs}))
        for c in found if not c.frame.empty
        for (claim, backbone, axes), lines in c.frame.groupby(["claim", "backbone", "axes"], sort=False)]
    parts += ["### At a glance", "", files["_summary.md"], "### Every comparison, experiment by experiment", ""]
    return parts + [verdict_markdown(found), file_links(NAME), "",
                    "<details><summary>Runs behind each row (run id, config hash)</summary>", ""] + sources + \
        ["", "</details>", ""], files
