"""Every class of config error gives one line naming the key, exit code 2, no traceback."""
import copy
import hashlib
import json

import pytest
from typer.testing import CliRunner

from grporm.cli import app
from grporm.config import ADDED_OPTIONS, RunConfig
from grporm.errors import ConfigError
from grporm.plan.experiment import build_experiment, load_experiment

runner = CliRunner()


def write(tmp_path, text):
    path = tmp_path / "exp.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "text, expected",
    [
        ("train: {lr: [oops\n", "malformed YAML at line"),
        ("- just\n- a list\n", "top level must be a mapping"),
        ("trian: {lr: 0.1}\n", "trian: unknown key (did you mean 'train'?)"),
        ("train: {lrr: 0.1}\n", "train.lrr: unknown key (did you mean 'lr'?)"),
        ("train: {epochs: many}\n", "train.epochs: Input should be a valid integer"),
        ("train: {lr: -1}\n", "train.lr: Input should be greater than 0"),
        ("grpo_rm: {clip_eps: 1.5}\n", "grpo_rm.clip_eps: Input should be less than 1"),
        ("grpo_rm: {rewards: {acc: 1}}\n", "grpo_rm.rewards: unknown reward 'acc'"),
        ("grpo_rm: {advantage_scale: global}\n", "grpo_rm.advantage_scale: Input should be 'group', 'batch' or 'none'"),
        ("method: sft\n", "method: unknown method 'sft'"),
        ("data: {name: cifar11}\n", "data.name: unknown data set 'cifar11'"),
        ("matrix: {train.lrr: [1, 2]}\n", "matrix: train.lrr: unknown key"),
        ("matrix: {seed: []}\n", "matrix.seed: must be a non-empty list"),
        ("matrix: {seed: [0, 0]}\n", "two runs the id"),
        ("name: ../escape\n", "name: must be letters"),
        ("name: Logs\n", "name: 'Logs' is <results>/Logs, a folder the suite keeps for itself"),
        ("name: tuning\n", "name: 'tuning' is <results>/tuning, a folder the suite keeps for itself"),
        ("matrix: {arm: [{method: ce}]}\n", "matrix.arm[0]: each arm is a mapping with a name"),
        ("matrix: {arm: [{name: a, grpo_rm.grup: expected}]}\n", "matrix.arm[0] (a): grpo_rm.grup: unknown key"),
        ("matrix: {arm: [{name: a}, {name: a, method: ce}]}\n", "two arms are named 'a'"),
        ("matrix: {arm: []}\n", "matrix.arm: must be a non-empty list of arms"),
    ],
)
def test_config_errors_name_the_key_and_exit_2(tmp_path, text, expected):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=None) as info:
        load_experiment(path)
    assert expected in str(info.value)
    result = runner.invoke(app, ["run", str(path), "--dry-run"])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0]
    assert "Traceback" not in result.output


def test_missing_file_is_one_line(tmp_path):
    result = runner.invoke(app, ["run", str(tmp_path / "nope.yaml"), "--dry-run"])
    assert result.exit_code == 2 and "nope.yaml: does not exist" in result.output


def test_matrix_expands_and_ids_name_the_axes():
    exp = build_experiment(
        {"matrix": {"method": ["ce", "grpo_rm"], "grpo_rm.clip_eps": [0.1, 0.3], "seed": [0, 1]}}, "x.yaml"
    )
    assert len(exp.runs) == 8
    ids = {r.run_id for r in exp.runs}
    assert "fashion_mnist-tf_efficientnet_lite0-grpo_rm-clip_eps=0.3-s1" in ids
    assert {r.grpo_rm.clip_eps for r in exp.runs} == {0.1, 0.3}


def test_arms_bundle_settings_so_ce_runs_once():
    arms = [{"name": "ce", "method": "ce"}, {"name": "default", "method": "grpo_rm"},
            {"name": "anchor", "method": "grpo_rm", "grpo_rm.rewards": {"uniformity_all": 1.0},
             "grpo_rm.advantage_scale": "none", "train.grad_clip": 0.1}]
    exp = build_experiment({"matrix": {"arm": arms, "seed": [0, 1]}, "grpo_rm": {"clip_eps": 0.3}}, "x.yaml")
    assert [r.run_id for r in exp.runs[:3]] == ["fashion_mnist-tf_efficientnet_lite0-ce-arm=ce-s0",
                                                "fashion_mnist-tf_efficientnet_lite0-ce-arm=ce-s1",
                                                "fashion_mnist-tf_efficientnet_lite0-grpo_rm-arm=default-s0"]
    anchor = exp.runs[-1]
    assert anchor.axes == {"arm": "anchor", "seed": 1}
    assert anchor.grpo_rm.rewards == {"uniformity_all": 1.0} and anchor.grpo_rm.advantage_scale == "none"
    assert anchor.grpo_rm.clip_eps == 0.3 and anchor.train.grad_clip == 0.1  # the rest of the file still applies
    default = exp.runs[2]
    assert default.train.grad_clip == 1.0 and default.grpo_rm.rewards == {"accuracy": 1.0, "uniformity_prob": 1.0}
    # an arm is a label: the same settings under another name have the same config hash
    again = build_experiment({"matrix": {"arm": [{"name": "other", "method": "ce"}], "seed": [0]},
                              "grpo_rm": {"clip_eps": 0.3}}, "x.yaml")
    assert again.runs[0].config_hash() == exp.runs[0].config_hash()


def test_matrix_exclude_leaves_out_matching_combinations_and_keeps_the_others_ids():
    arms = [{"name": "ce", "method": "ce"}, {"name": "default", "method": "grpo_rm"}]
    raw = {"matrix": {"arm": arms, "train.epochs": [4, 32], "seed": [2, 3]}}
    full = {r.run_id: r.config_hash() for r in build_experiment(raw, "x.yaml").runs}
    raw["matrix"]["exclude"] = [{"train.epochs": 32, "arm": "default"}]
    cut = build_experiment(raw, "x.yaml").runs
    assert len(full) == 8 and len(cut) == 6
    assert not any(r.axes["arm"] == "default" and r.train.epochs == 32 for r in cut)
    assert all(full[r.run_id] == r.config_hash() for r in cut)  # the kept runs are the same runs
    # the same through an override, e.g. to cut an arm for one session
    again = build_experiment({"matrix": {"arm": arms, "train.epochs": [4, 32], "seed": [2, 3]}}, "x.yaml",
                             ["matrix.exclude=[{arm: ce, seed: 3}]"])
    assert len(again.runs) == 6 and not any(r.axes["arm"] == "ce" and r.seed == 3 for r in again.runs)
    # an excluded combination is left out before it is validated
    assert len(build_experiment({"matrix": {"train.epochs": [4, -1], "exclude": [{"train.epochs": -1}]}}, "x.yaml").runs) == 1
    with pytest.raises(ConfigError, match="epochs"):
        build_experiment({"matrix": {"train.epochs": [4, -1]}}, "x.yaml")
    # an override that drops the excluded arm leaves the file's entry matching nothing, not an error
    narrowed = build_experiment(raw, "x.yaml", ["matrix.arm=[{name: ce, method: ce}]", "matrix.train.epochs=[32]"])
    assert [r.run_id for r in narrowed.runs] == [full_id for full_id in full if "-ce-" in full_id and "epochs=32" in full_id]


@pytest.mark.parametrize("exclude, says", [
    ([{"train.epoch": 32}], "'train.epoch' is not an axis of this matrix; the axes are arm, train.epochs"),
    ([{"train.epochs": 64}], "train.epochs: 64 is not one of the axis's values [4, 32]"),
    ([{"arm": "dflt"}], "arm: 'dflt' is not one of the axis's values"),
    ([{}], "must be a mapping of matrix axes to values"),
    ("epochs", "must be a non-empty list of mappings"),
    ([{"arm": "ce"}, {"arm": "default"}], "leaves no run; exclude fewer combinations"),
])
def test_matrix_exclude_refuses_what_would_exclude_nothing_or_everything(exclude, says):
    arms = [{"name": "ce", "method": "ce"}, {"name": "default", "method": "grpo_rm"}]
    with pytest.raises(ConfigError, match="matrix.exclude") as err:
        build_experiment({"matrix": {"arm": arms, "train.epochs": [4, 32], "exclude": exclude}}, "x.yaml")
    assert says in str(err.value) and "\n" not in str(err.value)


def test_overrides_set_values_and_narrow_matrix_axes():
    raw = {"matrix": {"method": ["ce", "grpo_rm"]}, "train": {"lr": 0.1}}
    exp = build_experiment(raw, "x.yaml", ["train.lr=3e-4", "method=ce", "grpo_rm.rewards={accuracy: 1}"])
    assert [r.method for r in exp.runs] == ["ce"]
    assert exp.runs[0].train.lr == pytest.approx(3e-4)
    assert exp.runs[0].grpo_rm.rewards == {"accuracy": 1}
    with pytest.raises(ConfigError, match="key=value"):
        build_experiment(raw, "x.yaml", ["train.lr"])


def test_config_hash_ignores_tracking_but_not_training():
    a = build_experiment({}, "x.yaml").runs[0]
    b = build_experiment({"tracking": {"mode": "disabled"}}, "x.yaml").runs[0]
    c = build_experiment({"train": {"lr": 0.5}}, "x.yaml").runs[0]
    assert a.config_hash() == b.config_hash() != c.config_hash()


def test_shipped_experiments_validate():
    from pathlib import Path

    for path in sorted(Path("experiments").rglob("*.yaml")):
        assert load_experiment(path).runs, path


def test_dry_run_prints_runs(tmp_path):
    path = write(tmp_path, "name: t\nmatrix: {method: [ce, grpo_rm]}\n")
    result = runner.invoke(app, ["run", str(path), "--dry-run", "-v", "--results", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    assert "t: 2 run(s)" in result.output and "clip_eps: 0.2" in result.output


def test_base_file_is_merged_and_matrix_dicts_merge_into_sections(tmp_path):
    (tmp_path / "base.yaml").write_text("name: base\ntrain: {epochs: 7, lr: 0.01}\ngrpo_rm: {clip_eps: 0.3}\n")
    (tmp_path / "child.yaml").write_text(
        "base: base.yaml\nname: child\ntrain: {lr: 0.5}\n"
        "matrix: {grpo_rm: [{group: full}, {group: sampled, group_size: 4}]}\n"
    )
    exp = load_experiment(tmp_path / "child.yaml")
    assert exp.name == "child" and len(exp.runs) == 2
    full, sampled = exp.runs
    assert full.train.epochs == 7 and full.train.lr == 0.5
    assert full.grpo_rm.clip_eps == 0.3 and sampled.grpo_rm.clip_eps == 0.3
    assert sampled.grpo_rm.group == "sampled" and sampled.grpo_rm.group_size == 4
    assert full.run_id != sampled.run_id


def test_base_cycle_is_refused(tmp_path):
    (tmp_path / "a.yaml").write_text("base: b.yaml\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\n")
    with pytest.raises(ConfigError, match="includes itself"):
        load_experiment(tmp_path / "a.yaml")


def test_an_option_added_later_keeps_old_hashes_at_its_default_and_a_retired_one_its_last_default():
    run = RunConfig(method="grpo_rm")
    payload = run.model_dump(mode="json", exclude={"tracking", "run_id", "axes", "verdict"})  # verdict: never hashed
    for how in ("threads", "channels_last", "compile"):
        payload["train"].pop(how)
    payload["data"].pop("label")  # a name for people, never hashed
    for section, key in ADDED_OPTIONS:  # what a record written before the options existed hashed
        payload[section].pop(key)
    payload["train"] |= {"lr_grid": [], "search_epochs": 1, "search_train_per_class": None}  # retired since
    payload.pop("tune")  # nor the tune section (tuning off)
    before = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]
    assert run.config_hash() == before
    assert RunConfig(method="grpo_rm", grpo_rm={"dual_clip": 3.0}).config_hash() != before


@pytest.mark.parametrize("raw, expected", [
    ({"data": {"name": "fashion_mnst"}}, "x.yaml: data.name: unknown data set 'fashion_mnst' (did you mean 'fashion_mnist'?); choose one of: cifar10, "),
    ({"matrix": {"data.name": ["digits", "mnist5"]}}, "x.yaml: data.name: unknown data set 'mnist5' (did you mean 'mnist5k'?)"),
    ({"grpo_rm": {"rewards": {"accuracyy": 1}}}, "x.yaml: grpo_rm.rewards: unknown reward 'accuracyy' (did you mean 'accuracy'?); choose one of: accuracy, "),
    ({"eval": {"ood": {"corruptions": ["contrast", "fog"]}}}, "x.yaml: eval.ood.corruptions: unknown corruption 'fog'; choose one of: brightness, "),
    ({"eval": {"transfer": ["stl"]}}, "x.yaml: eval.transfer: unknown data set 'stl' (did you mean 'stl10'?)"),
])
def test_registry_names_are_checked_with_the_experiment(raw, expected):
    tree = copy.deepcopy(raw)
    for key, values in tree.pop("matrix", {}).items():
        tree[key.split(".")[0]] = {key.split(".")[1]: values[-1]}
    RunConfig.model_validate(tree)  # valid structure: names are not the models' business
    with pytest.raises(ConfigError) as info:
        build_experiment(raw, "x.yaml")
    assert str(info.value).startswith(expected) and "\n" not in str(info.value)


def test_an_unknown_name_set_by_an_override_is_the_overrides():
    overrides = ["eval.transfer=[mnist5]"]
    with pytest.raises(ConfigError, match=r"^override 'eval.transfer=\[mnist5\]': eval.transfer: unknown data set 'mnist5'"):
        build_experiment({}, "x.yaml", overrides)
    assert build_experiment({"eval": {"transfer": ["mnist5k"]}}, "x.yaml").runs
