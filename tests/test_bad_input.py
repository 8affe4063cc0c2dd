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
import yaml

from grporm.errors import GrpormError
from grporm.plan import experiment
from grporm.records.storage import run_dir

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
    "a section given twice": ("train: {lr: 0.1}\nseed: 0\ntrain: {epochs: 2}\n", (), "line 3, column 1: found duplicate key 'train'"),
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
    ids = [r.run_id for r in experiment.load_experiment(tmp_path / "exp.yaml").runs]  # --dry-run refuses before its list
    assert len(ids) == 2 and all("/" not in i and not i.startswith(".") for i in ids), ids
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
    from grporm.training.checkpoints import load_checkpoint

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
        for unsafe in (r"yaml\.load\((?![^)]*Loader=_UniqueKeyLoader\))", r"yaml\.unsafe_load", r"(?<![.\w])eval\(", r"(?<![.\w])exec\(", r"pickle\.loads?\(",
                       r"weights_only=False"):
            if re.search(unsafe, text):
                problems.append(f"{path.name}: {unsafe}")
    assert problems == []
    assert issubclass(experiment._UniqueKeyLoader, yaml.SafeLoader)  # the one yaml.load allowed above


def test_base_experiment_is_valid(tmp_path):
    """The cases above fail for the reason they name, not because the tiny experiment is broken."""
    write_experiment(tmp_path)
    result = invoke(tmp_path, "--dry-run")
    assert result.exit_code == 0 and BASE["name"] in result.output


# ---------------------------------------------------------------- every way input enters, by class
# Each class of input gets one parametrised test through the real `grporm run` (in process, CliRunner):
# exit code 2, exactly one line on stderr, no traceback, no results/ (or any other file) written.

import gzip  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

import numpy as np  # noqa: E402

ROOT_USER = hasattr(os, "geteuid") and os.geteuid() == 0  # root reads and writes through permissions


def refused_line(folder: Path, args: tuple[str, ...], fragment: str, experiment: str = "exp.yaml") -> str:
    """`grporm run EXPERIMENT ARGS` in `folder` fails cleanly; returns the error line."""
    before = files(folder)
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        from typer.testing import CliRunner

        from grporm.cli import app

        result = CliRunner().invoke(app, ["run", experiment, *args])
    finally:
        os.chdir(cwd)
    err = result.stderr.strip().splitlines()
    assert result.exit_code == 2, (result.exit_code, result.output)
    assert len(err) == 1 and err[0].startswith("error: "), result.stderr
    assert fragment in err[0], err[0]
    assert "Traceback" not in result.output and (result.exception is None or isinstance(result.exception, SystemExit))
    assert not (folder / "grporm-results").exists() and files(folder) == before, sorted(map(str, files(folder) - before))
    return err[0]


def _fifo(path: Path) -> None:
    os.mkfifo(path)


EXPERIMENT_FILES = {  # what exp.yaml is -> a fragment of the error
    "binary (not UTF-8)": (lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00\x01"), "is a binary file, not text"),
    "latin-1 text": (lambda p: p.write_bytes("name: caf\xe9\n".encode("latin-1")), "is not UTF-8 text"),
    "NUL bytes only": (lambda p: p.write_bytes(b"\0" * 64), "is a binary file"),
    "empty": (lambda p: p.write_text(""), "is empty"),
    "blank lines": (lambda p: p.write_text("\n  \n\n"), "is empty"),
    "only comments": (lambda p: p.write_text("# nothing here\n# yet\n"), "holds no settings"),
    "empty mapping": (lambda p: p.write_text("{}\n"), "holds an empty mapping"),
    "a list": (lambda p: p.write_text("- train\n- lr\n"), "top level must be a mapping"),
    "a number key": (lambda p: p.write_text("1: 2\n"), "top-level key 1 is not a name"),
    "a folder": (lambda p: p.mkdir(), "is a folder, not a file"),
    "missing": (lambda p: None, "does not exist"),
    "dangling symlink": (lambda p: p.symlink_to(p.parent / "gone.yaml"), "does not exist"),
    "symlink loop": (lambda p: p.symlink_to(p), "symlink loop"),
    "a FIFO": (_fifo, "not a regular file"),
    "description not text": (lambda p: p.write_text("description: [a, b]\nmethod: ce\n"), "description: must be text"),
    "matrix key not a name": (lambda p: p.write_text("matrix: {1: [2]}\n"), "is not a dotted setting name"),
    "W&B project with a slash": (lambda p: p.write_text("tracking: {project: team/proj}\n"), "tracking.project: a W&B name"),
    "W&B entity empty": (lambda p: p.write_text("tracking: {entity: ''}\n"), "tracking.entity: a W&B name"),
    "deeply nested YAML": (lambda p: p.write_text("a: " + "[" * 5000 + "]" * 5000 + "\n"), "exp.yaml"),
}


@pytest.mark.parametrize("case", EXPERIMENT_FILES)
def test_bad_experiment_file(tmp_path, case):
    make, fragment = EXPERIMENT_FILES[case]
    make(tmp_path / "exp.yaml")
    line = refused_line(tmp_path, (), fragment)
    assert "exp.yaml" in line  # names the file


@pytest.mark.skipif(ROOT_USER, reason="root reads files whatever their permissions")
def test_unreadable_experiment_file(tmp_path):
    path = write_experiment(tmp_path)
    path.chmod(0)
    refused_line(tmp_path, (), "permission denied")


def test_a_binary_experiment_file_in_a_real_process_is_one_line(tmp_path):
    """The case a new user hit: a real process, the real entry point, not only CliRunner."""
    (tmp_path / "exp.yaml").write_bytes(bytes(range(256)))
    env = {**os.environ, "PYTHONPATH": str(PACKAGE.parent), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "grporm", "run", "exp.yaml"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    assert "exp.yaml" in done.stderr and not (tmp_path / "grporm-results").exists()


BASES = {  # base: value (or a file it names) -> fragment
    "a folder": ("sub", lambda d: (d / "sub").mkdir(), "is a folder, not a file"),
    "missing": ("nope.yaml", lambda d: None, "nope.yaml: does not exist"),
    "binary": ("bin.yaml", lambda d: (d / "bin.yaml").write_bytes(b"\xff\xd8\xff\xe0JFIF"), "not UTF-8 text"),
    "empty": ("empty.yaml", lambda d: (d / "empty.yaml").write_text(""), "is empty"),
    "itself": ("exp.yaml", lambda d: None, "includes itself"),
    "a cycle of two": ("a.yaml", lambda d: (d / "a.yaml").write_text("base: exp.yaml\n"), "includes itself"),
    "not a string": (["a.yaml"], lambda d: None, "base: must be the path of another experiment file"),
    "empty string": ("", lambda d: None, "base: must be the path"),
    "a number": (3, lambda d: None, "base: must be the path"),
}


@pytest.mark.parametrize("case", BASES)
def test_bad_base_chain(tmp_path, case):
    base, make, fragment = BASES[case]
    make(tmp_path)
    write_experiment(tmp_path, base=base)
    refused_line(tmp_path, (), fragment)


OVERRIDES = {  # -o value -> fragment
    "no '='": ("train.lr", "write it as key=value"),
    "empty key": ("=3", "the key before '=' is empty"),
    "blank key": ("  =3", "the key before '=' is empty"),
    "key with spaces": ("train. lr=3", "is not a dotted setting name"),
    "unknown key": ("train.lrr=0.1", "train.lrr: unknown key (did you mean 'lr'?)"),
    "unknown section": ("trian.lr=0.1", "unknown key (did you mean 'train'?)"),
    "not a section": ("seed.x=1", "seed is not a section"),
    "unknown matrix axis": ("matrix.sed=[0]", "sed: unknown key (did you mean 'seed'?)"),  # matrix.seed=[0] is an axis
    "malformed YAML value": ("tune.grid=[1e-4, 1e-3", "is not valid YAML"),
    "retired option": ("train.lr_grid=[1e-4, 1e-3]", "train.lr_grid: retired option, use tune.grid"),
    "YAML that would run code": ("train.lr=!!python/object/apply:os.system [touch marker]", "is not valid YAML"),
    "empty value": ("train.lr=", "the value after '=' is empty"),
    "wrong type": ("train.epochs=many", "override 'train.epochs=many': train.epochs: Input should be a valid integer"),
    "out of range": ("train.lr=-1", "override 'train.lr=-1': train.lr: Input should be greater than 0"),
    "seed too large": ("seed=99999999999999999999999", "seed: Input should be less than or equal to 2147483647"),
    "duplicate key in a mapping": ("train={lr: 1, lr: 2}", "found duplicate key 'lr'"),
    "infinite number": ("train.lr=.inf", "train.lr: Input should be a finite number"),
    "not a number": ("grpo_rm.rewards={accuracy: .nan}", "grpo_rm.rewards.accuracy: Input should be a finite number"),
    "a section set to a number": ("train=5", "override 'train=5': train"),
    "unknown key inside a mapping": ("train={lrr: 1}", "override 'train={lrr: 1}': train.lrr: unknown key"),
    "unknown reward in the mapping": ("grpo_rm.rewards.acc=1", "override 'grpo_rm.rewards.acc=1': grpo_rm.rewards: unknown reward 'acc'"),
    "empty list on a matrix axis": ("seed=[]", "override 'seed=[]': matrix.seed: must be a non-empty list"),
    "wrong type on a matrix axis": ("seed=[0, x]", "override 'seed=[0, x]': seed: Input should be a valid integer"),
}


@pytest.mark.parametrize("case", OVERRIDES)
def test_bad_override(tmp_path, case):
    item, fragment = OVERRIDES[case]
    write_experiment(tmp_path, matrix={"seed": [0]})
    refused_line(tmp_path, ("-o", item), fragment)
    assert not (tmp_path / "marker").exists()


def test_a_list_override_of_a_list_setting_on_a_matrix_axis_is_one_value(tmp_path):
    """matrix eval.knn_k: [[...], [...]]; -o eval.knn_k=[10, 20] is one list of k, not two axis values."""
    from grporm.plan.experiment import build_experiment

    raw = {"matrix": {"eval.knn_k": [[5], [10]]}}
    runs = build_experiment(raw, "x.yaml", ["eval.knn_k=[10, 20]"]).runs
    assert [r.eval.knn_k for r in runs] == [[10, 20]]
    runs = build_experiment(raw, "x.yaml", ["eval.knn_k=[[10], [20]]"]).runs
    assert [r.eval.knn_k for r in runs] == [[10], [20]]


def _a_file(d: Path) -> str:
    (d / "afile").write_text("x")
    return "afile"


OPTIONS = {  # CLI options -> fragment
    "--shard not I/N": (("--shard", "1"), "--shard '1': write it as I/N"),
    "--shard index too large": (("--shard", "2/2"), "0 <= I < N"),
    "--shard of zero": (("--shard", "0/0"), "0 <= I < N"),
    "--only matching nothing": (("--only", "nothing-like-this"), "no run matches --only"),
    "--only empty": (("--only", ""), "--only '': give part of a run id"),
    "--stale-lock negative": (("--stale-lock", "-1"), "--stale-lock"),
    "--nproc not a number": (("--nproc", "two"), "Invalid value for '--nproc'"),
    "--nproc zero": (("--nproc", "0"), "--nproc"),
    "unknown option": (("--resutls", "x"), "No such option"),
    "--results is a file": (("--results", "@afile"), "--results afile: is a file, not a folder"),
    "--checkpoints is a file": (("--checkpoints", "@afile"), "--checkpoints afile: is a file, not a folder"),
    "--results under a file": (("--results", "@afile/sub"), "a part of the path is a file"),
}


@pytest.mark.parametrize("case", OPTIONS)
def test_bad_command_line_option(tmp_path, case):
    args, fragment = OPTIONS[case]
    write_experiment(tmp_path)
    args = tuple(a.replace("@afile", _a_file(tmp_path)) if "@afile" in a else a for a in args)
    refused_line(tmp_path, args, fragment)


@pytest.mark.skipif(ROOT_USER, reason="root writes through permissions")
def test_results_folder_not_writable(tmp_path):
    write_experiment(tmp_path)
    (tmp_path / "ro").mkdir()
    (tmp_path / "ro").chmod(0o500)
    refused_line(tmp_path, ("--results", "ro/results"), "is not writable")


ENVIRONMENT = {  # variable, value (@file: a file in the folder) -> fragment
    "WANDB_MODE garbage": ("WANDB_MODE", "sometimes", "WANDB_MODE='sometimes': not one of"),
    "GRPORM_DATA a file": ("GRPORM_DATA", "@afile", "GRPORM_DATA="),
    "WANDB_DIR a file": ("WANDB_DIR", "@afile", "WANDB_DIR="),
    "HF_HUB_OFFLINE garbage": ("HF_HUB_OFFLINE", "maybe", "HF_HUB_OFFLINE='maybe'"),
    "WORLD_SIZE not a number": ("WORLD_SIZE", "two", "WORLD_SIZE='two': must be an integer"),
    "LOCAL_RANK negative": ("LOCAL_RANK", "-1", "LOCAL_RANK='-1'"),
    "OMP_NUM_THREADS zero": ("OMP_NUM_THREADS", "0", "OMP_NUM_THREADS='0'"),
}


@pytest.mark.parametrize("case", ENVIRONMENT)
def test_bad_environment_variable(tmp_path, monkeypatch, case):
    name, value, fragment = ENVIRONMENT[case]
    write_experiment(tmp_path)
    if value == "@afile":
        value = str(tmp_path / _a_file(tmp_path))
    monkeypatch.setenv(name, value)
    refused_line(tmp_path, (), fragment)


def _idx(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def fashion_root(folder: Path, damage: str) -> Path:
    """A data.root with the four Fashion-MNIST IDX files (20 train / 10 test images), one damaged."""
    from grporm.data.fashion_mnist import FASHION_FILES

    root = folder / "fashion"
    root.mkdir()
    rng = np.random.default_rng(0)
    arrays = {"train_images": rng.integers(0, 255, (20, 28, 28)), "train_labels": np.arange(20) % 10,
              "test_images": rng.integers(0, 255, (10, 28, 28)), "test_labels": np.arange(10) % 10}
    for key, stem in FASHION_FILES.items():
        raw = _idx(arrays[key])
        if key == "train_images" and damage == "truncated":
            raw = raw[: len(raw) // 2]
        data = gzip.compress(raw)
        if key == "train_images" and damage == "corrupt gzip":
            data = data[:10] + b"\0" * 40
        if key == "train_labels" and damage == "bad magic":
            data = gzip.compress(b"\x01\x02" + raw[2:])
        if key == "test_labels" and damage == "label out of range":
            data = gzip.compress(_idx(np.full(10, 12)))
        if key == "test_images" and damage == "a folder":
            (root / (stem + ".gz")).mkdir()
            continue
        (root / (stem + ".gz")).write_bytes(data)
    return root


DATA_ROOTS = {
    "truncated": "IDX header says",
    "corrupt gzip": "cannot read",
    "bad magic": "not an unsigned-byte IDX file",
    "label out of range": "out of range",
    "a folder": "data fashion_mnist: not in",
}


@pytest.mark.parametrize("damage", DATA_ROOTS)
def test_damaged_data_root(tmp_path, damage):
    root = fashion_root(tmp_path, damage)
    write_experiment(tmp_path, data={"name": "fashion_mnist", "root": str(root), "train_per_class": 1,
                                     "val_per_class": 1, "test_per_class": 1})
    refused_line(tmp_path, (), DATA_ROOTS[damage])


def test_data_root_that_is_a_file(tmp_path):
    write_experiment(tmp_path, data={"name": "fashion_mnist", "root": str(tmp_path / _a_file(tmp_path))})
    refused_line(tmp_path, (), "data fashion_mnist: not in")


def test_undamaged_data_root_is_accepted(tmp_path):
    """The damaged cases above fail for their damage: the same files intact pass --dry-run and preflight."""
    from grporm.plan.experiment import load_experiment
    from grporm.plan.preflight import preflight

    root = fashion_root(tmp_path, "none")
    path = write_experiment(tmp_path, data={"name": "fashion_mnist", "root": str(root), "train_per_class": 1,
                                            "val_per_class": 1, "test_per_class": 1})
    preflight(load_experiment(path).runs)


def _test_vit_state() -> dict:
    import timm

    return timm.create_model("test_vit", pretrained=False, num_classes=0).state_dict()


def more_weights(folder: Path, kind: str) -> str:
    path = folder / f"w-{kind}.pt"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        torch.save(_test_vit_state(), path)
        path.write_bytes(path.read_bytes()[:5000])
    elif kind == "wrong shapes":
        state = _test_vit_state()
        state["cls_token"] = torch.zeros(1, 1, 32)
        torch.save(state, path)
    elif kind == "random bytes":
        path.write_bytes(os.urandom(4096))
    elif kind == "safetensors garbage":
        path = folder / "w.safetensors"
        path.write_bytes(b"\x08\0\0\0\0\0\0\0{bad json")
    return str(path)


MORE_WEIGHTS = {
    "empty": "is not a PyTorch checkpoint",
    "truncated": "is not a PyTorch checkpoint",
    "wrong shapes": "'cls_token' has shape (1, 1, 32)",
    "random bytes": "is not a PyTorch checkpoint",
    "safetensors garbage": "is not a readable safetensors file",
}


@pytest.mark.parametrize("kind", MORE_WEIGHTS)
def test_damaged_weights_file(tmp_path, kind):
    write_experiment(tmp_path, model={"weights": more_weights(tmp_path, kind)})
    refused_line(tmp_path, (), MORE_WEIGHTS[kind])


# ---------------------------------------------------------------- files read back, and the shared reader

def _record(**changes) -> dict:
    rec = {"run_id": "r", "experiment": "e", "status": "finished", "config_hash": "abc", "metrics": {}}
    rec.update(changes)
    return rec


READ_BACK = {  # content of a record.json -> fragment of the problem
    "not JSON": ('{"status": "finished", "metr', "is not valid JSON"),
    "binary": (b"\x80\x81\x82", "is not UTF-8 text"),
    "NUL bytes": (b"\0\0\0\0", "is a binary file"),
    "empty": ("", "is empty"),
    "a list": ("[1, 2]", "holds a JSON list, not an object"),
    "no status": (_record(status=None) | {"status": None}, "'status' is a NoneType, not str"),
    "no metrics": ({k: v for k, v in _record().items() if k != "metrics"}, "lacks the key 'metrics'"),
    "metrics not an object": (_record(metrics="high"), "'metrics' is a str, not dict"),
    "hash a number": (_record(config_hash=12), "'config_hash' is a int, not str"),
}


@pytest.mark.parametrize("case", READ_BACK)
def test_damaged_record_is_refused_with_its_name_and_set_aside(tmp_path, case):
    import json

    from grporm.records.storage import aside_name, read_record, read_record_or_rerun, set_aside

    content, fragment = READ_BACK[case]
    path = tmp_path / "record.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content if isinstance(content, str) else json.dumps(content))
    with pytest.raises(GrpormError, match=re.escape(f"run record {path} is corrupted")) as err:
        read_record(path)
    assert fragment in str(err.value) and "\n" not in str(err.value)
    assert read_record_or_rerun(path) is None  # the run is redone...
    set_aside(path)
    assert aside_name(path).exists() and not path.exists()  # ...and the damaged file kept


def test_a_finished_record_with_a_damaged_schema_makes_the_run_redo(tmp_path):
    """A record that parses but is not a record (metrics a string) is not taken as finished."""
    import json

    from grporm.plan.experiment import load_experiment
    from grporm.plan.matrix import is_finished

    path = write_experiment(tmp_path)
    run = load_experiment(path).runs[0]
    folder = run_dir(tmp_path / "results", run.experiment, run.run_id)
    folder.mkdir(parents=True)
    (folder / "record.json").write_text(json.dumps(_record(run_id=run.run_id, experiment=run.experiment,
                                                           config_hash=run.config_hash(), metrics="x")))
    assert not is_finished(run, tmp_path / "results")


def test_the_shared_json_reader_for_other_records(tmp_path):
    """What a tuning record (results/tuning/*.json) reader uses: fields and an extra check."""
    from grporm.records.inputs import read_json, read_text

    path = tmp_path / "t.json"
    path.write_text('{"best": {"lr": 0.1}, "trials": []}')
    assert read_json(path, "tuning record", "rerun grporm tune", {"best": dict, "trials": list})["best"] == {"lr": 0.1}
    with pytest.raises(GrpormError, match=r"tuning record .*t.json: 'trials' is a list, not dict; rerun grporm tune"):
        read_json(path, "tuning record", "rerun grporm tune", {"trials": dict})
    with pytest.raises(GrpormError, match="no trial"):
        read_json(path, "tuning record", "fix", check=lambda d: None if d["trials"] else "no trial")
    big = tmp_path / "big.json"
    big.write_bytes(b" " * 100)
    with pytest.raises(GrpormError, match="larger than"):
        read_text(big, "tuning record", "fix", max_bytes=10)


def test_every_user_file_read_in_the_package_goes_through_grporm_inputs():
    """A new `read_text()` / `open()` / `json.loads(...read_text())` on a user's file would bring back
    the traceback class this file tests; the allowed exceptions are files the suite writes itself or
    system files, each named here."""
    allowed = {
        ("inputs.py", "open("), ("inputs.py", "json.load"),  # the reader itself
        ("storage.py", "open("),  # /proc/self/status
        ("storage.py", ".read_text"),  # /proc/cpuinfo
        ("locks.py", ".read_text"), ("locks.py", "json.load"),  # other processes' locks: unreadable = no holder
        ("wandb_tools.py", ".read_text"), ("wandb_tools.py", "json.load"),  # records scanned for W&B folders: failures skipped
        ("checkpoints.py", "open("),  # writes
        ("sources.py", ".read_text"),  # class-name lists of the paper data sets (class_names)
        ("tiny_imagenet.py", ".read_text"),  # Tiny-ImageNet's val_annotations.txt
        ("voc.py", ".read_text"),  # VOC's image-id lists
        ("sources.py", ".read_bytes"),  # IDX files: every failure wrapped in read_idx
    }
    patterns = {".read_text": r"\.read_text\(", ".read_bytes": r"\.read_bytes\(", "open(": r"(?<![.\w])open\(",
                "json.load": r"json\.loads?\("}
    found = set()
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        for name, pattern in patterns.items():
            if re.search(pattern, text):
                found.add((path.name, name))
    assert found - allowed == set(), sorted(found - allowed)


def test_a_checkpoint_with_the_wrong_schema_falls_back_to_the_previous_one(tmp_path):
    from grporm.training.checkpoints import load_checkpoint, save_checkpoint

    path = tmp_path / "last.pt"
    save_checkpoint(path, {"model": {}, "epoch": 1, "history": []})
    save_checkpoint(path, {"model": {}, "epoch": "two", "history": []})  # readable, wrong type
    assert load_checkpoint(path, ("model", "epoch", "history"))["epoch"] == 1
    save_checkpoint(path, {"model": [], "epoch": 3, "history": []})
    with pytest.raises(GrpormError, match="'epoch' is a str, not int.*delete"):
        load_checkpoint(path, ("model", "epoch", "history"))  # both damaged: one line naming both


# -- YAML merge keys; one run id per configuration; overrides the matrix would overwrite; a matrix too
# large to build; a huge value echoed in an error -------------------------------------------------------
def test_yaml_merge_keys_work_and_a_key_given_twice_is_still_refused(tmp_path):
    from grporm.errors import ConfigError
    from grporm.plan.experiment import load_experiment

    text = ("train: &train {epochs: 2, lr: 0.01}\n"
            "matrix:\n"
            "  arm:\n"
            "    - &ce {name: ce, method: ce, train.lr: 0.002}\n"
            "    - {<<: *ce, name: ce_long, train.epochs: 4}\n"
            "seg: {<<: *train, max_items: 2}\n")
    (tmp_path / "merge.yaml").write_text(text.replace("seg: {<<: *train, max_items: 2}\n", ""))
    runs = {r.axes["arm"]: r for r in load_experiment(tmp_path / "merge.yaml").runs}
    assert (runs["ce_long"].method, runs["ce_long"].train.lr, runs["ce_long"].train.epochs) == ("ce", 0.002, 4)
    assert (runs["ce"].train.lr, runs["ce"].train.epochs) == (0.002, 2)
    (tmp_path / "twice.yaml").write_text(text.replace("name: ce_long,", "name: ce_long, name: again,"))
    with pytest.raises(ConfigError, match=r"line 5, column \d+: found duplicate key 'name'"):
        load_experiment(tmp_path / "twice.yaml")


@pytest.mark.parametrize("written", ["5e-3", "5.0e-3", "0.005", "0.50e-2"])
def test_one_configuration_has_one_run_id_however_its_numbers_are_written(written):
    from grporm.plan.experiment import build_experiment

    raw = {"seed": 2, "matrix": {"train.lr": [1.0e-3, 1.0e-2], "tune.grid": [[1.0e-3, 1.0e-2, 1.0e-1]],
                                 "grpo_rm.temperature": [0.5, 1.0]}}
    run = build_experiment(raw, "x.yaml", [f"train.lr=[{written}]", f"tune.grid=[[1e-3, {written}, 1e-1]]",
                                           "grpo_rm.temperature=[1.0]"]).runs[0]
    assert run.run_id == "fashion_mnist-tf_efficientnet_lite0-grpo_rm-lr=0.005-grid=_0.001_0.005_0.1_-temperature=1.0-s2"
    assert run.train.lr == 0.005 and run.config_hash() == build_experiment(raw, "x.yaml", ["train.lr=[0.005]",
           "tune.grid=[[0.001, 0.005, 0.1]]", "grpo_rm.temperature=[1.0]"]).runs[0].config_hash()


@pytest.mark.parametrize("matrix, item, fragment", [
    ({"train.lr": [1.0e-3, 1.0e-2]}, "train={lr: 0.1}", "sets train.lr, which matrix.train.lr varies"),
    ({"train.lr": [1.0e-3, 1.0e-2]}, "train={epochs: 2, lr: 0.1}", "sets train.lr, which matrix.train.lr varies"),
    ({"grpo_rm.rewards": [{"accuracy": 1.0}, {"accuracy": 2.0}]}, "grpo_rm.rewards.accuracy=3",
     "sets grpo_rm.rewards.accuracy, which matrix.grpo_rm.rewards varies"),
    ({"grpo_rm": [{"inner_steps": 1}, {"inner_steps": 2}]}, "grpo_rm.inner_steps=4",
     "sets grpo_rm.inner_steps, which matrix.grpo_rm varies"),
    ({"arm": [{"name": "a", "train.lr": 0.1}, {"name": "b"}]}, "train.lr=0.2", "sets train.lr, which matrix.arm (a) varies"),
])
def test_an_override_the_matrix_would_overwrite_is_refused_naming_both(tmp_path, matrix, item, fragment):
    write_experiment(tmp_path, matrix=matrix)
    line = refused_line(tmp_path, ("-o", item), fragment)
    assert line.startswith(f"error: override {item!r}: ")


def test_an_override_beside_the_matrix_axes_is_taken():
    from grporm.plan.experiment import build_experiment

    runs = build_experiment({"matrix": {"train.lr": [1.0e-3, 1.0e-2], "grpo_rm": [{"inner_steps": 1}]}}, "x.yaml",
                            ["train={epochs: 2}", "grpo_rm.clip_eps=0.3"]).runs
    assert [(r.train.lr, r.train.epochs, r.grpo_rm.clip_eps) for r in runs] == [(1e-3, 2, 0.3), (1e-2, 2, 0.3)]


def test_a_matrix_too_large_is_refused_by_its_count_before_it_is_built(tmp_path, monkeypatch):
    import time

    from typer.testing import CliRunner

    from grporm.cli import app

    axes = {"seed": list(range(10)), "train.epochs": list(range(1, 11)), "train.batch_size": list(range(1, 11)),
            "eval.batch_size": list(range(1, 11)), "data.image_size": list(range(8, 18)), "eval.sr_max_iter": list(range(1, 11))}
    write_experiment(tmp_path, matrix=axes)
    start = time.perf_counter()
    refused_line(tmp_path, (), "the matrix has 1,000,000 runs (10 seed x 10 train.epochs")
    refused_line(tmp_path, ("--dry-run",), "above the limit of 10,000; shrink an axis, or raise the limit with --max-runs N")
    assert time.perf_counter() - start < 30  # counted, not built (building would take minutes and gigabytes)
    write_experiment(tmp_path, matrix={"seed": [0, 1, 2]})
    refused_line(tmp_path, ("--dry-run", "--max-runs", "2"), "the matrix has 3 runs")
    monkeypatch.setenv("GRPORM_MAX_RUNS", "2")
    refused_line(tmp_path, ("--dry-run",), "above the limit of 2")
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        for command in (["tune", "exp.yaml"], ["data", "check", "exp.yaml"]):
            result = CliRunner().invoke(app, command)
            assert result.exit_code == 2 and "the matrix has 3 runs (3 seed), above the limit of 2" in result.stderr, result.output
        monkeypatch.setenv("GRPORM_MAX_RUNS", "3")
        assert CliRunner().invoke(app, ["run", "exp.yaml", "--dry-run"]).exit_code == 0
    finally:
        os.chdir(cwd)


@pytest.mark.parametrize("sections", [
    lambda huge: {"data": {"name": huge}},
    lambda huge: {"method": huge},
    lambda huge: {"train": {"lr": huge}},
    lambda huge: {"model": {"pool": huge}},
    lambda huge: {"name": huge},
    lambda huge: {"matrix": {"seed": [0], huge: [1]}},
])
def test_an_error_about_a_huge_value_is_one_short_line(tmp_path, sections):
    huge = "x" * 100_000
    write_experiment(tmp_path, **sections(huge))
    line = refused_line(tmp_path, ("--dry-run",), "")
    assert len(line) < 400 and re.search(r"x\.\.\. \(100,00\d characters\)", line), line[:600]


@pytest.mark.slow
def test_a_ten_megabyte_value_gives_a_short_line(tmp_path):
    write_experiment(tmp_path, data={"name": "x" * 10_000_000})
    line = refused_line(tmp_path, ("--dry-run",), "data.name: unknown data set 'xxx")
    assert len(line) < 400 and "... (10,000,002 characters)" in line, line[:600]


def test_a_name_or_run_id_too_long_for_a_folder_is_refused():
    from grporm.errors import ConfigError
    from grporm.plan.experiment import build_experiment

    with pytest.raises(ConfigError, match=r"^x.yaml: name: at most 100 characters"):
        build_experiment({"name": "n" * 300}, "x.yaml")
    with pytest.raises(ConfigError, match=r"^x.yaml: matrix gives a run the id .*over the 200 characters"):
        build_experiment({"matrix": {"model.weights": ["w" * 300]}}, "x.yaml")
