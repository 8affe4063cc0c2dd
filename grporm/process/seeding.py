"""Every random seed of the suite, derived in one place: `derive(seed, purpose, *parts)`.

A purpose names one random stream (the order of an epoch, the dropout masks of a rank, the
corrupted test images of one corruption...). Each has its formula in `PURPOSES`; no other module
computes a seed, so two streams cannot collide by accident and a new one is added here, by name.

The purposes marked *legacy* keep the formulas the committed records (results/) were made with:
changing one would change every record that used it. The corruption seeds are the exception: they
used to derive from a corruption's alphabetical position in the registry, so registering a new
corruption changed the others' data; they now hash the corruption's name.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable

import torch

# Split streams of a run's split seed (`split_seed` below; grporm/data/splits.py): seed * 3 + stream
# is injective for these three; the long-tail stream 3 equals the next seed's validation stream,
# harmless for a subset draw and kept for the records.
SPLIT_STREAMS = {"val": 0, "train": 1, "test": 2, "long_tail": 3}
# torch.Generator.manual_seed takes 64 bits; 63 keep the value a positive int64 everywhere.
_HASH_BITS = 63


@dataclass(frozen=True)
class Purpose:
    formula: Callable[..., int]
    doc: str
    legacy: bool  # formula kept for the reproducibility of committed records


def stable_hash(*parts: object) -> int:
    """A non-negative 63-bit integer from `parts`, the same in every process and on every machine
    (Python's `hash` of a string is salted per process)."""
    text = "\x1f".join(str(p) for p in parts)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> (64 - _HASH_BITS)


PURPOSES: dict[str, Purpose] = {
    "init": Purpose(lambda seed: seed, "model head (and random backbone) initialisation: the run seed itself, "
                    "so every method of a seed starts from the same weights", legacy=True),
    "epoch": Purpose(lambda seed, epoch: seed * 1_000_003 + epoch, "order and augmentation of a training epoch: "
                     "seed * 1_000_003 + epoch, from (seed, epoch) alone so a resumed epoch replays", legacy=True),
    "group": Purpose(lambda seed, step: seed * 7_919 + step, "GRPO-RM's sampled group at an optimiser step: "
                     "seed * 7_919 + step", legacy=True),
    "dropout": Purpose(lambda seed, rank: seed + 1_000_003 * rank, "the global stream (dropout) at the start of a "
                       "fit: seed + 1_000_003 * rank, so each process has its own masks", legacy=True),
    "split": Purpose(lambda seed, stream: seed * 3 + SPLIT_STREAMS[stream], "validation / training / test / "
                     "long-tail subsets of the run's split seed: split_seed * 3 + stream (val 0, train 1, "
                     "test 2, long_tail 3)", legacy=True),
    "subset": Purpose(lambda seed: seed, "a class-balanced subset (convergence probe, the "
                      "corrupted test images: the run's split seed; a carved test split: the data set's "
                      "fixed seed): the given seed itself", legacy=True),
    "canvases": Purpose(lambda seed: seed, "the embedded segmentation task's canvases and, for a data set with "
                        "masks, its validation split and test subset: the run's split seed itself", legacy=True),
    "corruption": Purpose(lambda seed, name, severity: stable_hash("corruption", seed, name, severity),
                          "one corruption at one severity of eval.ood.seed: a stable hash of (seed, name, "
                          "severity), so registering another corruption leaves this one's data alone", legacy=False),
}


def split_seed(run) -> int:
    """The seed of everything `run` (a RunConfig) draws from its data: training subset, validation
    carve, test subset, long-tail subset, canvases, the convergence probe's subset, the corrupted
    test images (docs/method.md, 'Seeds and data draws').

    `data.split_seed` when the config pins one, else the run's own seed: each seed draws its own data
    and the methods / arms of one seed share it. Every consumer asks here, nowhere else."""
    pinned = run.data.split_seed
    return run.seed if pinned is None else pinned


def derive(seed: int, purpose: str, *parts: object) -> int:
    """The seed of `purpose`'s stream for `seed` and the purpose's `parts` (e.g. the epoch)."""
    try:
        entry = PURPOSES[purpose]
    except KeyError:
        raise ValueError(f"unknown seed purpose {purpose!r}; one of: {', '.join(PURPOSES)}") from None
    return entry.formula(seed, *parts)


def generator(seed: int, purpose: str, *parts: object, device: torch.device | str | None = None) -> torch.Generator:
    """A generator seeded with `derive(seed, purpose, *parts)` (on `device`, default CPU)."""
    made = torch.Generator() if device is None else torch.Generator(device=device)
    return made.manual_seed(derive(seed, purpose, *parts))
