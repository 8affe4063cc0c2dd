"""Checkpoints written atomically, loaded safely (weights_only), with the previous one kept.

`save_checkpoint` writes through `records.write_atomic` (temporary file, sync, rename): a kill at any moment leaves
either the old or the new checkpoint, never half of one. `load_checkpoint` falls back to the
previous checkpoint, with a warning, when the last one is unreadable or incomplete; resuming from
it is still exact because training replays deterministically from any checkpoint.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

from grporm.errors import GrpormError, first_line
from grporm.inputs import check_fields
from grporm.storage import write_atomic

# The types of the keys a training checkpoint must hold (grporm.train.REQUIRED_KEYS).
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


def load_checkpoint(path: Path, required: tuple[str, ...] = ()) -> dict | None:
    """The last checkpoint, else the previous one if the last is unreadable; None if neither exists."""
    problems = []
    for candidate in (path, previous_of(path)):
        if not candidate.exists():
            continue
        try:
            state = _read(candidate, required)
        except Exception as err:  # noqa: BLE001 - truncated zip, bad pickle, unsafe global, wrong content
            reason = first_line(err)
            problems.append(f"{candidate} ({reason[:200]})")
            print(f"warning: checkpoint {candidate} is unreadable ({reason[:200]}); trying the previous one",
                  file=sys.stderr)
            continue
        if problems:
            print(f"warning: resuming from the previous checkpoint {candidate}", file=sys.stderr)
        return state
    if problems:
        raise GrpormError(f"no readable checkpoint: {'; '.join(problems)}; delete {path.parent} to start "
                          "the run afresh")
    return None
