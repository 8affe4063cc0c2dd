"""Bad input, fourth round (issue 26): one regression test (or a few) per class of failure.

Images decoded faithfully; the image-folder layout checked; weight files judged by their values and
the suite's own checkpoints accepted; one atomic writer for every file (never through a planted link,
with the umask's mode) and a report that deletes only its own files; resume with a damaged config
hash or a checkpoint that no longer fits; the Python API's arguments; W&B without HOME; a closed
stdout; every warning one line naming its file.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import grporm.training.train
from grporm.data.sources import decode_images, image_sizes
from grporm.errors import DataMissingError, GrpormError

from tiny_runs import STEPS_PER_EPOCH, checkpoint, env, invoke, record, write_experiment

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def shown(monkeypatch):
    """Warnings shown as the CLI shows them (pytest records them instead): formatted and written to stderr."""
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        monkeypatch.setattr(warnings, "_showwarnmsg_impl",
                            lambda msg: sys.stderr.write(warnings.formatwarning(msg.message, msg.category, msg.filename,
                                                                                msg.lineno, msg.line)))
        yield


def one_error_line(result, fragment: str) -> str:
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2, result.output
    assert lines[-1].startswith("error: ") and fragment in lines[-1], result.output
    assert "Traceback" not in result.output
    return lines[-1]


# ---------------------------------------------------------------- images decoded faithfully

def _decoded(path: Path) -> list[int]:
    return decode_images([path], None)[0, :, 0, 0].tolist()


@pytest.mark.parametrize("name, image, rgb", [
    ("gray16.png", Image.fromarray(np.full((4, 4), 32896, np.uint16)), [128] * 3),  # I;16: /257, not clipped to white
    ("gray16.tif", Image.fromarray(np.full((4, 4), 65535, np.uint16)), [255] * 3),
    ("int32.tif", Image.fromarray(np.full((4, 4), 257 * 60, np.int32)), [60] * 3),  # mode I, as PIL reads 16-bit PGM
    ("float01.tif", Image.fromarray(np.full((4, 4), 0.5, np.float32)), [128] * 3),  # mode F in 0..1
    ("float255.tif", Image.fromarray(np.full((4, 4), 200.0, np.float32)), [200] * 3),  # mode F in 0..255
    ("clear.png", Image.new("RGBA", (4, 4), (10, 20, 30, 0)), [255] * 3),  # transparent: on white, not its hidden colour
    ("half.png", Image.new("LA", (4, 4), (0, 128)), [127] * 3),
    ("ink.jpg", Image.new("CMYK", (4, 4), (0, 255, 255, 0)), [255, 0, 0]),
    ("plain.png", Image.new("L", (4, 4), 77), [77] * 3),
])
def test_every_mode_is_decoded_to_what_a_viewer_shows(tmp_path, name, image, rgb):
    image.save(tmp_path / name)
    got = _decoded(tmp_path / name)
    assert got == rgb if not name.endswith(".jpg") else np.allclose(got, rgb, atol=3), got


def test_a_palette_image_with_a_transparent_colour_is_shown_on_white(tmp_path):
    image = Image.new("P", (4, 4), 0)
    image.putpalette([0, 0, 0] * 256)
    image.save(tmp_path / "p.png", transparency=0)
    assert _decoded(tmp_path / "p.png") == [255] * 3


def test_an_exif_rotated_photo_is_decoded_upright(tmp_path):
    pixels = np.zeros((2, 4, 3), np.uint8)
    pixels[0, 0] = 255  # top-left white, as stored (4 wide, 2 high)
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = 6  # shown rotated 90 degrees clockwise
    image.save(tmp_path / "phone.jpg", exif=exif, quality=100)
    assert image_sizes([tmp_path / "phone.jpg"]) == {(2, 4)}
    decoded = decode_images([tmp_path / "phone.jpg"], None)
    assert tuple(decoded.shape) == (1, 3, 4, 2)
    assert decoded[0, 0, 0, 1] > 200 and decoded[0, 0, 0, 0] < 60  # the white corner is now top-right


@pytest.mark.parametrize("name, pixels, fragment", [
    ("negative.tif", np.full((4, 4), -5.0, np.float32), "float pixel values from -5"),
    ("nan.tif", np.full((4, 4), np.nan, np.float32), "NaN or infinite"),
    ("huge.tif", np.full((4, 4), 10**7, np.int32), "beyond 16 bits"),
])
def test_pixels_that_cannot_be_mapped_faithfully_are_refused_naming_the_file(tmp_path, name, pixels, fragment):
    Image.fromarray(pixels).save(tmp_path / name)
    with pytest.raises(DataMissingError, match=re.escape(str(tmp_path / name))) as err:
        decode_images([tmp_path / name], None)
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_a_large_image_is_one_warning_naming_it_and_a_bomb_is_refused_naming_it(tmp_path, monkeypatch, capsys):
    from grporm.data import sources

    monkeypatch.setattr(sources, "_SAID", set())
    Image.new("RGB", (4, 4)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10)  # 16 pixels: above the limit, under twice it
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # PIL's own two-line warning must not be raised at all
        image_sizes([tmp_path / "big.png"])
        image_sizes([tmp_path / "big.png"])  # loaded again (the checks, then the run): said once
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("warning: 1 image(s) above") and str(tmp_path / "big.png") in err
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 5)  # 16 > twice 5: PIL refuses it
    with pytest.raises(DataMissingError, match=re.escape(f"{tmp_path / 'big.png'}: refused")):
        image_sizes([tmp_path / "big.png"])


def test_an_unreadable_image_is_one_line_naming_it_already_when_sizes_are_read(tmp_path):
    (tmp_path / "junk.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(DataMissingError, match=re.escape(f"{tmp_path / 'junk.png'}: cannot read the image")):
        image_sizes([tmp_path / "junk.png"])


def test_whatever_a_hostile_image_makes_the_decoder_raise_is_one_line_naming_it(tmp_path, monkeypatch):
    import struct

    from grporm.data import sources

    Image.new("RGB", (4, 4)).save(tmp_path / "hostile.tif")

    def broken(im, path):
        raise struct.error("unpack requires a buffer of 4 bytes")  # as PIL's TIFF parser can

    monkeypatch.setattr(sources, "to_rgb", broken)
    with pytest.raises(DataMissingError, match=re.escape(f"{tmp_path / 'hostile.tif'}: cannot decode (error: unpack")):
        decode_images([tmp_path / "hostile.tif"], None)


def test_a_warning_while_decoding_names_the_image(tmp_path, monkeypatch, capsys, shown):
    from grporm.data import sources
    from grporm.tracking import notices

    Image.new("RGB", (4, 4)).save(tmp_path / "odd.png")
    original = sources.to_rgb

    def warns(im, path):
        warnings.warn("Possibly corrupt EXIF data", UserWarning, stacklevel=1)  # as PIL words it
        return original(im, path)

    monkeypatch.setattr(sources, "to_rgb", warns)
    undo = notices.install()
    try:
        decode_images([tmp_path / "odd.png"], None)
    finally:
        undo()
    assert capsys.readouterr().err == f"warning: {tmp_path / 'odd.png'}: Possibly corrupt EXIF data\n"


# ---------------------------------------------------------------- the image-folder layout

@pytest.fixture
def fresh_layout_warnings(monkeypatch):
    from grporm.data import image_folder

    monkeypatch.setattr(image_folder, "_warned", set())


def _folder(root: Path, layout: dict[str, dict[str, int]], mode: str = "RGB", value=90) -> Path:
    for split, classes in layout.items():
        for cls, n in classes.items():
            (root / split / cls).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.new(mode, (6, 6), value).save(root / split / cls / f"{i}.png")
    return root


def _load(root: Path):
    from grporm.config import DataConfig
    from grporm.data import DATASETS

    return DATASETS.get("imagefolder")(DataConfig(name="imagefolder", root=root))


def test_a_data_set_of_16_bit_images_is_not_white(tmp_path, fresh_layout_warnings):
    root = _folder(tmp_path / "scans", {"train": {"a": 3, "b": 3}, "test": {"a": 1, "b": 1}}, "I;16", 30000)
    train, _ = _load(root)
    assert int(train.images.max()) == round(30000 / 257)  # not 255: PIL's convert("RGB") clipped it to white


def test_a_single_class_is_refused(tmp_path, fresh_layout_warnings):
    root = _folder(tmp_path, {"train": {"only": 4}, "test": {"only": 2}})
    with pytest.raises(DataMissingError, match="1 class folder .only.; a classifier needs at least 2 classes"):
        _load(root)


def test_an_empty_class_folder_in_train_is_refused(tmp_path, fresh_layout_warnings):
    root = _folder(tmp_path, {"train": {"a": 3, "b": 3}, "test": {"a": 1, "b": 1}})
    (root / "train" / "c").mkdir()
    with pytest.raises(DataMissingError, match=r"class folder\(s\) c hold no image"):
        _load(root)


def test_every_file_not_used_is_named_in_one_warning(tmp_path, capsys, fresh_layout_warnings):
    root = _folder(tmp_path, {"train": {"a": 3, "b": 3}, "test": {"a": 1, "b": 1}})
    Image.new("RGB", (6, 6)).save(root / "train" / "stray.png")  # beside the class folders
    (root / "train" / "a" / "notes.txt").write_text("x")  # not an image
    (root / "train" / "a" / ".DS_Store").write_bytes(b"")  # the system's: silent
    train, _ = _load(root)
    assert len(train) == 6
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "2 file(s) not used" in err
    assert "train/stray.png" in err and "train/a/notes.txt" in err and "DS_Store" not in err


def test_classes_missing_from_val_and_test_are_named(tmp_path, capsys, fresh_layout_warnings):
    root = _folder(tmp_path, {"train": {"a": 3, "b": 3, "c": 3}, "val": {"a": 1, "b": 1}, "test": {"a": 1, "c": 1}})
    _load(root)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2
    assert any(f"{root / 'val'}: no image of 1 of the 3 classes of train/ (c)" in line for line in lines)
    assert any(f"{root / 'test'}: no image of 1 of the 3 classes of train/ (b)" in line for line in lines)


# ---------------------------------------------------------------- weight files

def _state(pool: str = "default") -> dict:
    from grporm.models.backbones import create_backbone, with_pooling

    return with_pooling(create_backbone("test_vit", "none", image_size=16), pool).module.state_dict()


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_a_weights_file_of_non_finite_values_is_refused_before_anything_is_written(tmp_path, value):
    state = _state()
    state["blocks.0.attn.qkv.weight"] = torch.full_like(state["blocks.0.attn.qkv.weight"], value)
    torch.save(state, tmp_path / "diverged.pt")
    write_experiment(tmp_path, model={"weights": str(tmp_path / "diverged.pt")})
    before = set(tmp_path.rglob("*"))
    line = one_error_line(invoke(tmp_path), "hold NaN or infinite values (e.g. 'blocks.0.attn.qkv.weight')")
    assert "diverged.pt" in line and set(tmp_path.rglob("*")) == before


@pytest.mark.parametrize("pool", ["default", "cls+mean"])
@pytest.mark.parametrize("layout", ["model.pt", "last.pt"])
def test_the_suites_own_checkpoints_are_accepted_and_what_was_loaded_is_said(tmp_path, capsys, layout, pool):
    from grporm.models.backbones import create_backbone

    backbone = _state(pool)  # laid out as Classifier.state_dict(): backbone.*, head.*
    head = {"weight": torch.zeros(3, 64 * (2 if pool == "cls+mean" else 1)), "bias": torch.zeros(3)}
    model = {f"backbone.{k}": v for k, v in backbone.items()} | {f"head.{k}": v for k, v in head.items()}
    state = {"model": model, "config_hash": "0123456789ab"}
    if layout == "last.pt":
        state |= {"optimizer": {"state": {}, "param_groups": []}, "epoch": 2, "history": []}
    torch.save(state, tmp_path / layout)
    loaded = create_backbone("test_vit", str(tmp_path / layout), image_size=16).module.state_dict()
    plain = {k.removeprefix("vit."): v for k, v in backbone.items()}
    assert loaded.keys() == plain.keys() and all(torch.equal(loaded[k], plain[k]) for k in plain)
    said = capsys.readouterr().err
    assert said.count("\n") == 1 and said.startswith(f"weights: {tmp_path / layout}: loaded 78 of the 78 tensors")
    assert "the backbone of a grporm model (its head of 2 tensor(s) left out)" in said


def test_the_model_pt_of_a_finished_run_is_a_valid_weights_file(tmp_path):
    """End to end: the suite's own output fed back as model.weights trains (it was refused as 'not
    this architecture' because of its backbone. prefix)."""
    first = tmp_path / "first"
    first.mkdir()
    write_experiment(first, train={"epochs": 1})
    assert invoke(first).exit_code == 0
    weights = checkpoint(first, name="model.pt")
    write_experiment(tmp_path, model={"weights": str(weights)}, train={"epochs": 1})
    result = invoke(tmp_path)
    assert result.exit_code == 0, result.output
    assert f"weights: {weights}: loaded" in result.stderr


# ---------------------------------------------------------------- one writer: atomic, never through a link, the umask's mode

def test_the_writer_replaces_a_planted_symlink_instead_of_writing_through_it(tmp_path):
    from grporm.records.storage import write_text_atomic

    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    link = tmp_path / "out" / "REPORT.md"
    link.parent.mkdir()
    link.symlink_to(victim)
    write_text_atomic(link, "report")
    assert victim.read_text() == "precious"
    assert not link.is_symlink() and link.read_text() == "report"


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_files_get_the_mode_of_the_umask_not_mkstemps_0600(tmp_path, umask, mode):
    from grporm.process.locks import RunLock
    from grporm.records.storage import write_json
    from grporm.training.checkpoints import save_checkpoint

    old = os.umask(umask)
    lock = RunLock(tmp_path / ".lock", heartbeat=3600)
    try:
        write_json(tmp_path / "record.json", {"a": 1})
        save_checkpoint(tmp_path / "last.pt", {"epoch": 1})
        lock.acquire()
    finally:
        os.umask(old)
    try:
        for name in ("record.json", "last.pt", ".lock"):
            assert (tmp_path / name).stat().st_mode & 0o777 == mode, name
    finally:
        lock.release()


def test_every_file_the_suite_writes_goes_through_the_one_writer():
    """A new Path.write_text / write_bytes, open(..., "w") or savefig(path) would bring back writes
    that follow planted links, tear on a kill and ignore the umask; the writer itself is the exception."""
    patterns = {"write_text": r"\.write_text\(", "write_bytes": r"\.write_bytes\(", "open for writing": r"open\([^)]*['\"][wax]b?['\"]",
                "savefig to a path": r"savefig\((?!handle)", "to_csv to a path": r"to_csv\((?!buffer)"}
    allowed = {("storage.py", "open for writing"),  # the writer: os.fdopen of its temporary file
               ("locks.py", "open for writing"),  # lock files: created exclusively, their own protocol
               ("tracker.py", "savefig to a path")}  # into an in-memory buffer for W&B
    found = set()
    for path in [*(REPO / "grporm").rglob("*.py"), *(REPO / "analysis").rglob("*.py")]:
        text = path.read_text()
        for name, pattern in patterns.items():
            if re.search(pattern, text):
                found.add((path.name, name))
    assert found - allowed == set(), sorted(found - allowed)


def test_compare_out_never_writes_through_a_planted_link(tmp_path, write_run):
    from typer.testing import CliRunner

    from grporm.cli import app

    for seed in range(3):
        write_run(tmp_path / "results", "study", f"ce-s{seed}", method="ce", seed=seed, sr=0.8, axes={"arm": "ce"})
        write_run(tmp_path / "results", "study", f"grpo-s{seed}", method="grpo_rm", seed=seed, sr=0.82,
                  axes={"arm": "grpo_rm"})
    victim = tmp_path / "victim.md"
    victim.write_text("precious")
    out = tmp_path / "out"
    out.mkdir()
    (out / "verdict.md").symlink_to(victim)
    result = CliRunner().invoke(app, ["compare", str(tmp_path / "results"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert victim.read_text() == "precious" and not (out / "verdict.md").is_symlink()


def test_a_report_refuses_a_tables_folder_linked_outside_the_results(tmp_path, write_run):
    from typer.testing import CliRunner

    from grporm.cli import app

    results = tmp_path / "results"
    write_run(results, "study", "ce-s0", method="ce", seed=0, sr=0.8)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "classification.md").write_text("precious")
    (results / "tables").symlink_to(elsewhere)
    result = CliRunner().invoke(app, ["report", "--results", str(results)])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1, result.output
    assert result.stderr.startswith(f"error: {results / 'tables'} is a link to {elsewhere}, outside {results}")
    assert not (results / "study" / "table.md").exists()  # refused before anything was written
    assert [p.name for p in elsewhere.iterdir()] == ["classification.md"] and (elsewhere / "classification.md").read_text() == "precious"


# ---------------------------------------------------------------- a report deletes only what a report wrote

def test_a_report_deletes_only_the_stale_files_an_earlier_report_wrote(tmp_path):
    from grporm.analysis.manifest import MANIFEST_NAME, prune_and_record

    root = tmp_path
    (root / "tables").mkdir()
    for name in ("old.md", "edited.md", "kept.md", "mine.md"):
        (root / "tables" / name).write_text(name)
    mine_is_part = lambda name: name.startswith("tables/")  # noqa: E731
    prune_and_record(root, [root / "tables" / n for n in ("old.md", "edited.md", "kept.md")], mine_is_part)
    (root / "tables" / "edited.md").write_text("the user's edit")
    prune_and_record(root, [root / "tables" / "kept.md"], mine_is_part)  # the next report writes only kept.md
    left = sorted(p.name for p in (root / "tables").iterdir())
    assert left == ["edited.md", "kept.md", "mine.md"]  # old.md (a report's, unchanged) deleted; the rest kept
    assert (root / MANIFEST_NAME).is_file()


def test_a_planted_manifest_cannot_make_a_report_delete_outside_the_results(tmp_path):
    import hashlib
    import json

    from grporm.analysis.manifest import MANIFEST_NAME, prune_and_record

    victim = tmp_path / "victim.md"
    victim.write_text("precious")
    root = tmp_path / "results"
    root.mkdir()
    digest = hashlib.sha256(b"precious").hexdigest()
    (root / MANIFEST_NAME).write_text(json.dumps({"files": {"../victim.md": digest, str(victim): digest}}))
    prune_and_record(root, [], lambda name: True)
    assert victim.read_text() == "precious"


# ---------------------------------------------------------------- resume

def _prepared(tmp_path):
    from grporm.plan.experiment import load_experiment
    from grporm.training.runner import _prepare_checkpoints

    run = load_experiment(write_experiment(tmp_path)).runs[0]
    folder = tmp_path / "ckpt"
    return run, folder, lambda: _prepare_checkpoints(folder, run, force=False)


@pytest.mark.parametrize("damage", ["", "garbage\0", None])  # empty (a kill mid-write), binary, missing
def test_a_damaged_config_hash_beside_a_checkpoint_of_this_config_resumes_it(tmp_path, capsys, damage):
    run, folder, prepare = _prepared(tmp_path)
    prepare()
    torch.save({"model": {}, "epoch": 1, "config_hash": run.config_hash()}, folder / "last.pt")
    if damage is None:
        (folder / "config_hash").unlink()
    else:
        (folder / "config_hash").write_text(damage)
    prepare()
    assert (folder / "last.pt").exists() and (folder / "config_hash").read_text() == run.config_hash()
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "records this run's config" in err and "resumes from it" in err


def test_a_damaged_config_hash_beside_a_checkpoint_of_unknown_config_keeps_it_aside(tmp_path, capsys):
    run, folder, prepare = _prepared(tmp_path)
    prepare()
    torch.save({"model": {}, "epoch": 1}, folder / "last.pt")  # from before checkpoints recorded their config
    (folder / "config_hash").write_text("")
    prepare()
    aside = folder.with_name("ckpt.unverified")
    assert (aside / "last.pt").exists()  # never deleted silently
    assert not (folder / "last.pt").exists() and (folder / "config_hash").read_text() == run.config_hash()
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"kept as {aside}" in err and "starts afresh" in err


def test_another_configs_checkpoint_is_still_deleted(tmp_path):
    run, folder, prepare = _prepared(tmp_path)
    folder.mkdir()
    (folder / "config_hash").write_text("0123456789ab")
    torch.save({"model": {}, "epoch": 1}, folder / "last.pt")
    prepare()
    assert not (folder / "last.pt").exists() and not folder.with_name("ckpt.unverified").exists()


class Stop(Exception):
    pass


def _stopped_in_epoch_3(folder: Path, monkeypatch) -> None:
    original, calls = grporm.training.train.local_batch, [0]

    def local_batch(*args, **kwargs):
        calls[0] += 1
        if calls[0] == 2 * STEPS_PER_EPOCH + 1:
            raise Stop
        return original(*args, **kwargs)

    write_experiment(folder)
    with monkeypatch.context() as patch:
        patch.setattr(grporm.training.train, "local_batch", local_batch)
        assert isinstance(invoke(folder).exception, Stop)


def _misfit(path: Path) -> None:
    state = torch.load(path, weights_only=True)
    state["model"]["head.weight"] = torch.zeros(3, 7)  # tensors of another model (a library upgrade...)
    torch.save(state, path)


def test_a_last_checkpoint_that_no_longer_fits_falls_back_to_the_previous_one(tmp_path, monkeypatch):
    _stopped_in_epoch_3(tmp_path, monkeypatch)
    _misfit(checkpoint(tmp_path))
    result = invoke(tmp_path)
    assert result.exit_code == 0, result.output
    assert f"checkpoint {checkpoint(tmp_path)} is unreadable (its model tensor 'head.weight' is (3, 7)" in result.stderr
    assert "resuming from the previous checkpoint" in result.stderr and "at epoch 1/3" in result.output
    assert "Traceback" not in result.output


def test_no_checkpoint_that_fits_is_one_line_and_exit_2(tmp_path, monkeypatch):
    _stopped_in_epoch_3(tmp_path, monkeypatch)
    _misfit(checkpoint(tmp_path))
    _misfit(checkpoint(tmp_path, name="last.prev.pt"))
    result = invoke(tmp_path)
    line = one_error_line(result, "error: no readable checkpoint")
    assert "'head.weight' is (3, 7)" in line and "last.prev.pt" in line
    assert result.stderr.strip().count("\n") == 0, result.stderr  # the error alone: no warning, no traceback
    assert record(tmp_path)["status"] == "failed"


# ---------------------------------------------------------------- the Python API

def test_api_overrides_as_one_string_is_one_override(tmp_path, monkeypatch):
    import grporm

    write_experiment(tmp_path)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(GrpormError, match="train.lrr: unknown key"):  # the string whole, not its characters
        grporm.run("exp.yaml", overrides="train.lrr=0.1")


@pytest.mark.parametrize("kwargs", [{"overrides": None}, {"results": None}, {"checkpoints": None}])
def test_api_none_is_the_default(tmp_path, monkeypatch, kwargs):
    import grporm

    write_experiment(tmp_path)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(GrpormError, match="no run matches --only"):  # got past the arguments, to the matrix
        grporm.run("exp.yaml", only="no-such-run", **kwargs)


@pytest.mark.parametrize("kwargs, fragment", [
    ({"overrides": 5}, "overrides=5: not a list"),
    ({"overrides": {"train.lr": 0.1}}, "overrides={'train.lr': 0.1}: a dict"),
    ({"overrides": ["train.lr=0.1", 3]}, "overrides: 3 is a int"),
    ({"results": 5}, "results=5: not a path"),
    ({"checkpoints": ["a"]}, "checkpoints=['a']: not a path"),
    ({"only": 3}, "only=3: not a str"),
    ({"echo": "loud"}, "echo='loud': not callable"),
])
def test_api_bad_arguments_are_one_grporm_error_naming_the_argument(tmp_path, kwargs, fragment):
    import grporm

    with pytest.raises(GrpormError) as err:
        grporm.run(tmp_path / "exp.yaml", **kwargs)
    assert str(err.value).startswith(fragment) and "\n" not in str(err.value)


def test_api_experiment_none_and_load_runs_none(tmp_path, monkeypatch):
    import grporm

    with pytest.raises(GrpormError, match="experiment=None"):
        grporm.run(None)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(GrpormError, match="results folder results does not exist"):
        grporm.load_runs(None)
    with pytest.raises(GrpormError, match="results=3: not a path"):
        grporm.load_runs(3)


# ---------------------------------------------------------------- environment and output

def test_wandb_gets_a_folder_under_the_results_when_home_is_unset(tmp_path, monkeypatch):
    from grporm.tracking.tracker import service_environment

    monkeypatch.delenv("HOME", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    with service_environment(str(tmp_path / "run")):
        assert os.environ["XDG_CACHE_HOME"] == str(tmp_path / "run" / "wandb" / "service-cache")
    assert "XDG_CACHE_HOME" not in os.environ  # this process's own caches are left alone
    monkeypatch.setenv("HOME", str(tmp_path))
    with service_environment(str(tmp_path / "run")):
        assert "XDG_CACHE_HOME" not in os.environ


@pytest.mark.slow
def test_an_offline_run_without_home_prints_no_service_errors(tmp_path):
    write_experiment(tmp_path, tracking={"mode": "offline"}, train={"epochs": 1})
    environment = {k: v for k, v in env().items() if k not in ("HOME", "XDG_CACHE_HOME")}
    done = subprocess.run([sys.executable, "-m", "grporm", "run", "exp.yaml"], cwd=tmp_path, env=environment,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert [line for line in done.stderr.splitlines() if not line.startswith("warning: ")] == [], done.stderr


def test_a_closed_stdout_is_not_an_error():
    from grporm.cli import ClosedStdoutTolerant

    read, write = os.pipe()
    os.close(read)
    stream = ClosedStdoutTolerant(os.fdopen(write, "w"))
    stream.write("x" * 100_000)  # more than a pipe holds: the write meets the closed end
    stream.flush()
    stream.write("more")
    stream.flush()


@pytest.mark.slow
def test_a_dry_run_into_a_closed_pipe_exits_quietly(tmp_path):
    write_experiment(tmp_path, matrix={"seed": list(range(20))})
    read, write = os.pipe()
    os.close(read)  # `| head -1` gone before the output comes
    try:
        done = subprocess.run([sys.executable, "-m", "grporm", "run", "exp.yaml", "--dry-run", "-v"], cwd=tmp_path,
                              env=env(), stdout=write, stderr=subprocess.PIPE, text=True, timeout=300)
    finally:
        os.close(write)
    assert done.returncode == 0, done.stderr
    assert "error" not in done.stderr and "Broken pipe" not in done.stderr and "Exception" not in done.stderr


def test_a_warning_is_one_line_naming_the_file_it_is_about(tmp_path, capsys, shown):
    from grporm.tracking import notices
    undo = notices.install()
    try:
        with notices.reading(tmp_path / "w.pt"):
            warnings.warn("something odd\n  in two lines", UserWarning, stacklevel=1)
        import torch.serialization as library

        warnings.warn_explicit("a library's own words", UserWarning, library.__file__, 12)
    finally:
        undo()
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == f"warning: {tmp_path / 'w.pt'}: something odd in two lines"
    assert lines[1] == "warning: a library's own words (UserWarning from torch/serialization.py:12)"
    assert len(lines) == 2


def test_a_weights_file_with_extra_tensors_warns_in_one_line_through_the_cli(tmp_path, shown):
    state = _state() | {"extra.weight": torch.zeros(2)}
    torch.save(state, tmp_path / "extra.pt")
    write_experiment(tmp_path, model={"weights": str(tmp_path / "extra.pt")})
    result = invoke(tmp_path, "--dry-run")
    assert result.exit_code == 0, result.output
    warned = [line for line in result.stderr.splitlines() if "extra.weight" in line]
    assert warned == [f"warning: {tmp_path / 'extra.pt'}: ignored 1 tensors not in backbone 'test_vit' (e.g. extra.weight)"]
    assert "UserWarning" not in result.stderr and "warnings.warn" not in result.stderr


def test_a_home_folder_python_cannot_tell_is_one_line_not_a_traceback(tmp_path, monkeypatch):
    """HOME unset for a uid without a home in the password database: ~ cannot be expanded."""
    import os.path

    from grporm.config import DataConfig
    from grporm.data.sources import data_root
    from grporm.records.inputs import expand_home

    monkeypatch.setattr(os.path, "expanduser", lambda path: path)  # what Python does then: ~ stays ~
    with pytest.raises(GrpormError, match="cannot tell the home folder '~' stands for .HOME is unset"):
        expand_home("~/w.pt")
    monkeypatch.delenv("GRPORM_DATA", raising=False)
    with pytest.raises(GrpormError, match="set HOME"):
        data_root(DataConfig(name="imagefolder"), "imagefolder")  # the default cache folder is under ~
    monkeypatch.setenv("GRPORM_DATA", str(tmp_path))
    assert data_root(DataConfig(name="imagefolder"), "imagefolder") == tmp_path / "imagefolder"
    assert DataConfig(name="imagefolder", root="~/pets").display_name() == "pets"
