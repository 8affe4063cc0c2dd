"""Paper-scale loaders (CIFAR, STL-10, ImageFolder, VOC) on tiny fake files, `grporm data check`,
`preflight` and the experiments/paper files. Nothing is downloaded; no real data set is needed."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from grporm.cli import app
from grporm.config import DataConfig
from grporm.data import DATASETS
from grporm.data.cifar import CIFAR10_CLASSES
from grporm.data.stl10 import STL10_CIFAR10_SHARED, stl10_as_cifar10
from grporm.errors import DataMissingError, GrpormError
from grporm.plan import requirements as check_mod
from grporm.plan.experiment import load_experiment
from grporm.plan.requirements import Requirement, preflight, requirements

from fakes import fake_cifar10, fake_cifar100, fake_stl10, fake_voc, png

runner = CliRunner()
PAPER = sorted(Path("experiments/paper").glob("*.yaml"))


@pytest.fixture(autouse=True)
def empty_data_home(tmp_path, monkeypatch):
    """Default roots point at an empty folder, so a machine that has the real data changes nothing."""
    monkeypatch.setenv("GRPORM_DATA", str(tmp_path / "data_home"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)


def load(name: str, root: Path | None = None, **kw):
    return DATASETS.get(name)(DataConfig(name=name, root=root, **kw))


# ---------------------------------------------------------------- CIFAR / STL-10


def test_cifar10_binary_layout_labels_and_classes(tmp_path):
    known = fake_cifar10(tmp_path)
    train, test = load("cifar10", tmp_path)
    assert train.images.shape == (10, 3, 32, 32) and test.images.shape == (2, 3, 32, 32)
    assert train.images.dtype == torch.uint8 and train.labels.dtype == torch.int64
    assert train.classes == CIFAR10_CLASSES
    label, image = known[("data_batch_3.bin", 1)]
    k = 2 * 2 + 1  # batches concatenate in order 1..5
    assert int(train.labels[k]) == label
    assert torch.equal(train.images[k], torch.from_numpy(image))  # R, G, B planes, row-major
    # one pixel by hand: green plane, row 3, column 7 is byte 1 + 1024 + 3 * 32 + 7 of the record
    raw = (tmp_path / "cifar-10-batches-bin" / "data_batch_3.bin").read_bytes()[3073:]
    assert int(train.images[k, 1, 3, 7]) == raw[1 + 1024 + 3 * 32 + 7]
    assert test.labels.tolist() == [known[("test_batch.bin", 0)][0], known[("test_batch.bin", 1)][0]]


def test_cifar100_uses_the_fine_label(tmp_path):
    known = fake_cifar100(tmp_path)
    train, test = load("cifar100", tmp_path / "cifar-100-binary")  # the extracted folder itself works too
    assert train.labels.tolist() == [42, 99, 0] and test.labels.tolist() == [7]
    assert len(train.classes) == 100 and train.classes[42] == "fine42"
    assert torch.equal(train.images[1], torch.from_numpy(known[("train.bin", 1)][1]))


def test_truncated_binary_file_is_one_line_error(tmp_path):
    fake_cifar10(tmp_path)
    path = tmp_path / "cifar-10-batches-bin" / "test_batch.bin"
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(DataMissingError, match="not a whole number of 3073-byte records") as err:
        load("cifar10", tmp_path)
    assert "\n" not in str(err.value)


def test_stl10_column_major_transpose_and_labels(tmp_path):
    images = fake_stl10(tmp_path)
    train, test = load("stl10", tmp_path)
    assert train.images.shape == (3, 3, 96, 96) and test.images.shape == (2, 3, 96, 96)
    assert int(train.images[0, 0, 10, 20]) == 250 and int(train.images[0, 0, 20, 10]) == 3
    assert torch.equal(train.images, torch.from_numpy(images))
    assert train.labels.tolist() == [2, 3, 7] and test.labels.tolist() == [9, 0]  # 1..10 -> 0..9
    assert train.classes[2] == "car"


def test_stl10_to_cifar10_mapping(tmp_path):
    fake_stl10(tmp_path)
    train, _ = load("stl10", tmp_path)
    mapped = stl10_as_cifar10(train)
    assert mapped.classes == CIFAR10_CLASSES
    assert mapped.labels.tolist() == [1, 3]  # car -> automobile, cat -> cat, the monkey is dropped
    assert len(STL10_CIFAR10_SHARED) == 9 and 7 not in STL10_CIFAR10_SHARED and 6 not in STL10_CIFAR10_SHARED.values()
    assert all(train.classes[s].replace("car", "automobile") == CIFAR10_CLASSES[c] for s, c in STL10_CIFAR10_SHARED.items())


# ---------------------------------------------------------------- ImageFolder / Tiny-ImageNet


def test_imagefolder_sorted_classes_native_size(tmp_path):
    for split, n in (("train", 2), ("test", 1)):
        for c, cls in enumerate(["zebra", "ant"]):
            for i in range(n):
                img = np.full((6, 5, 3), 10 * c + i, dtype=np.uint8)
                img[1, 2] = (200, 100, 50)
                png(tmp_path / split / cls / f"{i}.png", img)
    (tmp_path / "train" / "ant" / "notes.txt").write_text("not an image")
    train, test = load("imagefolder", tmp_path, image_size=16)
    assert train.classes == ["ant", "zebra"]
    assert train.images.shape == (4, 3, 6, 5)  # one size everywhere: kept, not resized
    assert train.labels.tolist() == [0, 0, 1, 1] and test.labels.tolist() == [0, 1]
    assert train.images[0, :, 1, 2].tolist() == [200, 100, 50] and int(train.images[2, 0, 0, 0]) == 0
    assert int(train.images[0, 0, 0, 0]) == 10  # 'ant' was written as class 1 of the loop above


def test_imagefolder_mixed_sizes_resized_to_image_size(tmp_path):
    png(tmp_path / "train" / "a" / "0.png", np.full((6, 6, 3), 7, np.uint8))
    png(tmp_path / "train" / "b" / "0.png", np.full((10, 4), 9, np.uint8))  # grey, other size
    png(tmp_path / "test" / "b" / "0.png", np.full((6, 6, 3), 1, np.uint8))
    train, test = load("imagefolder", tmp_path, image_size=8)
    assert train.images.shape == (2, 3, 8, 8) and test.images.shape == (1, 3, 8, 8)
    assert int(train.images[1].min()) == int(train.images[1].max()) == 9 and test.labels.tolist() == [1]


def test_tiny_imagenet_official_val_is_read_through_annotations(tmp_path):
    root = tmp_path / "tiny-imagenet-200"
    for wnid in ("n02", "n01"):
        png(root / "train" / wnid / "images" / f"{wnid}_0.JPEG".replace(".JPEG", ".png"), np.zeros((4, 4, 3), np.uint8))
    png(root / "val" / "images" / "val_0.png", np.full((4, 4, 3), 5, np.uint8))
    png(root / "val" / "images" / "val_1.png", np.full((4, 4, 3), 6, np.uint8))
    (root / "val" / "val_annotations.txt").write_text("val_0.png\tn02\t0\t0\t3\t3\nval_1.png\tn01\t0\t0\t3\t3\n")
    train, test = load("tiny_imagenet", tmp_path)
    assert train.classes == ["n01", "n02"] and test.labels.tolist() == [1, 0]
    assert int(test.images[1, 0, 0, 0]) == 6


def test_tiny_imagenet_missing_names_the_folder_and_the_val_rearrangement(tmp_path):
    with pytest.raises(DataMissingError) as err:
        load("tiny_imagenet")
    text = str(err.value)
    assert "\n" not in text and str(tmp_path / "data_home" / "tiny_imagenet") in text
    assert "rearranged" in text and "val/<wnid>/" in text


# ---------------------------------------------------------------- VOC 2012


def test_voc_resizes_and_ignores_the_border(tmp_path):
    fake_voc(tmp_path, train=["a", "b"], val=["c"])
    train, test = load("voc2012_seg", tmp_path, image_size=16)
    assert train.images.shape == (2, 3, 16, 16) and train.labels.shape == (2, 16, 16)
    assert test.images.shape == (1, 3, 16, 16) and train.labels.dtype == torch.int64
    assert len(train.classes) == 21 and train.classes[0] == "background" and train.classes[15] == "person"
    assert set(train.labels.unique().tolist()) == {-100, 0, 15}
    assert (train.labels[:, 0] == -100).all() and int(train.labels[0, 8, 0]) == 0 and int(train.labels[0, 8, 15]) == 15
    assert abs(int(train.images[1].float().mean()) - 40) <= 2  # JPEG is lossy; the value is ~40


def test_missing_data_is_one_line_with_where_and_how(tmp_path):
    with pytest.raises(DataMissingError) as err:
        load("cifar10", tmp_path / "nowhere")
    text = str(err.value)
    assert "\n" not in text
    assert str(tmp_path / "nowhere" / "cifar-10-batches-bin") in text and "cifar-10-binary.tar.gz" in text
    assert "data.download=true" in text
    with pytest.raises(DataMissingError, match=r"VOCdevkit.*VOCtrainval_11-May-2012\.tar"):
        load("voc2012_seg")


# ---------------------------------------------------------------- requirements, data check, preflight


def write_experiment(tmp_path: Path, data_root: Path, weights: Path) -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(
        "name: fake\n"
        f"data: {{name: cifar10, root: '{data_root}'}}\n"
        f"model: {{weights: '{weights}'}}\n"
        "eval: {transfer: [stl10]}\n"
        "matrix: {method: [ce, grpo_rm]}\n"
    )
    return path


def test_requirements_and_data_check_report_present_and_missing(tmp_path):
    fake_cifar10(tmp_path / "cifar")
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"x")
    path = write_experiment(tmp_path, tmp_path / "cifar", weights)
    exp = load_experiment(path)
    reqs = requirements(exp.runs[0])
    by_name = {r.name.split(" ")[0]: r for r in reqs}
    assert [r.kind for r in reqs] == ["data", "data", "weights"]
    assert by_name["cifar10"].present and by_name["tf_efficientnet_lite0"].present
    stl = by_name["stl10"]  # transfer data sets use the default root, like the evaluation
    assert not stl.present and stl.where[0] == str(tmp_path / "data_home" / "stl10" / "stl10_binary")
    assert [r.name for r in check_mod.missing(exp)] == ["stl10"]  # two runs, deduplicated

    result = runner.invoke(app, ["data", "check", str(path)])
    assert result.exit_code == 1, result.output
    lines = result.output.splitlines()
    assert lines[0].split()[:4] == ["kind", "name", "present", "where"]
    assert any(line.split()[:3] == ["data", "cifar10", "yes"] for line in lines)
    assert any(line.split()[:3] == ["data", "stl10", "no"] and "stl10_binary.tar.gz" in line for line in lines)
    assert "2 of 3 present, 1 missing" in result.output

    with pytest.raises(GrpormError) as err:
        preflight(exp)
    assert "\n" not in str(err.value) and "stl10" in str(err.value) and "cifar10:" not in str(err.value)

    fake_stl10(tmp_path / "data_home" / "stl10")
    result = runner.invoke(app, ["data", "check", str(path)])
    assert result.exit_code == 0, result.output
    preflight(exp)  # nothing missing: no error
    result = runner.invoke(app, ["data", "check", str(path), "-o", f"model.weights={tmp_path / 'gone.pth'}"])
    assert result.exit_code == 1 and "gone.pth" in result.output


def test_preflight_lists_every_missing_item_separated_by_semicolons(tmp_path):
    path = write_experiment(tmp_path, tmp_path / "nothing", tmp_path / "none.pth")
    with pytest.raises(GrpormError) as err:
        preflight(load_experiment(path))
    text = str(err.value)
    assert "\n" not in text and "3 data set(s) / weight file(s) missing" in text
    items = text.split(": ", 2)[2].split("; ")
    assert [i.split(":")[0] for i in items] == ["data cifar10", "data stl10", "weights tf_efficientnet_lite0 (file)"]


def test_hub_weights_are_fetchable_unless_offline(tmp_path, monkeypatch):
    monkeypatch.setattr(check_mod, "hub_cache_files", lambda name: (["/hf/cache"], None, f"hf-hub:timm/{name}"))
    fake_cifar10(tmp_path / "cifar")
    path = tmp_path / "hub.yaml"
    path.write_text(f"data: {{name: cifar10, root: '{tmp_path / 'cifar'}'}}\nmodel: {{name: vit_small_patch14_dinov2, weights: hub}}\n")
    exp = load_experiment(path)
    (req,) = [r for r in requirements(exp.runs[0]) if r.kind == "weights"]
    assert not req.present and req.fetch and "needs network" in req.hint
    preflight(exp)  # the run downloads it itself
    with pytest.raises(GrpormError, match="vit_small_patch14_dinov2 \\(hub\\)"):
        preflight(exp, offline=True)
    result = runner.invoke(app, ["data", "check", str(path)])
    assert result.exit_code == 0 and " fetch " in result.output, result.output
    assert runner.invoke(app, ["data", "check", str(path), "--offline"]).exit_code == 1
    monkeypatch.setattr(check_mod, "hub_cache_files", lambda name: (["/hf/cache"], "/hf/cache/model.safetensors", "x"))
    (req,) = [r for r in requirements(exp.runs[0]) if r.kind == "weights"]
    assert req.present and req.found == "/hf/cache/model.safetensors"


def test_packaged_weights_and_inventory():
    reqs = check_mod.inventory()
    names = {r.name for r in reqs}
    assert {"cifar10", "stl10", "tiny_imagenet", "imagefolder", "voc2012_seg", "fashion_mnist", "digits"} <= names
    assert {"tf_efficientnet_lite0 (packaged)", "mobilenetv2_100 (packaged)"} <= names
    digits = next(r for r in reqs if r.name == "digits")
    assert digits.present  # scikit-learn is a dependency
    none = Requirement("data", "x", (), False, "h", fetch=True)
    assert not none.blocks() and none.blocks(offline=True)


# ---------------------------------------------------------------- experiments/paper


def test_paper_files_exist():
    assert {p.stem for p in PAPER} >= {"classification", "ood", "imbalance", "segmentation"}


@pytest.mark.parametrize("path", PAPER, ids=lambda p: p.stem)
def test_paper_experiment_dry_runs_and_data_check_reports_missing(path, tmp_path, monkeypatch):
    result = runner.invoke(app, ["run", str(path), "--dry-run", "--results", str(tmp_path / "r")])
    assert result.exit_code == 2, result.output  # --dry-run checks what a run needs: the data is not here
    assert "missing, nothing was run" in result.stderr and not (tmp_path / "r").exists()
    exp = load_experiment(path)
    assert "  config " not in result.output and len(exp.runs) >= 9  # the error, not the run list
    assert {r.seed for r in exp.runs} == {2, 3, 4}  # evaluation seeds, never a tuning seed (0, 1)
    assert all(r.train.precision == "bf16" and r.data.image_size >= 224 for r in exp.runs)
    monkeypatch.setattr(check_mod, "hub_cache_files", lambda name: ([f"/hf/{name}"], None, name))
    result = runner.invoke(app, ["data", "check", str(path)])
    assert result.exit_code == 1, result.output
    assert " no " in result.output and str(tmp_path / "data_home") in result.output
