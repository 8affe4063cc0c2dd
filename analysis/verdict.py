"""The verdict of every experiment with a control: each treatment (arm, or method without an arm axis)
against the control, paired by seed and every other shared axis, claim by claim, under the rules of
analysis/inference.py (Holm over a row's treatments, exact power, claim words, the probability of
improvement, the A/A rate).

An experiment states its comparison in its YAML (`verdict:`, grporm.config.VerdictConfig), stored in
each run's record; without one the default rule applies: the control is the arm or method named
`ce`, else the one arm whose method is CE (grporm/declaration.py), every other fine-tuned arm or
method is a treatment, every metric the runs recorded is a row.
Inputs are the records alone (`RunSet`); `verdict_frame` is the one table every output is made from.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from pydantic import ValidationError

import grporm.analysis.inference as inf
from grporm.analysis.records import ID_COLUMNS, RunSet, check_results_folder, load_history, load_runs, metric_columns
from grporm.analysis.render import file_links, frame_csv, latex_grid, markdown_grid
from grporm.analysis.sections import SHOT_GROUPS, Column, run_values
from grporm.analysis.stats import paired_difference
from grporm.config import Claim, VerdictConfig
from grporm.declaration import ambiguous, default_control, trains
from grporm.errors import GrpormError
from grporm.measures import MEASURES, claim_title, measure_problem, split

NAME = "verdict"
TITLE = "Verdict: every comparison with its control"
ARM, METHOD = "arm", "method"
PICK_AXIS = "tune.pick"     # a runner-up run's axis (grporm/experiment.py)
RUNNER_UP = "runner_up"
SCALE = 100.0               # every measure is a fraction: shown in points
SHAKY = "‡"
BOOTSTRAP_REPS = 2000
# Columns the forest plot and the Python API read: keep their names.
FRAME_COLUMNS = ("experiment", "claim", "measure", "dataset", "backbone", "axes", "treatment", "role", "control",
                 "n", "diff", "ci_low", "ci_high", "p", "p_holm", "level", "word", "detectable", "power_target",
                 "target", "seeds_needed", "close_call", "edge", "runner_up_word", "no_rerun", "claim_word", "runs")
DEFAULT = VerdictConfig()
# The detection target of the former rule (power after the fact), until the margin rule replaces it.
TARGET = 3.0
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
    (grporm/declaration.py: the arm named `ce`, else the one CE arm); None when that is ambiguous (the
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
    grporm.declaration.candidates_of)."""
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


def compare_experiment(run_set: RunSet, experiment: str, values: _Values) -> Comparison:
    """The verdict of one experiment, or a Comparison with an empty frame and the reason in notes."""
    runs = run_set.runs[run_set.runs["experiment"] == experiment]
    declared, is_declared, notes = declaration(run_set, runs["path"])
    axis = _axis(runs)
    runs = runs[runs["method"].map(trains)]  # pretrained rows are neither control nor treatment
    picks = runs["path"].map(lambda p: _pick(run_set.records.get(p) or {}))
    runs = runs.assign(_pick=picks.values, _who=runs[axis].fillna("").astype(str).values)
    empty = pd.DataFrame(columns=list(FRAME_COLUMNS))
    control_runs = runs[runs["_who"] == declared.control]
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
    claims = declared.claims or [Claim(name=claim_title(s), measure=s) for s in values.recorded(runs["path"])]
    lines: list[dict] = []
    for claim in claims:
        problem = measure_problem(claim.measure)
        if problem is not None:
            notes.append(f"`{experiment}` claim {claim.name}: {problem}; not judged.")
            continue
        value = values.of(claim.measure, runs["path"])
        for key, group in runs.groupby(keys, sort=True, dropna=False):
            lines += _row_lines(run_set, experiment, claim, dict(zip(keys, key)), shared, group, value, declared)
    frame = pd.DataFrame(lines, columns=list(FRAME_COLUMNS)) if lines else empty
    if frame.empty:
        notes.append(f"`{experiment}`: no finished treatment shares a seed (and its other axes) with the control "
                     f"`{declared.control}`; no verdict.")
    frame = _with_claim_words(frame, TARGET)
    comparison = Comparison(experiment, declared, is_declared, axis, frame, notes=notes)
    comparison.aggregate = _aggregate(run_set, runs, frame, values, claims, keys, declared)
    return comparison


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


def _row_lines(run_set: RunSet, experiment: str, claim: dict, key: dict, shared: list[str], group: pd.DataFrame,
               value: pd.Series, declared: VerdictConfig) -> list[dict]:
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
    cells, alt = {}, {}
    for who, runs in winners[winners["_who"] != declared.control].groupby("_who", sort=True):
        cell = paired_difference(_by_seed(runs, value), base)
        if cell.n == 0:
            continue
        cells[who] = (cell, runs)
        mine_ru = runner_ups[runner_ups["_who"] == who]
        moves = _flag(run_set, runs, "close_call") and not mine_ru.empty
        if moves or control_moves:
            treated = _by_seed(mine_ru if moves else runs, value)
            alt[who] = paired_difference(treated, _by_seed(control_ru, value) if control_moves else base)
    if not cells:
        return []
    control_method = str(control["method"].iloc[0])
    roles = {who: role_of(who, declared, str(runs["method"].iloc[0]), control_method) for who, (_, runs) in cells.items()}
    treatments = [w for w in cells if roles[w] == "treatment"]
    ps = {w: inf.paired_p(c.mean, c.std, c.n) for w, (c, _) in cells.items()}
    adjusted = inf.holm({w: ps[w] for w in treatments})
    family = max(1, sum(math.isfinite(ps[w]) for w in treatments))
    level = inf.ALPHA / family
    spread = [c.std ** 2 for c, _ in cells.values() if c.n >= 2 and math.isfinite(c.std)]
    std = SCALE * math.sqrt(sum(spread) / len(spread)) if spread else math.nan
    n = max(c.n for c, _ in cells.values())
    detectable = inf.detectable(std, n, level)
    needed = inf.seeds_needed(std, TARGET, level)
    out = []
    for who, (cell, runs) in cells.items():
        aa = roles[who] != "treatment"  # an A/A control or a reference: judged alone, outside the family
        p_holm = ps[who] if aa else adjusted[who]
        word = inf.word(cell.mean, p_holm)
        runner_up_word = ""
        if who in alt:
            other = alt[who]
            p_alt = inf.paired_p(other.mean, other.std, other.n)
            if aa:
                runner_up_word = inf.word(other.mean, p_alt)
            else:
                runner_up_word = inf.word(other.mean, inf.holm({**{w: ps[w] for w in treatments}, who: p_alt})[who])
        close = control_close or _flag(run_set, runs, "close_call")
        used = pd.concat([control, runs])
        out.append({
            "experiment": experiment, "claim": claim.name, "measure": claim.measure,
            "dataset": str(key["dataset"]), "backbone": str(key["backbone"]),
            "axes": ", ".join(f"{k}={key[k]}" for k in shared), "treatment": who,
            "role": roles[who], "control": declared.control, "n": cell.n,
            "diff": SCALE * cell.mean, "ci_low": SCALE * cell.ci_low, "ci_high": SCALE * cell.ci_high,
            "p": ps[who], "p_holm": p_holm, "level": inf.ALPHA if aa else level, "word": word,
            "detectable": detectable, "power_target": inf.POWER, "target": TARGET,
            "seeds_needed": needed, "close_call": close, "edge": control_edge or _flag(run_set, runs, "edge"),
            "runner_up_word": runner_up_word, "no_rerun": close and who not in alt, "claim_word": "",
            "runs": tuple(sorted(zip(used["run_id"], used["config_hash"]))),
        })
    return out


def _with_claim_words(frame: pd.DataFrame, target: float) -> pd.DataFrame:
    """Per claim one word from its rows' treatment words and detectable differences (inference.claim_word)."""
    if frame.empty:
        return frame
    words = {}
    for claim, lines in frame.groupby("claim", sort=False):
        rows = []
        for _, row in lines.groupby(["dataset", "backbone", "axes"], sort=False):
            treated = row[row["role"] == "treatment"]
            rows.append((dict(zip(treated["treatment"], treated["word"])), float(row["detectable"].iloc[0])))
        words[claim] = inf.claim_word(rows, target)
    return frame.assign(claim_word=frame["claim"].map(words))


def _aggregate(run_set: RunSet, runs: pd.DataFrame, frame: pd.DataFrame, values: _Values, claims, keys, declared) -> list[dict]:
    """Per treatment: the probability of improvement over the control averaged over the rows it has
    (tasks), with a stratified bootstrap 95% interval (winner runs)."""
    if frame.empty:
        return []
    winners = runs[runs["_pick"] != RUNNER_UP]
    tasks: dict[str, list[tuple[list[float], list[float]]]] = {}
    for claim in claims:
        if measure_problem(claim.measure) is not None:
            continue
        value = values.of(claim.measure, winners["path"])
        for _, group in winners.groupby(keys, sort=True, dropna=False):
            base = list(_by_seed(group[group["_who"] == declared.control], value).values())
            if not base:
                continue
            for who, mine in group[group["_who"] != declared.control].groupby("_who", sort=True):
                treated = list(_by_seed(mine, value).values())
                if treated:
                    tasks.setdefault(who, []).append(([SCALE * v for v in treated], [SCALE * v for v in base]))
    out = []
    for who, task in sorted(tasks.items()):
        low, high = inf.stratified_bootstrap(task, reps=BOOTSTRAP_REPS)
        role = frame.loc[frame["treatment"] == who, "role"]
        out.append({"experiment": frame["experiment"].iloc[0], "treatment": who,
                    "role": role.iloc[0] if len(role) else role_of(who, declared),
                    "probability": inf.mean_improvement_probability(task), "ci_low": low, "ci_high": high,
                    "tasks": len(task)})
    return out


# -- every experiment ----------------------------------------------------------------------------------
def comparisons(run_set: RunSet) -> list[Comparison]:
    if run_set.runs.empty:
        return []
    values = _Values(run_set)
    return [c for e in sorted(set(run_set.runs["experiment"])) if (c := compare_experiment(run_set, e, values))]


def verdict_frame(run_set: RunSet) -> pd.DataFrame:
    """One row per (experiment, claim, data set/backbone/other axes, treatment or A/A arm): differences
    and intervals in points, p, Holm-adjusted p, the word, the row's detectable difference and seeds
    for the target at the Holm family's strictest level, the close-call flag and runner-up word, the
    claim's word, and the runs (run id, config hash) behind the line."""
    frames = [c.frame for c in comparisons(run_set) if not c.frame.empty]
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
        text += f" [{_signed(line['ci_low'])}, {_signed(line['ci_high'])}] {line['word']} (p {_p(line['p_holm'])})"
    if line["runner_up_word"]:
        text += f" (runner-up: {line['runner_up_word']})"
    return text + (f" {SHAKY}" if line["no_rerun"] else "")


def _number(value: float) -> str:
    return "—" if not math.isfinite(value) else f"{value:.1f}"


def _columns(frame: pd.DataFrame) -> list[str]:
    return [w for role in ("treatment", "reference", "aa") for w in dict.fromkeys(frame.loc[frame["role"] == role, "treatment"])]


def _grid(c: Comparison) -> tuple[list[str], list[list[str]]]:
    frame = c.frame
    who = _columns(frame)
    keys = [k for k in ("dataset", "axes") if frame[k].nunique() > 1 or (k == "axes" and frame[k].ne("").any())]
    header = ["Claim", *[{"dataset": "Data set", "axes": "Axes"}[k] for k in keys], "Backbone", "Seeds",
              "Level", "Detectable", f"Seeds for {TARGET:g}"]
    roles = dict(zip(frame["treatment"], frame["role"]))
    header += [f"`{w}`" + ROLE_MARK.get(roles[w], "") for w in who]
    rows = []
    for (claim, *_), lines in frame.groupby(["claim", "dataset", "backbone", "axes"], sort=False):
        first = lines.iloc[0]
        by = {line["treatment"]: line for _, line in lines.iterrows()}
        needed = first["seeds_needed"]
        treated = lines[lines["role"] == "treatment"]
        level = treated["level"].iloc[0] if not treated.empty else inf.ALPHA
        rows.append([claim, *[str(first[k]) for k in keys], first["backbone"], str(int(lines["n"].max())),
                     f"{level:.3g}", _number(first["detectable"]),
                     "> 500" if needed is None or (isinstance(needed, float) and math.isnan(needed)) else str(int(needed))]
                    + [cell_text(by.get(w)) for w in who])
    return header, rows


def legend(target_note: str = "") -> str:
    return (
        "Each cell: the treatment (column) minus the control of its experiment, paired by seed and by every other "
        "axis the control shares (data set, backbone, matrix values), in points: mean [95% t interval], the word and "
        "its p. **Word**: *ahead* / *behind* when the two-sided paired t test rejects at 5% after Holm's step-down "
        "correction over the treatments of the row (p shown: Holm-adjusted), *no difference* otherwise (not: *equal*; "
        "see Detectable); an A/A control (A/A) is judged unadjusted and left out of the family. **Level** = the "
        "strictest level of the row's Holm family, 5% / (treatments with a test); **Detectable** = the smallest true "
        f"difference a paired t test at that level finds with {inf.POWER:.0%} power (exact, noncentral t), from the "
        "spread of the row's paired differences pooled over its cells; **Seeds for T** = the pairs that would bring it "
        "to the experiment's target T. **Claim words**: *reproduced* = some treatment ahead on every row of the claim; "
        "*contradicted* = no treatment ahead on any row and every row can detect the target; *inconclusive* otherwise. "
        "A/A controls never reproduce a claim. **P(improvement)** = probability that a run of the treatment beats a "
        "run of the control (ties count half), averaged over the rows (tasks), with a stratified bootstrap 95% "
        f"interval ({BOOTSTRAP_REPS} resamples of runs within each task and side; when every run of a side beats "
        "every run of the other in each task, resampling cannot move it and the interval has no width: it then "
        "understates the uncertainty of so few runs). **A/A rate** = share of an A/A "
        "control's cells whose 95% interval excludes 0 (nominal: 5%). Main cells use the runs at each learning-rate "
        "decision's winner; *(runner-up: word)* = the word with the runs at the runner-up learning rate in place "
        f"of the winner's, for the side(s) that have them; {SHAKY} = the treatment's or the control's decision was a "
        "close call and no runner-up run exists. *not run*: no such treatment in that row." + target_note)


def _experiment_markdown(c: Comparison) -> list[str]:
    parts = [f"#### `{c.experiment}`", ""]
    source = "declared in its `verdict:`" if c.declared else "default rule (no `verdict:` in its records)"
    aa = ", ".join(f"`{a}`" for a in c.declaration.aa) or "none"
    parts += [f"Control: `{c.declaration.control}` ({'arm' if c.axis == ARM else 'method'}); A/A: {aa}; "
              f"target {TARGET:g} points; claims: {source}.", ""]
    header, rows = _grid(c)
    parts += [markdown_grid(header, rows, "l" * 2 + "r" * (len(header) - 2)).rstrip("\n"), ""]
    parts += ["Claims:", ""]
    for claim, lines in c.frame.groupby("claim", sort=False):
        first = lines.iloc[0]
        name, _ = split(first["measure"])
        treated = lines[lines["role"] == "treatment"]
        ahead = sorted(set(treated.loc[treated["word"] == inf.AHEAD, "treatment"]))
        parts.append(f"- {claim} (`{first['measure']}`: {MEASURES.get(name).doc}): **{first['claim_word']}**"
                     + (f"; ahead somewhere: {', '.join(f'`{a}`' for a in ahead)}" if ahead else "") + ".")
    parts.append("")
    if c.aggregate:
        rows = [[f"`{a['treatment']}`" + ROLE_MARK.get(a["role"], ""),
                 f"{a['probability']:.2f} [{a['ci_low']:.2f}, {a['ci_high']:.2f}]", str(a["tasks"])] for a in c.aggregate]
        parts += [markdown_grid(["Treatment", "P(improvement) [95%]", "Tasks"], rows, "lrr").rstrip("\n"), ""]
    for a in c.declaration.aa:
        cells = c.frame[(c.frame["treatment"].str.split(",").str[0] == a) & c.frame["p"].map(math.isfinite)]
        if not cells.empty:
            excluded = (cells["p"] < inf.ALPHA).tolist()
            parts += [f"A/A rate of `{a}`: {sum(excluded)} of {len(excluded)} cells exclude 0 "
                      f"({inf.exclusion_rate(excluded):.0%}; nominal {inf.ALPHA:.0%}).", ""]
    edges = sorted(set(c.frame.loc[c.frame["edge"].astype(bool), "treatment"]))
    if edges:
        parts += ["Learning rate on a grid edge (the grid did not bracket the optimum) for the control or: "
                  + ", ".join(f"`{e}`" for e in edges) + ".", ""]
    return parts


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
    "One line per claim of each experiment, from the full verdict tables (`verdict.md`, intervals and p "
    "values there): the claim word; the treatments *ahead* of and *behind* the control after Holm, with the "
    "rows (backbone, and axes where an experiment has more) where they are; the range of the rows' "
    "*Detectable* difference; the A/A control's cells whose 95% interval excludes 0; and every cell whose "
    "word turns when the close-call side trains at its runner-up learning rate. P(improvement): each "
    "treatment's probability of beating a control run, averaged over the experiment's rows, 95% bootstrap interval.")


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


def _span(values: pd.Series) -> str:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return "—"
    low, high = min(finite), max(finite)
    return f"{low:.1f}" if f"{low:.1f}" == f"{high:.1f}" else f"{low:.1f}–{high:.1f}"


def summary_markdown(found: list[Comparison]) -> str:
    """The verdict at a glance: one line per (experiment, claim), then P(improvement) per experiment."""
    claims, improvements = [], []
    for c in (c for c in found if not c.frame.empty):
        for claim, lines in c.frame.groupby("claim", sort=False):
            treated, aa = lines[lines["role"] == "treatment"], lines[(lines["role"] == "aa") & lines["p"].map(math.isfinite)]
            turns = lines[lines["runner_up_word"].astype(bool) & (lines["runner_up_word"] != lines["word"])]
            claims.append([f"`{c.experiment}`", claim, f"**{lines['claim_word'].iloc[0]}**", _named(treated, inf.AHEAD),
                           _named(treated, inf.BEHIND), _span(lines.drop_duplicates(["dataset", "backbone", "axes"])["detectable"]),
                           str(int(lines["n"].max())),
                           f"{int((aa['p'] < inf.ALPHA).sum())} of {len(aa)}" if len(aa) else "—",
                           "; ".join(f"`{r['treatment']}` ({_row_name(r)}): {r['word']} → {r['runner_up_word']}"
                                     for _, r in turns.iterrows()) or "—"])
        if c.aggregate:
            ranked = sorted(c.aggregate, key=lambda a: -a["probability"])
            improvements.append([f"`{c.experiment}`", "; ".join(
                f"`{a['treatment']}`{ROLE_MARK.get(a['role'], '')} {a['probability']:.2f} "
                f"[{a['ci_low']:.2f}, {a['ci_high']:.2f}]" for a in ranked)])
    if not claims:
        return ""
    header = ["Experiment", "Claim", "Word", "Ahead of the control", "Behind the control", "Detectable (points)",
              "Seeds", "A/A cells excluding 0", "Word at the runner-up lr"]
    parts = [SUMMARY_LEGEND, "", markdown_grid(header, claims, "l" * 5 + "rrrl").rstrip("\n"), ""]
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
        cells = [[x.replace("−", "-").replace(SHAKY, "(lr?)") for x in row] for row in rows]
        out.append(latex_grid(f"{TITLE}: {c.experiment}", [h.replace("`", "") for h in header], cells,
                              "l" * 2 + "r" * (len(header) - 2)))
    return "\n".join(out)


def verdict_csv(frame: pd.DataFrame) -> str:
    """The frame, numbers unrounded (points), runs as 'run_id:config_hash' separated by spaces."""
    return frame_csv(frame.assign(runs=frame["runs"].map(lambda rs: " ".join(f"{i}:{h}" for i, h in rs))))


def aggregate_frame(found: list[Comparison]) -> pd.DataFrame:
    return pd.DataFrame([a for c in found for a in c.aggregate],
                        columns=["experiment", "treatment", "role", "probability", "ci_low", "ci_high", "tasks"])


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
