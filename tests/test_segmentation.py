import math

import pytest
import timm
import torch

from grporm.data import ImageSet
from grporm.data.segmentation import make_canvases
from grporm.evaluate.segmentation import confusion, segmentation_scores
from grporm.models.segmentation import Segmenter
from grporm.objectives import ce_loss, grpo_rm_loss


def items():
    x = torch.zeros(4, 1, 8, 8, dtype=torch.uint8)
    x[:, :, 2:6, 2:6] = 200
    return ImageSet(x, torch.tensor([0, 1, 2, 0]), ["a", "b", "c"])


def test_canvases_have_items_and_matching_masks():
    out = make_canvases(items(), 5, 24, 3, 64, torch.Generator().manual_seed(0))
    assert out.images.shape == (5, 1, 24, 24) and out.labels.shape == (5, 24, 24)
    assert out.classes == ["background", "a", "b", "c"]
    assert ((out.images[:, 0] > 64) == (out.labels > 0)).all()
    per_canvas = (out.labels > 0).flatten(1).sum(1)
    assert (per_canvas >= 16).all() and (per_canvas <= 48).all()
    again = make_canvases(items(), 5, 24, 3, 64, torch.Generator().manual_seed(0))
    assert torch.equal(out.labels, again.labels)


def test_miou_by_hand():
    target = torch.tensor([[0, 0, 1, 1], [2, 2, -100, 1]])
    pred = torch.tensor([[0, 1, 1, 1], [2, 0, 0, 1]])
    scores = segmentation_scores(confusion(pred, target, 3))
    # class 0: tp 1, union 3; class 1: tp 3, union 4; class 2: tp 1, union 2
    assert scores["miou"] == pytest.approx((1 / 3 + 3 / 4 + 1 / 2) / 3)
    assert scores["pixel_acc"] == pytest.approx(5 / 7)
    assert math.isnan(segmentation_scores(confusion(torch.tensor([0]), torch.tensor([0]), 2))["iou"][1])


@pytest.mark.parametrize("name, index", [("tf_efficientnet_lite0", 2), pytest.param("vit_small_patch14_dinov2", 11, marks=pytest.mark.slow)])
def test_segmenter_trains_one_step_with_each_objective(name, index):
    kwargs = {"img_size": 28} if "vit" in name else {}
    backbone = timm.create_model(name, pretrained=False, num_classes=0, **kwargs)
    model = Segmenter(backbone, 4, index)
    x = torch.randn(2, 3, 28, 28)
    masks = torch.randint(0, 4, (2, 28, 28))
    masks[0, :3] = -100
    for loss_fn in (ce_loss, grpo_rm_loss):
        logits = model(x)
        assert logits.shape == (2, 4, 28, 28)
        loss, _ = loss_fn(logits, masks)
        model.zero_grad()
        loss.backward()
        assert model.head.weight.grad is not None and model.head.weight.grad.abs().sum() > 0


def test_segmentation_splits_from_a_classification_source_are_deterministic():
    from grporm.config import DataConfig, SegConfig
    from grporm.data.segmentation import segmentation_splits

    data = DataConfig(name="digits", train_per_class=20, val_per_class=5, test_per_class=5, image_size=24)
    seg = SegConfig(train_images=12, val_images=4, test_images=6, max_items=2, threshold=32)
    a, b = segmentation_splits(data, seg, 0), segmentation_splits(data, seg, 0)
    assert (len(a.train), len(a.val), len(a.test)) == (12, 4, 6)
    assert a.train.labels.shape == (12, 24, 24) and a.num_classes == 11
    assert torch.equal(a.test.labels, b.test.labels) and torch.equal(a.train.images, b.train.images)


def test_every_task_a_config_names_is_registered_and_decides_splits_and_head():
    from typing import get_args

    from grporm.config import RunConfig
    from grporm.training.tasks import TASKS, task_of

    assert set(get_args(RunConfig.model_fields["task"].annotation)) == set(TASKS)
    from grporm.evaluate import suite
    classification, segmentation = task_of(RunConfig()), task_of(RunConfig(task="segmentation", data={"name": "fashion_mnist"}))
    assert classification.name == "classification" and segmentation.name == "segmentation"
    # each task is scored by its own functions: no flag reaches the evaluation
    assert (classification.val_score, classification.probe, classification.evaluate) == (
        suite.val_score, suite.EpochProbe, suite.evaluate)
    assert (segmentation.val_score, segmentation.probe, segmentation.evaluate) == (
        suite.seg_val_score, suite.SegProbe, suite.evaluate_segmentation)
