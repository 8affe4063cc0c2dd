"""STL-10, the official binary version: `stl10_binary/{train,test}_{X,y}.bin` (+ `class_names.txt`),
uint8 images 3x96x96, each plane stored column-major (MATLAB order, transposed here), labels 1..10
mapped to 0..9. The 100000 unlabelled images are not used. `data.download: true` lets torchvision
fetch the same binary archive (2.6 GB).

`STL10_CIFAR10_SHARED` maps the 9 STL-10 classes that CIFAR-10 also has onto CIFAR-10's label
indices for the CIFAR-10 -> STL-10 transfer protocol (`stl10_as_cifar10` applies it).
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from grporm.data.cifar import CIFAR10_CLASSES
from grporm.data.sources import (
    DATASETS,
    LOCATORS,
    TRANSFER_ADAPTERS,
    ImageSet,
    Location,
    checked_labels,
    class_names,
    data_root,
    files_in,
    locate,
    missing_error,
    read_records,
)
from grporm.errors import DataMissingError, first_line

if TYPE_CHECKING:
    from grporm.config import DataConfig

STL10_CLASSES = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]
STL10_DIR = "stl10_binary"
STL10_FILES = ["train_X.bin", "train_y.bin", "test_X.bin", "test_y.bin"]
STL10_SIZE = 96

#: STL-10 label -> CIFAR-10 label for the 9 classes both have (car = automobile). STL-10's
#: 'monkey' (7) has no CIFAR-10 counterpart and CIFAR-10's 'frog' (6) none in STL-10, so the
#: CIFAR-10 -> STL-10 transfer test drops the monkeys and relabels the rest onto CIFAR-10's
#: indices: a model trained on CIFAR-10 then scores STL-10 images in its own label space.
STL10_CIFAR10_SHARED: dict[int, int] = {0: 0, 1: 2, 2: 1, 3: 3, 4: 4, 5: 5, 6: 7, 8: 8, 9: 9}

def stl10_as_cifar10(stl: ImageSet) -> ImageSet:
    """STL-10 images of the 9 shared classes, labelled with CIFAR-10 indices and class names."""
    lookup = torch.full((len(STL10_CLASSES),), -1, dtype=torch.int64)
    for s, c in STL10_CIFAR10_SHARED.items():
        lookup[s] = c
    mapped = lookup[stl.labels]
    keep = (mapped >= 0).nonzero().squeeze(1)
    return ImageSet(stl.images[keep], mapped[keep], list(CIFAR10_CLASSES))


TRANSFER_ADAPTERS[("cifar10", "stl10")] = stl10_as_cifar10


@LOCATORS.register("stl10")
def locate_stl10(cfg: "DataConfig") -> Location:
    root = data_root(cfg, "stl10")
    hint = (f"extract https://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz into {root} "
            "(or set data.root=DIR), or set data.download=true (torchvision, needs network)")
    return locate([root / STL10_DIR, root], files_in(STL10_FILES), hint, cfg.download)


def _read_stl(folder: Path, split: str, classes: list[str]) -> ImageSet:
    x_path, y_path = folder / f"{split}_X.bin", folder / f"{split}_y.bin"
    raw = read_records(x_path, 3 * STL10_SIZE * STL10_SIZE)
    # Each channel plane is stored column-major: reading it row-major gives (C, W, H); swap back.
    images = raw.reshape(-1, 3, STL10_SIZE, STL10_SIZE).transpose(0, 1, 3, 2)
    labels = read_records(y_path, 1)[:, 0].astype(np.int64) - 1  # 1..10 -> 0..9
    if len(labels) != len(images):
        raise DataMissingError(f"{x_path}: {len(images)} images but {y_path.name} has {len(labels)} labels")
    return ImageSet(torch.from_numpy(np.ascontiguousarray(images)), checked_labels(labels, len(classes), y_path), classes)


@DATASETS.register("stl10")
def load_stl10(cfg: "DataConfig") -> tuple[ImageSet, ImageSet]:
    """STL-10: 5000 train / 8000 test, 96x96 RGB, 10 classes (official binary version; unlabelled split unused)."""
    loc = locate_stl10(cfg)
    if loc.found is None and cfg.download:
        root = data_root(cfg, "stl10")
        try:
            from torchvision.datasets import STL10
        except ImportError:
            raise DataMissingError("data.download=true needs torchvision: pip install torchvision") from None
        try:
            STL10(root=str(root), split="test", download=True)  # fetches and extracts the whole binary archive
        except Exception as err:
            raise DataMissingError(f"downloading STL-10 into {root} failed: {first_line(err)}") from None
        loc = locate_stl10(cfg)
    if loc.found is None:
        raise missing_error(f"STL-10 binary files ({STL10_DIR}/{{train,test}}_{{X,y}}.bin)", loc)
    classes = class_names(loc.found / "class_names.txt", STL10_CLASSES)
    return _read_stl(loc.found, "train", classes), _read_stl(loc.found, "test", classes)

