"""The command line as a user meets it: -h and --version, placeholders, whole descriptions, where a
user's runs go by default, and one options object from the CLI to a relaunched child."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

import grporm
from grporm.cli import app
from grporm.plan.run_options import RunOptions, default_results, is_shipped

from tiny_runs import RESULTS, invoke, write_experiment

REPO = Path(__file__).resolve().parents[1]
COMMANDS = [["run"], ["tune"], ["report"], ["compare"], ["verify"], ["dashboard"], ["sync"], ["list"],
            ["data"], ["data", "check"], ["eval"]]


def test_short_help_and_version():
    runner = CliRunner()
    short, long = runner.invoke(app, ["-h"]), runner.invoke(app, ["--help"])
    assert short.exit_code == 0 and short.output == long.output and "Commands" in short.output
    assert runner.invoke(app, ["run", "-h"]).exit_code == 0
    version = runner.invoke(app, ["--version"])
    assert version.exit_code == 0 and version.output.strip() == f"grporm {grporm.__version__}"


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_help_placeholders_read_like_command_line_metavars(command):
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert not re.search(r"<(bool|str|int|float|path|list\[[a-z]+\]|int range|float range)>", result.output), result.output
    assert "{" not in result.output.splitlines()[1], result.output  # `Usage: grporm run [OPTIONS] EXPERIMENT`


def test_the_command_list_says_each_command_in_one_whole_sentence():
    result = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200"})
    rows = [line.strip("│ ").strip() for line in result.output.splitlines() if re.match(r"│ [a-z]+ {2,}\S", line)]
    assert len(rows) >= 9 and all(row.endswith(".") for row in rows), rows


def test_list_never_cuts_a_description():
    result = CliRunner().invoke(app, ["list", "objectives"])
    text = " ".join(result.output.split())
    assert "CE has no options section, and its anchor comparison needs plain CE." in text, result.output
    experiments = CliRunner().invoke(app, ["list", "experiments"]).output
    assert "Claim: copes better with imbalanced data." in experiments  # a study's opening comment


def test_shipped_experiments_write_to_results_any_other_to_grporm_results(tmp_path):
    assert is_shipped(REPO / "experiments" / "quick.yaml") and is_shipped(REPO / "experiments/studies/readings.yaml")
    assert default_results(REPO / "experiments" / "quick.yaml") == Path("results")
    for mine in (tmp_path / "my.yaml", REPO / "experiments" / "templates" / "own_data.yaml", REPO / "my.yaml"):
        assert not is_shipped(mine) and default_results(mine) == Path("grporm-results")
    options = RunOptions(tmp_path / "my.yaml")
    assert options.results_folder == Path("grporm-results")
    assert options.checkpoints_folder == Path("grporm-results") / "checkpoints"
    assert RunOptions(tmp_path / "my.yaml", results=Path("mine")).checkpoints_folder == Path("mine/checkpoints")


def test_a_users_dry_run_names_its_own_folder(tmp_path):
    write_experiment(tmp_path)
    result = invoke(tmp_path, "--dry-run")
    assert result.exit_code == 0, result.output
    assert f"records under {RESULTS}/tiny" in result.output
    assert "records under elsewhere/tiny" in invoke(tmp_path, "--dry-run", "--results", "elsewhere").output


def test_a_failing_dry_run_prints_its_error_and_no_run_list(tmp_path):
    write_experiment(tmp_path, matrix={"seed": [0, 1, 2]}, eval={"knn_k": []})
    result = invoke(tmp_path, "--dry-run")
    assert result.exit_code == 2 and "eval.knn_k" in result.output
    assert result.output.startswith("error: ") and "  config " not in result.output and "tiny: " not in result.output, result.output


def test_the_childs_command_line_keeps_every_option():
    options = RunOptions(Path("x.yaml"), ("train.lr=1e-3",), max_runs=50_000, force=True, sensitivity=True,
                         only="ce", shard="1/2", nproc=2, stale_lock=5.0, results=Path("r"))
    argv = options.argv()
    assert argv[:4] == ["run", "x.yaml", "-o", "train.lr=1e-3"]
    pairs = dict(zip(argv, argv[1:]))
    assert pairs["--max-runs"] == "50000" and pairs["--only"] == "ce" and pairs["--shard"] == "1/2"
    assert pairs["--results"] == "r" and pairs["--checkpoints"] == str(Path("r/checkpoints"))
    assert pairs["--stale-lock"] == "5.0" and {"--force", "--sensitivity"} <= set(argv) and "--nproc" not in argv
    launched = options.argv(shard=False, nproc=True)
    assert "--shard" not in launched and launched[-2:] == ["--nproc", "2"]


def test_max_runs_reaches_the_torchrun_child(tmp_path, monkeypatch):
    """Issue 25: `run --nproc 2 --max-runs N` relaunched under torchrun without --max-runs, so the child
    refused the matrix its parent had accepted."""
    from grporm.process import distributed
    seen = []
    monkeypatch.setattr(distributed, "launch", lambda nproc, argv: seen.append((nproc, argv)) or 0)
    write_experiment(tmp_path, matrix={"seed": [0, 1, 2]})
    result = invoke(tmp_path, "--nproc", "2", "--max-runs", "3", "--shard", "0/1")
    assert result.exit_code == 0, result.output
    (nproc, argv), = seen
    assert nproc == 2 and argv[argv.index("--max-runs") + 1] == "3" and argv[argv.index("--shard") + 1] == "0/1"
    assert argv[argv.index("--results") + 1] == RESULTS


def test_max_runs_reaches_the_launchers_tasks(tmp_path, monkeypatch):
    from grporm.process import launch
    seen = []
    monkeypatch.setattr(launch, "launch_cli", lambda *args, **kwargs: seen.append(args[6]) or 0)
    write_experiment(tmp_path, matrix={"seed": [0, 1, 2]})
    result = invoke(tmp_path, "--launcher", "local", "--max-runs", "3")
    assert result.exit_code == 0, result.output
    (argv,) = seen
    assert argv[argv.index("--max-runs") + 1] == "3" and "--shard" not in argv


def test_a_matrix_axis_is_overridden_or_added_from_the_command_line(tmp_path):
    from grporm.errors import ConfigError
    from grporm.plan.experiment import load_experiment

    path = write_experiment(tmp_path, matrix={"method": ["ce", "grpo_rm"]})
    ids = [r.run_id for r in load_experiment(path, ["matrix.seed=[0,1]"]).runs]
    assert ids == ["digits-test_vit-ce-s0", "digits-test_vit-ce-s1", "digits-test_vit-grpo_rm-s0", "digits-test_vit-grpo_rm-s1"]
    assert [r.run_id for r in load_experiment(path, ["matrix.method=[ce]", "matrix.seed=3"]).runs] == ["digits-test_vit-ce-s3"]
    with pytest.raises(ConfigError, match=r"override 'matrix.sed=\[0,1\]': sed: unknown key \(did you mean 'seed'\?\)"):
        load_experiment(path, ["matrix.sed=[0,1]"])
    with pytest.raises(ConfigError, match=r"override 'matrix.seed=\[-1\]': seed"):
        load_experiment(path, ["matrix.seed=[-1]"])


def test_a_misspelt_weights_keyword_is_no_path(tmp_path):
    from grporm.errors import ConfigError
    from grporm.plan.experiment import load_experiment

    path = write_experiment(tmp_path)
    with pytest.raises(ConfigError, match=r"'packged' is neither a keyword \(packaged, hub, none\) nor an existing file "
                                          r"\(did you mean 'packaged'\?\)"):
        load_experiment(path, ["model.weights=packged"])
    for path_like in ("my.pth", "~/w.pt", "models/w"):  # looks like a file: left to the file check (data check lists it)
        assert load_experiment(path, [f"model.weights={path_like}"]).runs


def test_model_names_get_did_you_mean_and_never_nowhere(tmp_path):
    from grporm.models.backbones import unknown_backbone, without_weights_fix
    from grporm.plan.requirements import _packaged_requirement

    assert "(did you mean 'mobilenetv2_100'?)" in unknown_backbone("mobilenetv2_10")
    assert "'resnet18'" in unknown_backbone("resnt18") and unknown_backbone("resnet18") is None
    line = _packaged_requirement("mobilenetv2_10").line()
    assert "nowhere" not in line and "did you mean 'mobilenetv2_100'" in line, line
    write_experiment(tmp_path, model={"name": "mobilenetv2_10", "weights": "packaged"})
    result = invoke(tmp_path, "--dry-run")
    assert result.exit_code == 2 and "did you mean 'mobilenetv2_100'" in result.output and "nowhere" not in result.output
    # the offline hub error names packaged weights only for a model that has them
    assert "weights: packaged" not in without_weights_fix("resnet18") and "weights: packaged" in without_weights_fix("mobilenetv2_100")


def test_run_ids_name_the_data_set_as_its_records_do(tmp_path):
    from grporm.plan.experiment import load_experiment

    (tmp_path / "shapes").mkdir()
    path = write_experiment(tmp_path, data={"name": "imagefolder", "root": str(tmp_path / "shapes")})
    assert [r.run_id for r in load_experiment(path).runs] == ["shapes-test_vit-grpo_rm-s0"]
    labelled = load_experiment(path, ["data.label=My images"]).runs[0]
    assert labelled.run_id == "My_images-test_vit-grpo_rm-s0" and labelled.config_hash() == load_experiment(path).runs[0].config_hash()


@pytest.mark.parametrize("name", ["quick.yaml", "studies/readings.yaml", "studies/transfer.yaml", "studies/segmentation.yaml"])
def test_the_shipped_run_ids_keep_the_registered_data_set_name(name):
    """The committed records are found by their run ids: a shipped experiment's ids start with data.name."""
    from grporm.plan.experiment import load_experiment

    runs = load_experiment(REPO / "experiments" / name).runs
    assert runs and all(r.run_id.startswith(f"{r.data.name}-{r.model.name}-{r.method}") for r in runs)
