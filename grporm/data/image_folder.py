"""Your own images in class folders (`imagefolder`): `root/train/<class>/*` required, and optionally
`root/val/<class>/*` and `root/test/<class>/*`, each meaning what it says:

- test/ is the test split; without it, a fixed fifth of every class of train/ is carved as the test
  split (the same images for every seed), with one warning line;
- val/ is the validation split (all of it: learning-rate tuning, the per-epoch probe); without it,
  `data.val_per_class` images per class are carved from train/, as for every data set;
- any other folder is ignored with one warning line.

Classes are train/'s folder names, sorted; val/ and test/ may lack a class but not add one. The data
set is named by its folder in records, tables and W&B (DataConfig.display_name). `load_tree` reads
the older layout Tiny-ImageNet keeps (grporm/data/tiny_imagenet.py): its val/ is the test split.

Images are decoded with PIL to RGB and kept at their native size when every image of both splits
has the same size (Tiny-ImageNet: 64x64); otherwise every image is resized (bilinear) to
`data.image_size` square at load time, the size the model sees anyway.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import torch

from grporm.data.sources import (
    DATASETS,
    LOCATORS,
    ImageSet,
    Location,
    data_root,
    decode_images,
    image_sizes,
    locate,
    missing_error,
)
from grporm.data.splits import carve_test
from grporm.errors import DataMissingError

if TYPE_CHECKING:
    from grporm.config import DataConfig

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".gif", ".tif", ".tiff", ".webp"}
TEST_SPLITS = ("val", "test")
SPLIT_FOLDERS = ("train", "val", "test")
CARVED_TEST_FRACTION = 0.2  # of the smallest class of train/, per class, when there is no test/
CARVED_TEST_SEED = 0  # fixed forever: a carved test split is one set of images for every run
_warned: set[str] = set()
# (tree, class names) -> (paths, labels) of a test split in another layout, or None when it is absent.
TestLister = Callable[[Path, list[str]], "tuple[list[Path], list[int]] | None"]


def has_class_dirs(folder: Path) -> bool:
    return folder.is_dir() and any(d.is_dir() and not d.name.startswith(".") for d in folder.iterdir())


def is_imagefolder(folder: Path, other_test: Callable[[Path], bool] | None = None) -> bool:
    """A train/<class>/ tree with val/<class>/ or test/<class>/ (or a test split `other_test` finds)."""
    if not has_class_dirs(folder / "train"):
        return False
    return any(has_class_dirs(folder / s) for s in TEST_SPLITS) or (other_test is not None and other_test(folder))


def _warn_once(line: str) -> None:
    # the loader runs more than once per process (checks, each run): say a layout problem once
    if line not in _warned:
        _warned.add(line)
        print(f"warning: {line}", file=sys.stderr)


@LOCATORS.register("imagefolder")
def locate_imagefolder(cfg: "DataConfig") -> Location:
    root = data_root(cfg, "imagefolder")
    hint = ("set data.root=DIR to a folder with train/<class>/* images, and optionally val/<class>/* and "
            "test/<class>/* (data.download is not supported)")
    return locate([root], lambda folder: has_class_dirs(folder / "train"), hint)


def _list_class_folders(split: Path, classes: list[str] | None) -> tuple[list[str], list[Path], list[int]]:
    """Image files of `split/<class>/**` in a fixed order; class names sorted (or given)."""
    found = sorted(d.name for d in split.iterdir() if d.is_dir() and not d.name.startswith("."))
    if classes is None:
        classes = found
    unknown = sorted(set(found) - set(classes))
    if unknown:
        raise DataMissingError(f"{split}: class folder(s) {', '.join(unknown[:3])} not among the training classes")
    index = {c: i for i, c in enumerate(classes)}
    paths, labels = [], []
    for name in found:
        files = sorted(p for p in (split / name).rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
        paths += files
        labels += [index[name]] * len(files)
    if not paths:
        raise DataMissingError(f"{split}: no image files in its class folders")
    return classes, paths, labels




def load_tree(folder: Path, cfg: "DataConfig", list_test: TestLister | None = None) -> tuple[ImageSet, ImageSet]:
    """The train and test splits of an ImageFolder tree; `list_test` lists a test split in another
    layout, and wins when it finds one."""
    classes, train_paths, train_labels = _list_class_folders(folder / "train", None)
    test_split = next((folder / s for s in TEST_SPLITS if has_class_dirs(folder / s)), None)
    listed = list_test(folder, classes) if list_test is not None else None
    if listed is not None:
        test_paths, test_labels = listed
    elif test_split is not None:
        _, test_paths, test_labels = _list_class_folders(test_split, classes)
    else:
        raise DataMissingError(f"{folder}: no val/<class>/ or test/<class>/ folders")
    # Keep the native size when all images share one (Tiny-ImageNet); else resize to data.image_size.
    sizes = image_sizes(train_paths + test_paths)
    load_size = None if len(sizes) == 1 else (cfg.image_size, cfg.image_size)
    train = ImageSet(decode_images(train_paths, load_size), torch.tensor(train_labels, dtype=torch.int64), classes)
    test = ImageSet(decode_images(test_paths, load_size), torch.tensor(test_labels, dtype=torch.int64), list(classes))
    return train, test


def _listed(folder: Path, split: str, classes: list[str]) -> tuple[list[Path], list[int]] | None:
    """(paths, labels) of `folder/split/<class>/*`, None when the folder is absent."""
    if not (folder / split).is_dir():
        return None
    if not has_class_dirs(folder / split):
        raise DataMissingError(f"{folder / split}: no class folders; put its images in {split}/<class>/ "
                               "(or remove the folder)")
    _, paths, labels = _list_class_folders(folder / split, classes)
    return paths, labels


def carved_per_class(labels: torch.Tensor, num_classes: int) -> int:
    smallest = int(torch.bincount(labels, minlength=num_classes).min())
    return max(1, int(smallest * CARVED_TEST_FRACTION))


def load_folder(folder: Path, cfg: "DataConfig") -> tuple[ImageSet, ImageSet]:
    """The (train, test) of an image folder by the rules above; train carries val/ as its `own_val`."""
    extra = sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith(".") and d.name not in SPLIT_FOLDERS)
    if extra:
        _warn_once(f"{folder}: folder(s) {', '.join(extra)} ignored (an image folder has train/, val/ and test/)")
    classes, train_paths, train_labels = _list_class_folders(folder / "train", None)
    val, test = _listed(folder, "val", classes), _listed(folder, "test", classes)
    paths = train_paths + (val[0] if val else []) + (test[0] if test else [])
    # Keep the native size when all images share one; else resize to data.image_size.
    load_size = None if len(image_sizes(paths)) == 1 else (cfg.image_size, cfg.image_size)

    def image_set(files: list[Path], labels: list[int]) -> ImageSet:
        return ImageSet(decode_images(files, load_size), torch.tensor(labels, dtype=torch.int64), list(classes))

    train = image_set(train_paths, train_labels)
    if test is not None:
        test_set = image_set(*test)
    else:
        smallest = int(torch.bincount(train.labels, minlength=len(classes)).min())
        if smallest < 2:
            raise DataMissingError(f"{folder}: no test/ folder, and a class of train/ has {smallest} image(s), too few "
                                   "to carve a test split from; add test/<class>/ images")
        per_class = carved_per_class(train.labels, len(classes))
        train, test_set = carve_test(train, per_class, CARVED_TEST_SEED)
        _warn_once(f"{folder}: no test/ folder; the test split is {per_class} image(s) per class carved from train/ "
                   "(the same for every seed); add test/<class>/ for a test split of your own")
    if val is not None:
        val_set = image_set(*val)
        train = ImageSet(torch.cat([train.images, val_set.images]), torch.cat([train.labels, val_set.labels]),
                         list(classes), own_val=torch.arange(len(train), len(train) + len(val_set)))
    return train, test_set


@DATASETS.register("imagefolder")
def load_imagefolder(cfg: "DataConfig") -> tuple[ImageSet, ImageSet]:
    """Your own images: root/train/<class>/*, optional val/<class>/* and test/<class>/* (classes sorted by folder name)."""
    loc = locate_imagefolder(cfg)
    if loc.found is None:
        raise missing_error("image folder (train/<class>/)", loc)
    return load_folder(loc.found, cfg)
