"""One home for every seed (grporm/process/seeding.py): legacy formulas keep their values, corruption seeds
depend on the corruption's name alone, and no other module computes a seed."""
import re
from pathlib import Path

import pytest
import torch

from grporm.data import ImageSet
from grporm.data.corruptions import CORRUPTIONS, corrupt
from grporm.process import seeding

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
    """Every generator / global seed of the package is seeded through grporm.process.seeding."""
    problems = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "seeding.py":
            continue
        for line in path.read_text().splitlines():
            if re.search(r"manual_seed\(|Generator\(", line) and "seeding." not in line:
                problems.append(f"{path.name}: {line.strip()}")
    assert problems == []


def test_the_split_seed_is_the_run_seed_unless_pinned():
    from grporm.config import RunConfig

    assert seeding.split_seed(RunConfig(seed=4)) == 4
    assert seeding.split_seed(RunConfig(seed=4, data={"split_seed": 0})) == 0
    assert seeding.split_seed(RunConfig(seed=0, data={"split_seed": 7})) == 7


def test_only_seeding_reads_data_split_seed():
    """One place resolves a run's split seed (seeding.split_seed); a module reading the setting
    itself would ignore the run's seed whenever the setting is null."""
    readers = [f"{path.name}: {line.strip()}" for path in PACKAGE.rglob("*.py") if path.name not in ("seeding.py", "config.py")
               for line in path.read_text().splitlines() if re.search(r"\.split_seed\b", line) and "seeding.split_seed" not in line]
    assert readers == []


@pytest.mark.parametrize("seed, split_seed, shared", [(0, None, True), (1, None, True), (2, None, False), (2, 0, True)])
def test_a_run_lends_its_splits_to_tuning_only_when_tune_seed_draws_the_same(tmp_path, monkeypatch, seed, split_seed, shared):
    """Tuning decides on tune.seeds (0, 1): a seed-2 run's own data is none of the decision's data."""
    from grporm.config import RunConfig
    from grporm.tracking.tracker import Tracker
    from grporm.training import runner
    from grporm.training.build import build

    cfg = RunConfig(method="ce", seed=seed, run_id=f"r{seed}", model={"name": "test_vit", "weights": "none"},
                    tracking={"mode": "disabled"},
                    data={"name": "digits", "train_per_class": 6, "val_per_class": 3, "test_per_class": 5,
                          "image_size": 16, "split_seed": split_seed},
                    tune={"grid": [1e-4, 1e-3, 1e-2]})
    lent = []

    def fake_decision(run, results, dist, splits=None):
        lent.append(splits)
        return {"key": "k", "winner": 1e-3, "runner_up": None, "margin": None, "close_call": False, "edge": False}, "found"

    monkeypatch.setattr(runner, "decision_for", fake_decision)
    run = runner.Run(cfg, runner.RunPaths.of(cfg, tmp_path / "results", tmp_path / "checkpoints"))
    run.built, run.tracker = build(cfg, torch.device("cpu")), Tracker(cfg, enabled=False)
    assert run._tuned_lr() == 1e-3
    assert (lent[0] is run.built.splits) == shared and (lent[0] is None) == (not shared)
