"""Typed experiment configuration.

A YAML file holds one experiment: the settings of a run plus an optional `matrix` of dotted keys
to lists of values. Every combination of the matrix is one run, validated as a `RunConfig`.
Unknown keys, wrong types and out-of-range values become one `ConfigError` line naming the key.
"""
from __future__ import annotations

import copy
import difflib
import hashlib
import itertools
import json
import math
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from grporm.errors import ConfigError
from grporm.inputs import read_text
from grporm.methods import METHODS, method_names

# Names looked up in other registries (data sets, rewards, corruptions) are checked after validation,
# by grporm/resolve.py: the registries' modules import this one.

# A tuning grid must be able to bracket an optimum (grporm/tuning.py).
MIN_VALUES = 3
MIN_DECADES = 1.5
EXAMPLE = "e.g. [3.0e-4, 1.0e-3, 3.0e-3, 1.0e-2]"


def check_grid(grid: list[float]) -> list[float]:
    """`grid` unchanged if it can bracket an optimum (or is empty: tuning off); ValueError otherwise."""
    if not grid:
        return grid
    if any(not lr > 0 for lr in grid):
        raise ValueError(f"every learning rate must be > 0, {EXAMPLE}")
    if len(grid) < MIN_VALUES:
        raise ValueError(f"needs at least {MIN_VALUES} learning rates to bracket the optimum (got {len(grid)}), {EXAMPLE}")
    if any(b <= a for a, b in zip(grid, grid[1:])):
        raise ValueError(f"must be in increasing order without repeats, {EXAMPLE}")
    decades = math.log10(grid[-1] / grid[0])
    if decades < MIN_DECADES - 1e-9:
        raise ValueError(f"must span at least {MIN_DECADES} decades, max/min >= {10 ** MIN_DECADES:.1f} "
                         f"(got {decades:.2f}), {EXAMPLE}")
    return grid


# Seeds are multiplied into torch generator seeds (which must fit 64 bits): keep them to 31 bits.
MAX_SEED = 2**31 - 1


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True, allow_inf_nan=False)  # inf or nan is never a setting


class DataConfig(Strict):
    name: str = "fashion_mnist"
    root: Path | None = Field(None, description="folder with the data set's files; default: where its package puts them")
    download: bool = Field(False, description="allow torchvision to download when the files are missing")
    train_per_class: int | None = Field(None, ge=1, description="class-balanced training subset; null = all")
    val_per_class: int = Field(100, ge=1, description="validation images per class, carved from the training split")
    test_per_class: int | None = Field(None, ge=1, description="null = the full test split")
    split_seed: int | None = Field(None, ge=0, le=MAX_SEED, description="seed of the data draws (subsets, validation carve, canvases); null = the run's seed, so each seed draws its own and the methods of a seed share it; an int pins one split for every seed")
    image_size: int = Field(64, ge=8, le=1024)
    imbalance_factor: float | None = Field(None, ge=1, description="long-tailed training subset (exponential profile); null = balanced")


class ModelConfig(Strict):
    name: str = "tf_efficientnet_lite0"
    weights: str = Field("packaged", description="packaged | hub | none | <path to a checkpoint file>")
    pool: Literal["default", "cls+mean"] = Field("default", description="ViT feature: CLS token (default) or CLS + mean patch token")


class AugmentConfig(Strict):
    hflip: bool = True
    shift: float = Field(0.125, ge=0.0, le=0.5, description="random translation, as a fraction of the image size")


class TrainConfig(Strict):
    epochs: int = Field(3, ge=0)
    batch_size: int = Field(64, ge=1)
    optimizer: Literal["adam", "adamw"] = "adam"
    lr: float = Field(1e-3, gt=0)
    lr_grid: list[float] = Field(default_factory=list, description="learning rates searched on the validation split; empty = use lr")
    search_epochs: int = Field(1, ge=1)
    search_train_per_class: int | None = Field(None, ge=1, description="training subset used by the search; null = the whole training split")
    weight_decay: float = Field(0.0, ge=0)
    warmup_fraction: float = Field(0.1, ge=0, lt=1)
    grad_clip: float | None = Field(1.0, gt=0)
    threads: int | None = Field(None, ge=1, description="CPU threads; null = all cores")
    log_every: int = Field(10, ge=1)
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?|mps)$")
    precision: Literal["fp32", "bf16"] = Field("fp32", description="bf16 = autocast on the forward passes")
    channels_last: bool = Field(True, description="NHWC memory layout for model and inputs (about 2x faster convolutions on CPUs and GPUs)")
    compile: bool = Field(False, description="torch.compile the training forward on CUDA; ignored on CPU with a warning")
    augment: AugmentConfig = Field(default_factory=AugmentConfig)

    @field_validator("lr_grid")
    @classmethod
    def _positive(cls, grid: list[float]) -> list[float]:
        if any(lr <= 0 for lr in grid):
            raise ValueError("every learning rate must be > 0")
        return grid


class GRPOConfig(Strict):
    rewards: dict[str, float] = Field(default_factory=lambda: {"accuracy": 1.0, "uniformity_prob": 1.0})
    temperature: float = Field(1.0, gt=0)
    group: Literal["full", "sampled", "expected"] = Field("full", description="full = every output once; sampled = group_size draws from pi_old; expected = every output weighted by pi_old (sampled GRPO's large-G limit; with advantage_scale none, its expectation up to the factor 1 - 1/G)")
    group_size: int = Field(16, ge=2, description="G when group = sampled")
    advantage_scale: Literal["group", "batch", "none"] = Field("group", description="divide the centred rewards by the group's std, the batch's std (for group = expected: the pi_old-weighted std of the whole batch's rewards), or nothing (Dr. GRPO)")
    clip_eps: float = Field(0.2, gt=0, lt=1)
    clip_eps_high: float | None = Field(None, gt=0, description="upper clip (DAPO); null = clip_eps")
    dual_clip: float | None = Field(None, gt=1, description="not in the paper (docs/method.md, 'Dual clip (not in the paper)'): bound a negative advantage's objective at c*A (dual-clip PPO); null = off")
    inner_steps: int = Field(1, ge=1)
    beta: float = Field(0.0, ge=0, description="KL weight to the model at the start; 0 keeps no reference copy")
    std_eps: float = Field(1e-4, gt=0)
    solved_threshold: float | None = Field(None, gt=0, le=1, description="queries with pi_old(y) >= this get zero advantage; null = off")
    feature_uniformity: float = Field(0.0, ge=0, description="weight of Wang & Isola's feature uniformity term (per rank under DDP); 0 = off")
    feature_uniformity_t: float = Field(2.0, gt=0, description="t of the feature uniformity term")

    @field_validator("rewards")
    @classmethod
    def _some_reward(cls, rewards: dict[str, float]) -> dict[str, float]:
        if not rewards:
            raise ValueError("at least one reward is needed")
        return rewards

    @model_validator(mode="after")
    def _dual_clip_above_clip(self) -> "GRPOConfig":
        high = self.clip_eps if self.clip_eps_high is None else self.clip_eps_high
        if self.dual_clip is not None and self.dual_clip <= 1 + high:
            raise ValueError(f"dual_clip must be > 1 + clip_eps = {1 + high:g} (got {self.dual_clip:g}); 3 is usual")
        return self


class OODConfig(Strict):
    corruptions: list[str] = Field(default_factory=list, description="corruptions of the test split; empty = no OOD evaluation")
    severities: list[int] = Field(default_factory=lambda: [1, 2, 3, 4, 5])
    test_per_class: int | None = Field(100, ge=1, description="class-balanced test subset that is corrupted; null = whole test split")
    seed: int = Field(0, ge=0, le=MAX_SEED)

    @field_validator("severities")
    @classmethod
    def _range(cls, levels: list[int]) -> list[int]:
        if any(level not in (1, 2, 3, 4, 5) for level in levels):
            raise ValueError("severities are 1..5")
        return levels


class EvalConfig(Strict):
    knn_k: list[int] = Field(default_factory=lambda: [10, 20, 100, 200])
    knn_temperature: float = Field(0.07, gt=0)
    sr_l2_grid: list[float] = Field(default_factory=lambda: [0.0, 1e-4, 1e-3, 1e-2])
    sr_max_iter: int = Field(200, ge=1)
    ece_bins: int = Field(15, ge=1)
    batch_size: int = Field(256, ge=1)
    convergence_per_class: int = Field(50, ge=1, description="per-epoch kNN: training images per class in the fixed subset")
    shot_thresholds: tuple[int, int] = Field((20, 100), description="few < first <= medium <= second < many (training images per class)")
    ood: OODConfig = Field(default_factory=lambda: OODConfig())
    transfer: list[str] = Field(default_factory=list, description="data sets with the same classes to test on (cross-data-set transfer)")


class SegConfig(Strict):
    """The embedded segmentation task: real items pasted on canvases of data.image_size pixels."""

    max_items: int = Field(3, ge=1)
    threshold: int = Field(64, ge=0, le=255, description="item pixels above this are foreground")
    train_images: int = Field(2000, ge=1)
    val_images: int = Field(200, ge=1)
    test_images: int = Field(500, ge=1)
    feature_index: int = Field(2, description="which timm intermediate feeds the head (CNN stage / ViT block)")


class TuneConfig(Strict):
    """The learning-rate decision of a setting, shared by its seeds and experiments (grporm/tuning.py;
    docs/method.md, 'Choosing hyper-parameters'). An empty grid keeps train.lr_grid / train.lr."""

    grid: list[float] = Field(default_factory=list, description="learning rates tried; empty = no tuning (train.lr_grid or train.lr)")
    score: Literal["sr", "knn20", "head", "miou"] = Field("sr", description="validation metric the decision maximises")
    fraction: float = Field(1.0, ge=0.5, le=1.0, description="tuning length: ceil(fraction * train.epochs) epochs, same schedule shape")
    max_extensions: int = Field(2, ge=0, description="grid steps added past an edge the winner sits on")
    seed: int = Field(0, ge=0, le=MAX_SEED, description="the seed every decision is made with")

    @field_validator("grid")
    @classmethod
    def _bracketing(cls, grid: list[float]) -> list[float]:
        return check_grid(grid)


class TrackingConfig(Strict):
    mode: Literal["offline", "online", "disabled"] = "offline"
    project: str = Field("grporm", description="W&B project: 1 to 128 characters, none of / \\ # ? % :")
    entity: str | None = None

    @field_validator("project", "entity")
    @classmethod
    def _wandb_name(cls, name: str | None) -> str | None:
        # W&B refuses these names only when a run starts, and a failed start only warns: refuse them
        # here, with the rest of the config, before anything runs.
        if name is not None and (not name.strip() or len(name) > 128 or any(c in name for c in "/\\#?%:")):
            raise ValueError("a W&B name has 1 to 128 characters, none of / \\ # ? % : (use tracking.entity for the team)")
        return name


class RunConfig(Strict):
    experiment: str = Field("default", pattern=r"^[A-Za-z0-9_.-]+$")
    task: Literal["classification", "segmentation"] = "classification"
    method: str = "grpo_rm"
    seed: int = Field(0, ge=0, le=MAX_SEED)
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    grpo_rm: GRPOConfig = Field(default_factory=GRPOConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    seg: SegConfig = Field(default_factory=SegConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    tune: TuneConfig = Field(default_factory=TuneConfig)
    run_id: str = Field("", description="set by the matrix expansion")
    axes: dict[str, Any] = Field(default_factory=dict, description="this run's matrix values, set by the expansion")

    @field_validator("method")
    @classmethod
    def _known_method(cls, method: str) -> str:
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; choose one of: {', '.join(method_names())}")
        return method

    @field_validator("tune")
    @classmethod
    def _score_fits_task(cls, tune: TuneConfig, info) -> TuneConfig:
        segmentation = info.data.get("task") == "segmentation"
        if tune.grid and (tune.score == "miou") != segmentation:
            fits = "miou" if segmentation else "sr, knn20 or head"
            raise ValueError(f"score {tune.score!r} does not fit task {info.data.get('task')!r}; use {fits}")
        return tune

    def config_hash(self) -> str:
        """Hash of everything that can change a result (tracking settings cannot)."""
        return hashlib.sha256(json.dumps(self.hash_payload(), sort_keys=True).encode()).hexdigest()[:12]

    def hash_payload(self) -> dict:
        """What `config_hash` hashes; the tuning key (grporm/tuning.py) narrows it to a setting."""
        payload = self.model_dump(mode="json", exclude={"tracking", "run_id", "axes"})
        for how in ("threads", "channels_last", "compile"):  # how a run is computed, not what it computes
            payload["train"].pop(how, None)
        for section, key in ADDED_OPTIONS:  # at their default, options added later hash as before
            if payload[section][key] == type(self).model_fields[section].annotation.model_fields[key].default:
                payload[section].pop(key)
        if payload["tune"] == TuneConfig().model_dump(mode="json"):  # tuning off: hashes as before it existed
            payload.pop("tune")
        return payload


# Options added after records were committed; at their default they leave a run's hash unchanged.
ADDED_OPTIONS = (("grpo_rm", "dual_clip"), ("grpo_rm", "solved_threshold"), ("grpo_rm", "feature_uniformity"),
                 ("grpo_rm", "feature_uniformity_t"))
RUN_KEYS = set(RunConfig.model_fields) - {"experiment", "run_id", "axes"}
EXPERIMENT_KEYS = RUN_KEYS | {"name", "description", "matrix", "base"}
# The axes every run id names, in this order; any other matrix axis is added as key=value.
ID_AXES = ("data.name", "model.name", "method")
ARM_AXIS = "arm"  # matrix axis of named setting bundles (see _arms)


def _suggest(key: str, choices: set[str] | list[str]) -> str:
    close = difflib.get_close_matches(key, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _format_validation_error(err: ValidationError, where: str) -> ConfigError:
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    if first["type"] == "extra_forbidden":
        parent = _model_at(first["loc"][:-1])
        choices = set(parent.model_fields) if parent is not None else set()
        msg = f"unknown key{_suggest(str(first['loc'][-1]), choices)}"
    else:
        msg = first["msg"].removeprefix("Value error, ")
        if "input" in first and not isinstance(first["input"], (dict, list)):
            msg += f" (got {first['input']!r})"
    more = f" (+{len(err.errors()) - 1} more)" if len(err.errors()) > 1 else ""
    return ConfigError(f"{where}: {loc}: {msg}{more}")


def _model_at(path: tuple) -> type[BaseModel] | None:
    model: type[BaseModel] = RunConfig
    for part in path:
        field = model.model_fields.get(str(part))
        if field is None or not (isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)):
            return None
        model = field.annotation
    return model


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key given twice in one mapping is an error: the plain loader
    keeps the last one silently, so `train:` written twice would drop the first block's settings."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, (str, int, float, bool)):
                continue  # an unhashable key is refused later, with the other non-name keys
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"found duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def safe_load(text: str) -> Any:
    return yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader: no tags that build objects


def parse_value(text: str, where: str = "value") -> Any:
    """A YAML scalar, list or mapping; text YAML cannot read is refused rather than taken as a string
    (`[1e-4, 1e-3` was a typo, not a name), and so is anything tagged (`!!python/...`)."""
    try:
        return safe_load(text)
    except yaml.YAMLError as err:
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{where}: value {text!r} is not valid YAML ({problem}); "
                          "quote it if it is text, e.g. -o 'model.weights=\"@my file.pt\"'") from None
    except RecursionError:
        raise ConfigError(f"{where}: value is nested too deeply") from None


def parse_override(item: str) -> tuple[str, Any]:
    """`-o KEY=VALUE` -> (dotted key, parsed value): the key must name a real setting, the value
    must be YAML. Types and ranges are checked with the whole run (and named as this override)."""
    where = f"override {item!r}"
    if "=" not in item:
        raise ConfigError(f"{where}: write it as key=value, e.g. -o train.lr=3e-4")
    key, text = item.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"{where}: the key before '=' is empty; write it as key=value, e.g. -o train.lr=3e-4")
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*", key):
        raise ConfigError(f"{where}: {key!r} is not a dotted setting name like train.lr")
    if not text.strip():
        raise ConfigError(f"{where}: the value after '=' is empty; write null for none, '' for empty text")
    _check_key_path(key, where)
    return key, parse_value(text, where)


def matrix_values(key: str, value: Any) -> list:
    """An override of a matrix axis: a list gives the axis its values, anything else one value. For
    a setting that is itself a list (e.g. train.lr_grid) a flat list is one value, a list of lists the
    values."""
    is_list_setting = _field_is_list(key)
    if isinstance(value, list) and not (is_list_setting and not all(isinstance(v, list) for v in value)):
        return value
    return [value]


def _field_is_list(key: str) -> bool:
    parts = key.split(".")
    model = _model_at(tuple(parts[:-1]))
    field = model.model_fields.get(parts[-1]) if model is not None else None
    return field is not None and "list" in str(field.annotation)


def deep_merge(base: dict, update: dict) -> dict:
    """`update` over `base`; sections merge key by key, anything else is replaced."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key != "rewards":
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def set_dotted(tree: dict, key: str, value: Any, where: str) -> None:
    """Set a dotted key; a mapping set on a section merges into it (e.g. a matrix of grpo_rm variants)."""
    parts = key.split(".")
    node = tree
    for i, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{where}: {'.'.join(parts[: i + 1])} is not a section, cannot set {key}")
        node = child
    node[parts[-1]] = deep_merge(node.get(parts[-1], {}), value) if (
        isinstance(value, dict) and isinstance(node.get(parts[-1]), dict) and parts[-1] != "rewards") else value


def _check_key_path(key: str, where: str) -> None:
    """A matrix axis or override must name a real setting."""
    parts = key.split(".")
    model: type[BaseModel] | None = RunConfig
    for i, part in enumerate(parts):
        allowed = set(model.model_fields) - {"run_id", "axes", "experiment"} if model is not None else set()
        if model is None or part not in allowed:
            if model is None and i > 0 and parts[i - 1] in ("rewards",):
                return  # free-form mapping (reward name -> weight)
            raise ConfigError(f"{where}: {key}: unknown key{_suggest(part, allowed)}")
        model = _model_at(tuple(parts[: i + 1]))
        if model is None and i < len(parts) - 1 and parts[i] != "rewards":
            raise ConfigError(f"{where}: {key}: {'.'.join(parts[: i + 1])} is not a section")


def sanitize(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=+-]+", "_", text).strip("._") or "_"


class Experiment(BaseModel):
    name: str
    description: str = ""
    runs: list[RunConfig]


EXPERIMENT_FIX = "give an experiment YAML file; `grporm list experiments` shows the shipped ones"


def load_yaml(path: Path, what: str = "experiment file") -> dict:
    """One experiment file as a mapping; every problem (missing, a folder, binary, empty or only
    comments, malformed YAML, not a mapping) is one ConfigError naming the file."""
    text = read_text(path, what, EXPERIMENT_FIX)
    try:
        raw = safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{path}: malformed YAML{at}: {problem}") from None
    except RecursionError:
        raise ConfigError(f"{path}: malformed YAML: nested too deeply") from None
    if raw is None:  # only comments: running every default by accident is never what was meant
        raise ConfigError(f"{path}: {what} holds no settings (only comments or blank lines); "
                          "start from experiments/quick.yaml")
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of settings, got {type(raw).__name__}")
    if not raw:
        raise ConfigError(f"{path}: {what} holds an empty mapping; start from experiments/quick.yaml")
    bad = [k for k in raw if not isinstance(k, str)]
    if bad:
        raise ConfigError(f"{path}: top-level key {bad[0]!r} is not a name; keys are setting names like train or matrix")
    return raw


def build_experiment(raw: dict, where: str, overrides: list[str] = ()) -> Experiment:
    raw = copy.deepcopy(raw)
    for key in raw:
        if key not in EXPERIMENT_KEYS:
            raise ConfigError(f"{where}: {key}: unknown key{_suggest(key, EXPERIMENT_KEYS)}")
    name = raw.pop("name", Path(where).stem if where.endswith((".yaml", ".yml")) else "default")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+", name) or name in (".", ".."):
        raise ConfigError(f"{where}: name: must be letters, digits, '_', '.' or '-' (got {name!r})")
    description = raw.pop("description", "")
    if not isinstance(description, str):
        raise ConfigError(f"{where}: description: must be text (got {type(description).__name__})")
    matrix = raw.pop("matrix", None) or {}
    if not isinstance(matrix, dict):
        raise ConfigError(f"{where}: matrix: must map dotted keys to lists of values")

    for item in overrides:
        key, value = parse_override(item)
        if key in matrix:
            matrix[key] = matrix_values(key, value)
        else:
            set_dotted(raw, key, value, f"override {item!r}")
    axes: list[tuple[str, list]] = []
    arms: dict[str, dict] = {}
    for key, values in matrix.items():
        if not isinstance(key, str):
            raise ConfigError(f"{where}: matrix: key {key!r} is not a dotted setting name like train.lr")
        if key == ARM_AXIS:
            arms = _arms(values, f"{where}: matrix.{ARM_AXIS}")
            axes.append((key, list(arms)))
            continue
        _check_key_path(key, f"{where}: matrix")
        if not isinstance(values, list) or not values:
            source = next((f"override {o!r}" for o in overrides if parse_override(o)[0] == key), where)
            raise ConfigError(f"{source}: matrix.{key}: must be a non-empty list of values")
        axes.append((key, values))

    runs: list[RunConfig] = []
    seen: dict[str, int] = {}
    for combo in itertools.product(*(values for _, values in axes)) if axes else [()]:
        tree = copy.deepcopy(raw)
        for (key, _), value in zip(axes, combo):
            for dotted, setting in (arms[value].items() if key == ARM_AXIS else [(key, value)]):
                set_dotted(tree, dotted, copy.deepcopy(setting), where)
        tree["experiment"] = name
        try:
            run = RunConfig.model_validate(tree)
        except ValidationError as err:
            loc = tuple(str(p) for p in err.errors()[0]["loc"])
            raise _format_validation_error(err, source_of(loc, overrides, where)) from None
        axis_values = dict(zip((k for k, _ in axes), combo))
        run.run_id = run_id_for(run, axis_values)
        run.axes = axis_values
        if run.run_id in seen:
            raise ConfigError(f"{where}: matrix gives two runs the id {run.run_id!r}; remove the repeated value")
        seen[run.run_id] = 1
        runs.append(run)
    return Experiment(name=name, description=description, runs=runs)


def _arms(values: Any, where: str) -> dict[str, dict]:
    """The `arm` axis: named sets of settings, each a mapping {name: ..., dotted.key: value, ...}. An arm
    is one column of a comparison (e.g. CE, or GRPO-RM under one reading), so unlike two axes crossed,
    a CE arm is not repeated for every GRPO-RM option."""
    if not isinstance(values, list) or not values:
        raise ConfigError(f"{where}: must be a non-empty list of arms like {{name: ce, method: ce}}")
    arms: dict[str, dict] = {}
    for i, arm in enumerate(values):
        name = arm.get("name") if isinstance(arm, dict) else None
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.+-]+", name):
            raise ConfigError(f"{where}[{i}]: each arm is a mapping with a name (letters, digits, '_', '.', '+', '-') "
                              f"and dotted settings, e.g. {{name: expected, grpo_rm.group: expected}}")
        if name in arms:
            raise ConfigError(f"{where}: two arms are named {name!r}; give each its own name")
        settings = {k: v for k, v in arm.items() if k != "name"}
        for key in settings:
            if key == ARM_AXIS or not isinstance(key, str):
                raise ConfigError(f"{where}[{i}] ({name}): {key!r} is not a dotted setting name like train.lr")
            _check_key_path(key, f"{where}[{i}] ({name})")
        arms[name] = settings
    return arms


def source_of(loc: tuple[str, ...], overrides: list[str], where: str) -> str:
    """Whom a problem at the setting `loc` is reported as: the override that set it, or set a key
    inside the mapping it is about (a wrong value in an override is the override's, not the file's);
    else `where`, the file."""
    for item in overrides:
        key = tuple(parse_override(item)[0].split("."))
        if loc[:len(key)] == key or key[:len(loc)] == loc:
            return f"override {item!r}"
    return where


def run_id_for(run: RunConfig, axis_values: dict[str, Any]) -> str:
    parts = [run.data.name, run.model.name, run.method]
    for key, value in axis_values.items():
        if key in ID_AXES or key == "seed":
            continue
        shown = json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else value
        parts.append(f"{key.split('.')[-1]}={shown}")
    parts.append(f"s{run.seed}")
    return sanitize("-".join(str(p) for p in parts))


def load_with_base(path: Path, seen: tuple[Path, ...] = ()) -> dict:
    """An experiment file, merged over the file its `base:` key names (relative to it)."""
    raw = load_yaml(path, "base experiment file" if seen else "experiment file")
    base = raw.pop("base", None)
    if base is None:
        return raw
    if not isinstance(base, str) or not base.strip():
        raise ConfigError(f"{path}: base: must be the path of another experiment file (got {base!r})")
    try:
        here = path.resolve()
        base_path = (path.parent / base).resolve()
    except (OSError, RuntimeError, ValueError) as err:  # a symlink loop on the way, a NUL byte
        raise ConfigError(f"{path}: base: {base!r} cannot be resolved ({err}); fix the path") from None
    if base_path in (*seen, here):
        raise ConfigError(f"{path}: base: {base} includes itself (a cycle of base: keys); remove one")
    parent = load_with_base(base_path, (*seen, here))
    parent.pop("name", None)
    parent.pop("description", None)
    return deep_merge(parent, raw)

