"""One home for every seed (grporm/seeding.py): legacy formulas keep their values, corruption seeds
depend on the corruption's name alone, and no other module computes a seed."""
import re
from pathlib import Path

import pytest
import torch

from grporm import seeding
from grporm.data import ImageSet
from grporm.data.corruptions import CORRUPTIONS, corrupt

PACKAGE = Path(__file__).resolve().parent.parent / "grporm"


@pytest.mark.parametrize("purpose, args, old", [
    ("init", (5,), 5),
    ("epoch", (3, 2), 3 * 1_000_003 + 2),
    ("group", (3, 17), 3 * 7_919 + 17),
    ("dropout", (3, 1), 3 + 1_000_003),
    ("split", (4, "val"), 12), ("split", (4, "train"), 13), ("split", (4, "test"), 14), ("split", (4, "long_tail"), 15),
    ("subset", (9,), 9),
    ("canvases", (2,), 2),
])
def test_legacy_formulas_keep_the_values_of_the_committed_records(purpose, args, old):
    assert seeding.PURPOSES[purpose].legacy
    assert seeding.derive(*args[:1], purpose, *args[1:]) == old
    drawn = torch.randperm(50, generator=seeding.generator(*args[:1], purpose, *args[1:]))
    assert torch.equal(drawn, torch.randperm(50, generator=torch.Generator().manual_seed(old)))


def test_corruption_seed_is_a_stable_hash_of_seed_name_and_severity():
    # Pinned: Python's salted hash() or a new formula would change every corrupted test set.
    assert seeding.derive(0, "corruption", "gaussian_noise", 1) == 5584405648117160861
    assert seeding.derive(7, "corruption", "rotation", 5) == 7570577292620101457
    values = {seeding.derive(s, "corruption", n, v) for s in (0, 1) for n in ("a", "b") for v in (1, 2)}
    assert len(values) == 8 and all(0 <= x < 2 ** 63 for x in values)
    assert not seeding.PURPOSES["corruption"].legacy


def test_unknown_purpose_is_refused():
    with pytest.raises(ValueError, match="unknown seed purpose 'epochs'"):
        seeding.derive(0, "epochs", 1)


def test_adding_a_corruption_leaves_the_others_data_alone(monkeypatch):
    g = torch.Generator().manual_seed(0)
    images = ImageSet(torch.randint(0, 256, (4, 1, 12, 12), dtype=torch.uint8, generator=g), torch.arange(4) % 2, ["a", "b"])
    before = {name: corrupt(images, name, 3, seed=1).images for name in CORRUPTIONS}

    def fake(x, severity, generator):
        return x

    # Sorted first: under the old seed (the alphabetical position) every other corruption would move.
    monkeypatch.setitem(CORRUPTIONS._items, "aaa_fake", fake)
    monkeypatch.setitem(CORRUPTIONS._docs, "aaa_fake", "")
    assert list(CORRUPTIONS)[0] == "aaa_fake"
    for name, pixels in before.items():
        assert torch.equal(corrupt(images, name, 3, seed=1).images, pixels), name


def test_no_other_module_computes_a_seed():
    """Every generator / global seed of the package is seeded through grporm.seeding."""
    problems = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "seeding.py":
            continue
        for line in path.read_text().splitlines():
            if re.search(r"manual_seed\(|Generator\(", line) and "seeding." not in line:
                problems.append(f"{path.name}: {line.strip()}")
    assert problems == []
