"""The shifted-data protocols (docs/method.md, 'Out of distribution: corruptions and transfer' and
'Imbalance'), on features a run has already extracted.

Each function gets `extract(images, desc) -> (features, logits)` from the run, so the model and
preprocessing stay the run's business, and scores SR (the probe fitted on clean training
features), kNN@20 and the head on the shifted images.
"""
from __future__ import annotations

from typing import Callable

import torch

from grporm.data import DATASETS, ImageSet, balanced_subset
from grporm.data.corruptions import corrupt
from grporm.data.sources import TRANSFER_ADAPTERS
from grporm.errors import ConfigError
from grporm.evaluate.calibration import top1
from grporm.evaluate.imbalance import shot_accuracy
from grporm.evaluate.knn import knn_predict

Extract = Callable[[ImageSet, str], tuple[torch.Tensor, torch.Tensor]]


class FrozenScorer:
    """SR, kNN@20 and head predictions for any test features, from the clean training features."""

    def __init__(self, train_feats, train_labels, probe, num_classes: int, temperature: float, has_head: bool):
        self.train_feats, self.train_labels, self.probe = train_feats, train_labels, probe
        self.num_classes, self.temperature, self.has_head = num_classes, temperature, has_head

    def predictions(self, feats: torch.Tensor, logits: torch.Tensor) -> dict[str, torch.Tensor]:
        preds = {
            "sr": self.probe.predict(feats).cpu(),
            "knn20": knn_predict(self.train_feats, self.train_labels, feats, k=20,
                                 temperature=self.temperature, num_classes=self.num_classes),
        }
        if self.has_head:
            preds["head"] = logits.argmax(1)
        return preds

    def scores(self, feats: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float | None]:
        preds = self.predictions(feats, logits)
        return {f"{name}_top1": top1(preds[name], labels) if name in preds else None
                for name in ("head", "sr", "knn20")}


def ood_metrics(extract: Extract, test: ImageSet, scorer: FrozenScorer, corruptions: list[str],
                severities: list[int], per_class: int | None, subset_seed: int, seed: int) -> tuple[dict, dict]:
    """{corruption: {severity: scores}}, and the scores on the same (sub)set uncorrupted.

    The test subset is drawn with the run's split seed `subset_seed` (a data draw, like the test
    split it comes from); the corruptions' own randomness comes from `seed` (eval.ood.seed)."""
    if per_class is not None:
        test = balanced_subset(test, per_class, subset_seed)
    clean = scorer.scores(*extract(test, "ood clean"), test.labels)
    out: dict = {}
    for name in corruptions:
        out[name] = {}
        for severity in severities:
            shifted = corrupt(test, name, severity, seed)
            out[name][str(severity)] = scorer.scores(*extract(shifted, f"ood {name} {severity}"), shifted.labels)
    return out, clean


def transfer_images(name: str, data_cfg, split: str = "test") -> ImageSet:
    """What a transfer target is scored on (eval.transfer_split): its test split, or all its images
    (docs/method.md, 'Out of distribution: corruptions and transfer'). The target is loaded with the
    source's settings but its own default location."""
    if split == "all" and name == data_cfg.name:
        raise ConfigError(f"eval.transfer_split: all: {name} is also the training data set, whose training "
                          "images the model has seen; use transfer_split: test or another target")
    train, test = DATASETS.get(name)(data_cfg.model_copy(update={"name": name, "root": None}))
    if split == "test":
        return test
    return ImageSet(torch.cat([train.images, test.images]), torch.cat([train.labels, test.labels]), list(test.classes))


def transfer_metrics(extract: Extract, data_cfg, targets: list[str], scorer: FrozenScorer, classes: list[str],
                     split: str = "test") -> dict:
    """Cross-data-set transfer: each target data set with the same classes, its test split or all of it."""
    out = {}
    for name in targets:
        test = transfer_images(name, data_cfg, split)
        adapt = TRANSFER_ADAPTERS.get((data_cfg.name, name))
        test = adapt(test) if adapt is not None else test
        if test.num_classes != len(classes):
            raise ConfigError(f"eval.transfer: {name} has {test.num_classes} classes, the training data {len(classes)}")
        out[name] = scorer.scores(*extract(test, f"transfer {name}"), test.labels)
    return out


def imbalance_metrics(preds: dict[str, torch.Tensor], labels: torch.Tensor, train_labels: torch.Tensor,
                      num_classes: int, thresholds: tuple[int, int]) -> dict:
    """Overall / many / medium / few-shot accuracy of each predictor."""
    counts = torch.bincount(train_labels, minlength=num_classes)
    return {name: shot_accuracy(pred, labels, counts, thresholds) for name, pred in preds.items()}
