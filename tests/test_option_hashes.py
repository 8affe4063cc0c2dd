"""Options added after records were committed leave those records' config hashes unchanged at their
defaults (config.ADDED_OPTIONS), and change the hash when set. Reads results/ only."""
import json
from pathlib import Path

import pytest

from grporm.config import ADDED_OPTIONS, RunConfig
from grporm.experiment import load_experiment

ROOT = Path(__file__).resolve().parents[1]


# Whose committed records are current: the experiment files that pin data.split_seed to 0, the one
# split every record was drawn with before each seed drew its own data (docs/method.md, 'Seeds and
# data draws'); experiments/ablations/base.yaml pins it. quick and the studies do not: their seeds now
# draw their own data, so their config hashes changed and their records are stale until rerun.
EXPERIMENT_FILES = sorted(p for p in (ROOT / "experiments").rglob("*.yaml") if "paper" not in p.parts)


def _committed(name: str) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in (ROOT / "results" / name / "runs").glob("*/record.json")}


def _pin_the_old_split(path: Path) -> bool:
    return all(run.data.split_seed == 0 for run in load_experiment(path).runs)


PINNED = [p for p in EXPERIMENT_FILES if _pin_the_old_split(p) and _committed(load_experiment(p).name)]


def test_the_ablations_pin_the_old_split():
    ablations = {p for p in (ROOT / "experiments" / "ablations").glob("*.yaml") if p.name != "base.yaml"}
    assert ablations and ablations <= set(PINNED)


@pytest.mark.parametrize("path", PINNED, ids=lambda p: p.stem)
def test_files_that_pin_the_old_split_hash_as_their_committed_records(path):
    experiment = load_experiment(path)
    records = _committed(experiment.name)
    checked = 0
    for run in experiment.runs:
        if run.run_id in records:
            assert run.config_hash() == records[run.run_id]["config_hash"], run.run_id
            checked += 1
    assert checked == len(records)


def test_every_committed_record_rehashes_to_its_stored_hash():
    """Options and sections added since (ADDED_OPTIONS, tune) leave every committed record's identity alone."""
    paths = sorted((ROOT / "results").glob("*/runs/*/record.json"))
    assert paths, "no committed records"
    for path in paths:
        record = json.loads(path.read_text())
        assert RunConfig.model_validate(record["config"]).config_hash() == record["config_hash"], path


@pytest.mark.parametrize("key, value", [("solved_threshold", 0.9), ("feature_uniformity", 0.1),
                                        ("feature_uniformity_t", 1.0), ("group", "expected")])
def test_a_new_option_set_changes_the_hash(key, value):
    base = RunConfig(method="grpo_rm")
    assert RunConfig(method="grpo_rm", grpo_rm={key: value}).config_hash() != base.config_hash()
    if key != "group":  # a new Literal value, not a new key
        assert ("grpo_rm", key) in ADDED_OPTIONS
