import pytest
import torch

from grporm.evaluate.imbalance import shot_accuracy


def test_shot_accuracy_by_hand():
    train_counts = torch.tensor([500, 50, 5])  # many, medium, few
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    pred = torch.tensor([0, 0, 1, 0, 0, 0])
    out = shot_accuracy(pred, labels, train_counts, (20, 100))
    assert out == pytest.approx({"overall": 3 / 6, "many": 1.0, "medium": 0.5, "few": 0.0})


def test_empty_group_is_none():
    out = shot_accuracy(torch.tensor([0, 1]), torch.tensor([0, 1]), torch.tensor([600, 300]))
    assert out["many"] == 1.0 and out["medium"] is None and out["few"] is None
