"""The committed records (results/) are what the README says: every study rerun under the current
rules. Reads results/ only; each test fails on records made under the former ones (one data split
for every seed, studies without the A/A control or a second reading)."""
import json
from collections import defaultdict
from pathlib import Path

import pytest

from grporm.plan.experiment import load_experiment

ROOT = Path(__file__).resolve().parents[1]
STUDIES = sorted(p for p in (ROOT / "experiments" / "studies").glob("*.yaml") if p.name != "base.yaml")
# arms that are no reading of GRPO-RM's objective: the controls, the backbone as shipped, the default
NOT_A_READING = {"pretrained", "ce", "ce_steps2x", "anchor", "default"}


def _records(experiment: str) -> list[dict]:
    paths = sorted((ROOT / "results" / experiment / "runs").glob("*/record.json"))
    return [json.loads(p.read_text()) for p in paths]


# the noise floor too: `grporm verify` judges reruns against it (experiments/noise.yaml, make noise)
@pytest.mark.parametrize("path", STUDIES + [ROOT / "experiments" / "quick.yaml", ROOT / "experiments" / "noise.yaml"],
                         ids=lambda p: p.stem)
def test_every_run_of_the_file_is_committed_with_its_config_hash(path):
    experiment = load_experiment(path)
    committed = {r["run_id"]: r for r in _records(experiment.name) if r["status"] == "finished"}
    missing = [run.run_id for run in experiment.runs if run.run_id not in committed]
    assert not missing, f"{len(missing)} of {len(experiment.runs)} runs not committed, e.g. {missing[:3]}"
    assert all(committed[run.run_id]["config_hash"] == run.config_hash() for run in experiment.runs)


@pytest.mark.parametrize("path", STUDIES, ids=lambda p: p.stem)
def test_every_study_has_the_anchor_and_a_reading_besides_the_default(path):
    experiment = load_experiment(path)
    if experiment.runs[0].verdict.aa == []:
        pytest.skip("declares no A/A control (`verdict.aa: []`): a curve along one axis, cut to fit 2 cores")
    arms = {run.axes.get("arm") for run in experiment.runs}
    assert "anchor" in arms and arms - NOT_A_READING, arms


@pytest.mark.parametrize("path", STUDIES + [ROOT / "experiments" / "quick.yaml"], ids=lambda p: p.stem)
def test_each_seed_draws_its_own_data_so_the_pretrained_sr_differs_between_seeds(path):
    experiment = load_experiment(path)
    if experiment.runs[0].task == "segmentation":
        pytest.skip("segmentation scores the fine-tuned head: no pretrained arm")
    by_backbone = defaultdict(set)
    for record in _records(experiment.name):
        if record["method"] == "pretrained":
            by_backbone[record["backbone"]].add(record["metrics"]["sr_top1"])
    assert by_backbone and all(len(values) > 1 for values in by_backbone.values()), dict(by_backbone)


def test_the_quick_verdict_has_at_least_3_seeds():
    assert len({run.seed for run in load_experiment(ROOT / "experiments" / "quick.yaml").runs}) >= 3


def test_base_states_the_budget_the_budget_study_found():
    """base.yaml's budget comment says what results/tables/curves_steps.csv says (the rule's plateau, or
    that there is none up to the longest budget measured), so the comment cannot drift from the records."""
    import re

    import pandas as pd

    from grporm.analysis.curves import plateau

    steps = pd.read_csv(ROOT / "results" / "tables" / "curves_steps.csv")
    steps = steps[(steps["experiment"] == "study_budget") & (steps["claim"] == "Budget: SR")]
    text = " ".join((ROOT / "experiments" / "studies" / "base.yaml").read_text().replace("#", " ").split())
    stop = plateau(steps)
    if stop is None:
        said = re.search(r"found no plateau up to (\d+) epochs", text)
        assert said and int(said.group(1)) == int(steps["next"].max()), said
    else:
        said = re.search(r"the budget study's plateau: (\d+) epochs", text)
        assert said and int(said.group(1)) == int(stop), said
