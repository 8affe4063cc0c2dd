"""A `verdict:` declaration is checked against its experiment when the experiment is loaded (so in
`--dry-run`, before anything trains): the control (named, or the default one), the A/A arms and every
claim's measure must exist in the matrix, else one line (exit 2) naming what exists."""
from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from grporm.cli import app
from grporm.errors import ConfigError
from grporm.plan.declaration import ambiguous, default_control
from grporm.plan.experiment import build_experiment


def _arms(*arms: tuple[str, str]) -> dict:
    return {"arm": [{"name": name, "method": method} for name, method in arms]}


CE_GRPO = _arms(("ce", "ce"), ("grpo", "grpo_rm"))


@pytest.mark.parametrize("candidates,control", [
    ({"ce": {"ce"}, "g": {"grpo_rm"}}, "ce"),
    ({"baseline": {"ce"}, "g": {"grpo_rm"}}, "baseline"),
    ({"ce": {"grpo_rm"}, "b": {"ce"}}, "ce"),                      # the name wins
    ({"b1": {"ce"}, "b2": {"ce"}, "g": {"grpo_rm"}}, None),       # two CE arms
    ({"a": {"grpo_rm"}, "g": {"grpo_rm"}}, None),                  # none
    ({"mixed": {"ce", "grpo_rm"}, "g": {"grpo_rm"}}, None),        # an arm of two methods is no CE arm
])
def test_the_default_control(candidates, control):
    assert default_control(candidates) == control
    assert (ambiguous(candidates) is None) == (control is not None)


def test_one_arm_alone_is_not_ambiguous():
    assert ambiguous({"grpo": {"grpo_rm"}}) is None and default_control({"grpo": {"grpo_rm"}}) is None


@pytest.mark.parametrize("raw,message", [
    ({"matrix": _arms(("b1", "ce"), ("b2", "ce"), ("g", "grpo_rm"))},
     "verdict.control: no default control: no arm is named ce and 2 train with method ce (b1, b2); name it: add "
     "`control: NAME` under `verdict:` (e.g. `verdict: {control: b1}`), NAME one of: b1, b2, g"),
    ({"matrix": _arms(("a", "grpo_rm"), ("g", "grpo_rm"))}, "none trains with method ce"),
    ({"matrix": CE_GRPO, "verdict": {"control": "baseline"}},
     "verdict.control: no arm named 'baseline' trains in this experiment; choose one of: ce, grpo"),
    ({"matrix": _arms(("pretrained", "pretrained"), ("ce", "ce"), ("g", "grpo_rm")), "verdict": {"control": "pretrained"}},
     "no arm named 'pretrained' trains"),
    ({"matrix": {"method": ["ce", "grpo_rm"]}, "verdict": {"control": "base"}},
     "no method named 'base' trains in this experiment; choose one of: ce, grpo_rm"),
    ({"matrix": CE_GRPO, "verdict": {"aa": ["anchor"]}}, "verdict.aa[0]: no arm named 'anchor' trains"),
    ({"matrix": CE_GRPO, "verdict": {"claims": [{"name": "M", "measure": "miou"}]}},
     "verdict.claims[0].measure: no run records 'miou'"),
    ({"matrix": CE_GRPO, "verdict": {"claims": [{"name": "T", "measure": "transfer_sr/digits"}]}},
     "it needs eval.transfer; these runs record: first_epoch_head, first_epoch_knn20, first_epoch_sr, head, knn20, sr"),
    ({"matrix": CE_GRPO, "eval": {"transfer": ["digits"]}, "verdict": {"claims": [{"name": "T", "measure": "transfer_sr/mnist"}]}},
     "no run records 'transfer_sr/mnist': their transfer targets are digits"),
    ({"matrix": CE_GRPO, "verdict": {"claims": [{"name": "O", "measure": "ood_sr"}]}}, "it needs eval.ood.corruptions"),
    ({"matrix": CE_GRPO, "eval": {"ood": {"corruptions": ["contrast"]}},
      "verdict": {"claims": [{"name": "O", "measure": "ood_sr/rotation"}]}}, "their corruptions are contrast"),
    ({"matrix": CE_GRPO, "verdict": {"claims": [{"name": "I", "measure": "imbalance_sr/few"}]}},
     "it needs data.imbalance_factor"),
    ({"matrix": CE_GRPO, "data": {"imbalance_factor": 10}, "verdict": {"claims": [{"name": "I", "measure": "imbalance_sr/rare"}]}},
     "their shot groups are few, many, medium, overall"),
    ({"matrix": {"method": ["ce", "grpo_rm"]}, "task": "segmentation", "tune": {"score": "miou"},
      "verdict": {"claims": [{"name": "S", "measure": "sr"}]}}, "it needs task: classification"),
])
def test_a_declaration_the_experiment_cannot_judge_is_refused_at_load(raw, message):
    with pytest.raises(ConfigError, match="e.yaml: ") as err:
        build_experiment({"name": "e", **raw}, "e.yaml")
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("raw", [
    {"matrix": _arms(("baseline", "ce"), ("grpo", "grpo_rm"))},                        # the one CE arm
    {"matrix": _arms(("b1", "ce"), ("b2", "ce"), ("g", "grpo_rm")), "verdict": {"control": "b2"}},
    {"matrix": {"method": ["pretrained", "grpo_rm"]}},                                 # nothing to compare
    {"matrix": CE_GRPO, "eval": {"transfer": ["digits"], "ood": {"corruptions": ["contrast"]}}, "data": {"imbalance_factor": 10},
     "verdict": {"aa": ["grpo"], "claims": [{"name": "T", "measure": "transfer_sr/digits"}, {"name": "O", "measure": "ood_sr/contrast"},
                                            {"name": "I", "measure": "imbalance_knn20/few"}, {"name": "C", "measure": "first_epoch_sr"}]}},
])
def test_a_declaration_the_experiment_can_judge_loads(raw):
    assert build_experiment({"name": "e", **raw}, "e.yaml").runs


def test_dry_run_stops_on_an_ambiguous_control_before_listing_runs(tmp_path: Path):
    path = tmp_path / "two.yaml"
    path.write_text("name: two\nmatrix:\n  arm:\n    - {name: short, method: ce}\n    - {name: long, method: ce, train.epochs: 6}\n"
                    "    - {name: grpo, method: grpo_rm}\n")
    result = CliRunner().invoke(app, ["run", str(path), "--dry-run"])
    assert result.exit_code == 2
    assert result.output.startswith(f"error: {path}: verdict.control: no default control") and "run(s)" not in result.output


def test_every_shipped_experiment_declares_what_it_can_judge():
    from grporm.plan.experiment import load_experiment

    for path in sorted(Path("experiments").rglob("*.yaml")):
        assert load_experiment(path).runs, path


def test_an_experiment_that_compares_nothing_needs_no_control_and_gets_no_verdict(write_run, tmp_path: Path):
    """A noise floor (two CE arms, one per backbone) declares `compare: false`: it loads, and its records give
    no verdict line and no note; without the declaration the same matrix is refused as ambiguous."""
    from grporm.analysis.records import load_runs
    from grporm.analysis.verdict import comparisons
    from tests.test_verdict import CE, _arm

    raw = {"name": "e", "matrix": _arms(("ce_a", "ce"), ("ce_b", "ce"), ("g", "grpo_rm"))}
    with pytest.raises(ConfigError, match="no default control"):
        build_experiment(raw, "e.yaml")
    assert build_experiment({**raw, "verdict": {"compare": False}}, "e.yaml").runs
    for declared in ({"compare": False}, None):
        root = tmp_path / str(declared is None) / "results"
        _arm(write_run, root, "noise", "ce_a", "ce", CE, verdict=declared)
        _arm(write_run, root, "noise", "ce_b", "ce", CE, verdict=declared)
        [found] = comparisons(load_runs(root))
        assert found.frame.empty and bool(found.notes) == (declared is None)  # silent only when declared
