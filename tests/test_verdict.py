"""The verdict of any experiment (analysis/verdict.py) on hand-made records with known answers: pairing,
bounds at α / m per side (Bonferroni over a row's treatments) and words read off them, the claim words
at the margin, the look levels of seeds until decided, decided cells, the paired P(improvement), the
A/A line, runner-up words and close-call marks, the default rule, `grporm compare`; and one real tiny
experiment, never seen before, through `grporm run` and `grporm report`."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from grporm import stats as inf
from grporm.analysis.records import load_runs
from grporm.analysis.verdict import FRAME_COLUMNS, comparisons, verdict_frame
from grporm.analysis.verdict_render import verdict_section
from grporm.cli import app
from grporm.errors import ConfigError
from grporm.plan.experiment import build_experiment
from grporm.stats import paired_difference

CE = (0.80, 0.82, 0.81, 0.83, 0.79)
AHEAD = (0.84, 0.85, 0.86, 0.85, 0.84)      # +3.8 points on average, consistently
BEHIND = (0.70, 0.73, 0.71, 0.72, 0.70)
MIXED = (0.82, 0.80, 0.83, 0.81, 0.81)      # differences +2, -2, +2, -2, +2: no difference
DECLARED = {"control": "ce", "aa": ["anchor"], "margin": 1.0, "claims": [{"name": "SR", "measure": "sr"}]}


def _patch(folder: Path, **fields) -> None:
    record = json.loads((folder / "record.json").read_text())
    for key, value in fields.items():
        if key == "verdict":
            record["config"]["verdict"] = value
        else:
            record[key] = value
    (folder / "record.json").write_text(json.dumps(record))


def _arm(write_run, root: Path, exp: str, arm: str | None, method: str, values, *, verdict=None, tuning=None,
         suffix: str = "", axes: dict | None = None, **more) -> None:
    for seed, value in enumerate(values):
        extra_axes = ({"arm": arm} if arm is not None else {}) | (axes or {})
        name = arm or method
        tag = "".join(f"-{k}={v}" for k, v in (axes or {}).items())
        folder = write_run(root, exp, f"{exp}-{name}{tag}{suffix}-s{seed}", method=method, seed=seed, sr=value,
                           axes=extra_axes, **more)
        _patch(folder, verdict=verdict, tuning=tuning)


@pytest.fixture(scope="module")
def results(write_run, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("verdict") / "results"
    exp = "mine"
    _arm(write_run, root, exp, "ce", "ce", CE, verdict=DECLARED)
    _arm(write_run, root, exp, "better", "grpo_rm", AHEAD, verdict=DECLARED)
    _arm(write_run, root, exp, "worse", "grpo_rm", BEHIND, verdict=DECLARED,
         tuning={"close_call": True, "edge": False, "pick": "winner"})
    _arm(write_run, root, exp, "flat", "grpo_rm", MIXED, verdict=DECLARED, tuning={"close_call": True, "pick": "winner"})
    # the runner-up runs of flat's close call: ahead there
    _arm(write_run, root, exp, "flat", "grpo_rm", AHEAD, verdict=DECLARED, suffix="-lr=runner_up",
         tuning={"close_call": True, "pick": "runner_up"}, axes={"tune.pick": "runner_up"})
    _arm(write_run, root, exp, "anchor", "grpo_rm", CE, verdict=DECLARED)
    _arm(write_run, root, exp, "pretrained", "pretrained", CE, verdict=DECLARED)
    return root


def _frame(results: Path):
    frame = verdict_frame(load_runs(results))
    return {row["treatment"]: row for _, row in frame.iterrows()}, frame


def test_frame_columns_and_paired_numbers(results: Path):
    by, frame = _frame(results)
    assert list(frame.columns) == list(FRAME_COLUMNS) and len(frame) == 4  # pretrained is neither; one claim
    cell = paired_difference(dict(enumerate(AHEAD)), dict(enumerate(CE)), confidence=1 - 2 * 0.05 / 3)  # α/3 each side
    assert by["better"]["diff"] == pytest.approx(100 * cell.mean)
    assert (by["better"]["ci_low"], by["better"]["ci_high"]) == pytest.approx((100 * cell.ci_low, 100 * cell.ci_high))
    assert by["better"]["n"] == 5 and by["anchor"]["role"] == "aa" and by["better"]["role"] == "treatment"
    assert len(by["better"]["runs"]) == 10 and all(len(pair) == 2 for pair in by["better"]["runs"])


def test_bonferroni_over_the_treatments_only_and_the_words_read_off_the_bounds(results: Path):
    by, _ = _frame(results)
    for t in ("better", "flat", "worse"):
        assert by[t]["level"] == pytest.approx(0.05 / 3) and by[t]["family"] == 3
        assert (by[t]["p"] < by[t]["level"]) == (by[t]["word"] in ("ahead", "behind"))  # the test is the bound
    assert by["anchor"]["level"] == pytest.approx(0.05) and by["anchor"]["family"] == 1  # outside the family
    assert (by["better"]["word"], by["worse"]["word"], by["flat"]["word"]) == ("ahead", "behind", "no difference")
    assert by["worse"]["below_margin"] and not by["better"]["below_margin"] and not by["flat"]["below_margin"]


def test_no_displayed_interval_excludes_zero_next_to_no_difference(results: Path, write_run, tmp_path: Path):
    """Over a whole frame (the fixture's and one of many arms near the edge of their bounds)."""
    rng = __import__("numpy").random.default_rng(5)
    for i in range(8):
        _arm(write_run, tmp_path, "edge", f"g{i}", "grpo_rm", [v + rng.normal(0.004, 0.01) for v in CE], verdict=DECLARED)
    _arm(write_run, tmp_path, "edge", "ce", "ce", CE, verdict=DECLARED)
    for frame in (_frame(results)[1], verdict_frame(load_runs(tmp_path))):
        shown = frame[frame["ci_low"].map(math.isfinite)]
        assert len(shown) and set(shown["word"]) <= {"ahead", "behind", "no difference"}
        excludes = (shown["ci_low"] > 0) | (shown["ci_high"] < 0)
        assert (excludes == shown["word"].isin(["ahead", "behind"])).all()
        assert ((shown["ci_low"] > 0) == (shown["word"] == "ahead")).all()


def test_planning_columns_decide_nothing(results: Path):
    """detectable: the one-sided test at the fixed design's level (α / m) at 80% power, pooled spread;
    a decided claim has nothing left to plan (seeds_needed NaN)."""
    by, _ = _frame(results)
    cells = [paired_difference(dict(enumerate(v)), dict(enumerate(CE))) for v in (AHEAD, BEHIND, MIXED, CE)]
    std = 100 * math.sqrt(sum(c.std ** 2 for c in cells) / 4)
    assert by["better"]["detectable"] == pytest.approx(inf.detectable(std, 5, 0.05 / 3, sides=1))
    assert by["better"]["claim_word"] == inf.REPRODUCED and math.isnan(by["better"]["seeds_needed"])
    assert by["better"]["row_upper"] == pytest.approx(max(by[t]["ci_high"] for t in ("better", "flat", "worse")))


def test_runner_up_word_and_close_call_mark(results: Path):
    by, _ = _frame(results)
    assert by["flat"]["runner_up_word"] == "ahead" and not by["flat"]["no_rerun"]  # the rerun answers the close call
    assert by["worse"]["close_call"] and by["worse"]["no_rerun"] and by["worse"]["runner_up_word"] == ""
    assert by["flat"]["diff"] == pytest.approx(100 * paired_difference(dict(enumerate(MIXED)), dict(enumerate(CE))).mean)
    lines, files = verdict_section(comparisons(load_runs(results)))
    text = files[".md"]
    assert "no difference (p " in text and "(runner-up: ahead)" in text and text.count("‡") == 1 + text.count("‡ =")


def test_claim_word_aggregate_and_aa_rate_are_shown(results: Path):
    run_set = load_runs(results)
    [mine] = comparisons(run_set)
    assert set(mine.frame["claim_word"]) == {inf.REPRODUCED}  # better is ahead on the only row
    aggregate = {a["treatment"]: a for a in mine.aggregate}
    # every seed improves: complete separation, said in words, no interval without width
    assert aggregate["better"]["probability"] == 1.0 and aggregate["better"]["separation"] == "all"
    assert math.isnan(aggregate["better"]["ci_low"]) and math.isnan(aggregate["better"]["ci_high"])
    assert aggregate["worse"]["probability"] == 0.0 and aggregate["worse"]["separation"] == "none"
    assert aggregate["better"]["tasks"] == 1 and aggregate["better"]["seeds"] == 5
    lines, files = verdict_section(comparisons(run_set))
    text = files[".md"]
    assert "**reproduced**" in text and "P(improvement) [95%]" in text
    assert "| `better` | 1.00 (every seed improves on every row: complete separation, no interval) | 1 | 5 |" in text
    assert "[1.00, 1.00]" not in text and "[0.00, 0.00]" not in text
    assert "A/A `anchor`: 0 of 1 cells excluded 0 (the rate at most 95%, one-sided 95% Clopper-Pearson" in text
    assert " ties " not in text.lower()
    assert set(files) == {".md", "_summary.md", ".tex", ".csv", "_aggregate.csv"}
    assert files[".csv"].splitlines()[0].startswith(",".join(FRAME_COLUMNS[:5]))


def test_the_summary_has_one_line_per_claim_with_who_is_ahead_behind_and_what_turns(results: Path):
    found = comparisons(load_runs(results))
    sr = found[0].frame[found[0].frame["claim"] == "SR"].set_index("treatment")
    assert bool(sr["primary"].all()) and set(sr["claim_word"]) == {inf.REPRODUCED}
    assert (sr.loc["better", "word"], sr.loc["worse", "word"]) == (inf.AHEAD, inf.BEHIND)
    assert sr["seeds_needed"].isna().all()                           # a decided claim needs no plan
    assert sr.loc["anchor", "role"] == "aa" and sr.loc["anchor", "word"] == inf.NO_DIFFERENCE
    assert (sr.loc["flat", "word"], sr.loc["flat", "runner_up_word"]) == (inf.NO_DIFFERENCE, inf.AHEAD)
    # the summary renders those values, one line per claim
    _, files = verdict_section(found)
    [line] = [row for row in files["_summary.md"].splitlines() if row.startswith("| `mine` | SR |")]
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[2] == "4 epochs, 200/class, 32 px"  # where the words hold, from the control's configs
    assert cells[3:5] == ["primary", "**reproduced**"] and cells[10] == "0 of 1" and "no difference → ahead" in cells[11]
    assert "| `mine` | `better` 1.00 (every seed improves" in files["_summary.md"]  # P(improvement), best first
    assert "**1 primary claim**, each at α = 0.05 one-sided over its rows' treatments" in files["_summary.md"]
    assert "1 reproduced, 0 contradicted, 0 inconclusive" in files["_summary.md"]


@pytest.mark.parametrize("treated, expected, word", [
    (BEHIND, inf.CONTRADICTED, "behind"),                                    # far behind
    ([c + d for c, d in zip(CE, (0.001, -0.001, 0.002, 0.0, -0.002))], inf.CONTRADICTED, "no difference"),  # within ±δ
    ((0.70, 0.90, 0.75, 0.95, 0.80), inf.INCONCLUSIVE, "no difference"),     # too noisy to rule out δ
])
def test_contradicted_means_every_upper_bound_below_the_margin(write_run, tmp_path: Path, treated, expected, word):
    _arm(write_run, tmp_path, "x", "ce", "ce", CE, verdict=DECLARED)
    _arm(write_run, tmp_path, "x", "grpo", "grpo_rm", treated, verdict=DECLARED)
    frame = verdict_frame(load_runs(tmp_path))
    assert set(frame["claim_word"]) == {expected} and set(frame["word"]) == {word}
    assert (frame["ci_high"] < 1.0).all() == (expected == inf.CONTRADICTED)
    if expected == inf.INCONCLUSIVE:  # reported with the row's upper bound and the planning seeds
        assert frame["row_upper"].iloc[0] == pytest.approx(frame["ci_high"].max()) and frame["seeds_needed"].iloc[0] > 5
        _, files = verdict_section(comparisons(load_runs(tmp_path)))
        assert "a fixed design would need" in files[".md"] and "(planning only)" in files[".md"]


def test_default_rule_on_a_method_axis_and_pairing_by_every_shared_axis(write_run, tmp_path: Path):
    """No declaration: CE is the control (method axis here), every metric recorded is a row, and the
    runs pair by seed within each value of another shared axis."""
    for factor, shift in ((10, 0.0), (100, -0.1)):
        _arm(write_run, tmp_path, "u", None, "ce", CE, axes={"data.imbalance_factor": factor})
        _arm(write_run, tmp_path, "u", None, "grpo_rm", [v + shift for v in AHEAD], axes={"data.imbalance_factor": factor})
    _arm(write_run, tmp_path, "u", None, "pretrained", CE)
    frame = verdict_frame(load_runs(tmp_path))
    assert set(frame["treatment"]) == {"grpo_rm"} and set(frame["claim"]) == {"SR", "kNN"}  # head is None here
    sr = frame[frame["claim"] == "SR"].set_index("axes")
    assert set(sr.index) == {"data.imbalance_factor=10", "data.imbalance_factor=100"}
    assert sr.loc["data.imbalance_factor=10", "word"] == "ahead" and sr.loc["data.imbalance_factor=100", "word"] == "behind"
    assert set(frame["claim_word"]) == {inf.INCONCLUSIVE}  # ahead on one row only


def test_no_control_says_why(write_run, tmp_path: Path):
    _arm(write_run, tmp_path, "noce", "a", "grpo_rm", CE)
    _arm(write_run, tmp_path, "noce", "b", "grpo_rm", AHEAD)
    (found,) = comparisons(load_runs(tmp_path))
    assert found.frame.empty and found.declaration.control is None
    [note] = found.notes
    assert note.startswith("`noce`: no default control: no arm is named ce and none trains with method ce")
    assert "add `control: NAME` under `verdict:`" in note and "NAME one of: a, b" in note
    lines, files = verdict_section([found])
    assert files == {} and f"- {note}" in lines  # the report says it, in the section it skips


def test_a_declared_control_the_runs_lack_says_so(write_run, tmp_path: Path):
    _arm(write_run, tmp_path, "lacks", "ce", "ce", CE, verdict={**DECLARED, "control": "baseline"})
    _arm(write_run, tmp_path, "lacks", "g", "grpo_rm", AHEAD, verdict={**DECLARED, "control": "baseline"})
    (found,) = comparisons(load_runs(tmp_path))
    assert found.frame.empty and found.declaration.control == "baseline"
    assert [n for n in found.notes if n.startswith("`lacks`: no arm named `baseline` (the control)")]


@pytest.mark.parametrize("verdict", [None, {"control": "baseline"}, {"claims": [{"name": "SR", "measure": "sr"}]}])
def test_a_ce_arm_with_any_name_is_the_default_control(write_run, tmp_path: Path, verdict):
    """The CE arm called `baseline`, declared or not: the full verdict, control `baseline`."""
    _arm(write_run, tmp_path, "own", "baseline", "ce", CE, verdict=verdict)
    _arm(write_run, tmp_path, "own", "grpo", "grpo_rm", AHEAD, verdict=verdict)
    _arm(write_run, tmp_path, "own", "worse", "grpo_rm", BEHIND, verdict=verdict)
    (found,) = comparisons(load_runs(tmp_path))
    assert found.declaration.control == "baseline" and not found.notes
    sr = found.frame[found.frame["claim"] == "SR"].set_index("treatment")
    assert set(sr.index) == {"grpo", "worse"} and set(sr["control"]) == {"baseline"}
    assert (sr.loc["grpo", "word"], sr.loc["worse", "word"]) == (inf.AHEAD, inf.BEHIND)


def test_two_ce_arms_without_a_declared_control_say_which_line_to_add(write_run, tmp_path: Path):
    for arm, method in (("ce_short", "ce"), ("ce_long", "ce"), ("grpo", "grpo_rm")):
        _arm(write_run, tmp_path, "two", arm, method, CE)
    (found,) = comparisons(load_runs(tmp_path))
    assert found.frame.empty and found.declaration.control is None
    assert "2 train with method ce (ce_long, ce_short)" in found.notes[0] and "verdict: {control: ce_long}" in found.notes[0]


def test_compare_keeps_experiments_of_two_folders_apart(write_run, tmp_path: Path):
    for folder, values in (("committed", BEHIND), ("mine", AHEAD)):
        _arm(write_run, tmp_path / folder, "same", "ce", "ce", CE, verdict=DECLARED)
        _arm(write_run, tmp_path / folder, "same", "grpo", "grpo_rm", values, verdict=DECLARED)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["compare", str(tmp_path / "committed"), str(tmp_path / "mine"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert f"### `{tmp_path / 'committed'}/same`" in result.output and f"### `{tmp_path / 'mine'}/same`" in result.output
    assert "behind (p" in result.output and "ahead (p" in result.output
    assert sorted(p.name for p in out.iterdir()) == ["verdict.csv", "verdict.md", "verdict.tex", "verdict_aggregate.csv",
                                                     "verdict_summary.md"]
    missing = CliRunner().invoke(app, ["compare", str(tmp_path / "nowhere")])
    assert missing.exit_code != 0 and "does not exist" in missing.output


def test_the_declaration_is_checked_at_load_and_never_hashed():
    raw = {"name": "e", "matrix": {"arm": [{"name": "ce", "method": "ce"}, {"name": "g", "method": "grpo_rm"}]}}
    plain = build_experiment({**raw, "eval": {"transfer": ["digits"]}}, "e.yaml").runs
    declared = build_experiment({**raw, "eval": {"transfer": ["digits"]}, "verdict": {"control": "ce", "margin": 2.0,
                                                    "claims": [{"name": "T", "measure": "transfer_sr/digits"}]}}, "e.yaml").runs
    assert [(r.run_id, r.config_hash()) for r in plain] == [(r.run_id, r.config_hash()) for r in declared]
    assert declared[0].model_dump(mode="json")["verdict"]["margin"] == 2.0  # what the record stores
    with pytest.raises(ConfigError, match="unknown verdict measure 'srr'"):
        build_experiment({**raw, "verdict": {"claims": [{"name": "SR", "measure": "srr"}]}}, "e.yaml")
    with pytest.raises(ConfigError, match="needs a condition"):
        build_experiment({**raw, "verdict": {"claims": [{"name": "T", "measure": "transfer_sr"}]}}, "e.yaml")
    with pytest.raises(ConfigError, match="verdict.claims"):
        build_experiment({**raw, "verdict": {"claims": [{"measure": "sr"}]}}, "e.yaml")


@pytest.mark.slow
def test_a_new_experiment_gets_its_verdict_from_grporm_report(tmp_path: Path):
    """A tiny experiment file the suite has never seen: a CE arm and a GRPO-RM arm over 3 seeds, real
    runs; `grporm report` shows its verdict rows from the records alone (the declaration stored there)."""
    from tests.tiny_runs import RESULTS, invoke, record, write_experiment

    write_experiment(tmp_path, name="tiny_new", matrix={"arm": [{"name": "ce", "method": "ce"},
                                                                {"name": "grpo", "method": "grpo_rm"}], "seed": [0, 1, 2]},
                     verdict={"margin": 5.0, "claims": [{"name": "SR", "measure": "sr"},
                                                        {"name": "Convergence", "measure": "first_epoch_knn5"}]})
    result = invoke(tmp_path)
    assert result.exit_code != 0 and "unknown verdict measure 'first_epoch_knn5'" in result.output  # knn5: no such measure
    write_experiment(tmp_path, name="tiny_new", matrix={"arm": [{"name": "ce", "method": "ce"},
                                                                {"name": "grpo", "method": "grpo_rm"}], "seed": [0, 1, 2]},
                     verdict={"margin": 5.0, "claims": [{"name": "SR", "measure": "sr"}]})
    result = invoke(tmp_path)
    assert result.exit_code == 0, result.output
    assert record(tmp_path, "digits-test_vit-ce-arm=ce-s0", "tiny_new")["config"]["verdict"]["margin"] == 5.0
    report = CliRunner().invoke(app, ["report", "--results", str(tmp_path / RESULTS)])
    assert report.exit_code == 0, report.output
    text = (tmp_path / RESULTS / "REPORT.md").read_text()
    assert "### `tiny_new`" in text and "Control: `ce` (arm)" in text and "claims: declared" in text
    assert "| SR | test_vit | 3 |" in text and "Seeds to decide (planning)" in text and "P(improvement)" in text
    assert (tmp_path / RESULTS / "tables" / "verdict.csv").read_text().count("tiny_new") == 1


def test_an_axis_only_the_treatments_have_names_them(write_run, tmp_path: Path):
    """CE run once, GRPO-RM at two temperatures (an axis CE lacks): two treatments of one row, one Holm family."""
    _arm(write_run, tmp_path, "t", None, "ce", CE)
    _arm(write_run, tmp_path, "t", None, "grpo_rm", AHEAD, axes={"grpo_rm.temperature": 0.5})
    _arm(write_run, tmp_path, "t", None, "grpo_rm", MIXED, axes={"grpo_rm.temperature": 2.0})
    sr = verdict_frame(load_runs(tmp_path)).query("claim == 'SR'").set_index("treatment")
    assert set(sr.index) == {"grpo_rm, grpo_rm.temperature=0.5", "grpo_rm, grpo_rm.temperature=2.0"}
    assert set(sr["axes"]) == {""} and set(sr["level"]) == {0.025}
    assert sr.loc["grpo_rm, grpo_rm.temperature=0.5", "word"] == "ahead"


def test_a_close_call_of_the_control_moves_only_the_control(write_run, tmp_path):
    """CE's decision is a close call, the arm's is clear: the sensitivity pairs CE at its runner-up with
    the arm at its winner, never with the arm's own runner-up runs (which a clear decision does not use)."""
    root, exp = tmp_path / "results", "ctl"
    close, clear = {"close_call": True, "pick": "winner"}, {"close_call": False, "pick": "winner"}
    _arm(write_run, root, exp, "ce", "ce", CE, verdict=DECLARED, tuning=close)
    _arm(write_run, root, exp, "ce", "ce", AHEAD, verdict=DECLARED, suffix="-lr=runner_up",
         tuning={**close, "pick": "runner_up"}, axes={"tune.pick": "runner_up"})
    _arm(write_run, root, exp, "flat", "grpo_rm", AHEAD, verdict=DECLARED, tuning=clear)
    # runs of the arm at its own runner-up (far behind): ignored, its decision is clear
    _arm(write_run, root, exp, "flat", "grpo_rm", [v - 0.3 for v in CE], verdict=DECLARED, suffix="-lr=runner_up",
         tuning={**clear, "pick": "runner_up"}, axes={"tune.pick": "runner_up"})
    by, _ = _frame(root)
    assert by["flat"]["word"] == "ahead" and by["flat"]["close_call"]
    assert by["flat"]["runner_up_word"] == "no difference"  # the arm's winners (AHEAD) against CE's runner-up (AHEAD)


def test_an_arm_with_the_control_s_own_method_is_a_reference_that_never_reproduces_a_claim(write_run, tmp_path: Path):
    """CE with twice the steps ahead of CE says nothing about GRPO-RM: it is shown, outside the Holm
    family, and the claim stays unreproduced."""
    root = tmp_path / "results"
    _arm(write_run, root, "abl", "ce", "ce", CE, verdict=DECLARED)
    _arm(write_run, root, "abl", "ce_steps2x", "ce", AHEAD, verdict=DECLARED)
    _arm(write_run, root, "abl", "grpo", "grpo_rm", MIXED, verdict=DECLARED)
    by, frame = _frame(root)
    assert (by["ce_steps2x"]["role"], by["ce_steps2x"]["word"]) == ("reference", inf.AHEAD)
    assert by["grpo"]["role"] == "treatment" and by["grpo"]["level"] == inf.ALPHA  # a family of one
    assert set(frame["claim_word"]) != {inf.REPRODUCED}
    _, files = verdict_section(comparisons(load_runs(root)))
    assert "`ce_steps2x` (reference)" in files[".md"] and "`ce_steps2x` (reference)" in files["_summary.md"]


def test_a_stored_declaration_of_the_former_rule_still_reads_and_an_experiment_file_cannot_use_it():
    """Records made before the margin rule store `target`: they read (the key dropped); a file is refused."""
    from grporm.config import VerdictConfig

    stored = VerdictConfig.from_stored({"control": "ce", "aa": ["anchor"], "target": 3.0,
                                        "claims": [{"name": "SR", "measure": "sr"}]})
    assert stored.margin == 1.0 and stored.claims[0].primary and stored.claims[0].measure == "sr"
    raw = {"name": "e", "matrix": {"arm": [{"name": "ce", "method": "ce"}, {"name": "g", "method": "grpo_rm"}]}}
    with pytest.raises(ConfigError, match="target"):
        build_experiment({**raw, "verdict": {"target": 3.0}}, "e.yaml")


def test_seeds_until_decided_levels_decided_cells_and_what_still_needs_seeds(write_run, tmp_path: Path):
    """With max_seeds the cell's level is its look's share of α (analysis/sequential.py) over the
    family; a cell ahead or below δ is decided, an open one names its treatment for more seeds, and a
    fixed design (or the cap) leaves nothing to add."""
    from grporm.analysis import sequential as seq
    from grporm.analysis.verdict import undecided_cells, undecided_treatments

    sequential = {**DECLARED, "max_seeds": 20, "batch": 2}
    noisy = (0.70, 0.90, 0.75, 0.95, 0.80)
    for name, values in (("ce", CE), ("better", AHEAD), ("noisy", noisy)):
        _arm(write_run, tmp_path, "s", name, "ce" if name == "ce" else "grpo_rm", values, verdict=sequential)
    frame = verdict_frame(load_runs(tmp_path)).set_index("treatment")
    assert frame.loc["better", "level"] == pytest.approx(seq.look_level(5, 5, 2, 20) / 2)
    assert frame.loc["better", "alpha_look"] < 0.05 and frame.loc["better", "look"] == 1
    assert not frame.loc["better", "last_look"]
    # at the first look's small level `better` is not yet ahead: both cells open, the claim inconclusive
    assert set(frame["claim_word"]) == {inf.INCONCLUSIVE}
    assert undecided_treatments(verdict_frame(load_runs(tmp_path))) == {("s", "better"), ("s", "noisy")}
    assert set(undecided_cells(verdict_frame(load_runs(tmp_path)))["backbone"]) == {"tf_efficientnet_lite0"}
    fixed = tmp_path / "fixed"
    for name, values in (("ce", CE), ("better", AHEAD), ("noisy", noisy)):
        _arm(write_run, fixed, "f", name, "ce" if name == "ce" else "grpo_rm", values, verdict=DECLARED)
    frame = verdict_frame(load_runs(fixed)).set_index("treatment")
    assert frame.loc["better", "level"] == pytest.approx(0.05 / 2) and frame.loc["better", "last_look"]
    assert frame.loc["better", "word"] == "ahead" and set(frame["claim_word"]) == {inf.REPRODUCED}
    assert frame["decided"].all()  # a decided claim: its open cells need no seeds either
    assert undecided_treatments(verdict_frame(load_runs(fixed))) == set()       # a fixed design adds nothing


def test_first_seeds_sets_the_first_look(write_run, tmp_path: Path):
    """Records of 5 seeds from a design that started at 3 with batch 2: the second look, its own share."""
    from grporm.analysis import sequential as seq

    sequential = {**DECLARED, "max_seeds": 9, "batch": 2}
    _arm(write_run, tmp_path, "s", "ce", "ce", CE, verdict=sequential)
    _arm(write_run, tmp_path, "s", "g", "grpo_rm", AHEAD, verdict=sequential)
    own = verdict_frame(load_runs(tmp_path)).iloc[0]
    told = verdict_frame(load_runs(tmp_path), first_seeds={"s": 3}).iloc[0]
    assert (own["look"], told["look"]) == (1, 2)
    assert told["level"] == pytest.approx(seq.look_level(5, 3, 2, 9)) != own["level"]


def test_the_aa_runner_up_cell_compares_like_with_like(write_run, tmp_path: Path):
    """CE's decision is a close call: the anchor's sensitivity cell is its runner-up against CE's
    runner-up, never CE at its runner-up against the anchor at its winner; without an anchor
    runner-up there is no such cell."""
    root = tmp_path / "results"
    close = {"close_call": True, "pick": "winner"}
    _arm(write_run, root, "aa", "ce", "ce", CE, verdict=DECLARED, tuning=close)
    _arm(write_run, root, "aa", "ce", "ce", BEHIND, verdict=DECLARED, suffix="-lr=runner_up",
         tuning={**close, "pick": "runner_up"}, axes={"tune.pick": "runner_up"})
    _arm(write_run, root, "aa", "anchor", "grpo_rm", CE, verdict=DECLARED, tuning=close)
    by, _ = _frame(root)
    assert by["anchor"]["runner_up_word"] == ""  # CE's runner-up (BEHIND) against the anchor's winner: not shown
    _arm(write_run, root, "aa", "anchor", "grpo_rm", BEHIND, verdict=DECLARED, suffix="-lr=runner_up",
         tuning={**close, "pick": "runner_up"}, axes={"tune.pick": "runner_up"})
    by, _ = _frame(root)
    assert by["anchor"]["runner_up_word"] == "no difference"  # runner-up against runner-up


def test_runs_shared_between_experiments_count_once_in_the_aa_line(write_run, tmp_path: Path):
    from grporm.analysis.verdict import evidence_key

    for exp in ("one", "two"):  # the same runs (same config apart from the experiment) in two experiments
        for name, values in (("ce", CE), ("g", AHEAD), ("anchor", BEHIND)):
            _arm(write_run, tmp_path, exp, name, "ce" if name == "ce" else "grpo_rm", values, verdict=DECLARED)
    _arm(write_run, tmp_path / "other", "three", "ce", "ce", CE, verdict=DECLARED)
    run_set = load_runs(tmp_path)
    frame = verdict_frame(run_set)
    aa = frame[frame["role"] == "aa"]
    assert len(aa) == 2 and aa["evidence"].nunique() == 1
    _, files = verdict_section(comparisons(run_set))
    assert "A/A, every experiment: 1 of 1 cells excluded 0" in files["_summary.md"]
    assert "1 more cell rest on runs another experiment shares, counted once" in files["_summary.md"]
    records = list(run_set.records.values())
    one = next(r for r in records if r.experiment == "one" and r.seed == 0 and r.axes.get("arm") == "g")
    other = next(r for r in records if r.experiment == "two" and r.seed == 0 and r.axes.get("arm") == "g")
    seed1 = next(r for r in records if r.experiment == "one" and r.seed == 1 and r.axes.get("arm") == "g")
    assert evidence_key(one) == evidence_key(other) != evidence_key(seed1)


def test_evidence_key_of_real_configs_ignores_the_experiment_and_evaluation_only():
    from grporm.analysis.verdict import evidence_key
    from grporm.config import RunConfig
    from grporm.records.schema import RunRecord

    def record(**changes):
        config = RunConfig(**changes).model_dump(mode="json")
        return RunRecord.from_json({"config": config, "lr": 0.001})

    base = evidence_key(record(experiment="a"))
    assert evidence_key(record(experiment="b")) == base
    assert evidence_key(record(experiment="b", eval={"knn_k": [5]})) == base  # what is measured, not the model
    assert evidence_key(record(experiment="a", seed=1)) != base
    assert evidence_key(record(experiment="a").model_copy(update={"lr": 0.002})) != base
