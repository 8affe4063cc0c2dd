"""The small shared helpers: one-line exception text, top-1 accuracy, balanced subsets, atomic writes."""
from __future__ import annotations

import pytest
import torch

from grporm.data import IGNORE_INDEX, ImageSet, balanced_subset
from grporm.errors import first_line
from grporm.evaluate import top1
from grporm.evaluate.segmentation import confusion
from grporm.records.storage import write_atomic


def test_first_line_cuts_the_message_and_names_the_type_of_an_empty_one():
    err = OSError("\n  disk full\nerrno 28, traceback follows\n")
    assert first_line(err) == "disk full"
    assert first_line(err, with_type=True) == "OSError: disk full"
    assert first_line(ValueError()) == "ValueError"
    assert first_line(ValueError("  "), with_type=True) == "ValueError"


def test_top1_is_the_fraction_of_hits():
    assert top1(torch.tensor([0, 1, 2, 2]), torch.tensor([0, 1, 1, 0])) == 0.5
    assert top1(torch.tensor([3]), torch.tensor([3])) == 1.0


def test_balanced_subset_is_capped_at_the_smallest_class_and_seeded():
    labels = torch.tensor([0] * 5 + [1] * 3 + [2] * 8)
    images = ImageSet(torch.zeros(len(labels), 1, 2, 2, dtype=torch.uint8), labels, ["a", "b", "c"])
    sub = balanced_subset(images, 10, seed=0)
    assert torch.bincount(sub.labels).tolist() == [3, 3, 3]
    assert torch.bincount(balanced_subset(images, 2, seed=0).labels).tolist() == [2, 2, 2]
    picks = [balanced_subset(ImageSet(torch.arange(16, dtype=torch.uint8).reshape(16, 1, 1, 1), labels, ["a", "b", "c"]),
                             2, seed).images.flatten().tolist() for seed in (0, 0, 1)]
    assert picks[0] == picks[1] and picks[0] != picks[2]


def test_ignore_index_pixels_leave_the_confusion_matrix():
    target = torch.tensor([0, 1, IGNORE_INDEX])
    assert confusion(torch.tensor([0, 1, 1]), target, 2).sum() == 2


def test_write_atomic_replaces_whole_files_keeps_the_previous_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "sub" / "state.bin"
    write_atomic(path, lambda h: h.write(b"one"), binary=True, previous=tmp_path / "sub" / "state.prev.bin")
    write_atomic(path, lambda h: h.write(b"two"), binary=True, previous=tmp_path / "sub" / "state.prev.bin")
    assert path.read_bytes() == b"two" and (tmp_path / "sub" / "state.prev.bin").read_bytes() == b"one"

    def broken(handle):
        handle.write("half")
        raise RuntimeError("killed mid-write")

    text = tmp_path / "record.json"
    write_atomic(text, lambda h: h.write("whole"))
    with pytest.raises(RuntimeError):
        write_atomic(text, broken)
    assert text.read_text() == "whole"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["record.json", "sub"]


def test_t_interval_is_mean_plus_minus_the_t_quantile_and_a_point_without_spread():
    from grporm.stats import t_interval

    low, high = t_interval(0.5, 0.3, 4)  # t(0.975, 3) = 3.182446305284263
    assert (low, high) == pytest.approx((0.5 - 3.182446305284263 * 0.15, 0.5 + 3.182446305284263 * 0.15), abs=1e-12)
    assert t_interval(0.2, 0.0, 3) == (0.2, 0.2)
