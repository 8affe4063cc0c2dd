"""The one training loop, shared by every method: only `objective.fn` differs between them.

Reads top to bottom: optimiser and schedule, resume, then epochs of batches; each batch is one
rollout (pi_old = the model's logits at its first forward pass) followed by `inner_steps`
optimiser steps; after each epoch, the caller's evaluation and a checkpoint. Logged steps (every
`train.log_every`-th and each epoch's last) also carry the training diagnostics
(`grporm.objectives.diagnostics`); the other steps compute nothing beyond the objective.

Determinism is what makes every fault recoverable: the batch order and augmentation of an epoch
derive from (seed, epoch) alone and the generator state is saved, so a run resumed from any
checkpoint (end of epoch, or mid-epoch after SIGINT/SIGTERM) replays exactly what an uninterrupted
run would have done. Under DDP every rank walks the same global batches and keeps its slice.
"""
from __future__ import annotations

import copy
import math
import signal
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import torch

from grporm.config import RunConfig
from grporm.data import ImageSet, InputSpec
from grporm.errors import GrpormError, TrainingDiverged, first_line
from grporm.objectives import Objective, build_objective
from grporm.objectives.diagnostics import training_diagnostics
from grporm.process import seeding
from grporm.process.distributed import SINGLE, Dist
from grporm.process.interrupts import STOP, Interrupted
from grporm.tracking.progress import PROCESS, EpochClock, write
from grporm.training.checkpoints import load_checkpoint, save_checkpoint
from grporm.training.methods import method

if TYPE_CHECKING:
    from grporm.training.build import Built

REQUIRED_KEYS = ("model", "optimizer", "scheduler", "epoch", "history")


@dataclass
class FitResult:
    history: list[dict] = field(default_factory=list)  # one row per epoch, epoch 0 = before training
    steps: list[dict] = field(default_factory=list)  # the logged steps (every log_every-th and each epoch's last)
    train_seconds: float = 0.0
    images_seen: int = 0


def make_optimizer(params, run: RunConfig, lr: float) -> torch.optim.Optimizer:
    cls = torch.optim.AdamW if run.train.optimizer == "adamw" else torch.optim.Adam
    return cls(params, lr=lr, weight_decay=run.train.weight_decay)


def warmup_cosine(optimizer: torch.optim.Optimizer, total_steps: int, warmup_fraction: float):
    """Linear warmup, then cosine decay to zero over the remaining steps."""
    warmup = int(total_steps * warmup_fraction)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    # Order and augmentation derive from (seed, epoch) alone, so a resumed epoch replays exactly.
    return seeding.generator(seed, "epoch", epoch)


def training_view(model: torch.nn.Module, run: RunConfig, dist: Dist, device: torch.device) -> torch.nn.Module:
    """What the steps call: `model` in channels_last, wrapped in DDP, compiled. `model` itself stays
    the plain module that is checkpointed and evaluated."""
    if run.train.channels_last:
        model.to(memory_format=torch.channels_last)
    view = dist.wrap(model, device)
    if run.train.compile:
        if device.type == "cuda":
            view = torch.compile(view)
        else:  # inductor on CPU needs a C++ toolchain and its compile time dwarfs small CPU runs
            warnings.warn("train.compile is ignored on CPU (it pays off on CUDA only)", stacklevel=2)
    return view


def local_batch(data: ImageSet, index: torch.Tensor, input_spec: InputSpec, run: RunConfig,
                generator: torch.Generator, dist: Dist) -> tuple[torch.Tensor, torch.Tensor]:
    """This rank's share of one global batch, augmented exactly as one process would augment it."""
    mine = index[dist.part(len(index))]
    augment = run.train.augment
    if dist.active and (augment.hflip or augment.shift > 0):
        # The random draws span the whole global batch: make them all, keep this rank's rows.
        x = input_spec.preprocess(data.images[index], augment, generator)[dist.part(len(index))]
    else:
        x = input_spec.preprocess(data.images[mine], augment, generator)
    if run.train.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, data.labels[mine]


def _tensors_differ(saved, own: dict, what: str) -> str | None:
    """Why the tensors `saved` cannot be loaded into a module whose state_dict is `own` (None: they can)."""
    if not isinstance(saved, dict):
        return f"its {what} is a {type(saved).__name__}, not a state dict"
    missing, unknown = [k for k in own if k not in saved], [k for k in saved if k not in own]
    if missing or unknown:
        return (f"its {what} lacks {len(missing)} tensor(s) of the model{f' (e.g. {missing[0]})' if missing else ''} "
                f"and has {len(unknown)} it does not know{f' (e.g. {unknown[0]})' if unknown else ''}")
    for key, value in own.items():
        if not isinstance(saved[key], torch.Tensor) or saved[key].shape != value.shape:
            shape = tuple(saved[key].shape) if isinstance(saved[key], torch.Tensor) else type(saved[key]).__name__
            return f"its {what} tensor {key!r} is {shape}, the model's is {tuple(value.shape)}"
    return None


def _fits(state: dict, model, optimizer, reference) -> str | None:
    """Why a readable checkpoint cannot be resumed into this model (None: it can): checked before
    anything is loaded, so that a checkpoint of other tensors (e.g. after a library upgrade) is an
    unreadable checkpoint (the previous one is tried), never a traceback from load_state_dict."""
    problem = _tensors_differ(state["model"], model.state_dict(), "model")
    if problem is None and reference is not None:
        problem = _tensors_differ(state.get("reference"), reference.state_dict(), "reference model")
    if problem is None:
        groups = state["optimizer"].get("param_groups")
        saved = [len(g.get("params", ())) for g in groups] if isinstance(groups, list) and all(
            isinstance(g, dict) for g in groups) else None
        own = [len(g["params"]) for g in optimizer.state_dict()["param_groups"]]
        if saved != own:
            problem = f"its optimizer holds parameter groups of {saved} tensors, the model's has {own}"
    return problem


def _restore(state: dict, model, optimizer, scheduler, reference, result: FitResult, dist: Dist,
             checkpoint: Path) -> tuple[int, int, dict]:
    try:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if reference is not None:
            reference.load_state_dict(state["reference"])
    except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as err:  # what _fits could not foresee
        raise GrpormError(f"checkpoint {checkpoint} does not fit the model ({first_line(err)[:200]}); delete "
                          f"{checkpoint.parent} to start the run afresh") from None
    rng = state.get("rng_cpu", [])
    rng = [rng] if isinstance(rng, torch.Tensor) else rng  # checkpoints from before DDP hold one state
    if rng:  # one state per rank; a different world size keeps rank 0's (only dropout masks differ)
        torch.set_rng_state(rng[dist.rank] if len(rng) == dist.world_size else rng[0])
    result.history, result.steps = state["history"], state.get("steps", [])
    result.train_seconds, result.images_seen = state.get("train_seconds", 0.0), state.get("images_seen", 0)
    return state["epoch"], state.get("step_in_epoch", 0), state.get("partial", {})


def divergence_fix(run: RunConfig) -> str:
    """What to change after a non-finite loss, most likely cause first."""
    hint = method(run.method).divergence_hint  # the method's own likely cause comes first
    fixes = [fix] if hint is not None and (fix := hint(run)) else []
    fixes.append("lower train.lr")
    if run.train.grad_clip is None:
        fixes.append("set train.grad_clip")
    return " or ".join(fixes)


def _optimise(train_model, model, reference, objective: Objective, optimizer, x: torch.Tensor, targets: torch.Tensor,
              run: RunConfig, step: int, dist: Dist, share: float, where: str, diagnose: bool = False) -> dict:
    """One rollout (pi_old = the logits of the first forward pass) and its `inner_steps` optimiser steps.

    `share`: local losses are means over local images and DDP averages gradients over ranks; scaling
    by this rank's share of the global batch makes that average the global-batch mean even when the
    slices differ in size. `diagnose` (logged steps only: it costs a backward through the loss) adds
    the training diagnostics of the last inner step, taken before its update."""
    device = x.device
    old_logits = ref_logits = features = None
    with_features = objective.needs_features or diagnose
    for inner in range(objective.inner_steps):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=run.train.precision == "bf16"):
            if with_features:
                features, logits = train_model(x, with_features=True)
            else:
                logits = train_model(x)
            if reference is not None:
                with torch.no_grad():
                    ref_logits = reference(x) if ref_logits is None else ref_logits
        if old_logits is None:
            old_logits = logits.detach()
        loss, stats = objective.fn(
            logits, targets, old_logits=old_logits, ref_logits=ref_logits,
            generator=seeding.generator(run.seed, "group", step, device=device),
            **({"features": features} if objective.needs_features else {}),
        )
        finite = bool(torch.isfinite(loss))
        if dist.agree(not finite):  # every rank stops together, before a NaN reaches the weights
            value = "non-finite on another rank" if finite else loss.item()
            raise TrainingDiverged(f"loss became {value} at {where}; {divergence_fix(run)} "
                                   "(the last good checkpoint is kept)")
        if diagnose and inner == objective.inner_steps - 1:
            stats = {**stats, **training_diagnostics(loss, logits, features, targets, model.head)}
        optimizer.zero_grad(set_to_none=True)
        (loss * share if dist.active else loss).backward()
        if run.train.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), run.train.grad_clip)
        optimizer.step()
    return stats


@dataclass
class Trainer:
    """How one model trains, set up once: the model, its objective, the training split, the run's
    settings, the input and the device. `fit(lr)` trains it in place; a run fits once, a tuning trial
    once per candidate learning rate (each from the same initial weights, `Built.reset`)."""

    model: torch.nn.Module
    objective: Objective
    data: ImageSet
    run: RunConfig
    input_spec: InputSpec
    device: torch.device
    dist: Dist = SINGLE
    desc: str = "train"

    @classmethod
    def of(cls, built: Built, run: RunConfig, device: torch.device, dist: Dist = SINGLE, desc: str = "train") -> Trainer:
        """The trainer of a built run: its model on its training split, with the objective of its method."""
        return cls(built.model, build_objective(run), built.splits.train, run, built.input_spec, device, dist, desc)

    def fit(
        self,
        lr: float,
        *,
        epochs: int | None = None,
        checkpoint: Path | None = None,
        on_epoch: Callable[[int], dict] | None = None,
        on_step: Callable[[int, dict], None] | None = None,
        result: FitResult | None = None,
        desc: str | None = None,
    ) -> FitResult:
        """Train the model in place at `lr` for `epochs` (the run's train.epochs unless given), resuming
        from and saving to `checkpoint` if given; `desc` (default: the trainer's) names it in progress lines. Pass `result` to keep what was done (e.g. the logged
        steps) when fit raises: it is filled as training goes."""
        model, objective, data, run, input_spec, device, dist = (
            self.model, self.objective, self.data, self.run, self.input_spec, self.device, self.dist)
        desc = self.desc if desc is None else desc
        epochs = run.train.epochs if epochs is None else epochs
        batch_size = min(run.train.batch_size, len(data))
        steps_per_epoch = len(data) // batch_size  # drop the ragged last batch: batch norm needs > 1
        optimizer = make_optimizer([p for p in model.parameters() if p.requires_grad], run, lr)
        scheduler = warmup_cosine(optimizer, steps_per_epoch * epochs, run.train.warmup_fraction)
        reference = copy.deepcopy(model).eval().requires_grad_(False) if objective.needs_reference else None
        result = result if result is not None else FitResult()
        start_epoch = skip_steps = 0
        partial: dict = {}
        # Dropout draws from the global stream: seed it so a fit depends on nothing run before it in this
        # process (e.g. whether the lr search ran or was read back), and give each rank its own masks.
        torch.manual_seed(seeding.derive(run.seed, "dropout", dist.rank))

        fits = lambda state: _fits(state, model, optimizer, reference)  # noqa: E731
        state = dist.from_main(lambda: load_checkpoint(checkpoint, REQUIRED_KEYS, fits)) if checkpoint is not None else None
        if state is not None:
            start_epoch, skip_steps, partial = _restore(state, model, optimizer, scheduler, reference, result, dist, checkpoint)
            where = f"epoch {start_epoch}/{epochs}" + (f", step {skip_steps}/{steps_per_epoch}" if skip_steps else "")
            if dist.is_main:
                write(f"resumed {desc} from {checkpoint} at {where}")
        elif on_epoch is not None:
            result.history.append({"epoch": 0, "train_seconds": 0.0, **on_epoch(0)})
        train_model = training_view(model, run, dist, device)
        clock = EpochClock(desc, epochs, start_epoch, enabled=dist.is_main)
        PROCESS.start_fit(desc, epochs * steps_per_epoch * batch_size, (start_epoch * steps_per_epoch + skip_steps) * batch_size,
                          enabled=dist.is_main)

        config_hash = run.config_hash()  # saved with the checkpoint: resuming can tell whose it is (grporm.training.runner)

        def save(epoch: int, step_in_epoch: int, generator: torch.Generator | None, sums: list[float]) -> None:
            rng = dist.gather_objects(torch.get_rng_state())  # collective: every rank calls save
            if checkpoint is None or not dist.is_main:
                return
            save_checkpoint(checkpoint, {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "reference": reference.state_dict() if reference is not None else None,
                "rng_cpu": rng,
                "epoch": epoch,
                "step_in_epoch": step_in_epoch,
                "partial": {"generator": generator.get_state(), "sums": sums} if step_in_epoch else {},
                "history": result.history,
                "steps": result.steps,
                "train_seconds": result.train_seconds,
                "images_seen": result.images_seen,
                "config_hash": config_hash,
            })

        for epoch in range(start_epoch, epochs):
            train_model.train()
            generator = epoch_generator(run.seed, epoch)
            order = torch.randperm(len(data), generator=generator)
            first = skip_steps if epoch == start_epoch else 0
            sums = [0.0, 0.0, 0.0]  # loss * images, accuracy * images, images: weighted over ranks
            if first:
                generator.set_state(partial["generator"])
                sums = list(partial["sums"])
            tic = time.perf_counter()
            for step_in_epoch in STOP.deferring_over(range(first, steps_per_epoch)):
                if dist.agree(STOP.requested):
                    result.train_seconds += time.perf_counter() - tic
                    save(epoch, step_in_epoch, generator, sums)
                    dist.barrier()  # nobody exits while rank 0 writes: torchrun would kill it mid-write
                    raise _interrupted(epoch, step_in_epoch, steps_per_epoch, checkpoint)
                index = order[step_in_epoch * batch_size:(step_in_epoch + 1) * batch_size]
                x, targets = local_batch(data, index, input_spec, run, generator, dist)
                x, targets = x.to(device), targets.to(device)
                step = epoch * steps_per_epoch + step_in_epoch
                logged = step % run.train.log_every == 0 or step_in_epoch == steps_per_epoch - 1
                stats = _optimise(train_model, model, reference, objective, optimizer, x, targets, run, step, dist,
                                  share=len(targets) * dist.world_size / len(index), where=f"epoch {epoch + 1}, step {step}",
                                  diagnose=logged)
                scheduler.step()
                n = len(targets)
                sums = [sums[0] + stats["loss"] * n, sums[1] + stats["acc"] * n, sums[2] + n]
                result.images_seen += len(index)
                if logged:
                    row = {"epoch": epoch + 1, "lr": scheduler.get_last_lr()[0], **stats}
                    result.steps.append({"step": step, **row})
                    if on_step is not None:
                        on_step(step, row)
                PROCESS.advance(len(index))
            result.train_seconds += time.perf_counter() - tic

            loss_sum, acc_sum, images = dist.sum(sums)
            row = {
                "epoch": epoch + 1,
                "train_seconds": result.train_seconds,
                "lr": scheduler.get_last_lr()[0],
                "train_loss": loss_sum / max(1.0, images),
                "train_acc": acc_sum / max(1.0, images),
            }
            if on_epoch is not None:
                row.update(on_epoch(epoch + 1))
            result.history.append(row)
            save(epoch + 1, 0, None, [])
            clock.epoch_done(row, [s for s in result.steps if s.get("epoch") == epoch + 1])
        PROCESS.close()
        return result


def _interrupted(epoch: int, step_in_epoch: int, steps_per_epoch: int, checkpoint: Path | None) -> Interrupted:
    signum = STOP.signum or signal.SIGTERM  # under DDP another rank may have received it
    where = f"at epoch {epoch + 1}, step {step_in_epoch}/{steps_per_epoch}"
    saved = f"checkpoint saved to {checkpoint}" if checkpoint is not None else "no checkpoint in this phase"
    return Interrupted(signum, f"{signal.Signals(signum).name} {where}; {saved}")
