"""From an experiment file to validated runs: reading the YAML (through grporm/records/inputs.py), the `base:`
chain, `-o KEY=VALUE` overrides, the matrix and its `arm` axis, run ids, and every check beyond the
models' own (grporm/config.py): the names each run looks up in a registry (methods, data sets,
rewards, corruptions) and the tuning-grid rule.

Every problem is one `ConfigError` line naming the file or the override, the key, the problem and
the fix; a value echoed in it is shortened (`shown`), so a huge value cannot flood the terminal.
"""
from __future__ import annotations

import copy
import difflib
import itertools
import json
import math
import re
from pathlib import Path
from typing import Any, Iterator

import yaml
from pydantic import BaseModel, ValidationError

from grporm.config import Experiment, RunConfig
from grporm.data import DATASETS
from grporm.data.corruptions import CORRUPTIONS
from grporm.errors import ConfigError
from grporm.objectives.rewards import REWARDS
from grporm.plan.declaration import declaration_problem
from grporm.plan.measures import verdict_problem
from grporm.records.inputs import read_text
from grporm.registry import Registry
from grporm.training.methods import METHODS, method_names
from grporm.tuning.decisions import check_grid, needs_decision

RUN_KEYS = set(RunConfig.model_fields) - {"experiment", "run_id", "axes"}
EXPERIMENT_KEYS = RUN_KEYS | {"name", "description", "matrix", "base"}
# The axes every run id names, in this order; any other matrix axis is added as key=value.
ID_AXES = ("data.name", "model.name", "method")
ARM_AXIS = "arm"  # matrix axis of named setting bundles (see _arms)
# matrix.exclude: combinations left out of the product (see _excluded), e.g. an arm cut at the longest budget
EXCLUDE = "exclude"
MATRIX_PREFIX = "matrix."  # `-o matrix.<axis>=[...]` sets the values of a matrix axis
PICK_AXIS = "tune.pick"  # named in a run id as lr=runner_up only (run_id_for)
EXPERIMENT_FIX = "give an experiment YAML file; `grporm list experiments` shows the shipped ones"
# A matrix is counted before it is built: a typo like `seed: range(1000000)` unrolled by a script
# would otherwise grow memory for minutes with no output. `--max-runs` / GRPORM_MAX_RUNS raise it.
MAX_RUNS = 10_000
SHOWN_CHARS = 80  # a value echoed in an error message is cut to this many characters
# Names become folder names (results/<experiment>/runs/<run id>): file systems allow 255 bytes.
MAX_NAME_BYTES = 100  # names become folder names (results/<experiment>/runs/<run id>), far below a file system's 255
MAX_RUN_ID_BYTES = 200


def shown(value: Any) -> str:
    """`repr(value)`, cut to SHOWN_CHARS (see `cut`)."""
    return cut(repr(value))


def cut(text: str) -> str:
    """`text`, or its first SHOWN_CHARS characters with an ellipsis and the full length."""
    return text if len(text) <= SHOWN_CHARS else f"{text[:SHOWN_CHARS]}... ({len(text):,} characters)"


def suggest(key: str, choices: set[str] | list[str]) -> str:
    """` (did you mean ...?)` for a near miss of one of `choices`, else nothing."""
    if len(key) > SHOWN_CHARS:  # no typo of a name is that long; and matching it would be slow
        return ""
    close = difflib.get_close_matches(key, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


# -- reading YAML ------------------------------------------------------------------------------------
MERGE_TAG = "tag:yaml.org,2002:merge"


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key given twice in one mapping is an error: the plain loader
    keeps the last one silently, so `train:` written twice would drop the first block's settings.
    Merge keys (`<<: *base`) are YAML's own way to reuse a mapping: the keys they bring in may be
    given again (the mapping's own value wins), as YAML specifies."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == MERGE_TAG:
                continue  # expanded by the safe loader (flatten_mapping); its keys are not this mapping's own
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, (str, int, float, bool)):
                continue  # an unhashable key is refused later, with the other non-name keys
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"found duplicate key {shown(key)}", key_node.start_mark)
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
        raise ConfigError(f"{where}: value {shown(text)} is not valid YAML ({problem}); "
                          "quote it if it is text, e.g. -o 'model.weights=\"@my file.pt\"'") from None
    except RecursionError:
        raise ConfigError(f"{where}: value is nested too deeply") from None


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
        raise ConfigError(f"{path}: top-level key {shown(bad[0])} is not a name; keys are setting names like train or matrix")
    return raw


def load_with_base(path: Path, seen: tuple[Path, ...] = ()) -> dict:
    """An experiment file, merged over the file its `base:` key names (relative to it)."""
    raw = load_yaml(path, "base experiment file" if seen else "experiment file")
    base = raw.pop("base", None)
    if base is None:
        return raw
    if not isinstance(base, str) or not base.strip():
        raise ConfigError(f"{path}: base: must be the path of another experiment file (got {shown(base)})")
    try:
        here = path.resolve()
        base_path = (path.parent / base).resolve()
    except (OSError, RuntimeError, ValueError) as err:  # a symlink loop on the way, a NUL byte
        raise ConfigError(f"{path}: base: {shown(base)} cannot be resolved ({err}); fix the path") from None
    if base_path in (*seen, here):
        raise ConfigError(f"{path}: base: {base} includes itself (a cycle of base: keys); remove one")
    parent = load_with_base(base_path, (*seen, here))
    parent.pop("name", None)
    parent.pop("description", None)
    return deep_merge(parent, raw)


# -- dotted keys and overrides -------------------------------------------------------------------------
def parse_override(item: str) -> tuple[str, Any]:
    """`-o KEY=VALUE` -> (dotted key, parsed value): the key must name a real setting, the value
    must be YAML. Types and ranges are checked with the whole run (and named as this override)."""
    where = f"override {shown(item)}"
    if "=" not in item:
        raise ConfigError(f"{where}: write it as key=value, e.g. -o train.lr=3e-4")
    key, text = item.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"{where}: the key before '=' is empty; write it as key=value, e.g. -o train.lr=3e-4")
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*", key):
        raise ConfigError(f"{where}: {shown(key)} is not a dotted setting name like train.lr")
    if not text.strip():
        raise ConfigError(f"{where}: the value after '=' is empty; write null for none, '' for empty text")
    axis = matrix_axis(key)
    if axis is not None:  # -o matrix.seed=[0,1]: the values of a matrix axis (one the file has or a new one)
        if axis not in (ARM_AXIS, EXCLUDE):
            _check_key_path(axis, where)
        return key, parse_value(text, where)
    _check_key_path(key, where)
    return key, parse_value(text, where)


def matrix_axis(key: str) -> str | None:
    """`seed` for the override key `matrix.seed`; None for any other key."""
    return key[len(MATRIX_PREFIX):] if key.startswith(MATRIX_PREFIX) else None


def matrix_values(key: str, value: Any) -> list:
    """An override of a matrix axis: a list gives the axis its values, anything else one value. For
    a setting that is itself a list (e.g. tune.grid) a flat list is one value, a list of lists the
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


def _merges(key: str) -> bool:
    """A mapping set on this key merges into what is there (a section); `rewards` is replaced whole."""
    return key.split(".")[-1] != "rewards"


def deep_merge(base: dict, update: dict) -> dict:
    """`update` over `base`; sections merge key by key, anything else is replaced."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and _merges(key):
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
        isinstance(value, dict) and isinstance(node.get(parts[-1]), dict) and _merges(key)) else value


def _written(key: str, value: Any) -> Iterator[str]:
    """The dotted settings that setting `key` to `value` decides (a mapping on a section decides its keys)."""
    if isinstance(value, dict) and _merges(key):  # an empty mapping decides nothing
        for sub, inner in value.items():
            yield from _written(f"{key}.{sub}", inner)
    else:
        yield key


def _overlap(a: str, b: str) -> bool:
    return a == b or a.startswith(b + ".") or b.startswith(a + ".")


def _check_key_path(key: str, where: str) -> None:
    """A matrix axis or override must name a real setting."""
    parts = key.split(".")
    model: type[BaseModel] | None = RunConfig
    for i, part in enumerate(parts):
        allowed = set(model.model_fields) - {"run_id", "axes", "experiment"} if model is not None else set()
        if model is None or part not in allowed:
            if model is None and i > 0 and parts[i - 1] in ("rewards",):
                return  # free-form mapping (reward name -> weight)
            raise ConfigError(f"{where}: {cut(key)}: {_unknown_key(tuple(parts[: i + 1]), allowed)}")
        model = _model_at(tuple(parts[: i + 1]))
        if model is None and i < len(parts) - 1 and parts[i] != "rewards":
            raise ConfigError(f"{where}: {key}: {'.'.join(parts[: i + 1])} is not a section")


# Options that no longer exist, with what replaced them (config.RETIRED_OPTIONS).
_REPLACED_BY = {"train.lr_grid": "tune.grid (one decision per setting, docs/method.md 'Tuning rules')",
                "train.search_epochs": "tune.fraction", "train.search_train_per_class": "tune (it trains on the whole split)",
                "tune.seed": "tune.seeds, at least 2, e.g. [0, 1]"}


def _unknown_key(path: tuple[str, ...], choices: set[str]) -> str:
    dotted = ".".join(path)
    if dotted in _REPLACED_BY:
        return f"retired option, use {_REPLACED_BY[dotted]}"
    return f"unknown key{suggest(path[-1], choices)}"


def _model_at(path: tuple) -> type[BaseModel] | None:
    model: type[BaseModel] = RunConfig
    for part in path:
        field = model.model_fields.get(str(part))
        if field is None or not (isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)):
            return None
        model = field.annotation
    return model


# -- error lines ---------------------------------------------------------------------------------------
def _format_validation_error(err: ValidationError, where: str) -> ConfigError:
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    if first["type"] == "extra_forbidden":
        parent = _model_at(first["loc"][:-1])
        choices = set(parent.model_fields) if parent is not None else set()
        msg = _unknown_key(tuple(str(p) for p in first["loc"]), choices)
    else:
        msg = first["msg"].removeprefix("Value error, ")
        if "input" in first and not isinstance(first["input"], (dict, list)):
            msg += f" (got {shown(first['input'])})"
    more = f" (+{len(err.errors()) - 1} more)" if len(err.errors()) > 1 else ""
    return ConfigError(f"{where}: {cut(loc)}: {msg}{more}")


def source_of(loc: tuple[str, ...], overrides: list[str], where: str) -> str:
    """Whom a problem at the setting `loc` is reported as: the override that set it, or set a key
    inside the mapping it is about (a wrong value in an override is the override's, not the file's);
    else `where`, the file."""
    for item in overrides:
        dotted = parse_override(item)[0]
        key = tuple((matrix_axis(dotted) or dotted).split("."))
        if loc[:len(key)] == key or key[:len(loc)] == loc:
            return f"override {shown(item)}"
    return where


# -- the checks beyond the models: registry names, the grid rule ---------------------------------------
def looked_up(run: RunConfig) -> Iterator[tuple[str, Registry, list[str], tuple[str, ...]]]:
    """(dotted key, registry, names, choices in the order shown) of every registry lookup `run` makes."""
    yield "method", METHODS, [run.method], method_names()
    yield "data.name", DATASETS, [run.data.name], tuple(DATASETS)
    yield "grpo_rm.rewards", REWARDS, list(run.grpo_rm.rewards), tuple(REWARDS)
    yield "eval.ood.corruptions", CORRUPTIONS, list(run.eval.ood.corruptions), tuple(CORRUPTIONS)
    yield "eval.transfer", DATASETS, list(run.eval.transfer), tuple(DATASETS)


def run_problem(run: RunConfig) -> tuple[str, str] | None:
    """(dotted key, message) of the first name of `run` its registry does not hold, or of a tuning
    grid that cannot bracket an optimum; None if there is none."""
    for key, registry, names, choices in looked_up(run):
        for name in names:
            if name not in registry:
                return key, f"unknown {registry.kind} {shown(name)}{suggest(name, choices)}; choose one of: {', '.join(choices)}"
    weights = weights_problem(str(run.model.weights))
    if weights is not None:
        return "model.weights", weights
    try:
        check_grid(run.tune.grid)
    except ValueError as err:
        return "tune.grid", str(err)
    overlap = seed_overlap(run)
    if overlap is not None:
        return "seed", overlap
    return verdict_problem(run.verdict)


WEIGHT_KEYWORDS = ("packaged", "hub", "none")  # grporm.models.backbones; any other value is a file's path


def weights_problem(weights: str) -> str | None:
    """A model.weights that is no keyword and cannot be a path (no folder, no file suffix) and names no
    file here: a misspelt keyword (`packged`), not a checkpoint to look for. A value that looks like a
    path is left to the file check (grporm data check lists it as missing)."""
    if weights in WEIGHT_KEYWORDS or any(c in weights for c in "/\\.~"):
        return None
    try:
        if Path(weights).exists():
            return None
    except (OSError, ValueError):  # a name no file system takes: the folder-name checks say so
        return None
    return (f"{shown(weights)} is neither a keyword ({', '.join(WEIGHT_KEYWORDS)}) nor an existing file"
            f"{suggest(weights, WEIGHT_KEYWORDS)}; give a keyword or a checkpoint's path")


# A problem reported at the first key may come from a setting of the others (named as the override that set it).
SET_TOGETHER = {"seed": ("tune.seeds",)}


def free_seeds(taken, count: int, after: int = -1) -> list[int]:
    """The first `count` integers above `after` that are not in `taken` (e.g. the tuning seeds)."""
    out, seed = [], after + 1
    while len(out) < count:
        if seed not in taken:
            out.append(seed)
        seed += 1
    return out


def seed_overlap(run: RunConfig) -> str | None:
    """Why `run` may not evaluate on its seed: it trains at a learning-rate decision made on that same
    seed (one of its tune.seeds), so the luck of the choice would sit inside the verdict's intervals
    as if it were a result (docs/method.md, 'Seeds and data draws'). None when the seed is free."""
    if not needs_decision(run) or run.seed not in run.tune.seeds:
        return None
    example = free_seeds(set(run.tune.seeds), 3, max(run.tune.seeds))
    return (f"{run.seed} is also a tuning seed (tune.seeds {run.tune.seeds}): evaluate on other seeds, "
            f"e.g. matrix.seed: {example}")


# -- the matrix --------------------------------------------------------------------------------------
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
                raise ConfigError(f"{where}[{i}] ({name}): {shown(key)} is not a dotted setting name like train.lr")
            _check_key_path(key, f"{where}[{i}] ({name})")
        arms[name] = settings
    return arms


def _axis_settings(key: str, values: list, arms: dict[str, dict]) -> Iterator[tuple[str, str]]:
    """(dotted setting, what sets it) for every setting a matrix axis decides."""
    if key == ARM_AXIS:
        for name, settings in arms.items():
            for dotted, value in settings.items():
                for setting in _written(dotted, value):
                    yield setting, f"matrix.{ARM_AXIS} ({name})"
        return
    for value in values:
        for setting in _written(key, value):
            yield setting, f"matrix.{key}"


def _check_override_against_axes(item: str, key: str, value: Any, axes: list[tuple[str, list]],
                                 arms: dict[str, dict]) -> None:
    """An override of a setting the matrix varies would be overwritten by every run: refused (an
    axis itself is overridden by naming it, e.g. -o train.lr=[1e-3,3e-3])."""
    for axis, values in axes:
        for setting, by in _axis_settings(axis, values, arms):
            for mine in _written(key, value):
                if _overlap(mine, setting):
                    fix = f"-o {axis}=[...]" if axis != ARM_AXIS else "the arm's own settings"
                    raise ConfigError(f"override {shown(item)}: sets {mine}, which {by} varies; change it through "
                                      f"{fix}, or drop the axis from the matrix")


def _excluded(entries: Any, axes: list[tuple[str, list]], declared: dict[str, list], where: str) -> list[dict]:
    """`matrix.exclude`: a list of partial combinations {axis: value, ...} (an arm by its name); a run
    matching every key of one entry is left out. Each key must be an axis and each value one of its values
    (as the file declares them, or as an override sets them), so a typo cannot silently exclude nothing."""
    values_of = {key: values + [v for v in declared.get(key, []) if v not in values] for key, values in axes}
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{where}: must be a non-empty list of mappings like {{train.epochs: 32, arm: default}}")
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or not entry:
            raise ConfigError(f"{where}[{i}]: must be a mapping of matrix axes to values, "
                              f"like {{train.epochs: 32, arm: default}} (got {shown(entry)})")
        for key, value in entry.items():
            if key not in values_of:
                raise ConfigError(f"{where}[{i}]: {shown(key)} is not an axis of this matrix; "
                                  f"the axes are {', '.join(values_of)}")
            if value not in values_of[key]:
                raise ConfigError(f"{where}[{i}]: {key}: {shown(value)} is not one of the axis's values "
                                  f"{shown(values_of[key])}")
    return entries


def _count_runs(axes: list[tuple[str, list]], where: str, max_runs: int) -> int:
    count = math.prod(len(values) for _, values in axes)
    if count > max_runs:
        sizes = " x ".join(f"{len(values)} {key}" for key, values in axes)
        raise ConfigError(f"{where}: the matrix has {count:,} runs ({sizes}), above the limit of "
                          f"{max_runs:,}; shrink an axis, or raise the limit with --max-runs N (or GRPORM_MAX_RUNS=N)")
    return count


# What a results folder holds besides one folder per experiment (checkpoints, launch logs, tuning decisions, the
# report's tables and figures, the benchmarks); lower case: some file systems ignore case.
RESULTS_FOLDERS = frozenset({"checkpoints", "logs", "tuning", "tables", "figures", "bench", "report.md", "readme.md"})


def build_experiment(raw: dict, where: str, overrides: list[str] = (), max_runs: int | None = None) -> Experiment:
    """The runs of an experiment mapping (a file's, after its `base:` chain) with `overrides`: every
    combination of the matrix, validated, its names and tuning grid checked, with its run id. A matrix
    of more than `max_runs` runs (None: MAX_RUNS) is refused before it is built."""
    raw = copy.deepcopy(raw)
    for key in raw:
        if key not in EXPERIMENT_KEYS:
            raise ConfigError(f"{where}: {cut(str(key))}: unknown key{suggest(key, EXPERIMENT_KEYS)}")
    name = raw.pop("name", Path(where).stem if where.endswith((".yaml", ".yml")) else "default")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+", name) or name in (".", ".."):
        raise ConfigError(f"{where}: name: must be letters, digits, '_', '.' or '-' (got {shown(name)})")
    if name.lower() in RESULTS_FOLDERS:
        raise ConfigError(f"{where}: name: {shown(name)} is <results>/{name}, a folder the suite keeps for itself "
                          f"({', '.join(sorted(RESULTS_FOLDERS))}); give the experiment another name")
    if len(name.encode()) > MAX_NAME_BYTES:
        raise ConfigError(f"{where}: name: at most {MAX_NAME_BYTES} characters, it names a folder (got {shown(name)})")
    description = raw.pop("description", "")
    if not isinstance(description, str):
        raise ConfigError(f"{where}: description: must be text (got {type(description).__name__})")
    matrix = raw.pop("matrix", None) or {}
    if not isinstance(matrix, dict):
        raise ConfigError(f"{where}: matrix: must map dotted keys to lists of values")

    parsed = [(item, *parse_override(item)) for item in overrides]
    # an exclude entry may name a value an override then drops from its axis (e.g. -o matrix.arm=[...])
    declared = {k: [a.get("name") if isinstance(a, dict) else a for a in v] if k == ARM_AXIS else v
                for k, v in matrix.items() if k != EXCLUDE and isinstance(v, list)}
    for _, key, value in parsed:
        if (axis := matrix_axis(key)) is not None:
            matrix[axis] = value if axis in (ARM_AXIS, EXCLUDE) else matrix_values(axis, value)
        elif key in matrix:
            matrix[key] = matrix_values(key, value)
    by_axis = [(item, matrix_axis(key) or key, value) for item, key, value in parsed]
    parsed = [(item, key, value) for item, key, value in parsed if matrix_axis(key) is None]
    exclude = matrix.pop(EXCLUDE, None)
    axes: list[tuple[str, list]] = []
    arms: dict[str, dict] = {}
    for key, values in matrix.items():
        if not isinstance(key, str):
            raise ConfigError(f"{where}: matrix: key {shown(key)} is not a dotted setting name like train.lr")
        if key == ARM_AXIS:
            arms = _arms(values, f"{where}: matrix.{ARM_AXIS}")
            axes.append((key, list(arms)))
            continue
        _check_key_path(key, f"{where}: matrix")
        if not isinstance(values, list) or not values:
            source = next((f"override {shown(o)}" for o, k, _ in by_axis if k == key), where)
            raise ConfigError(f"{source}: matrix.{key}: must be a non-empty list of values")
        axes.append((key, values))
    _count_runs(axes, where, MAX_RUNS if max_runs is None else max_runs)
    excluded = _excluded(exclude, axes, declared, f"{where}: matrix.{EXCLUDE}") if exclude is not None else []
    for item, key, value in parsed:
        if key not in matrix:
            _check_override_against_axes(item, key, value, axes, arms)
            set_dotted(raw, key, value, f"override {shown(item)}")

    runs: list[RunConfig] = []
    seen: set[str] = set()
    for combo in itertools.product(*(values for _, values in axes)) if axes else [()]:
        axis_values = dict(zip((k for k, _ in axes), combo))
        if any(all(axis_values[k] == v for k, v in entry.items()) for entry in excluded):
            continue  # left out before it is built, so an excluded combination need not be valid
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
        problem = run_problem(run)
        if problem is not None:
            key, message = problem
            sources = [source_of(tuple(k.split('.')), overrides, where) for k in (key, *SET_TOGETHER.get(key, ()))]
            raise ConfigError(f"{next((s for s in sources if s != where), where)}: {key}: {message}")
        run.run_id = run_id_for(run, axis_values)
        # A runner-up run names its pick among its axes, so no table averages it into the winner's cell.
        run.axes = {k: v for k, v in axis_values.items() if k != PICK_AXIS} | (
            {PICK_AXIS: run.tune.pick} if run.tune.pick != "winner" else {})
        if len(run.run_id.encode()) > MAX_RUN_ID_BYTES:
            raise ConfigError(f"{where}: matrix gives a run the id {shown(run.run_id)}, over the {MAX_RUN_ID_BYTES} "
                              "characters a folder name may have; shorten the matrix values (or use an arm with a short name)")
        if run.run_id in seen:
            raise ConfigError(f"{where}: matrix gives two runs the id {run.run_id!r}; remove the repeated value")
        seen.add(run.run_id)
        runs.append(run)
    if not runs:
        raise ConfigError(f"{where}: matrix.{EXCLUDE} leaves no run; exclude fewer combinations")
    problem = declaration_problem(runs)  # against the whole matrix: a control or claim it lacks
    if problem is not None:
        key, message = problem
        raise ConfigError(f"{source_of(tuple(key.split('.')), overrides, where)}: {key}: {message}")
    return Experiment(name=name, description=description, runs=runs)


def load_experiment(path: Path | str, overrides: list[str] = (), max_runs: int | None = None) -> Experiment:
    """An experiment file (merged over its `base:` chain, with `overrides`) as validated runs."""
    path = Path(path)
    return build_experiment(load_with_base(path), str(path), overrides, max_runs)


# -- run ids -------------------------------------------------------------------------------------------
def sanitize(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=+-]+", "_", text).strip("._") or "_"


_MISSING = object()


def _validated(run: RunConfig, key: str) -> Any:
    node: Any = run
    for part in key.split("."):
        node = node.get(part, _MISSING) if isinstance(node, dict) else getattr(node, part, _MISSING)
        if node is _MISSING:
            return node
    return node


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _as_held(value: Any, held: Any) -> Any:
    """A number given as text (`5e-3`: YAML 1.1 reads it as a string) as the number the run holds."""
    return held if isinstance(value, str) and _is_number(held) else value


def id_value(run: RunConfig, key: str, value: Any) -> Any:
    """How an axis value appears in the run id: a number written as text as its float (`5e-3` and
    `0.005` give one id); a list or mapping as sorted JSON; anything else as written. Numbers keep the
    form they were written in (1 vs 1.0): committed records are found by ids in both forms."""
    held = _validated(run, key) if key != ARM_AXIS else _MISSING
    if isinstance(value, list) and isinstance(held, (list, tuple)) and len(held) == len(value):
        value = [_as_held(v, h) for v, h in zip(value, held)]
    value = _as_held(value, held)
    return json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else value


def run_id_for(run: RunConfig, axis_values: dict[str, Any]) -> str:
    """data-backbone-method[-axis=value...][-lr=runner_up]-s<seed>: a run at its decision's runner-up
    (tune.pick, set as an axis or not) lives beside the winner's run, which keeps its id. `data` is the
    data set's own name (DataConfig.display_name: data.label, an image folder's folder name, else
    data.name), as the records and tables name it."""
    parts = [run.data.display_name(), run.model.name, run.method]
    for key, value in axis_values.items():
        if key in ID_AXES or key in ("seed", PICK_AXIS):
            continue
        parts.append(f"{key.split('.')[-1]}={id_value(run, key, value)}")
    if run.tune.pick != "winner":
        parts.append(f"lr={run.tune.pick}")
    parts.append(f"s{run.seed}")
    return sanitize("-".join(str(p) for p in parts))
