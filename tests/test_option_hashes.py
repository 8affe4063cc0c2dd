"""A run's identity across versions: options added later leave hashes alone at their default
(config.ADDED_OPTIONS), retired ones are hashed at their last default (config.RETIRED_OPTIONS), so
every committed record is found again by its config hash. Reads results/ only."""
import json
from pathlib import Path

import pytest

from grporm.config import ADDED_OPTIONS, RETIRED_OPTIONS, RunConfig
from grporm.plan.experiment import _REPLACED_BY, build_experiment

ROOT = Path(__file__).resolve().parents[1]


def test_every_committed_record_rehashes_to_its_stored_hash():
    paths = sorted((ROOT / "results").glob("*/runs/*/record.json"))
    assert paths, "no committed records"
    for path in paths:
        record = json.loads(path.read_text())
        assert RunConfig.from_stored(record["config"]).config_hash() == record["config_hash"], path


def test_no_committed_record_used_a_retired_option():
    for path in sorted((ROOT / "results").glob("*/runs/*/record.json")):
        config = json.loads(path.read_text())["config"]
        for section, retired in RETIRED_OPTIONS.items():
            for key, last in retired.items():
                assert config.get(section, {}).get(key, last) == last, (path, key)


def test_a_stored_config_that_used_a_retired_option_does_not_read():
    stored = RunConfig(method="ce").model_dump(mode="json")
    stored["train"] |= {"lr_grid": [], "search_epochs": 1, "search_train_per_class": None}
    stored["tune"]["seed"] = None
    assert RunConfig.from_stored(stored).config_hash() == RunConfig(method="ce").config_hash()
    stored["train"]["lr_grid"] = [1e-3, 1e-2]
    with pytest.raises(ValueError, match="lr_grid"):
        RunConfig.from_stored(stored)


def test_every_retired_option_is_refused_with_what_replaced_it():
    retired = {f"{section}.{key}" for section, keys in RETIRED_OPTIONS.items() for key in keys}
    assert retired == set(_REPLACED_BY)
    for dotted in retired:
        section, key = dotted.split(".")
        with pytest.raises(ValueError, match=rf"x.yaml: {dotted}: retired option, use "):
            build_experiment({section: {key: 1}}, "x.yaml")


@pytest.mark.parametrize("key, value", [("solved_threshold", 0.9), ("feature_uniformity", 0.1),
                                        ("feature_uniformity_t", 1.0), ("group", "expected")])
def test_a_new_option_set_changes_the_hash(key, value):
    base = RunConfig(method="grpo_rm")
    assert RunConfig(method="grpo_rm", grpo_rm={key: value}).config_hash() != base.config_hash()
    if key != "group":  # a new Literal value, not a new key
        assert ("grpo_rm", key) in ADDED_OPTIONS
