"""The run record and its metrics, typed: the one definition the runner writes (record.json and the W&B
summary), `grporm.tracking.wandb_tools` reads back from W&B, and `analysis.records` reads into tables.

`RunRecord` (and its `tuning`, `TuningSummary`) are pydantic models. `to_json` gives the record.json shape (the same field names and values as records written before this
module existed); `from_json` reads any record, old ones included: a field it lacks takes its default.
Values are not judged here (a record from outside may hold anything): `analysis.records` decides what
makes a record unusable.
"""
from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, SkipValidation, ValidationError

from grporm.errors import first_error

HEADLINE_K = 20  # kNN@20: the paper's headline kNN (docs/method.md, 'kNN (DINO protocol)')
SUMMARY_PREFIX = "final/"  # W&B summary keys of the final metrics
_KNN_NAME = re.compile(r"knn(\d+)_top1")


class SchemaError(ValueError):
    """A record whose shape does not fit the schema; the message names the field."""


def top1_name(protocol: str) -> str:
    """The metric name of a protocol's top-1 ("sr" -> "sr_top1"): a record field, a history.csv column, a W&B
    key after SUMMARY_PREFIX or EPOCH_PREFIX, a report column; also the keys of the ood/transfer cells."""
    return f"{protocol}_top1"


def knn_name(k: int) -> str:
    """The flat name of kNN@k top-1: a W&B summary key (after SUMMARY_PREFIX) and a table column."""
    return top1_name(f"knn{k}")


# The metric names of a run, spelled here only (docs/method.md, 'Evaluation protocols'): every module that
# reads or writes a metric takes its name from here.
HEAD, SR, VAL_HEAD = top1_name("head"), top1_name("sr"), top1_name("val_head")
ECE, SR_L2 = "ece", "sr_l2"
HEADLINE_KNN = knn_name(HEADLINE_K)
# The three readings of every test set: (protocol, metric name, title), in the classification table's order.
# The protocol names the predictor of metrics.imbalance ({"sr": {"few": ...}}).
PROTOCOLS = (("head", HEAD, "Head"), ("sr", SR, "SR"), (f"knn{HEADLINE_K}", HEADLINE_KNN, f"kNN@{HEADLINE_K}"))
MIOU, PIXEL_ACC = "miou", "pixel_acc"  # the fields of metrics.seg
SEG_NAMES = {MIOU: "mIoU", PIXEL_ACC: "Pixel acc."}  # -> titles


def knn_k(name: str) -> int | None:
    """The k of a `knn_name`, None for any other name."""
    match = _KNN_NAME.fullmatch(name)
    return int(match[1]) if match else None


Scores = dict[str, "float | None"]  # head_top1 / sr_top1 / knn20_top1 on one (shifted) test set


def _unflatten(flat: dict[str, Any]) -> dict:
    """{'a/b/c': v} -> {'a': {'b': {'c': v}}}; nested dict values merge in."""
    tree: dict = {}
    for key, value in sorted(flat.items()):
        node = tree
        *parents, leaf = key.split("/")
        for part in parents:
            node = node.setdefault(part, {})
        if isinstance(value, dict) and isinstance(node.get(leaf), dict):
            node[leaf].update(value)
        else:
            node[leaf] = dict(value) if isinstance(value, dict) else value
    return tree


def _flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': v}} -> {'a/b': v}: the inverse of `_unflatten`."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}/"))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


@dataclass
class SegScores:
    miou: float
    pixel_acc: float


@dataclass
class Metrics:
    """A finished run's test metrics (docs/method.md, 'Evaluation protocols'). Accuracies are fractions.

    Classification: head_top1 / ece / val_head_top1 are None for a method without a head; the shifted-
    data sections (ood, ood_clean, transfer, imbalance) are None when the config does not ask for
    them. Segmentation: `seg`, and `per_class["iou"]`; the classification fields stay unset."""

    head_top1: float | None = None
    ece: float | None = None
    val_head_top1: float | None = None
    sr_top1: float | None = None
    sr_l2: float | None = None
    knn_top1: dict[int, float] = field(default_factory=dict)
    per_class: dict[str, list[float]] = field(default_factory=dict)
    ood: dict[str, dict[str, Scores]] | None = None  # corruption -> severity ("1".."5") -> scores
    ood_clean: Scores | None = None  # the OOD test subset uncorrupted
    transfer: dict[str, Scores] | None = None  # target data set -> scores
    imbalance: dict[str, dict[str, float | None]] | None = None  # predictor -> shot group -> accuracy
    seg: SegScores | None = None

    SCALARS = (HEAD, ECE, VAL_HEAD, SR, SR_L2)  # the field names are the metric names
    SHIFTED = ("ood", "ood_clean", "transfer", "imbalance")

    def knn(self, k: int = HEADLINE_K) -> float | None:
        return self.knn_top1.get(k)

    def to_json(self) -> dict:
        if self.seg is not None:
            return {"seg": asdict(self.seg), "per_class": self.per_class}
        out: dict[str, Any] = {name: getattr(self, name) for name in self.SCALARS}
        out["knn_top1"] = {str(k): v for k, v in self.knn_top1.items()}
        out["per_class"] = self.per_class
        out.update({name: getattr(self, name) for name in self.SHIFTED if getattr(self, name) is not None})
        return out

    @classmethod
    def from_json(cls, data: Any) -> Metrics:
        if not isinstance(data, dict):
            raise SchemaError(f"metrics is {data!r}, not an object")
        knn = data.get("knn_top1") or {}
        if not isinstance(knn, dict):
            raise SchemaError(f"metrics.knn_top1 is {knn!r}, not an object keyed by k")
        try:
            knn = {int(k): v for k, v in knn.items()}
        except ValueError:
            raise SchemaError(f"metrics.knn_top1 has keys {sorted(knn)!r}; they must be integers k") from None
        seg = data.get("seg")
        if seg is not None and not isinstance(seg, dict):
            raise SchemaError(f"metrics.seg is {seg!r}, not an object")
        for name in cls.SHIFTED + ("per_class",):
            if data.get(name) is not None and not isinstance(data[name], dict):
                raise SchemaError(f"metrics.{name} is {data[name]!r}, not an object")
        return cls(**{name: data.get(name) for name in cls.SCALARS}, knn_top1=knn,
                   per_class=data.get("per_class") or {},
                   **{name: data.get(name) for name in cls.SHIFTED},
                   seg=SegScores(seg.get("miou"), seg.get("pixel_acc")) if seg is not None else None)

    def values(self) -> dict[str, Any]:
        """Every recorded value but per_class by its flat name: a scalar, `knn_name(k)`, or the section path
        ("ood/<corruption>/<severity>/<score>", "ood_clean/<score>", "transfer/<target>/<score>",
        "imbalance/<predictor>/<group>", "seg/miou"...). Raw: None where the run has no value, and whatever
        a record from outside holds (judging values is the reader's business)."""
        data = self.to_json()
        data.pop("per_class", None)
        knn = {knn_name(int(k)): v for k, v in data.pop("knn_top1", {}).items()}
        scalars = {name: data.pop(name) for name in self.SCALARS if name in data}
        return scalars | knn | _flatten(data)

    def summary(self) -> dict[str, float]:
        """The W&B summary: SUMMARY_PREFIX + each number of `values()`; a missing value (None) is left out, as
        the report leaves it out. `from_summary` reads it back."""
        return {SUMMARY_PREFIX + name: v for name, v in self.values().items()
                if isinstance(v, (int, float)) and not isinstance(v, bool)}

    @classmethod
    def from_summary(cls, summary: dict) -> Metrics:
        """The metrics in a W&B run summary: `summary()`'s keys, and nested sections written as
        SUMMARY_PREFIX + "ood/<corruption>/<severity>/<score>" (or a dict under one key)."""
        tree = _unflatten({key[len(SUMMARY_PREFIX):]: v for key, v in summary.items() if key.startswith(SUMMARY_PREFIX)})
        knn = {k: v for name, v in tree.items() if (k := knn_k(name)) is not None}
        nested = tree.get("knn_top1")
        knn.update({int(k): v for k, v in nested.items()} if isinstance(nested, dict) else {})
        seg = tree.get("seg")
        return cls(**{name: tree.get(name) for name in cls.SCALARS}, knn_top1=dict(sorted(knn.items())),
                   **{name: tree.get(name) if isinstance(tree.get(name), dict) else None for name in cls.SHIFTED},
                   seg=SegScores(seg.get("miou"), seg.get("pixel_acc")) if isinstance(seg, dict) else None)

    def headline(self) -> str:
        if self.seg is not None:
            return f"mIoU {100 * self.seg.miou:.1f}  pixel acc {100 * self.seg.pixel_acc:.1f}"
        head = "—" if self.head_top1 is None else f"{100 * self.head_top1:.1f}"
        knn = self.knn(HEADLINE_K)
        return (f"head {head}  SR {100 * self.sr_top1:.1f}  "
                f"kNN@{HEADLINE_K} {100 * (math.nan if knn is None else knn):.1f}")


@dataclass
class Timing:
    train_seconds: float | None = None  # excluding the learning-rate search and evaluation
    eval_seconds: float | None = None
    total_seconds: float | None = None
    train_images_per_second: float | None = None
    peak_memory_mb: float | None = None  # CPU: the process's max RSS
    # no run of this process trained before this one: its times include the process's warm-up (imports,
    # data loading, first kernels); the cost table leaves such runs out (None: an older record)
    first_in_process: bool | None = None

    OPTIONAL = ("first_in_process",)  # left out of the JSON when None (records from before it)

    def to_json(self) -> dict:
        return {k: v for k, v in asdict(self).items() if not (k in self.OPTIONAL and v is None)}

    @classmethod
    def from_json(cls, data: Any) -> Timing:
        if not isinstance(data, dict):
            raise SchemaError(f"timing is {data!r}, not an object")
        return cls(**{f.name: data.get(f.name) for f in fields(cls)})


class TuningSummary(BaseModel):
    """`tuning` of a run record: the learning-rate decision the run trained at (grporm/training/runner.py copies
    it from the decision, grporm/tuning/decisions.py) and which of its rates the run used. Records written before
    a field existed read with its default; a field added later is kept (extra allowed)."""

    model_config = ConfigDict(extra="allow")

    key: str | None = None
    winner: float | None = None
    runner_up: float | None = None
    margin: float | None = None
    se: float | None = None
    seed_se: float | None = None
    close_call: bool | None = None  # None: a decision from before the flag
    edge: bool | None = None
    pick: str | None = None  # winner | runner_up (None: an older record, the winner)
    lr: float | None = None


class RunRecord(BaseModel):
    """record.json of one run. `metrics` / `timing` are None until the run has them (written as {}).
    Read once per file (`from_json`), then used as this object everywhere (analysis/records.py)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    run_id: str
    experiment: str
    status: str  # running | finished | failed | interrupted
    error: str | None = None
    method: str | None = None
    dataset: str | None = None
    backbone: str | None = None
    seed: int | None = None
    axes: dict = Field(default_factory=dict)  # the run's matrix values
    config_hash: str = ""
    config: dict = Field(default_factory=dict)
    lr: float | int | None = None
    metrics: SkipValidation[Metrics | None] = None  # typed by Metrics.from_json
    timing: SkipValidation[Timing | None] = None
    env: dict = Field(default_factory=dict)
    host: str | None = None
    pid: int | None = None
    distributed: dict | None = None
    started_at: str | None = None
    finished_at: str | None = None
    wandb: dict | None = None
    tuning: TuningSummary | None = None  # the tuning decision's summary, when the lr came from one
    source: str | None = None  # "wandb" for a record read back from W&B

    OPTIONAL: ClassVar[tuple[str, ...]] = ("wandb", "tuning", "source")  # left out of the JSON when None
    # fields of earlier versions, at the value every committed record holds: read and dropped
    # (lr_search: the per-run learning-rate search's rows, grporm.config.RETIRED_OPTIONS)
    RETIRED: ClassVar[dict] = {"lr_search": []}

    @property
    def pick(self) -> str:
        """The decision's rate the run trained at: winner (also without a decision) or runner_up."""
        return (self.tuning.pick if self.tuning is not None else None) or "winner"

    def to_json(self) -> dict:
        out: dict[str, Any] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if name in self.OPTIONAL and value is None:
                continue
            if name in ("metrics", "timing"):
                value = {} if value is None else value.to_json()
            elif isinstance(value, BaseModel):
                value = value.model_dump(exclude_unset=True)
            out[name] = value
        return out

    @classmethod
    def from_json(cls, data: Any) -> RunRecord:
        """Any record, old ones included; a field of the wrong type -> SchemaError naming it."""
        if not isinstance(data, dict):
            raise SchemaError("record.json does not hold a JSON object")
        known = set(cls.model_fields) - {"metrics", "timing"}
        values = {name: data[name] for name in known if name in data}
        values.setdefault("run_id", "")
        values.setdefault("experiment", "")
        values.setdefault("status", "")
        metrics, timing = data.get("metrics"), data.get("timing")
        values.update(metrics=Metrics.from_json(metrics) if metrics else None,
                      timing=Timing.from_json(timing) if timing else None)
        try:
            return cls.model_validate(values)
        except ValidationError as err:
            where, first = first_error(err)
            raise SchemaError(f"{where} is {first.get('input')!r}: {first['msg']}") from None

    def summary(self) -> dict:
        """The W&B run summary: the final metrics and the status."""
        return (self.metrics.summary() if self.metrics else {}) | {"status": self.status}
