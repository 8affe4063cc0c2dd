"""Fashion-MNIST: 60000 train / 10000 test, 28x28 grey, 10 classes, read from its IDX files (the
Debian package dataset-fashion-mnist puts them in /usr/share/datasets/fashion-mnist)."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from grporm.data.sources import DATASETS, LOCATORS, ImageSet, Location, read_idx
from grporm.errors import ConfigError, DataMissingError, first_line
from grporm.records.inputs import expand_home

if TYPE_CHECKING:
    from grporm.config import DataConfig


FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
FASHION_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
FASHION_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")  # Debian package dataset-fashion-mnist
FASHION_CACHE_DIR = Path("~/.cache/grporm/fashion_mnist")  # expanded where used (expand_home)


def _cache_dir() -> list[Path]:
    """The per-user cache folder, when there is a home folder to put it in."""
    try:
        return [expand_home(FASHION_CACHE_DIR)]
    except ConfigError:
        return []


def _idx_file(folder: Path, stem: str) -> Path | None:
    """The gzipped file if present, else the plain one (torchvision keeps both)."""
    for name in (stem + ".gz", stem):
        if (folder / name).is_file():
            return folder / name
    return None


def _fashion_folder(candidates: list[Path]) -> Path | None:
    for folder in candidates:
        if all(_idx_file(folder, stem) is not None for stem in FASHION_FILES.values()):
            return folder
    return None


def _read_idx_pair(folder: Path, images_stem: str, labels_stem: str) -> ImageSet:
    images_path, labels_path = _idx_file(folder, images_stem), _idx_file(folder, labels_stem)
    images, labels = read_idx(images_path, ndim=3), read_idx(labels_path, ndim=1)
    if images.shape[0] != labels.shape[0]:
        raise DataMissingError(f"{images_path}: {images.shape[0]} images but {labels_path.name} has {labels.shape[0]} labels")
    if labels.size and labels.max() >= len(FASHION_CLASSES):
        raise DataMissingError(f"{labels_path}: label {int(labels.max())} out of range 0..{len(FASHION_CLASSES) - 1}")
    return ImageSet(torch.from_numpy(images).unsqueeze(1), torch.from_numpy(labels.astype(np.int64)), list(FASHION_CLASSES))


def _torchvision_download(root: Path) -> Path:
    try:
        from torchvision.datasets import FashionMNIST
    except ImportError:
        raise DataMissingError("data.download=true needs torchvision: pip install torchvision") from None
    try:
        FashionMNIST(root=str(root), train=True, download=True)
        FashionMNIST(root=str(root), train=False, download=True)
    except Exception as err:  # network errors come in many types; report them on one line
        raise DataMissingError(f"downloading Fashion-MNIST into {root} failed: {first_line(err)}") from None
    return root / "FashionMNIST" / "raw"


def _fashion_roots(cfg: "DataConfig") -> tuple[Path | None, list[Path], list[Path]]:
    """(explicit root or None, roots searched, candidate folders in order)."""
    # An explicit root is the only place searched: silently using other files would be surprising.
    base = expand_home(cfg.root) if cfg.root is not None else None
    roots = [base] if base is not None else [FASHION_SYSTEM_DIR, *_cache_dir()]
    return base, roots, [p for r in roots for p in (r, r / "FashionMNIST" / "raw")]


@LOCATORS.register("fashion_mnist")
def locate_fashion_mnist(cfg: "DataConfig") -> Location:
    _, _, candidates = _fashion_roots(cfg)
    hint = ("`sudo apt-get install dataset-fashion-mnist`, or data.root=DIR holding the four "
            "*-ubyte.gz IDX files, or data.download=true")
    return Location(tuple(candidates), _fashion_folder(candidates), hint, fetch=cfg.download)


@DATASETS.register("fashion_mnist")
def load_fashion_mnist(cfg: "DataConfig") -> tuple[ImageSet, ImageSet]:
    """Fashion-MNIST: 60000 train / 10000 test, 28x28 grey, 10 classes (IDX files)."""
    base, roots, candidates = _fashion_roots(cfg)
    folder = _fashion_folder(candidates)
    if folder is None and cfg.download:
        folder = _fashion_folder([_torchvision_download(base or expand_home(FASHION_CACHE_DIR))])
    if folder is None:
        searched = ", ".join(str(r) for r in roots)
        raise DataMissingError(
            f"Fashion-MNIST IDX files not found (searched {searched}); get them with "
            "`sudo apt-get install dataset-fashion-mnist`, or set data.root=DIR to a folder holding "
            f"{', '.join(s + '.gz' for s in FASHION_FILES.values())}, or set data.download=true"
        )
    train = _read_idx_pair(folder, FASHION_FILES["train_images"], FASHION_FILES["train_labels"])
    test = _read_idx_pair(folder, FASHION_FILES["test_images"], FASHION_FILES["test_labels"])
    return train, test

