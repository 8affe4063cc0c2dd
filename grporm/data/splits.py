"""Deterministic, class-balanced train / validation / test splits, drawn with a run's split seed
(grporm.process.seeding.split_seed: by default the run's own seed; docs/method.md, 'Seeds and data draws').

The validation split is carved from the FULL official training split before the training subset is
drawn, each from its own random stream, so (a) val never overlaps train and (b) changing
`train_per_class` or `test_per_class` leaves the validation images unchanged. Subsets are nested:
the first k images drawn per class are the same for every per_class >= k.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from grporm.data.sources import DATASETS, ImageSet
from grporm.errors import ConfigError
from grporm.process import seeding

if TYPE_CHECKING:
    from grporm.config import DataConfig


@dataclass
class Splits:
    train: ImageSet
    val: ImageSet
    test: ImageSet

    @property
    def classes(self) -> list[str]:
        return self.train.classes

    @property
    def num_classes(self) -> int:
        return self.train.num_classes


def _stream(seed: int, stream: str) -> torch.Generator:
    # One random stream per purpose, all derived from the run's split seed (grporm/process/seeding.py, "split").
    return seeding.generator(seed, "split", stream)


def balanced_indices(
    labels: torch.Tensor,
    per_class: int,
    generator: torch.Generator,
    exclude: torch.Tensor | None = None,
    class_names: list[str] | None = None,
) -> torch.Tensor:
    """Sorted indices of `per_class` random images of every class, skipping those in `exclude`.

    Classes are 0..len(class_names)-1 (or 0..max label), so a class with no images is an error too.
    """
    labels = torch.as_tensor(labels, dtype=torch.long)
    if per_class < 1:
        raise ConfigError(f"per_class must be >= 1, got {per_class}")
    num_classes = len(class_names) if class_names is not None else int(labels.max()) + 1 if len(labels) else 0
    available = torch.ones(len(labels), dtype=torch.bool)
    if exclude is not None:
        available[torch.as_tensor(exclude, dtype=torch.long)] = False
    chosen = []
    for c in range(num_classes):
        candidates = ((labels == c) & available).nonzero().squeeze(1)  # ascending, so the draw is reproducible
        if len(candidates) < per_class:
            name = f"{c} ({class_names[c]})" if class_names is not None else str(c)
            raise ConfigError(f"class {name} has {len(candidates)} images available, {per_class} per class requested")
        # Draw a permutation for every class even when all are taken: keeps the stream aligned.
        chosen.append(candidates[torch.randperm(len(candidates), generator=generator)[:per_class]])
    if not chosen:
        return torch.empty(0, dtype=torch.long)
    return torch.cat(chosen).sort().values


def balanced_subset(images: ImageSet, per_class: int, seed: int) -> ImageSet:
    """`per_class` random images of every class, capped at the smallest class's count, drawn with `seed`.

    For the fixed subsets that only need to be balanced (learning-rate search, convergence probe,
    corrupted test images), where asking for more than a class has is no error.
    """
    per_class = min(per_class, int(torch.bincount(images.labels).min()))
    return images.subset(balanced_indices(images.labels, per_class, seeding.generator(seed, "subset")))


def carve_test(full: ImageSet, per_class: int, seed: int) -> tuple[ImageSet, ImageSet]:
    """Split a source without an official test split into (train, test), class-balanced test."""
    test_idx = balanced_indices(full.labels, per_class, seeding.generator(seed, "subset"), class_names=full.classes)
    keep = torch.ones(len(full), dtype=torch.bool)
    keep[test_idx] = False
    return full.subset(keep.nonzero().squeeze(1)), full.subset(test_idx)


def long_tail_counts(n_max: int, num_classes: int, factor: float) -> list[int]:
    """Exponential profile (Cui et al. 2019): class c keeps n_max * factor^(-c / (C - 1)) images."""
    if num_classes == 1:
        return [n_max]
    return [max(1, round(n_max * factor ** (-c / (num_classes - 1)))) for c in range(num_classes)]


def long_tail(train: torch.Tensor, labels: torch.Tensor, factor: float, generator: torch.Generator,
              num_classes: int) -> torch.Tensor:
    """A long-tailed subset of the (balanced) training indices: class 0 is the head, the last the tail."""
    train_labels = labels[train]
    n_max = int(torch.bincount(train_labels, minlength=num_classes).min())
    kept = []
    for c, count in enumerate(long_tail_counts(n_max, num_classes, factor)):
        members = train[train_labels == c]
        kept.append(members[torch.randperm(len(members), generator=generator)[:count]])
    return torch.cat(kept).sort().values


def _complement(n: int, index: torch.Tensor) -> torch.Tensor:
    keep = torch.ones(n, dtype=torch.bool)
    keep[index] = False
    return keep.nonzero().squeeze(1)


def split_indices(train_labels: torch.Tensor, test_labels: torch.Tensor, cfg: "DataConfig", class_names: list[str],
                  seed: int, own_val: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Indices into the full train split ("train", "val") and the full test split ("test"), drawn
    with the run's split seed `seed` (grporm.process.seeding.split_seed; `cfg.split_seed` is not read here).
    `own_val` (ImageSet.own_val): the source's own validation images, all of them, instead of
    `data.val_per_class` carved per class."""
    if own_val is not None:
        val = torch.as_tensor(own_val, dtype=torch.long)
    else:
        try:
            val = balanced_indices(train_labels, cfg.val_per_class, _stream(seed, "val"), class_names=class_names)
        except ConfigError as err:
            raise ConfigError(f"data.val_per_class: {err}") from None
    if cfg.train_per_class is None:
        train = _complement(len(train_labels), val)
    else:
        try:
            train = balanced_indices(train_labels, cfg.train_per_class, _stream(seed, "train"), exclude=val, class_names=class_names)
        except ConfigError as err:
            went = "the val/ images" if own_val is not None else f"{cfg.val_per_class} per class"
            raise ConfigError(f"data.train_per_class: {err} (after {went} went to validation)") from None
    if cfg.imbalance_factor is not None:
        train = long_tail(train, train_labels, cfg.imbalance_factor, _stream(seed, "long_tail"), len(class_names))
    if cfg.test_per_class is None:
        test = torch.arange(len(test_labels))
    else:
        try:
            test = balanced_indices(test_labels, cfg.test_per_class, _stream(seed, "test"), class_names=class_names)
        except ConfigError as err:
            raise ConfigError(f"data.test_per_class: {err}") from None
    return {"train": train, "val": val, "test": test}


def make_splits(cfg: "DataConfig", seed: int, loaded: tuple[ImageSet, ImageSet] | None = None) -> Splits:
    """Load `cfg.name` (unless `loaded` already holds its train and test) and cut the subsets of `cfg`
    with the split seed `seed`."""
    train_full, test_full = loaded if loaded is not None else DATASETS.get(cfg.name)(cfg)
    idx = split_indices(train_full.labels, test_full.labels, cfg, train_full.classes, seed, train_full.own_val)
    return Splits(train=train_full.subset(idx["train"]), val=train_full.subset(idx["val"]), test=test_full.subset(idx["test"]))
