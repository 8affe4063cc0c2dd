"""The resolve step of loading an experiment: every name a run looks up in a registry (data sets,
rewards, corruptions, transfer data sets) is checked against that registry, after pydantic has
validated the structure (grporm/config.py).

Kept out of the config models so that the registries' modules never import the config to be
imported by it: the import graph stays a tree (tests/test_imports.py). A bad name is one
`ConfigError` line naming the file or override, the key, the name, the closest choice and all choices.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

from grporm.config import Experiment, RunConfig, _suggest, build_experiment, load_with_base, source_of
from grporm.data import DATASETS
from grporm.data.corruptions import CORRUPTIONS
from grporm.errors import ConfigError
from grporm.objectives.rewards import REWARDS
from grporm.registry import Registry


def looked_up(run: RunConfig) -> Iterator[tuple[str, Registry, list[str]]]:
    """(dotted key, registry, names) of every registry lookup `run` makes."""
    yield "data.name", DATASETS, [run.data.name]
    yield "grpo_rm.rewards", REWARDS, list(run.grpo_rm.rewards)
    yield "eval.ood.corruptions", CORRUPTIONS, list(run.eval.ood.corruptions)
    yield "eval.transfer", DATASETS, list(run.eval.transfer)


def unknown_name(run: RunConfig) -> tuple[str, str] | None:
    """(dotted key, message) of the first name of `run` its registry does not hold, or None."""
    for key, registry, names in looked_up(run):
        for name in names:
            if name not in registry:
                return key, (f"unknown {registry.kind} {name!r}{_suggest(name, list(registry))}; "
                             f"choose one of: {', '.join(registry)}")
    return None


def resolve(experiment: Experiment, where: str, overrides: list[str] = ()) -> Experiment:
    """`experiment` unchanged if every run's names are registered; else the ConfigError of the first
    unknown one, blamed on the override that set it or on `where`."""
    for run in experiment.runs:
        problem = unknown_name(run)
        if problem is not None:
            key, message = problem
            raise ConfigError(f"{source_of(tuple(key.split('.')), overrides, where)}: {key}: {message}")
    return experiment


def load_experiment(path: Path | str, overrides: list[str] = ()) -> Experiment:
    """An experiment file (merged over its `base:` chain, with `overrides`), validated and resolved."""
    path = Path(path)
    return resolve(build_experiment(load_with_base(path), str(path), overrides), str(path), overrides)
