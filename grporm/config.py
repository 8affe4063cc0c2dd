"""Typed experiment configuration: the pydantic models of one run (`RunConfig`) and of an
experiment (`Experiment`, its runs).

Models only: unknown keys, wrong types and out-of-range values are refused here; reading experiment
files, `base:` chains, overrides, the matrix, run ids and every registry name (methods, data sets,
rewards, corruptions) and tuning-grid check are grporm/plan/experiment.py's, which imports the registries
these models must not (their modules import this one).
"""
from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# Seeds are multiplied into torch generator seeds (which must fit 64 bits): keep them to 31 bits.
MAX_SEED = 2**31 - 1
# The registered name of "your own images in class folders" (grporm/data/image_folder.py): named by its folder.
FOLDER_DATASET = "imagefolder"
# A learning-rate decision is made on this many tuning seeds at least (docs/method.md, 'Tuning rules').
MIN_TUNING_SEEDS = 2


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
    label: str | None = Field(None, min_length=1, max_length=64, description="the data set's name in records, tables and "
                              "W&B tags; null = data.name, or for imagefolder the name of data.root's folder; changes no result (not hashed)")

    def display_name(self) -> str:
        """How the data set is named to people: `label`, else an image folder's own folder name, else `name`."""
        if self.label:
            return self.label
        if self.name == FOLDER_DATASET and self.root is not None:
            try:
                root = Path(self.root).expanduser()
            except RuntimeError:  # no home folder to expand ~ to: the name as written (loading says the problem)
                root = Path(self.root)
            return root.name or root.resolve().name or self.name
        return self.name


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
    transfer_split: Literal["test", "all"] = Field("test", description="what of each eval.transfer data set is scored: "
                                                   "its test split, or all its images (train and test: the model never "
                                                   "trains on a transfer target, so every image is unseen)")


class SegConfig(Strict):
    """The embedded segmentation task: real items pasted on canvases of data.image_size pixels."""

    max_items: int = Field(3, ge=1)
    threshold: int = Field(64, ge=0, le=255, description="item pixels above this are foreground")
    train_images: int = Field(2000, ge=1)
    val_images: int = Field(200, ge=1)
    test_images: int = Field(500, ge=1)
    feature_index: int = Field(2, description="which timm intermediate feeds the head (CNN stage / ViT block)")


class TuneConfig(Strict):
    """The learning-rate decision of a setting, shared by its seeds and experiments (grporm/tuning/decisions.py;
    docs/method.md, 'Tuning rules'). An empty grid keeps train.lr."""

    grid: list[float] = Field(default_factory=list, description="learning rates tried; empty = no tuning (train.lr); "
                              "checked by the grid rule when an experiment is loaded (grporm/tuning/decisions.py, check_grid)")
    score: Literal["sr", "knn20", "head", "miou"] = Field("sr", description="validation metric the decision maximises")
    fraction: float = Field(1.0, ge=0.5, le=1.0, description="tuning length: ceil(fraction * train.epochs) epochs, same schedule shape")
    max_extensions: int = Field(2, ge=0, description="grid steps added past an edge the winner sits on")
    seeds: list[int] = Field(default_factory=lambda: [0, 1], description="the tuning seeds: every candidate trains once "
                             "per seed (each draws its own data unless data.split_seed pins it), scored by the mean")
    pick: Literal["winner", "runner_up"] = Field("winner", description="the decision's lr a run trains at; runner_up = "
                                                 "the sensitivity run of a close call (not part of the decision)")

    @field_validator("seeds")
    @classmethod
    def _two_distinct_seeds(cls, seeds: list[int]) -> list[int]:
        # one seed cannot tell a better learning rate from a luckier draw (docs/method.md, 'Tuning rules')
        if len(seeds) < MIN_TUNING_SEEDS or len(set(seeds)) != len(seeds):
            raise ValueError(f"needs at least {MIN_TUNING_SEEDS} distinct seeds (got {seeds}), e.g. [0, 1]")
        if any(not 0 <= s <= MAX_SEED for s in seeds):
            raise ValueError(f"seeds are 0..{MAX_SEED}")
        return seeds

    @model_validator(mode="after")
    def _runner_up_needs_a_decision(self) -> "TuneConfig":
        if self.pick == "runner_up" and not self.grid:
            raise ValueError("pick: runner_up needs a decision: set tune.grid (or leave pick at winner)")
        return self


class TrackingConfig(Strict):
    mode: Literal["offline", "online", "disabled"] = Field("offline", description="W&B mode; the environment variable WANDB_MODE, when set, wins (it never turns on a disabled one); online falls back to offline when W&B does not answer within seconds")
    project: str = Field("grporm", description="W&B project: 1 to 128 characters, none of / \\ # ? % :")
    entity: str | None = None
    log_model: bool = Field(False, description="log the finished run's weights (model.pt) as a W&B model artifact")

    @field_validator("project", "entity")
    @classmethod
    def _wandb_name(cls, name: str | None) -> str | None:
        # W&B refuses these names only when a run starts, and a failed start only warns: refuse them
        # here, with the rest of the config, before anything runs.
        if name is not None and (not name.strip() or len(name) > 128 or any(c in name for c in "/\\#?%:")):
            raise ValueError("a W&B name has 1 to 128 characters, none of / \\ # ? % : (use tracking.entity for the team)")
        return name


class Claim(Strict):
    """One row of a verdict: a measure the runs record, judged against the control (docs/method.md,
    'The verdict's rules'). The headline counts the primary claims; secondary ones are reported beside."""

    name: str = Field(..., min_length=1, description="the row's name in tables, e.g. SR")
    measure: str = Field(..., min_length=1, description="a measure of grporm/plan/measures.py, e.g. sr, knn20, ood_sr")
    primary: bool = Field(True, description="counted in the headline (the family of primary claims); false = secondary")


class VerdictConfig(Strict):
    """The comparison an experiment's verdict makes (analysis/verdict.py). Stored with each run's
    record (so a report from the records alone knows it); never part of the config hash or run id.
    Measure names are checked when the experiment is loaded (grporm/plan/measures.py)."""

    control: str | None = Field(None, min_length=1, description="the arm (or, without an arm axis, the method) every other one is "
                                "compared with; null = the arm named ce, else the one arm whose method is ce (grporm/plan/declaration.py)")
    aa: list[str] = Field(default_factory=list, description="A/A controls: compared with the control like the others, reported "
                          "as controls, never said to reproduce a claim, outside the multiplicity family")
    margin: float = Field(1.0, gt=0, description="points: δ, the smallest improvement that matters; a claim is contradicted "
                          "when every treatment's difference is shown to be below it")
    claims: list[Claim] | None = Field(None, description="rows, each {name: ..., measure: ..., primary: true|false}; null = every "
                                       "metric the runs recorded")
    max_seeds: int | None = Field(None, ge=2, description="cap of `grporm run --until-decided`: seeds per cell at most; "
                                  "null = a fixed design (one look at the matrix's seeds)")
    batch: int = Field(2, ge=1, description="seeds added per look by `grporm run --until-decided`")
    compare: bool = Field(True, description="false: the experiment compares nothing (e.g. the training-noise floor, "
                          "experiments/noise.yaml): no control is needed and no verdict is drawn")

    # Declarations stored in records made before the margin rule carry these keys; they are dropped
    # when a record is read (from_stored), refused in an experiment file.
    RETIRED: ClassVar[tuple[str, ...]] = ("target",)

    @classmethod
    def from_stored(cls, stated: dict) -> "VerdictConfig":
        """A declaration as a record stored it (possibly before the margin rule)."""
        return cls.model_validate({k: v for k, v in stated.items() if k not in cls.RETIRED})

    @field_validator("claims")
    @classmethod
    def _named_claims(cls, claims: list[Claim] | None) -> list[Claim] | None:
        if claims is None:
            return None
        names = [c.name for c in claims]
        if len(set(names)) != len(names):
            raise ValueError(f"two claims share a name ({names!r}); give each its own")
        return claims or None

    @model_validator(mode="after")
    def _control_is_no_treatment(self) -> "VerdictConfig":
        if self.control in self.aa:
            raise ValueError(f"the control {self.control!r} cannot also be an A/A control (aa)")
        return self


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
    verdict: VerdictConfig | None = Field(None, description="the experiment's comparison (not hashed); null = the default rule")
    run_id: str = Field("", description="set by the matrix expansion")
    axes: dict[str, Any] = Field(default_factory=dict, description="this run's matrix values, set by the expansion")

    @field_validator("tune")
    @classmethod
    def _score_fits_task(cls, tune: TuneConfig, info) -> TuneConfig:
        segmentation = info.data.get("task") == "segmentation"
        if tune.grid and (tune.score == "miou") != segmentation:
            fits = "miou" if segmentation else "sr, knn20 or head"
            raise ValueError(f"score {tune.score!r} does not fit task {info.data.get('task')!r}; use {fits}")
        return tune

    @classmethod
    def from_stored(cls, config: dict) -> RunConfig:
        """A config as a record or W&B stored it, read without the retired options it holds at their last
        default (RETIRED_OPTIONS); one that used a retired option does not validate."""
        tree = copy.deepcopy(config)
        for section, retired in RETIRED_OPTIONS.items():
            for key, last in retired.items():
                if isinstance(tree.get(section), dict) and key in tree[section] and tree[section][key] == last:
                    del tree[section][key]
        if isinstance(tree.get("verdict"), dict):  # never hashed: a declaration of the former rule reads as one of the new
            tree["verdict"] = VerdictConfig.from_stored(tree["verdict"]).model_dump(mode="json")
        return cls.model_validate(tree)

    def config_hash(self) -> str:
        """Hash of everything that can change a result (tracking settings cannot)."""
        return hashlib.sha256(json.dumps(self.hash_payload(), sort_keys=True).encode()).hexdigest()[:12]

    def hash_payload(self) -> dict:
        """What `config_hash` hashes; the tuning key (grporm/tuning/decisions.py) narrows it to a setting."""
        # the verdict declaration says how runs are compared, not what a run computes
        payload = self.model_dump(mode="json", exclude={"tracking", "run_id", "axes", "verdict"})
        for how in ("threads", "channels_last", "compile"):  # how a run is computed, not what it computes
            payload["train"].pop(how, None)
        payload["data"].pop("label", None)  # a name for people, not an input
        return _stable(payload)


# -- a run's identity across versions ----------------------------------------------------------------
# A record is found again by its config hash, so adding or retiring an option must leave the hash of
# every run that does not use it unchanged: an added option is hashed only away from its default, a
# retired one as its last default (the form every committed record was hashed in).
ADDED_OPTIONS = (("grpo_rm", "dual_clip"), ("grpo_rm", "solved_threshold"), ("grpo_rm", "feature_uniformity"),
                 ("grpo_rm", "feature_uniformity_t"), ("eval", "transfer_split"))
# Retired options at the value every committed record holds: train.lr_grid & co. were the per-run
# learning-rate search (replaced by one decision per setting, tune), tune.seed the one-seed decision.
RETIRED_OPTIONS = {"train": {"lr_grid": [], "search_epochs": 1, "search_train_per_class": None}, "tune": {"seed": None}}
HASHED_RETIRED = {"train": RETIRED_OPTIONS["train"]}  # tune.seed was left out of the hash at null


def _tune_as_hashed(tune: dict) -> dict:
    """The tune section as hashed: `pick` only when not the winner."""
    return {k: v for k, v in tune.items() if not (k == "pick" and v == "winner")}


def _stable(payload: dict) -> dict:
    """`payload` in the form that keeps identities across versions (ADDED_OPTIONS, RETIRED_OPTIONS),
    without the tune section when tuning is off at every default (it came after the first records)."""
    for section, key in ADDED_OPTIONS:
        if payload[section][key] == RunConfig.model_fields[section].annotation.model_fields[key].default:
            payload[section].pop(key)
    for section, retired in HASHED_RETIRED.items():
        payload[section].update(retired)
    payload["tune"] = _tune_as_hashed(payload["tune"])
    if payload["tune"] == _tune_as_hashed(TuneConfig().model_dump(mode="json")):
        payload.pop("tune")
    return payload


class Experiment(BaseModel):
    name: str
    description: str = ""
    runs: list[RunConfig]
