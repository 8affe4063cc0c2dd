"""Data sets, deterministic splits and batch preprocessing."""
from grporm.data import paper as _paper  # noqa: F401,E402 - registers the paper-scale data sets
from grporm.data.sources import DATASETS, ImageSet, read_idx
from grporm.data.splits import Splits, balanced_indices, make_splits
from grporm.data.transforms import preprocess_batch, to_model_input

__all__ = [
    "DATASETS",
    "ImageSet",
    "Splits",
    "balanced_indices",
    "make_splits",
    "preprocess_batch",
    "read_idx",
    "to_model_input",
]
