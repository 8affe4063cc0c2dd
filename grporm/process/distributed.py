"""Data-parallel training under torchrun: one process per device, one global batch split across them.

`grporm run X.yaml --nproc N` re-launches itself as `python -m torch.distributed.run --standalone
--nproc-per-node N -m grporm run X.yaml ...`; on several machines call torchrun yourself:
`torchrun --nnodes M --nproc-per-node N --rdzv-endpoint HOST:PORT -m grporm run X.yaml`.

Rules every caller relies on:
- every rank walks the same global batch order (it derives from (seed, epoch)) and keeps its
  contiguous slice (`Dist.part`), so N processes see the same global batches as one;
- rank 0 alone writes records, checkpoints and W&B; other ranks keep quiet;
- features are extracted by every rank on its own slice of an image set and all-gathered
  (`gather_rows`), so evaluation is N times faster and every rank holds identical features;
- decisions that end or skip work (stop signal, non-finite loss, run lock) are agreed by a
  collective, so no rank waits forever in a collective the others never reach.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from datetime import timedelta
from typing import Callable, TypeVar

import torch
import torch.distributed as td

from grporm.errors import ConfigError, GrpormError

T = TypeVar("T")


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    def info(self) -> dict:
        return {"world_size": self.world_size, "backend": self.backend}

    def device(self, name: str) -> torch.device:
        """The run's device; under DDP a CUDA run takes the GPU of this rank's local index."""
        if name == "auto":
            name = "cuda" if torch.cuda.is_available() else "cpu"
        if self.active and name == "cuda":
            return torch.device("cuda", self.local_rank)
        return torch.device(name)

    def part(self, n: int) -> slice:
        """This rank's contiguous share of n items (sizes differ by at most one)."""
        return slice(self.rank * n // self.world_size, (self.rank + 1) * n // self.world_size)

    def agree(self, flag: bool) -> bool:
        """True on every rank if it is true on any (a stop or a NaN on one rank stops them all)."""
        if not self.active:
            return flag
        value = torch.tensor([int(flag)])
        td.all_reduce(value, op=td.ReduceOp.MAX)
        return bool(value.item())

    def sum(self, values: list[float]) -> list[float]:
        if not self.active:
            return values
        tensor = torch.tensor(values, dtype=torch.float64)
        td.all_reduce(tensor)
        return tensor.tolist()

    def gather_rows(self, part: torch.Tensor, n: int) -> torch.Tensor:
        """Concatenate every rank's `part(n)` rows, in rank order: the full (n, ...) tensor on every rank."""
        if not self.active:
            return part
        width = -(-n // self.world_size)  # all_gather needs equal sizes: pad every part to the largest
        padded = part.new_zeros((width, *part.shape[1:]))
        padded[:len(part)] = part
        pieces = [torch.empty_like(padded) for _ in range(self.world_size)]
        td.all_gather(pieces, padded)
        sizes = [Dist(r, self.world_size).part(n) for r in range(self.world_size)]
        return torch.cat([p[:s.stop - s.start] for p, s in zip(pieces, sizes)])

    def broadcast(self, obj):
        """Rank 0's `obj` (tensors, containers, plain values) on every rank; unpickled weights_only."""
        if not self.active:
            return obj
        box = [obj]
        td.broadcast_object_list(box, src=0, weights_only=True)
        return box[0]

    def gather_objects(self, obj) -> list:
        if not self.active:
            return [obj]
        boxes = [None] * self.world_size
        td.all_gather_object(boxes, obj, weights_only=True)
        return boxes

    def from_main(self, fn: Callable[[], T]) -> T:
        """fn() run by rank 0 alone (it reads or writes shared files); its result, or its
        user-facing error, on every rank, so no rank is left waiting for the others."""
        if not self.active:
            return fn()
        outcome = None
        if self.is_main:
            try:
                outcome = {"ok": fn()}
            except GrpormError as err:
                outcome = {"error": str(err), "exit_code": err.exit_code}
        outcome = self.broadcast(outcome)
        if "error" in outcome:
            error = GrpormError(outcome["error"])
            error.exit_code = outcome["exit_code"]
            raise error
        return outcome["ok"]

    def barrier(self) -> None:
        if self.active:
            td.barrier()

    def wrap(self, model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
        if not self.active:
            return model
        from torch.nn.parallel import DistributedDataParallel

        # DDP broadcasts rank 0's parameters and buffers at construction, so every rank starts equal;
        # batch-norm running statistics are rank 0's thereafter (broadcast_buffers).
        return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


SINGLE = Dist()


def under_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_from_env() -> Dist:
    """Join the process group torchrun describes in the environment; one process -> SINGLE."""
    if not under_torchrun():
        return SINGLE
    if not td.is_initialized():
        # CPU tensors (flags, features) go through gloo, CUDA tensors through NCCL when there is a GPU.
        backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
        td.init_process_group(backend=backend, timeout=timedelta(minutes=30))
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return Dist(
        rank=td.get_rank(),
        world_size=td.get_world_size(),
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
        local_world_size=int(os.environ.get("LOCAL_WORLD_SIZE", "1")),
        backend=td.get_backend(),
    )


def shutdown() -> None:
    if td.is_initialized():
        td.destroy_process_group()


def check_world(batch_size: int, world_size: int, where: str) -> None:
    if batch_size < world_size:
        raise ConfigError(f"{where}: train.batch_size {batch_size} is smaller than the {world_size} processes; "
                          "every process needs at least one image of each global batch")


def launch(nproc: int, argv: list[str]) -> int:
    """Run `grporm <argv>` under torchrun with nproc local processes; signals are passed on to it."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
           "-m", "grporm", *argv]
    env = dict(os.environ)
    # torchrun would set 1 with a warning; share the cores instead (CUDA runs hardly use them).
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    child = subprocess.Popen(cmd, env=env)
    received: list[int] = []

    def forward(signum, _frame):
        received.append(signum)
        child.send_signal(signum)  # the workers checkpoint and exit; we wait for them

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        code = child.wait()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    return 128 + received[0] if received and code != 0 else code
