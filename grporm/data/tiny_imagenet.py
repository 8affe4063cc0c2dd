"""Tiny-ImageNet-200: `tiny-imagenet-200/{train,val}/<wnid>/...`, an ImageFolder tree (the official
`train/<wnid>/images/*.JPEG` works as is). The official `val/` (flat `val/images/` plus
`val_annotations.txt`) is read through the annotation file; otherwise it must be rearranged into
`val/<wnid>/` class folders. 200 classes, 64x64; test = val (the official test split has no labels).
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from grporm.data.image_folder import is_imagefolder, load_tree
from grporm.data.sources import DATASETS, LOCATORS, ImageSet, Location, data_root, locate, missing_error
from grporm.errors import DataMissingError

if TYPE_CHECKING:
    from grporm.config import DataConfig

TINY_DIR = "tiny-imagenet-200"


def _tiny_val_annotated(folder: Path) -> bool:
    return (folder / "val" / "val_annotations.txt").is_file() and (folder / "val" / "images").is_dir()


@LOCATORS.register("tiny_imagenet")
def locate_tiny_imagenet(cfg: "DataConfig") -> Location:
    root = data_root(cfg, "tiny_imagenet")
    hint = (f"extract http://cs231n.stanford.edu/tiny-imagenet-200.zip into {root} (or set data.root=DIR) "
            "giving train/<wnid>/ and val/<wnid>/: the official flat val/images/ must be rearranged into "
            "val/<wnid>/ class folders (by val/val_annotations.txt), unless that file stays next to "
            "val/images/, which is then read directly (data.download is not supported)")
    return locate([root / TINY_DIR, root], lambda f: is_imagefolder(f, _tiny_val_annotated), hint)


def _list_tiny_val(val: Path, classes: list[str]) -> tuple[list[Path], list[int]]:
    """The official Tiny-ImageNet val split: val/images/*.JPEG labelled by val_annotations.txt."""
    index = {c: i for i, c in enumerate(classes)}
    paths, labels = [], []
    for line in (val / "val_annotations.txt").read_text().splitlines():
        fields = line.split("\t")
        if len(fields) < 2:
            continue
        if fields[1] not in index:
            raise DataMissingError(f"{val / 'val_annotations.txt'}: class {fields[1]!r} has no train/ folder")
        paths.append(val / "images" / fields[0])
        labels.append(index[fields[1]])
    return paths, labels



def _annotated_val(folder: Path, classes: list[str]) -> tuple[list[Path], list[int]] | None:
    return _list_tiny_val(folder / "val", classes) if _tiny_val_annotated(folder) else None


@DATASETS.register("tiny_imagenet")
def load_tiny_imagenet(cfg: "DataConfig") -> tuple[ImageSet, ImageSet]:
    """Tiny-ImageNet-200: 100000 train / 10000 val (the test split), 64x64 RGB, 200 classes (ImageFolder layout)."""
    loc = locate_tiny_imagenet(cfg)
    if loc.found is None:
        raise missing_error("Tiny-ImageNet (train/<wnid>/, val/<wnid>/)", loc)
    return load_tree(loc.found, cfg, _annotated_val)
