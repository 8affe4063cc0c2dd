"""Your own images in class folders (`imagefolder`): `root/train/<class>/*` required, and optionally
`root/val/<class>/*` and `root/test/<class>/*`, each meaning what it says:

- test/ is the test split; without it, a fixed fifth of every class of train/ is carved as the test
  split (the same images for every seed), with one warning line;
- val/ is the validation split (all of it: learning-rate tuning, the per-epoch probe); without it,
  `data.val_per_class` images per class are carved from train/, as for every data set;
- any other folder is ignored with one warning line, and so is every file that is not used (beside
  the class folders, or without an image extension), named in one warning line; hidden files and
  folders (.DS_Store, .cache/) are the system's and pass silently.

Classes are train/'s folder names, sorted: at least 2, each with an image. val/ and test/ may lack a
class (one warning line names them) but not add one. The data set is named by its folder in records,
tables and W&B (DataConfig.display_name). `load_tree` reads the older layout Tiny-ImageNet keeps
(grporm/data/tiny_imagenet.py): its val/ is the test split.

Images are decoded to 8-bit RGB by the one decoder (grporm.data.sources.to_rgb: 16-bit, float,
palette, transparency, CMYK...) and kept at their native size when every image of both splits has
the same size (Tiny-ImageNet: 64x64); otherwise every image is resized (bilinear) to
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


def _visible(path: Path) -> bool:
    return not path.name.startswith(".")  # .DS_Store, .cache/: the system's, not the user's


def _list_class_folders(split: Path, classes: list[str] | None,
                        ignored: list[Path] | None = None) -> tuple[list[str], list[Path], list[int]]:
    """Image files of `split/<class>/**` in a fixed order; class names sorted (or given). Files that
    are not used (beside the class folders, or not images) are added to `ignored` when given."""
    found = sorted(d.name for d in split.iterdir() if d.is_dir() and _visible(d))
    if classes is None:
        classes = found
    unknown = sorted(set(found) - set(classes))
    if unknown:
        raise DataMissingError(f"{split}: class folder(s) {', '.join(unknown[:3])} not among the training classes")
    if ignored is not None:
        ignored += sorted(p for p in split.iterdir() if not p.is_dir() and _visible(p))
    index = {c: i for i, c in enumerate(classes)}
    paths, labels = [], []
    for name in found:
        files = sorted(p for p in (split / name).rglob("*") if p.is_file() and _visible(p))
        images = [p for p in files if p.suffix.lower() in IMAGE_EXTENSIONS]
        if ignored is not None:
            ignored += [p for p in files if p.suffix.lower() not in IMAGE_EXTENSIONS]
        paths += images
        labels += [index[name]] * len(images)
    if not paths:
        raise DataMissingError(f"{split}: no image files in its class folders")
    return classes, paths, labels


def _say_ignored(folder: Path, ignored: list[Path]) -> None:
    if ignored:
        shown = ", ".join(str(p.relative_to(folder)) for p in ignored[:3]) + (", ..." if len(ignored) > 3 else "")
        _warn_once(f"{folder}: {len(ignored)} file(s) not used: {shown} (images go in train/<class>/, val/<class>/, "
                   f"test/<class>/ and end in {', '.join(sorted(IMAGE_EXTENSIONS))})")


def _check_classes(folder: Path, classes: list[str], labels: list[int]) -> None:
    """At least 2 classes, each with an image in train/ (one class would train to a meaningless 100%)."""
    if len(classes) < 2:
        raise DataMissingError(f"{folder / 'train'}: {len(classes)} class folder ({', '.join(classes)}); a classifier "
                               "needs at least 2 classes, one folder of images each")
    counts = torch.bincount(torch.tensor(labels, dtype=torch.int64), minlength=len(classes))
    empty = [c for c, n in zip(classes, counts.tolist()) if n == 0]
    if empty:
        raise DataMissingError(f"{folder / 'train'}: class folder(s) {', '.join(empty[:3])} hold no image; add images "
                               "or remove the folder(s)")


def _say_missing(split: Path, classes: list[str], labels: list[int], consequence: str) -> None:
    present = set(labels)
    missing = [c for i, c in enumerate(classes) if i not in present]
    if missing:
        shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
        _warn_once(f"{split}: no image of {len(missing)} of the {len(classes)} classes of train/ ({shown}); {consequence}")


def load_tree(folder: Path, cfg: "DataConfig", list_test: TestLister | None = None) -> tuple[ImageSet, ImageSet]:
    """The train and test splits of an ImageFolder tree; `list_test` lists a test split in another
    layout, and wins when it finds one."""
    classes, train_paths, train_labels = _list_class_folders(folder / "train", None)
    _check_classes(folder, classes, train_labels)
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


# what a class absent from val/ or test/ means for the run
MISSING_MEANS = {"val": "the learning-rate choice and the per-epoch probe never see them",
                 "test": "the test accuracy does not measure them"}


def _listed(folder: Path, split: str, classes: list[str], ignored: list[Path]) -> tuple[list[Path], list[int]] | None:
    """(paths, labels) of `folder/split/<class>/*`, None when the folder is absent."""
    if not (folder / split).is_dir():
        return None
    if not has_class_dirs(folder / split):
        raise DataMissingError(f"{folder / split}: no class folders; put its images in {split}/<class>/ "
                               "(or remove the folder)")
    _, paths, labels = _list_class_folders(folder / split, classes, ignored)
    _say_missing(folder / split, classes, labels, MISSING_MEANS[split])
    return paths, labels


def carved_per_class(labels: torch.Tensor, num_classes: int) -> int:
    smallest = int(torch.bincount(labels, minlength=num_classes).min())
    return max(1, int(smallest * CARVED_TEST_FRACTION))


def load_folder(folder: Path, cfg: "DataConfig") -> tuple[ImageSet, ImageSet]:
    """The (train, test) of an image folder by the rules above; train carries val/ as its `own_val`."""
    extra = sorted(d.name for d in folder.iterdir() if d.is_dir() and _visible(d) and d.name not in SPLIT_FOLDERS)
    if extra:
        _warn_once(f"{folder}: folder(s) {', '.join(extra)} ignored (an image folder has train/, val/ and test/)")
    ignored = sorted(p for p in folder.iterdir() if not p.is_dir() and _visible(p))
    classes, train_paths, train_labels = _list_class_folders(folder / "train", None, ignored)
    _check_classes(folder, classes, train_labels)
    val, test = _listed(folder, "val", classes, ignored), _listed(folder, "test", classes, ignored)
    _say_ignored(folder, ignored)
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
