"""Data sets, deterministic splits and batch preprocessing.

Each data-set family registers its loader (`DATASETS`) and locator in a module of its own; importing
the package imports them all, so the registries are complete whichever module is imported first.
"""
from grporm.data import cifar, digits, fashion_mnist, image_folder, mnist5k, stl10, tiny_imagenet, voc  # noqa: F401 - register
from grporm.data.sources import DATASETS, IGNORE_INDEX, ImageSet, read_idx
from grporm.data.splits import Splits, balanced_indices, balanced_subset, make_splits
from grporm.data.transforms import InputSpec, preprocess_batch

__all__ = [
    "DATASETS",
    "IGNORE_INDEX",
    "ImageSet",
    "Splits",
    "balanced_indices",
    "balanced_subset",
    "make_splits",
    "InputSpec",
    "preprocess_batch",
    "read_idx",
]
