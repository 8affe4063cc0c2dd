"""Checkpoints written atomically, loaded safely (weights_only), with the previous one kept.

`save_checkpoint` writes through `records.write_atomic` (temporary file, sync, rename): a kill at any moment leaves
either the old or the new checkpoint, never half of one. `load_checkpoint` falls back to the
previous checkpoint, with a warning, when the last one is unreadable or incomplete; resuming from
it is still exact because training replays deterministically from any checkpoint.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

import torch

from grporm.errors import GrpormError, first_line
from grporm.records.inputs import check_fields
from grporm.records.storage import write_atomic

# The types of the keys a training checkpoint must hold (grporm.training.train.REQUIRED_KEYS).
KEY_TYPES = {"model": dict, "optimizer": dict, "scheduler": dict, "epoch": int, "step_in_epoch": int,
             "history": list, "steps": list}


def previous_of(path: Path) -> Path:
    return path.with_suffix(".prev" + path.suffix)


def save_checkpoint(path: Path, state: dict) -> None:
    write_atomic(path, lambda handle: torch.save(state, handle), binary=True, previous=previous_of(path))


def _read(path: Path, required: tuple[str, ...]) -> dict:
    state = torch.load(path, map_location="cpu", weights_only=True)  # never unpickles code
    if not isinstance(state, dict):
        raise ValueError(f"holds a {type(state).__name__}, not a checkpoint dict")
    missing = [key for key in required if key not in state]
    if missing:
        raise ValueError(f"lacks {', '.join(missing)}")
    problem = check_fields(state, {key: KEY_TYPES[key] for key in required if key in KEY_TYPES})
    if problem is not None:  # readable, but not what resuming would read: treat it as damaged
        raise ValueError(problem)
    return state


def load_checkpoint(path: Path, required: tuple[str, ...] = (),
                    check: Callable[[dict], str | None] | None = None) -> dict | None:
    """The last checkpoint, else the previous one if the last is unreadable; None if neither exists.

    `check(state)` says why a readable checkpoint cannot be resumed (None: it can), e.g. tensors that
    no longer fit the model after a library upgrade: such a checkpoint counts as unreadable. Falling
    back is one warning line; no usable checkpoint is one GrpormError line naming both files."""
    problems = []
    for candidate in (path, previous_of(path)):
        if not candidate.exists():
            continue
        try:
            state = _read(candidate, required)
            problem = check(state) if check is not None else None
            if problem is not None:
                raise ValueError(problem)
        except Exception as err:  # noqa: BLE001 - truncated zip, bad pickle, unsafe global, wrong content
            problems.append((candidate, first_line(err)[:200]))
            continue
        if problems:
            failed, reason = problems[0]
            print(f"warning: checkpoint {failed} is unreadable ({reason}); resuming from the previous checkpoint "
                  f"{candidate}", file=sys.stderr)
        return state
    if problems:
        listed = "; ".join(f"{candidate} ({reason})" for candidate, reason in problems)
        raise GrpormError(f"no readable checkpoint: {listed}; delete {path.parent} to start the run afresh")
    return None


def recorded_config_hash(folder: Path, names: tuple[str, ...]) -> str | None:
    """The config hash the first readable checkpoint among `names` in `folder` records (saved with it
    since the config_hash file beside it could be damaged); None if none records one. Memory-mapped:
    only the small entries are read."""
    for name in names:
        try:
            state = torch.load(folder / name, map_location="cpu", weights_only=True, mmap=True)
        except Exception:  # noqa: BLE001 - missing or unreadable: try the next one
            continue
        if isinstance(state, dict) and isinstance(state.get("config_hash"), str):
            return state["config_hash"]
    return None
