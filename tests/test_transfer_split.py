"""eval.transfer_split: a transfer target scored on its test split (the default) or on all its images."""
from __future__ import annotations

import pytest
import torch

from grporm.config import DataConfig, RunConfig
from grporm.errors import ConfigError
from grporm.evaluate.protocols import transfer_metrics


class CountingScorer:
    """Scores nothing; keeps how many images (and of which labels) each target sent."""

    def __init__(self):
        self.seen: list[torch.Tensor] = []

    def scores(self, feats, logits, labels):
        self.seen.append(labels)
        return {"head_top1": None, "sr_top1": 0.0, "knn20_top1": 0.0}


def extract(images, desc):
    return torch.zeros(len(images), 4), torch.zeros(len(images), 10)


@pytest.mark.parametrize(("split", "images"), [("test", 300), ("all", 1797)])
def test_digits_target_scores_its_test_split_or_all_1797_images(split, images):
    scorer = CountingScorer()
    source = DataConfig(name="mnist5k", test_per_class=5)  # the source's subset settings do not cut the target
    out = transfer_metrics(extract, source, ["digits"], scorer, [str(d) for d in range(10)], split)
    assert set(out) == {"digits"} and len(scorer.seen) == 1
    assert len(scorer.seen[0]) == images
    assert torch.bincount(scorer.seen[0], minlength=10).min() >= 30  # every class is there


def test_all_is_refused_for_the_training_data_set_itself():
    with pytest.raises(ConfigError, match="transfer_split: all: digits is also the training data set"):
        transfer_metrics(extract, DataConfig(name="digits"), ["digits"], CountingScorer(), [str(d) for d in range(10)], "all")


def test_the_default_keeps_the_config_hash_and_all_changes_it():
    base = RunConfig()
    assert base.eval.transfer_split == "test" and "transfer_split" not in base.hash_payload()["eval"]
    assert RunConfig(eval={"transfer_split": "all"}).config_hash() != base.config_hash()
    with pytest.raises(ValueError):
        RunConfig(eval={"transfer_split": "train"})
