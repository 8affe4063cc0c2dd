"""A finished run's fine-tuned model, back in memory: `grporm.load_model(RUN)` in Python and
`grporm eval RUN` on the command line (the suite's protocols -- SR, kNN, head accuracy and ECE, and
the run's corruptions, transfer or imbalance evaluation when its config has them -- on the saved
weights, with the run's data set and settings).

RUN is a run folder (`<results>/<experiment>/runs/<run id>`, the one holding record.json) or the
`model.pt` a finished run keeps (`<results>/checkpoints/<experiment>/runs/<run id>/model.pt`). The
other half is found beside it: the weights under `<results>/checkpoints` (or the old default
`./checkpoints`, or --checkpoints), the record under the results folder that holds the checkpoints
folder (or ./results, ./grporm-results, or --results).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

from grporm.config import RunConfig
from grporm.errors import ConfigError, GrpormError, first_error
from grporm.plan.run_options import CHECKPOINTS, COMMITTED_RESULTS, USER_RESULTS

FINAL_WEIGHTS = "model.pt"  # what a finished run keeps of its training (grporm/training/runner.py)
RECORD = "record.json"
WHAT = ("give a run folder (<results>/<experiment>/runs/<run id>, holding record.json) or the model.pt of a "
        "finished run (<results>/checkpoints/<experiment>/runs/<run id>/model.pt)")


@dataclass(frozen=True)
class SavedRun:
    """A finished run's record and saved weights."""

    record: Path
    weights: Path
    config: RunConfig
    run_id: str


def _parts(run_folder: Path) -> tuple[str, str]:
    """(experiment, run id) of `.../<experiment>/runs/<run id>`."""
    if run_folder.parent.name != "runs":
        raise ConfigError(f"{run_folder} is not a run folder (.../<experiment>/runs/<run id>); {WHAT}")
    return run_folder.parent.parent.name, run_folder.name


def locate(path: Path | str, results: Path | str | None = None, checkpoints: Path | str | None = None) -> SavedRun:
    """The record and weights of the run `path` names (see the module's docstring); one ConfigError
    line naming where it looked when either is missing."""
    from grporm.records.storage import read_record

    path = Path(path).expanduser()
    if path.is_dir():
        record_path = path / RECORD
        if not record_path.is_file():
            raise ConfigError(f"{path} holds no {RECORD}; {WHAT}")
        experiment, run_id = _parts(path)
        tail = Path(experiment, "runs", run_id, FINAL_WEIGHTS)
        roots = [Path(checkpoints)] if checkpoints is not None else [path.parent.parent.parent / CHECKPOINTS, Path(CHECKPOINTS)]
        candidates = [root / tail for root in roots]
        weights = next((c for c in candidates if c.is_file()), None)
    elif path.is_file():
        weights = path
        experiment, run_id = _parts(path.parent)
        tail = Path(experiment, "runs", run_id, RECORD)
        roots = ([Path(results)] if results is not None
                 else [path.parent.parent.parent.parent.parent, COMMITTED_RESULTS, USER_RESULTS])
        candidates = [root / tail for root in roots]
        record_path = next((c for c in candidates if c.is_file()), None)
        if record_path is None:
            raise ConfigError(f"no record of run {run_id} at {', '.join(map(str, candidates))}: the record holds the "
                              "run's config; give its results folder with --results")
    else:
        raise ConfigError(f"{path} does not exist; {WHAT}")
    record = read_record(record_path) or {}
    try:
        config = RunConfig.from_stored(record["config"])
    except Exception as err:  # noqa: BLE001 - a record of another version, edited by hand, ...
        raise GrpormError(f"{record_path}: its config cannot be read ({str(err).splitlines()[0]})") from None
    if weights is None:
        from grporm.training.methods import method

        why = (f"method {config.method} trains nothing, so the run saved no weights (its model is model.weights)"
               if not method(config.method).trains else
               f"no {FINAL_WEIGHTS} at {', '.join(map(str, candidates))}: the run is unfinished, or its checkpoints "
               "were written elsewhere (give that folder with --checkpoints)")
        raise ConfigError(f"run {run_id}: {why}")
    return SavedRun(record_path, weights, config, run_id)


def with_overrides(config: RunConfig, overrides: list[str]) -> RunConfig:
    """The run's config with `-o KEY=VALUE` applied (e.g. eval.knn_k=[5,20], data.root=elsewhere)."""
    from pydantic import ValidationError

    from grporm.plan.experiment import parse_override, set_dotted

    tree = copy.deepcopy(config.model_dump(mode="json"))
    for item in overrides:
        key, value = parse_override(item)
        set_dotted(tree, key, value, f"override {item!r}")
    try:
        return RunConfig.model_validate(tree)
    except ValidationError as err:
        where, first = first_error(err)
        raise ConfigError(f"{where}: {first['msg']}") from None


def build_model(config: RunConfig, state: dict):
    """The run's model (backbone + head, as the run built it) with `state` loaded, in eval mode, on the
    CPU; `model.input_spec`: its preprocessing, an InputSpec (image size, mean, std)."""
    import torch

    from grporm.data.transforms import InputSpec
    from grporm.models import create_backbone, with_pooling
    from grporm.models.packaged import PACKAGED_WEIGHTS
    from grporm.training.methods import method
    from grporm.training.tasks import task_of

    # Random initial weights: the saved state replaces every tensor, so neither a download nor the
    # original weight file is needed; the preprocessing is the one the run used.
    backbone = with_pooling(create_backbone(config.model.name, "none", config.data.image_size), config.model.pool)
    arch = config.model.name.split(".", 1)[0]
    mean, std = backbone.mean, backbone.std
    if config.model.weights == "packaged" and arch in PACKAGED_WEIGHTS:
        entry = PACKAGED_WEIGHTS.get(arch)
        mean, std = tuple(entry.mean), tuple(entry.std)
    head = state.get("head.weight")
    if not isinstance(head, torch.Tensor):
        raise GrpormError("the saved weights hold no head (head.weight); is it a grporm run's model.pt?")
    model = task_of(config).model(backbone, head.shape[0], config, method(config.method).frozen_backbone)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise GrpormError(f"the saved weights do not fit {config.model.name} ({str(err).splitlines()[0]})") from None
    model.eval()
    model.input_spec = InputSpec(config.data.image_size, mean, std)
    return model


def read_weights(path: Path) -> dict:
    from grporm.training.checkpoints import load_checkpoint

    state = load_checkpoint(path, ("model",))
    if state is None or not isinstance(state.get("model"), dict):
        raise GrpormError(f"{path} holds no model weights; {WHAT}")
    return state["model"]


def load_model(run: Path | str, *, checkpoints: Path | str | None = None, results: Path | str | None = None):
    """The fine-tuned model of a finished run (backbone + head) in eval mode on the CPU: `model(x)` gives
    the logits, `model.forward_features(x)` the features, `model.backbone` the backbone alone;
    `model.input_spec` is an InputSpec (image size, mean, std; it unpacks as a tuple) for preprocessing (pixels in [0, 1], then normalised)."""
    saved = locate(run, results, checkpoints)
    return build_model(saved.config, read_weights(saved.weights))


def evaluate_saved(saved: SavedRun, overrides: list[str] = ()) -> tuple[RunConfig, object]:
    """(config, metrics): the suite's final evaluation of the saved weights on the run's data."""
    import torch

    from grporm.evaluate.suite import Extractor
    from grporm.process import seeding
    from grporm.process.distributed import SINGLE
    from grporm.training.build import set_threads
    from grporm.training.methods import method
    from grporm.training.tasks import task_of

    config = with_overrides(saved.config, list(overrides))
    set_threads(config, SINGLE)
    task = task_of(config)
    splits = task.splits(config, seeding.split_seed(config))  # the run's own data draws
    device = SINGLE.device(config.train.device)
    model = build_model(config, read_weights(saved.weights)).to(device)
    if config.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    extractor = Extractor.for_run(model, model.input_spec, config, device, SINGLE)
    with torch.no_grad():
        metrics = task.evaluate(extractor, splits, config, method(config.method).has_head)
    return config, metrics
