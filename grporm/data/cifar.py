"""CIFAR-10 and CIFAR-100, the official binary versions, read with numpy (no pickle).

* `cifar10`:  `cifar-10-batches-bin/{data_batch_1..5,test_batch}.bin` (+ `batches.meta.txt`),
  records of 1 label byte + 3072 pixel bytes (R, G, B planes, row-major 32x32). With
  `data.download: true` and no binary files, torchvision fetches the *python* version into the root
  and only then is it read through torchvision.
* `cifar100`: `cifar-100-binary/{train,test}.bin` (+ `fine_label_names.txt`), records of 2 label
  bytes (coarse, fine) + 3072 pixel bytes; the 100 fine labels are used.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from grporm.data.sources import (
    DATASETS,
    LOCATORS,
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

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
CIFAR10_DIR = "cifar-10-batches-bin"
CIFAR10_TRAIN = [f"data_batch_{i}.bin" for i in range(1, 6)]
CIFAR10_TEST = "test_batch.bin"
CIFAR100_DIR = "cifar-100-binary"
CIFAR_PIXELS = 3 * 32 * 32


def _cifar100_classes() -> list[str]:
    return [f"class_{i}" for i in range(100)]  # only used when fine_label_names.txt is absent


@LOCATORS.register("cifar10")
def locate_cifar10(cfg: "DataConfig") -> Location:
    root = data_root(cfg, "cifar10")
    hint = (f"extract https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz into {root} "
            "(or set data.root=DIR), or set data.download=true (torchvision, needs network)")
    return locate([root / CIFAR10_DIR, root], files_in([*CIFAR10_TRAIN, CIFAR10_TEST]), hint, cfg.download)


@LOCATORS.register("cifar100")
def locate_cifar100(cfg: "DataConfig") -> Location:
    root = data_root(cfg, "cifar100")
    hint = (f"extract https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz into {root} "
            "(or set data.root=DIR), or set data.download=true (torchvision, needs network)")
    return locate([root / CIFAR100_DIR, root], files_in(["train.bin", "test.bin"]), hint, cfg.download)


def _read_cifar(path: Path, label_bytes: int, label_index: int, classes: list[str]) -> ImageSet:
    records = read_records(path, label_bytes + CIFAR_PIXELS)
    images = records[:, label_bytes:].reshape(-1, 3, 32, 32)  # R, G, B planes, each row-major
    labels = checked_labels(records[:, label_index], len(classes), path)
    return ImageSet(torch.from_numpy(images.copy()), labels, list(classes))


def _concat(parts: list[ImageSet]) -> ImageSet:
    return ImageSet(torch.cat([p.images for p in parts]), torch.cat([p.labels for p in parts]), list(parts[0].classes))


def _torchvision_cifar(kind: str, root: Path) -> tuple[ImageSet, ImageSet]:
    """Fetch the python version with torchvision (it unpickles it) -- only with data.download=true."""
    try:
        import torchvision.datasets as tvd
    except ImportError:
        raise DataMissingError("data.download=true needs torchvision: pip install torchvision") from None
    out = []
    for train in (True, False):
        try:
            ds = getattr(tvd, kind)(root=str(root), train=train, download=True)
        except Exception as err:  # network errors come in many types; one line
            raise DataMissingError(f"downloading {kind} into {root} failed: {first_line(err)}") from None
        images = torch.from_numpy(np.ascontiguousarray(ds.data.transpose(0, 3, 1, 2)))  # (N, 32, 32, 3) -> NCHW
        out.append(ImageSet(images, torch.as_tensor(ds.targets, dtype=torch.int64), list(ds.classes)))
    return out[0], out[1]


@DATASETS.register("cifar10")
def load_cifar10(cfg: "DataConfig") -> tuple[ImageSet, ImageSet]:
    """CIFAR-10: 50000 train / 10000 test, 32x32 RGB, 10 classes (official binary version)."""
    loc = locate_cifar10(cfg)
    if loc.found is None:
        if cfg.download:
            return _torchvision_cifar("CIFAR10", data_root(cfg, "cifar10"))
        raise missing_error(f"CIFAR-10 binary files ({CIFAR10_DIR}/data_batch_1..5.bin, test_batch.bin)", loc)
    classes = class_names(loc.found / "batches.meta.txt", CIFAR10_CLASSES)
    train = _concat([_read_cifar(loc.found / f, 1, 0, classes) for f in CIFAR10_TRAIN])
    return train, _read_cifar(loc.found / CIFAR10_TEST, 1, 0, classes)


@DATASETS.register("cifar100")
def load_cifar100(cfg: "DataConfig") -> tuple[ImageSet, ImageSet]:
    """CIFAR-100: 50000 train / 10000 test, 32x32 RGB, 100 fine classes (official binary version)."""
    loc = locate_cifar100(cfg)
    if loc.found is None:
        if cfg.download:
            return _torchvision_cifar("CIFAR100", data_root(cfg, "cifar100"))
        raise missing_error(f"CIFAR-100 binary files ({CIFAR100_DIR}/train.bin, test.bin)", loc)
    classes = class_names(loc.found / "fine_label_names.txt", _cifar100_classes())
    # Each record: coarse label byte, fine label byte, then the pixels.
    return (_read_cifar(loc.found / "train.bin", 2, 1, classes), _read_cifar(loc.found / "test.bin", 2, 1, classes))

