"""Weights & Biases logging that can never lose or block a run: every call is guarded."""
from __future__ import annotations

import os
import warnings

from grporm.config import RunConfig

STEP_PREFIX, EPOCH_PREFIX = "train/", "epoch/"  # W&B history keys; grporm.wandb_tools reads them back


class Tracker:
    """Logs to W&B (offline by default). Any W&B failure disables it with one warning."""

    def __init__(self, run: RunConfig, enabled: bool = True):
        """enabled=False: a silent tracker (DDP ranks other than 0, so one run is one W&B run)."""
        self.wb = None
        self.info: dict = {"mode": run.tracking.mode if enabled else "disabled"}
        if run.tracking.mode == "disabled" or not enabled:
            return
        try:
            import wandb

            os.environ.setdefault("WANDB_SILENT", "true")
            self.wb = wandb.init(
                project=run.tracking.project,
                entity=run.tracking.entity,
                name=f"{run.experiment}/{run.run_id}",
                group=run.experiment,
                job_type=run.method,
                tags=[run.method, run.model.name, run.data.name],
                config=run.model_dump(mode="json"),
                mode=run.tracking.mode,
                dir=os.path.abspath(os.environ.get("WANDB_DIR", ".")),  # absolute: the record must find it
                reinit="finish_previous",
            )
            self.info.update(id=self.wb.id, dir=os.path.abspath(self.wb.dir), url=self.wb.url)
        except Exception as err:  # noqa: BLE001 - tracking must never stop a run
            self._fail("start", err)

    def _fail(self, what: str, err: Exception) -> None:
        warnings.warn(f"W&B {what} failed ({type(err).__name__}: {err}); the run goes on, "
                      "the local record under results/ is complete", stacklevel=3)
        self.info["error"] = f"{what}: {type(err).__name__}: {err}"
        self.wb = None

    def log(self, data: dict, step: int | None = None) -> None:
        if self.wb is None:
            return
        try:
            self.wb.log(data, step=step)
        except Exception as err:  # noqa: BLE001
            self._fail("log", err)

    def log_step(self, step: int, stats: dict) -> None:
        """A logged training step's statistics (train/*); W&B numbers the steps itself."""
        self.log({f"{STEP_PREFIX}{k}": v for k, v in stats.items()}, step=None)

    def log_epoch(self, epoch: int, metrics: dict) -> None:
        """The per-epoch probe (epoch/*), against the epoch."""
        self.log({f"{EPOCH_PREFIX}{k}": v for k, v in metrics.items()} | {"epoch": epoch})

    def per_class_table(self, per_class: dict[str, list[float]], classes: list[str]) -> None:
        """One row per class, one column per predictor (sr, head) of the metrics' per_class."""
        rows = [[name, *(per_class[m][i] for m in per_class)] for i, name in enumerate(classes)]
        self.table("per_class_accuracy", ["class", *per_class], rows)

    def table(self, key: str, columns: list[str], rows: list[list]) -> None:
        if self.wb is None:
            return
        try:
            import wandb

            self.wb.log({key: wandb.Table(columns=columns, data=rows)})
        except Exception as err:  # noqa: BLE001
            self._fail("table", err)

    def finish(self, summary: dict, exit_code: int = 0) -> None:
        """`summary`: grporm.record_schema's RunRecord.summary() (final/* metrics and the status)."""
        if self.wb is None:
            return
        try:
            self.wb.summary.update(summary)
            self.wb.finish(exit_code=exit_code)
        except Exception as err:  # noqa: BLE001
            self._fail("finish", err)
        self.wb = None
