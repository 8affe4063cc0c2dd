"""Bad input is refused by a real `grporm run` (not --dry-run): one line naming the problem, exit 2,
no traceback, and nothing written -- no results/, checkpoints/ or wandb/ folder, no file at all.

tests/test_config.py checks the wording of config errors; here every class of bad input goes through
the whole command, including what only loading can reveal (backbone, weights, data files), which
the preflight must catch for every run of the matrix before the first run starts. Also the
"safe by construction" rules: nothing in a config or a weights file is ever executed, and no name
can make a run write outside the results folder.
"""
from __future__ import annotations

import pickle
import re
from pathlib import Path

import pytest
import torch

from grporm.errors import GrpormError
from grporm.records import run_dir
from tiny_runs import BASE, invoke, write_experiment

PACKAGE = Path(__file__).resolve().parent.parent / "grporm"


class Payload:
    """A pickle that runs code when loaded unsafely: it would create the file `marker`."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def files(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*")}


def refused(folder: Path, args: tuple[str, ...], fragment: str) -> None:
    before = files(folder)
    result = invoke(folder, *args)
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], result.output
    assert "Traceback" not in result.output and result.exception is None or isinstance(result.exception, SystemExit)
    assert files(folder) == before, sorted(map(str, files(folder) - before))  # nothing written


# Each case: (sections merged into the tiny experiment, or raw YAML text), extra CLI args, expected fragment.
CONFIG_CASES = {
    "malformed YAML": ("train: {lr: [oops\n", (), "malformed YAML at line"),
    "YAML that would run code": ("train: !!python/object/apply:os.system [touch marker]\n", (), "malformed YAML"),
    "unknown key": ({"train": {"lrr": 0.1}}, (), "train.lrr: unknown key (did you mean 'lr'?)"),
    "wrong type": ({"train": {"epochs": "many"}}, (), "train.epochs: Input should be a valid integer"),
    "out of range": ({"train": {"lr": -1}}, (), "train.lr: Input should be greater than 0"),
    "unknown data set": ({"data": {"name": "imagenet42"}}, (), "unknown data set 'imagenet42'"),
    "unknown objective": ({"method": "sft"}, (), "unknown method 'sft'"),
    "unknown reward": ({"grpo_rm": {"rewards": {"acc": 1}}}, (), "unknown reward 'acc'"),
    "empty matrix": ({"matrix": {"seed": []}}, (), "matrix.seed: must be a non-empty list"),
    "no run selected": ({}, ("--only", "nothing-like-this"), "no run matches --only 'nothing-like-this'"),
    "more processes than images per batch": ({"train": {"batch_size": 1}}, ("--nproc", "2"),
                                             "train.batch_size 1 is smaller than the 2 processes"),
}


@pytest.mark.parametrize("case", CONFIG_CASES)
def test_config_errors_write_nothing(tmp_path, case):
    sections, args, fragment = CONFIG_CASES[case]
    if isinstance(sections, str):
        (tmp_path / "exp.yaml").write_text(sections)
    else:
        write_experiment(tmp_path, **sections)
    refused(tmp_path, args, fragment)
    assert not (tmp_path / "marker").exists()


def weights_file(folder: Path, kind: str) -> str:
    path = folder / f"weights-{kind}.pt"
    if kind == "missing":
        return str(folder / "nowhere" / "w.pt")
    if kind == "directory":
        path.mkdir()
    elif kind == "text":
        path.write_text("not a checkpoint\n")
    elif kind == "code":
        path.write_bytes(pickle.dumps({"state_dict": Payload(folder / "marker")}, protocol=2))
    elif kind == "tensor list":
        torch.save([torch.zeros(3)], path)
    elif kind == "other architecture":
        torch.save({"state_dict": {"conv.weight": torch.zeros(4, 3, 3, 3)}}, path)
    return str(path)


WEIGHTS_CASES = {
    "missing": "weights test_vit (file): not in",  # the requirement check lists it before any load
    "directory": "a folder, not a file",
    "text": "is not a PyTorch checkpoint",
    "code": "is not a PyTorch checkpoint (torch.load weights_only failed",
    "tensor list": "is not a PyTorch checkpoint with a state dict",
    "other architecture": "lacks",
}


@pytest.mark.parametrize("kind", WEIGHTS_CASES)
def test_bad_weights_path_is_refused_before_anything_is_written(tmp_path, kind):
    write_experiment(tmp_path, model={"weights": weights_file(tmp_path, kind)})
    refused(tmp_path, (), WEIGHTS_CASES[kind])
    assert not (tmp_path / "marker").exists()  # the pickle's code never ran


def test_unknown_backbone_in_a_later_run_stops_the_matrix_before_the_first_run(tmp_path):
    write_experiment(tmp_path, matrix={"model.name": ["test_vit", "resnet_nope"]})
    refused(tmp_path, (), "run digits-resnet_nope-grpo_rm-s0: unknown backbone 'resnet_nope'")


def test_data_root_with_the_wrong_layout_is_refused(tmp_path):
    root = tmp_path / "fashion"
    root.mkdir()
    (root / "train-images.png").write_bytes(b"\x89PNG")
    write_experiment(tmp_path, data={"name": "fashion_mnist", "root": str(root)})
    refused(tmp_path, (), "data fashion_mnist: not in")


def test_more_images_per_class_than_the_data_set_has_is_refused(tmp_path):
    write_experiment(tmp_path, data={"train_per_class": 10_000})
    refused(tmp_path, (), "data.train_per_class: class 0 (0) has")


def test_path_traversal_through_matrix_values_stays_in_the_results_folder(tmp_path):
    write_experiment(tmp_path, matrix={"model.name": ["../../x"], "data.root": ["../../../etc", "/abs/path"]})
    refused(tmp_path, (), "unknown backbone '../../x'")  # and nothing was written anywhere
    result = invoke(tmp_path, "--dry-run")
    ids = re.findall(r"^  (\S+)  config", result.output, flags=re.M)
    assert len(ids) == 2 and all("/" not in i and not i.startswith(".") for i in ids), result.output
    results = tmp_path / "results"
    for run_id in ids:
        assert run_dir(results, "tiny", run_id).parent == (results / "tiny" / "runs").resolve()


@pytest.mark.parametrize("experiment, run_id", [("..", "x"), ("a/b", "x"), ("tiny", "../../x"), ("tiny", "../../other/runs/x"),
                                                ("tiny", ".."), ("tiny", ""), ("tiny", "/etc")])
def test_run_folders_cannot_escape_the_results_folder(tmp_path, experiment, run_id):
    with pytest.raises(GrpormError, match="outside"):
        run_dir(tmp_path / "results", experiment, run_id)


def test_experiment_name_cannot_escape(tmp_path):
    (tmp_path / "exp.yaml").write_text("name: ../../escape\n")
    refused(tmp_path, (), "name: must be letters")


def test_a_checkpoint_carrying_code_is_never_executed(tmp_path):
    from grporm.checkpoints import load_checkpoint

    path = tmp_path / "last.pt"
    path.write_bytes(pickle.dumps({"model": Payload(tmp_path / "marker"), "epoch": 1}, protocol=2))
    with pytest.raises(GrpormError, match=f"no readable checkpoint: {path}"):
        load_checkpoint(path)
    assert not (tmp_path / "marker").exists()


def test_the_package_loads_only_safely():
    """Every torch.load passes weights_only=True; YAML is read with safe_load; nothing is eval'd or
    unpickled directly. A regression anywhere in the package fails here."""
    problems = []
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        for call in re.finditer(r"torch\.load\(", text):
            args = text[call.end():text.find("\n", text.find(")", call.end()))]
            if "weights_only=True" not in args:
                problems.append(f"{path.name}: torch.load without weights_only=True")
        for unsafe in (r"yaml\.load\(", r"yaml\.unsafe_load", r"(?<![.\w])eval\(", r"(?<![.\w])exec\(", r"pickle\.loads?\(",
                       r"weights_only=False"):
            if re.search(unsafe, text):
                problems.append(f"{path.name}: {unsafe}")
    assert problems == []


def test_base_experiment_is_valid(tmp_path):
    """The cases above fail for the reason they name, not because the tiny experiment is broken."""
    write_experiment(tmp_path)
    result = invoke(tmp_path, "--dry-run")
    assert result.exit_code == 0 and BASE["name"] in result.output
