"""Any ImageFolder tree: `root/train/<class>/*` and `root/val/<class>/*` (or `root/test/<class>/*`),
classes sorted by folder name (Tiny-ImageNet, grporm/data/tiny_imagenet.py, is one with its own
validation layout).

Images are decoded with PIL to RGB and kept at their native size when every image of both splits
has the same size (Tiny-ImageNet: 64x64); otherwise every image is resized (bilinear) to
`data.image_size` square at load time, the size the model sees anyway.
"""
from __future__ import annotations

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
from grporm.errors import DataMissingError

if TYPE_CHECKING:
    from grporm.config import DataConfig

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".gif", ".tif", ".tiff", ".webp"}
TEST_SPLITS = ("val", "test")
# (tree, class names) -> (paths, labels) of a test split in another layout, or None when it is absent.
TestLister = Callable[[Path, list[str]], "tuple[list[Path], list[int]] | None"]


def has_class_dirs(folder: Path) -> bool:
    return folder.is_dir() and any(d.is_dir() and not d.name.startswith(".") for d in folder.iterdir())


def is_imagefolder(folder: Path, other_test: Callable[[Path], bool] | None = None) -> bool:
    """A train/<class>/ tree with val/<class>/ or test/<class>/ (or a test split `other_test` finds)."""
    if not has_class_dirs(folder / "train"):
        return False
    return any(has_class_dirs(folder / s) for s in TEST_SPLITS) or (other_test is not None and other_test(folder))


@LOCATORS.register("imagefolder")
def locate_imagefolder(cfg: "DataConfig") -> Location:
    root = data_root(cfg, "imagefolder")
    hint = ("set data.root=DIR to a folder with train/<class>/* and val/<class>/* (or test/<class>/*) "
            "images (data.download is not supported)")
    return locate([root], is_imagefolder, hint)


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


@DATASETS.register("imagefolder")
def load_imagefolder(cfg: "DataConfig") -> tuple[ImageSet, ImageSet]:
    """Any ImageFolder tree: root/train/<class>/* and root/val/<class>/* (classes sorted by folder name)."""
    loc = locate_imagefolder(cfg)
    if loc.found is None:
        raise missing_error("ImageFolder tree (train/<class>/, val/<class>/)", loc)
    return load_tree(loc.found, cfg)
