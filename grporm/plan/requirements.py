"""What an experiment needs on disk -- data sets and weight files -- where each is looked for, and
whether it is there (`grporm data check`, and `preflight` before any run starts).

Data sets are located by the locator each loader registers in `LOCATORS` (the same path logic the
loader uses); a data set without a locator is checked by loading it. Transfer data sets
(`eval.transfer`) are located the way the evaluation loads them: same settings, default root.

Weights, by `model.weights`:

* `packaged` -> the file inside the pip package (`PACKAGED_WEIGHTS[arch].path()`);
* a path      -> that path exists and is a file;
* `none`      -> nothing is needed;
* `hub`       -> present when timm's checkpoint is already in the local Hugging Face hub cache
  (the torch hub cache for models timm fetches by URL); otherwise it is reported missing but *fetchable*:
  timm downloads it when the run starts, which needs network.

Fetchable items (`fetch=True`: `weights: hub`, and data sets with `data.download: true`) do not
block a run or fail `grporm data check`, because on a machine with network the run gets them
itself. With `offline=True` (`grporm data check --offline`, or the environment variable
HF_HUB_OFFLINE=1) they count as missing like everything else. On a machine without network and
without that flag, a fetchable item still fails before training, when the download fails.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Literal

from grporm.errors import DataMissingError, GrpormError, WeightsError, first_line
from grporm.records.inputs import expand_home

if TYPE_CHECKING:
    from grporm.config import DataConfig, Experiment, ModelConfig, RunConfig


@dataclass(frozen=True)
class Requirement:
    """One data set or weight file a run needs."""

    kind: Literal["data", "weights"]
    name: str
    where: tuple[str, ...]  # the places searched, in order
    present: bool
    hint: str  # how to get it
    fetch: bool = False  # missing, but the run downloads it itself (needs network)
    found: str | None = None  # where it is, when present

    def blocks(self, offline: bool = False) -> bool:
        """Would the run stop for want of it?"""
        return not self.present and (offline or not self.fetch)

    def line(self) -> str:
        """One-line description of a missing item (no ';', which separates items)."""
        if not self.where:  # nothing to look for (e.g. packaged weights of a model that has none): the hint says why
            return f"{self.kind} {self.name}: {self.hint}".replace(";", ",")
        return f"{self.kind} {self.name}: not in {', '.join(self.where)}, get it: {self.hint}".replace(";", ",")


class RequirementsMissing(GrpormError):
    """Data sets or weight files an experiment needs are not on disk."""


def env_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() not in ("", "0", "false", "no", "off")


# ---------------------------------------------------------------- data


def data_requirement(cfg: "DataConfig") -> Requirement:
    from grporm.data import DATASETS
    from grporm.data.sources import LOCATORS

    if cfg.name not in LOCATORS:  # a loader without a locator: the only honest check is to load it
        try:
            DATASETS.get(cfg.name)(cfg)
        except DataMissingError as err:
            return Requirement("data", cfg.name, (), False, str(err).replace(";", ","))
        return Requirement("data", cfg.name, ("(loaded: no locator registered)",), True, "")
    loc = LOCATORS.get(cfg.name)(cfg)
    found = str(loc.found) if loc.found is not None else None
    return Requirement("data", cfg.name, tuple(str(p) for p in loc.where), loc.present, loc.hint, loc.fetch, found)


# ---------------------------------------------------------------- weights


def _packaged_requirement(name: str) -> Requirement:
    from grporm.models.packaged import PACKAGED_WEIGHTS

    arch = name.split(".", 1)[0]  # timm's "arch.tag" names
    label = f"{name} (packaged)"
    if arch not in PACKAGED_WEIGHTS:
        from grporm.models.backbones import unknown_backbone

        if (problem := unknown_backbone(name)) is not None:  # a misspelt name: say so, not "no package ships it"
            return Requirement("weights", label, (), False, f"model.name: {problem.split(': not a timm')[0]}, "
                               "not a timm model name (grporm list backbones)")
        return Requirement("weights", label, (), False,
                           f"no pip package ships weights for {name} (packaged: {', '.join(PACKAGED_WEIGHTS)}), "
                           "use model.weights=hub, none or a checkpoint path")
    entry = PACKAGED_WEIGHTS.get(arch)
    try:
        path = str(entry.path())
        return Requirement("weights", label, (path,), True, "", found=path)
    except WeightsError as err:
        where = f"<package {entry.module}>/{entry.relpath}"
        return Requirement("weights", label, (where,), False, str(err))


def hub_cache_files(name: str) -> tuple[list[str], str | None, str]:
    """(places searched, the cached file or None, source) for timm's pretrained weights of `name`."""
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(name)
    if cfg is None:
        raise WeightsError(f"timm has no pretrained weights for {name!r}")
    where: list[str] = []
    if cfg.hf_hub_id:
        from huggingface_hub import constants, try_to_load_from_cache

        repo = cfg.hf_hub_id.split("@", 1)[0]
        where.append(str(Path(constants.HF_HUB_CACHE) / f"models--{repo.replace('/', '--')}"))
        for filename in [cfg.hf_hub_filename] if cfg.hf_hub_filename else ["model.safetensors", "pytorch_model.bin"]:
            hit = try_to_load_from_cache(repo, filename)
            if isinstance(hit, str):
                return where, hit, f"hf-hub:{repo}"
        return where, None, f"hf-hub:{repo}"  # timm prefers the hub to the URL when it has both
    source = cfg.url or "?"
    if cfg.url:
        import torch.hub

        path = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(cfg.url.split("?", 1)[0])
        where.append(str(path))
        if path.is_file():
            return where, str(path), cfg.url
    return where, None, source


def _hub_requirement(name: str) -> Requirement:
    label = f"{name} (hub)"
    try:
        where, hit, source = hub_cache_files(name)
    except Exception as err:  # noqa: BLE001 - unknown model, timm / hub API changes: report, never crash
        return Requirement("weights", label, (), False, f"{first_line(err)}, use model.weights=<checkpoint path>")
    if hit is not None:
        return Requirement("weights", label, tuple(where), True, "", found=hit)
    return Requirement("weights", label, tuple(where), False,
                       f"timm downloads {source} when the run starts (needs network), "
                       "offline: fetch the checkpoint file on another machine and set model.weights=<path>", fetch=True)


def weights_requirement(model: "ModelConfig") -> Requirement | None:
    weights = str(model.weights)
    if weights == "none":
        return None
    if weights == "packaged":
        return _packaged_requirement(model.name)
    if weights == "hub":
        return _hub_requirement(model.name)
    path = expand_home(weights)
    hint = "" if path.is_file() else (
        f"{'a folder, not a file' if path.is_dir() else 'no such file'}: put the checkpoint (Meta's or timm's "
        f"file for {model.name}) there, or set model.weights=hub (needs network)")
    return Requirement("weights", f"{model.name} (file)", (str(path),), path.is_file(), hint, found=str(path) if path.is_file() else None)


# ---------------------------------------------------------------- runs, experiments


def requirements(run: "RunConfig") -> list[Requirement]:
    """The run's data set, its `eval.transfer` data sets and its weights."""
    out = [data_requirement(run.data)]
    for name in run.eval.transfer:  # loaded like grporm.evaluate.protocols.transfer_metrics does
        out.append(data_requirement(run.data.model_copy(update={"name": name, "root": None})))
    weights = weights_requirement(run.model)
    if weights is not None:
        out.append(weights)
    return _dedup(out)


def _dedup(items: Iterable[Requirement]) -> list[Requirement]:
    seen: dict[tuple, Requirement] = {}
    for item in items:
        seen.setdefault((item.kind, item.name, item.where), item)
    return list(seen.values())


def experiment_requirements(experiment: "Experiment") -> list[Requirement]:
    """Everything the runs of an experiment need, deduplicated, in first-seen order."""
    return _dedup(req for run in experiment.runs for req in requirements(run))


def missing(experiment: "Experiment") -> list[Requirement]:
    """The requirements of all runs that are not on disk (fetchable ones included), deduplicated."""
    return [r for r in experiment_requirements(experiment) if not r.present]


def inventory() -> list[Requirement]:
    """Every registered data set (default settings) and every packaged weight file."""
    from grporm.config import DataConfig
    from grporm.data import DATASETS
    from grporm.models.packaged import PACKAGED_WEIGHTS

    return [data_requirement(DataConfig(name=n)) for n in DATASETS] + [_packaged_requirement(a) for a in PACKAGED_WEIGHTS]


def preflight(experiment: "Experiment", offline: bool | None = None) -> None:
    """Raise one `RequirementsMissing` (a GrpormError) naming everything missing that would stop a run.

    `offline` None reads HF_HUB_OFFLINE; when offline, fetchable items (hub weights, downloads) count too.
    """
    offline = env_offline() if offline is None else offline
    blocking = [r for r in missing(experiment) if r.blocks(offline)]
    if blocking:
        listed = "; ".join(r.line() for r in blocking)
        raise RequirementsMissing(f"{experiment.name}: {len(blocking)} data set(s) / weight file(s) missing, "
                                  f"nothing was run: {listed}")


def format_table(items: list[Requirement]) -> str:
    """kind, name, present (yes / no / fetch), where (the place found, else every place searched), hint."""
    rows = [("kind", "name", "present", "where", "hint")]
    for r in items:
        present = "yes" if r.present else ("fetch" if r.fetch else "no")
        where = r.found if r.found is not None else (", ".join(r.where) or "-")
        rows.append((r.kind, r.name, present, where, "" if r.present else r.hint))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join(("  ".join(cell.ljust(w) for cell, w in zip(row[:4], widths)) + "  " + row[4]).rstrip()
                     for row in rows)
