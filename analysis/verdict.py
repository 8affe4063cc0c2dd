"""The verdict of every experiment with a control: each treatment (arm, or method without an arm axis)
against the control, paired by seed and every other shared axis, claim by claim, under the rules of
grporm/stats.py: bounds at the look's level (analysis/sequential.py) split over the row's
treatments (Bonferroni), cell words read off the bounds, claim words at the declared margin δ, the
probability of improvement paired by seed, the A/A rate with its upper bound.

An experiment states its comparison in its YAML (`verdict:`, grporm.config.VerdictConfig), stored in
each run's record; without one the default rule applies: the control is the arm or method named
`ce`, else the one arm whose method is CE (grporm/plan/declaration.py), every other fine-tuned arm or
method is a treatment, every metric the runs recorded is a row.
Inputs are the records alone (`RunSet`); `verdict_frame` is the one table every output is made from.
This module computes; analysis/verdict_render.py writes the Markdown, LaTeX and CSV of its comparisons.

For `grporm run --until-decided`: the frame's `decided` column (per cell: its word can no longer change
its claim) and `last_look` (no seeds can be added: a fixed design, or the cap reached);
`undecided_treatments(frame)` -> {(experiment, treatment)} whose cells still need seeds, and
`undecided_cells(frame)` the same per row. The first look n0 of an experiment with `max_seeds` is
`comparisons(..., first_seeds={experiment: n0})`, else the fewest seeds of any of the experiment's
cells (exact while every arm has its design's seeds, or one cell still has them).
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field

import pandas as pd
from pydantic import ValidationError

import grporm.analysis.sequential as seq
import grporm.stats as stats
from grporm.analysis.records import ID_COLUMNS, RunSet, load_history, metric_columns
from grporm.analysis.sections import SHOT_GROUPS, Column, run_values
from grporm.config import Claim, RunConfig, VerdictConfig
from grporm.plan.declaration import ambiguous, default_control, trains
from grporm.plan.measures import MEASURES, claim_title, measure_problem, split
from grporm.records.schema import RunRecord

ARM, METHOD = "arm", "method"
PICK_AXIS = "tune.pick"     # a runner-up run's axis (grporm/plan/experiment.py)
RUNNER_UP = "runner_up"
SCALE = 100.0               # every measure is a fraction: shown in points
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
    setting: str = ""  # where the words hold: the control's epochs, images per class and image size


# The settings a verdict's words are conditional on (README, 'The answer'): (config path, how it is named)
SETTING_KEYS = ((("train", "epochs"), "{} epochs"), (("data", "train_per_class"), "{}/class"),
                (("data", "image_size"), "{} px"))


def setting_text(run_set: RunSet, paths) -> str:
    """'4 epochs, 200/class, 32 px' of the runs at `paths`; an axis they vary lists its values ('4/8/16 epochs')."""
    parts = []
    for (section, key), shown in SETTING_KEYS:
        found = {(run_set.records[p].config.get(section) or {}).get(key) for p in paths}
        found.discard(None)
        if found:
            parts.append(shown.format("/".join(f"{v:g}" if isinstance(v, float) else str(v) for v in sorted(found))))
    return ", ".join(parts)


# -- reading the records -----------------------------------------------------------------------------
def declaration(run_set: RunSet, paths) -> tuple[VerdictConfig, bool, list[str]]:
    """The experiment's declaration from its records: the latest finished run's, where any has one;
    (declaration, declared?, notes). A declaration without a control gets the default one
    (grporm/plan/declaration.py: the arm named `ce`, else the one CE arm); None when that is ambiguous (the
    notes say why)."""
    found: dict[str, tuple[str, dict]] = {}
    for path in paths:
        record = run_set.records[path]
        stated = record.config.get("verdict")
        if stated is not None:
            key = json.dumps(stated, sort_keys=True)
            stamp = str(record.finished_at or "")
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
    return any(bool(getattr(run_set.records[p].tuning, key, False)) for p in runs["path"])


def first_look(runs: pd.DataFrame, keys: list[str], declared: VerdictConfig, first_seeds: int | None = None) -> int:
    """n0, the seeds of the first look: given, or the fewest seeds of any cell (arm x data set x backbone
    x shared axes) at its winner."""
    if first_seeds is not None:
        return int(first_seeds)
    winners = runs[runs["_pick"] != RUNNER_UP]
    counts = winners.groupby([*keys, "_who"], dropna=False)["seed"].nunique() if len(winners) else pd.Series(dtype=int)
    return max(1, int(counts.min())) if len(counts) else 1


def compare_experiment(run_set: RunSet, experiment: str, values: _Values, first_seeds: int | None = None) -> Comparison:
    """The verdict of one experiment, or a Comparison with an empty frame and the reason in notes."""
    runs = run_set.runs[run_set.runs["experiment"] == experiment]
    declared, is_declared, notes = declaration(run_set, runs["path"])
    axis = _axis(runs)
    runs = runs[runs["method"].map(trains)]  # pretrained rows are neither control nor treatment
    picks = runs["path"].map(lambda p: run_set.records[p].pick)
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
    comparison = Comparison(experiment, declared, is_declared, axis, frame, notes=notes,
                            setting=setting_text(run_set, control_runs["path"]))
    comparison.aggregate = _aggregate(runs, frame, values, claims, keys, declared)
    return comparison


def evidence_key(record: RunRecord) -> str:
    """What a run is as evidence, whichever experiment ran it: its config without the experiment's name,
    the evaluation settings and the verdict declaration (they change what is measured of a model, not
    the model), and its learning rate. Two experiments' runs with one key trained the same model on
    the same data draw: cross-study counts count them once."""
    config = dict(record.config)
    config.pop("verdict", None)
    try:
        payload = RunConfig.from_stored(config).hash_payload()
    except (ValidationError, TypeError, ValueError):  # a record too old or too partial to validate
        payload = {k: v for k, v in config.items() if k not in ("tracking", "run_id", "axes")}
    # the record's own identity and matrix values too: a partial config may validate at defaults
    payload["identity"] = [record.dataset, record.backbone, record.method, record.seed]
    payload["matrix"] = {k: v for k, v in record.axes.items() if k != "seed"}
    payload.pop("experiment", None)
    payload.pop("eval", None)
    text = json.dumps([payload, record.lr], sort_keys=True, default=str)
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
    alpha_look = seq.look_level(n, n0, batch, cap, stats.ALPHA)
    return alpha_look / max(1, family), alpha_look, seq.look_index(n, n0, batch, cap) + 1, seq.is_last_look(n, n0, batch, cap)


def _judged(cell, level: float, margin: float) -> dict:
    """A cell's numbers at `level` per side, in points: bounds, word, p of the word's test, the margin test."""
    mean, std = SCALE * cell.mean, SCALE * cell.std
    low, high = stats.bounds(mean, std, cell.n, level)
    return {"diff": mean, "ci_low": low, "ci_high": high, "word": stats.cell_word(low, high),
            "p": stats.one_sided_p(mean, std, cell.n, 0.0, above=mean >= 0),
            "p_margin": stats.one_sided_p(mean, std, cell.n, margin, above=False),
            "below_margin": stats.below_margin(high, margin)}


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
        cell = stats.paired_difference(_by_seed(runs, value), base)
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
                alt[who] = stats.paired_difference(_by_seed(mine_ru, value), _by_seed(control_ru, value))
        elif moves or control_moves:
            treated = _by_seed(mine_ru if moves else runs, value)
            alt[who] = stats.paired_difference(treated, _by_seed(control_ru, value) if control_moves else base)
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
            "detectable": stats.detectable(std, cell.n, stats.ALPHA / (1 if aa else family), sides=1),
            "power_target": stats.POWER,
            "seeds_needed": stats.seeds_to_decide(judged["diff"], SCALE * cell.std, margin, stats.ALPHA / (1 if aa else family))
            if cell.n >= 2 else math.nan,  # one pair: no spread to plan from
            "close_call": close, "edge": control_edge or _flag(run_set, runs, "edge"),
            "runner_up_word": runner_up_word, "no_rerun": close and who not in alt, "claim_word": "",
            "runs": tuple(sorted(zip(used["run_id"], used["config_hash"]))),
            "evidence": tuple(sorted(evidence_key(run_set.records[p]) for p in used["path"])),
        })
    return out


ROW = ["dataset", "backbone", "axes"]


def with_claim_words(frame: pd.DataFrame) -> pd.DataFrame:
    """Per claim one word from its rows' treatment bounds at the margin (stats.claim_word); per row
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
        word = stats.claim_word(rows, margin) if len(treated) else stats.INCONCLUSIVE
        frame.loc[lines.index, "claim_word"] = word
        settled = word != stats.INCONCLUSIVE
        open_cell = (lines["role"] == "treatment") & ~((lines["word"] == stats.AHEAD) | lines["below_margin"].astype(bool))
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
        wins = stats.seed_improvement(task)
        split_ = stats.separation(wins)
        low, high = (math.nan, math.nan) if split_ else stats.seed_bootstrap(wins, reps=BOOTSTRAP_REPS)
        role = frame.loc[frame["treatment"] == who, "role"]
        out.append({"experiment": frame["experiment"].iloc[0], "treatment": who,
                    "role": role.iloc[0] if len(role) else role_of(who, declared),
                    "probability": stats.paired_improvement_probability(wins), "ci_low": low, "ci_high": high,
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
    return frame_of(comparisons(run_set, first_seeds))


def frame_of(found: list[Comparison]) -> pd.DataFrame:
    """The verdict frame of comparisons already made: their frames, one after the other."""
    frames = [c.frame for c in found if not c.frame.empty]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(FRAME_COLUMNS))
