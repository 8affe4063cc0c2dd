"""Data sets, deterministic splits and batch preprocessing."""
from grporm.data import paper as _paper  # noqa: F401 - registers the paper-scale data sets
from grporm.data.sources import DATASETS, IGNORE_INDEX, ImageSet, read_idx
from grporm.data.splits import Splits, balanced_indices, balanced_subset, make_splits
from grporm.data.transforms import preprocess_batch

__all__ = [
    "DATASETS",
    "IGNORE_INDEX",
    "ImageSet",
    "Splits",
    "balanced_indices",
    "balanced_subset",
    "make_splits",
    "preprocess_batch",
    "read_idx",
]
