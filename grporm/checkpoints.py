"""Checkpoints written atomically, loaded safely (weights_only), with the previous one kept.

`save_checkpoint` writes a temporary file, syncs it, then renames: a kill at any moment leaves
either the old or the new checkpoint, never half of one. `load_checkpoint` falls back to the
previous checkpoint, with a warning, when the last one is unreadable or incomplete; resuming from
it is still exact because training replays deterministically from any checkpoint.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

from grporm.errors import GrpormError
from grporm.inputs import check_fields

# The types of the keys a training checkpoint must hold (grporm.train.REQUIRED_KEYS).
KEY_TYPES = {"model": dict, "optimizer": dict, "scheduler": dict, "epoch": int, "step_in_epoch": int,
             "history": list, "steps": list}


def previous_of(path: Path) -> Path:
    return path.with_suffix(".prev" + path.suffix)


def save_checkpoint(path: Path, state: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "wb") as handle:
        torch.save(state, handle)
        handle.flush()
        os.fsync(handle.fileno())
    if path.exists():
        os.replace(path, previous_of(path))
    os.replace(tmp, path)


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
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
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
