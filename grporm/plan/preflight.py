"""Every run of a matrix checked against what its training and evaluation will need, before the
first run writes anything: `grporm run` (and `--dry-run`, `--launcher`), `grporm tune` and
`grporm data check` all call `preflight`.

Three stages, each only when the one before found no error:

1. the settings alone (`setting_problems`): names that cannot be folder names, empty lists the
   evaluation needs (eval.knn_k, eval.sr_l2_grid, eval.ood.severities), a device this machine
   does not have, a training method with train.epochs 0 (`grporm data check` stops after this
   stage, with the backbone names, and lists the files);
2. the files (grporm.plan.requirements): data sets and weight files missing, all listed at once;
3. a real load of each backbone and data set (each once, whatever the number of runs): an unknown
   timm name, a damaged file, more images per class than the data set has, a segmentation
   seg.feature_index the backbone does not have, a data.image_size it cannot take (one image is
   passed through it), and the counts that only the data can tell (`data_problems`).

A problem that would stop or void a run is an error: one line each, naming the run, the setting,
the value and the fix, raised as one `SettingsInvalid` before anything is written. A problem a run
survives is a warning line (`warn`), and the run goes on:

* a k of eval.knn_k above the training-set size: every training image votes (grporm.evaluate.knn);
* eval.convergence_per_class or eval.ood.test_per_class above the smallest class: the subset is
  capped at that class's count (grporm.data.splits.balanced_subset);
* fewer than MIN_STEPS optimiser steps in all: a run that trains that little measures little.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from grporm.config import RunConfig
from grporm.data import DATASETS
from grporm.data.splits import split_indices
from grporm.errors import ConfigError, DataMissingError, GrpormError, WeightsError, first_line
from grporm.models import create_backbone
from grporm.process import seeding
from grporm.process.distributed import check_world
from grporm.training.methods import method

SPLIT_ONLY = {"train_per_class", "val_per_class", "test_per_class", "split_seed", "imbalance_factor"}
NAME_MAX = 255  # bytes of one file or folder name on the usual file systems (ext4, xfs, btrfs, APFS)
MIN_STEPS = 10  # optimiser steps in all below which a training run warns


@dataclass(frozen=True)
class Problem:
    """One setting of one run that cannot work (`fatal`) or works worse than asked."""

    run_id: str
    setting: str
    value: object
    why: str  # what is wrong and the fix, e.g. "empty: kNN needs a k; set e.g. eval.knn_k=[20]"
    fatal: bool = True

    def line(self, others: int = 0) -> str:
        more = f" (and {others} more run(s))" if others else ""
        return f"run {self.run_id}{more}: {self.setting}={_show(self.value)}: {self.why}"


def _show(value: object) -> str:
    text = str(value) if not isinstance(value, str) else value
    return text if len(text) <= 80 else f"{text[:40]}...{text[-20:]} ({len(text)} characters)"


class SettingsInvalid(ConfigError):
    """Settings of the matrix no run can use; one line per problem."""

    def __init__(self, lines: list[str]):
        super().__init__("\nerror: ".join(lines))  # the CLI prefixes the first line with "error: "
        self.lines = lines


def lines(problems: Iterable[Problem]) -> list[str]:
    """One line per distinct problem; the same problem in several runs names the first and counts the others."""
    groups: dict[tuple, list[Problem]] = {}
    for p in problems:
        groups.setdefault((p.setting, str(p.value), p.why, p.fatal), []).append(p)
    return [found[0].line(len(found) - 1) for found in groups.values()]


def stderr_warning(line: str) -> None:
    print(f"warning: {line}", file=sys.stderr)


# ---------------------------------------------------------------- 1. the settings alone


def _name_problems(run: RunConfig) -> list[Problem]:
    """Paths with a name no file system takes (the experiment's name and the run ids, which become
    folder names, are refused when the experiment is loaded: grporm/plan/experiment.py)."""
    out = []
    paths = [("data.root", run.data.root)]
    if str(run.model.weights) not in ("packaged", "hub", "none"):
        paths.append(("model.weights", run.model.weights))
    for setting, path in paths:
        if path is None:
            continue
        long = [part for part in Path(path).parts if len(part.encode()) > NAME_MAX]
        if long:
            out.append(Problem(run.run_id[:60], setting, path,
                               f"a name in the path has {len(long[0].encode())} bytes, over the {NAME_MAX} a file "
                               f"system allows; give the right path"))
    return out


def device_problem(name: str) -> str | None:
    """Why this machine cannot run on train.device `name`, or None."""
    import torch

    if name in ("auto", "cpu"):
        return None
    if name.startswith("cuda"):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(name.partition(":")[2] or 0)
        if count == 0:
            return "this machine has no CUDA device; use train.device=auto (a GPU when there is one) or cpu"
        if index >= count:
            return f"this machine has {count} CUDA device(s), cuda:0..cuda:{count - 1}; pick one or use train.device=auto"
        return None
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        return "this machine has no Apple MPS device; use train.device=auto or cpu"
    return None


def setting_problems(run: RunConfig) -> list[Problem]:
    """What is wrong with `run` whatever the data: errors and warnings."""
    rid, ev = run.run_id, run.eval
    out = _name_problems(run)
    if not ev.knn_k:
        out.append(Problem(rid, "eval.knn_k", [], "empty: the kNN evaluation needs at least one k; set e.g. eval.knn_k=[20]"))
    elif min(ev.knn_k) < 1:
        out.append(Problem(rid, "eval.knn_k", ev.knn_k, "every k must be >= 1; e.g. eval.knn_k=[10,20]"))
    if not ev.sr_l2_grid:
        out.append(Problem(rid, "eval.sr_l2_grid", [], "empty: softmax regression needs at least one L2 strength; "
                                                        "set e.g. eval.sr_l2_grid=[0.0,1.0e-4,1.0e-3]"))
    elif min(ev.sr_l2_grid) < 0:
        out.append(Problem(rid, "eval.sr_l2_grid", ev.sr_l2_grid, "L2 strengths must be >= 0"))
    low, high = ev.shot_thresholds
    if low > high:
        out.append(Problem(rid, "eval.shot_thresholds", [low, high], "few < first <= medium <= second < many: the first "
                                                                    f"must not exceed the second; e.g. [{high}, {low}]"))
    if ev.ood.corruptions and not ev.ood.severities:
        out.append(Problem(rid, "eval.ood.severities", [], "empty while eval.ood.corruptions is set; "
                                                            "set e.g. eval.ood.severities=[1,3,5] or clear eval.ood.corruptions"))
    why = device_problem(run.train.device)
    if why is not None:
        out.append(Problem(rid, "train.device", run.train.device, why))
    if method(run.method).trains and run.train.epochs < 1:
        out.append(Problem(rid, "train.epochs", run.train.epochs,
                           f"method {run.method} trains, and 0 epochs would record a run that trained nothing; "
                           "set train.epochs >= 1, or use method pretrained to evaluate without training"))
    return out


def settings_checked(runs: list[RunConfig]) -> None:
    """Stage 1 alone, and the backbone names (stage 3 finds those in a real run), for `grporm data
    check`: raise SettingsInvalid for what no run of `runs` can use."""
    from grporm.models.backbones import unknown_backbone

    problems = [p for r in runs for p in setting_problems(r)]
    problems += [Problem(r.run_id, "model.name", r.model.name, problem)
                 for r in runs if (problem := unknown_backbone(r.model.name)) is not None]
    _raise_fatal(problems)


# ---------------------------------------------------------------- 3. what only the data can tell


def data_problems(run: RunConfig, train_counts: list[int] | None, test_counts: list[int] | None,
                  n_train: int) -> list[Problem]:
    """Problems of `run` given its training split (images per class, or None for mask data sets;
    `n_train` images in all) and test split per class."""
    rid, ev, out = run.run_id, run.eval, []
    if ev.knn_k and max(ev.knn_k) > n_train:
        out.append(Problem(rid, "eval.knn_k", ev.knn_k, f"k above the {n_train} training images: every training image "
                                                         f"votes, as for k={n_train}; use k <= {n_train}", fatal=False))
    if train_counts and run.task == "classification" and ev.convergence_per_class > min(train_counts):
        out.append(Problem(rid, "eval.convergence_per_class", ev.convergence_per_class,
                           f"the training split has {min(train_counts)} images in its smallest class, the probe's subset "
                           f"is capped there; set it <= {min(train_counts)}", fatal=False))
    if test_counts and ev.ood.corruptions and ev.ood.test_per_class is not None and ev.ood.test_per_class > min(test_counts):
        out.append(Problem(rid, "eval.ood.test_per_class", ev.ood.test_per_class,
                           f"the test split has {min(test_counts)} images in its smallest class, the corrupted subset "
                           f"is capped there; set it <= {min(test_counts)} or null", fatal=False))
    if method(run.method).trains and run.train.epochs >= 1 and n_train > 0:
        per_epoch = n_train // min(run.train.batch_size, n_train)
        steps = per_epoch * run.train.epochs
        if steps < MIN_STEPS:
            out.append(Problem(rid, "train.batch_size", run.train.batch_size,
                               f"{n_train} training images make {per_epoch} step(s) per epoch, {steps} optimiser step(s) "
                               f"in all over {run.train.epochs} epoch(s) (under {MIN_STEPS}); lower train.batch_size or "
                               "raise train.epochs or data.train_per_class", fatal=False))
    return out


def _forward_problem(run: RunConfig, backbone) -> Problem | None:
    """One image of data.image_size through the backbone as the run will use it: a size the
    backbone cannot take (a ViT's fixed grid, a CNN shrinking it to nothing) fails here, not after
    the data is loaded and the first epoch starts."""
    import torch

    size = run.data.image_size
    image = torch.zeros(1, 3, size, size)
    try:
        with torch.no_grad():
            if run.task == "segmentation":
                backbone.module.forward_intermediates(image, indices=[run.seg.feature_index], intermediates_only=True)
            else:
                backbone.module(image)
    except Exception as err:  # noqa: BLE001 - timm and torch raise many types for a size they cannot take
        return Problem(run.run_id, "data.image_size", size, f"backbone {run.model.name} cannot take {size}x{size} images "
                                                            f"({first_line(err, with_type=True)[:160]}); pick another "
                                                            "data.image_size or model.name")
    return None


def _feature_index_problem(run: RunConfig, backbone) -> Problem | None:
    info = getattr(backbone.module, "feature_info", None)
    if run.task != "segmentation" or not info:
        return None
    count, index = len(info), run.seg.feature_index
    if -count <= index < count:
        return None
    return Problem(run.run_id, "seg.feature_index", index,
                   f"backbone {run.model.name} has {count} intermediate feature maps, 0..{count - 1} "
                   f"(or -{count}..-1 from the end); pick one of them")


# ---------------------------------------------------------------- all stages


def preflight(runs: list[RunConfig], world_size: int = 1, *,
              warn: Callable[[str], None] | None = stderr_warning) -> list[str]:
    """Raise one SettingsInvalid / GrpormError for what would stop a run; `warn` each problem a run
    survives (None: silent) and return those lines. Nothing is written.

    Each backbone is built once and each data set read once, whatever the number of runs."""
    from grporm.config import Experiment
    from grporm.plan.requirements import preflight as check_requirements

    problems = [p for r in runs for p in setting_problems(r)]
    _raise_fatal(problems)
    if runs:  # first everything missing at once (data sets, weight files), then a real load of each
        check_requirements(Experiment(name=runs[0].experiment, runs=runs))
    backbones: dict[tuple, object] = {}
    forwarded: set[tuple] = set()  # (backbone, image size, task, feature map) passed an image once
    datasets: dict[str, tuple] = {}  # loader settings -> (train labels, test labels, class names, own val)
    for r in runs:
        try:
            check_world(r.train.batch_size, world_size, "--nproc")
            if (key := (r.model.name, r.model.weights, r.data.image_size)) not in backbones:
                backbones[key] = _as_input_error(lambda: create_backbone(*key), WeightsError,  # noqa: B023 - called at once
                                                 f"backbone {r.model.name} with weights {r.model.weights}",
                                                 "check model.weights (a checkpoint of this architecture) or model.name")
            problem = _feature_index_problem(r, backbones[key])
            if problem is None and (key + (r.task, r.seg.feature_index)) not in forwarded:
                forwarded.add(key + (r.task, r.seg.feature_index))
                problem = _forward_problem(r, backbones[key])
            if problem is not None:
                problems.append(problem)
            if (key := r.data.model_dump_json(exclude=SPLIT_ONLY)) not in datasets:
                train, test = _as_input_error(lambda: DATASETS.get(r.data.name)(r.data), DataMissingError,  # noqa: B023 - called at once
                                              f"data {r.data.name} (data.root {r.data.root})",
                                              "fetch the data set again or fix data.root")
                datasets[key] = (train.labels, test.labels, train.classes, train.own_val)
            problems += _split_problems(r, *datasets[key])
        except GrpormError as err:
            err.args = (f"run {r.run_id}: {err}",)
            raise
    _raise_fatal(problems)
    warned = lines(p for p in problems if not p.fatal)
    if warn is not None:
        for line in warned:
            warn(line)
    return warned


def _split_problems(run: RunConfig, train_labels, test_labels, classes, own_val=None) -> list[Problem]:
    import torch

    if train_labels.ndim != 1:  # mask data sets (segmentation) split by image: seg.*_images
        return data_problems(run, None, None, run.seg.train_images)
    index = split_indices(train_labels, test_labels, run.data, classes, seeding.split_seed(run), own_val)  # enough per class?
    count = len(classes)
    train = torch.bincount(train_labels[index["train"]], minlength=count).tolist()
    test = torch.bincount(test_labels[index["test"]], minlength=count).tolist()
    n_train = run.seg.train_images if run.task == "segmentation" else int(sum(train))
    return data_problems(run, train, test, n_train)


def _raise_fatal(problems: list[Problem]) -> None:
    fatal = lines(p for p in problems if p.fatal)
    if fatal:
        raise SettingsInvalid(fatal)


def _as_input_error(load: Callable, kind: type[GrpormError], what: str, fix: str):
    """`load()`; any failure that is not already a GrpormError is the input's fault here (a corrupt
    image, a truncated file a library chokes on...), so it becomes one line of `kind`."""
    try:
        return load()
    except GrpormError:
        raise
    except Exception as err:  # noqa: BLE001 - libraries raise many types on a bad file
        first = str(err).strip().splitlines()[0][:200] if str(err).strip() else ""
        raise kind(f"{what}: cannot be loaded ({type(err).__name__}{': ' + first if first else ''}); {fix}") from None
