"""Checkpoints written atomically, loaded safely (weights_only), with the previous one kept."""
from __future__ import annotations

import os
from pathlib import Path

import torch

from grporm.errors import GrpormError


def save_checkpoint(path: Path, state: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(state, tmp)
    if path.exists():
        os.replace(path, path.with_suffix(".prev" + path.suffix))
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict | None:
    """The last checkpoint, else the previous one if the last is unreadable; None if neither exists."""
    previous = path.with_suffix(".prev" + path.suffix)
    for candidate in (path, previous):
        if not candidate.exists():
            continue
        try:
            return torch.load(candidate, map_location="cpu", weights_only=True)
        except Exception as err:  # truncated or corrupted file
            print(f"warning: checkpoint {candidate} is unreadable ({type(err).__name__}); trying the previous one")
    if path.exists() or previous.exists():
        raise GrpormError(f"no readable checkpoint at {path}; delete {path.parent} to start the run afresh")
    return None
