"""scikit-learn's 1797 8x8 digits (shipped inside the scikit-learn package)."""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from grporm.data.sources import DATASETS, DIGIT_CLASSES, LOCATORS, ImageSet, Location
from grporm.data.splits import carve_test
from grporm.errors import DataMissingError

if TYPE_CHECKING:
    from grporm.config import DataConfig

DIGITS_TEST_PER_CLASS = 30
DIGITS_TEST_SEED = 1797  # fixed forever, like MNIST5K_TEST_SEED


@LOCATORS.register("digits")
def locate_digits(cfg: "DataConfig") -> Location:
    """scikit-learn ships the digits inside its package (sklearn/datasets/data/digits.csv.gz)."""
    spec = importlib.util.find_spec("sklearn")
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    where = Path(folders[0]) / "datasets" / "data" / "digits.csv.gz" if folders else Path("<sklearn package>/datasets/data/digits.csv.gz")
    return Location((where,), where if where.is_file() else None, "`pip install scikit-learn`")


@DATASETS.register("digits")
def load_digits(cfg: "DataConfig") -> tuple[ImageSet, ImageSet]:
    """scikit-learn's 1797 8x8 digits (values 0..16 scaled to 0..255); test = 30 per class carved with a fixed seed."""
    try:
        from sklearn.datasets import load_digits as sk_load_digits
    except ImportError:
        raise DataMissingError("digits needs scikit-learn: pip install scikit-learn") from None
    bunch = sk_load_digits()
    # Round rather than truncate so 16 maps exactly to 255 and the scaling is symmetric.
    pixels = np.rint(bunch.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
    full = ImageSet(torch.from_numpy(pixels).unsqueeze(1), torch.from_numpy(bunch.target.astype(np.int64)), list(DIGIT_CLASSES))
    return carve_test(full, DIGITS_TEST_PER_CLASS, DIGITS_TEST_SEED)
