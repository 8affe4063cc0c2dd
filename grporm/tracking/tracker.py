"""Weights & Biases logging that can never lose or block a run: every call is guarded.

The mode: the environment variable WANDB_MODE, when set, wins over the file's `tracking.mode`
(the usual rule: the machine decides where logs go), except that it never turns on tracking a
file sets to `disabled`; which of the two decided is in the record (`wandb.mode_from`) and said
once per process when they differ. `online` without a reachable W&B server does not make each run
wait out W&B's own 90 s: a connection to the server is tried for PROBE_SECONDS first, and W&B's
start is bounded by INIT_TIMEOUT; either failing, the run logs offline (upload later with
`grporm sync`) and says so in one line.
"""
from __future__ import annotations

import io
import os
import socket
import sys
import threading
import warnings
from contextlib import contextmanager
from typing import Iterator
from urllib.parse import urlparse

from grporm.config import RunConfig
from grporm.records.schema import HEADLINE_KNN, MIOU, PIXEL_ACC, SR, VAL_HEAD

PROBE_SECONDS = 5.0  # a reachable server answers a TCP connection well within this
INIT_TIMEOUT = 15.0  # seconds W&B may take to start a run online (its default is 90)
ENV_MODES = {"dryrun": "offline", "run": "online"}  # W&B's older names for its modes
# the probe's curves in a run's convergence figure -> their legend
CURVES = {HEADLINE_KNN: "kNN@20", SR: "SR", VAL_HEAD: "head", f"val_{MIOU}": "mIoU", f"val_{PIXEL_ACC}": "pixel acc."}
_said: set[str] = set()
_unreachable: set[str] = set()  # servers found unreachable by this process: not probed again


def _say_once(line: str) -> None:
    if line not in _said:
        _said.add(line)
        print(line, file=sys.stderr)


def resolve_mode(file_mode: str) -> tuple[str, str]:
    """(mode, who decided: "WANDB_MODE" or "tracking.mode")."""
    env = os.environ.get("WANDB_MODE", "").strip().lower()
    if not env or file_mode == "disabled":
        return file_mode, "tracking.mode"
    mode = ENV_MODES.get(env, env)
    if mode != file_mode:
        _say_once(f"W&B: mode {mode} from the environment variable WANDB_MODE={env} "
                  f"(it wins over tracking.mode: {file_mode})")
    return mode, "WANDB_MODE"


def base_url() -> str:
    url = os.environ.get("WANDB_BASE_URL", "").strip()
    if url:
        return url
    try:
        import wandb

        return str(wandb.Settings().base_url)
    except Exception:  # noqa: BLE001 - an unknown server is probed as the public one
        return "https://api.wandb.ai"


def reachable(url: str, timeout: float | None = None) -> bool:
    """Whether a TCP connection to `url`'s host opens within `timeout` s, PROBE_SECONDS by default
    (name lookup included: it runs in a thread, since a lookup without network can block longer
    than any socket timeout)."""
    timeout = PROBE_SECONDS if timeout is None else timeout
    parsed = urlparse(url if "//" in url else f"https://{url}")
    host, port = parsed.hostname, parsed.port or (80 if parsed.scheme == "http" else 443)
    if not host:
        return False
    opened: list[bool] = []

    def probe() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            opened.append(True)
        except Exception:  # noqa: BLE001 - whatever the failure, the server is not reachable
            opened.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(opened and opened[0])


def online_or_offline(mode: str) -> tuple[str, str | None]:
    """`mode`, or "offline" and why when it is online and the server does not answer in time."""
    if mode not in ("online", "shared"):
        return mode, None
    url = base_url()
    if url in _unreachable or not reachable(url):
        _unreachable.add(url)
        why = f"{url} not reachable within {PROBE_SECONDS:g} s"
        _say_once(f"warning: W&B online: {why}; runs log offline instead (upload them later with grporm sync)")
        return "offline", why
    return mode, None

@contextmanager
def service_environment(folder: str) -> Iterator[None]:
    """While W&B starts its service: with HOME unset (cron, some containers) the service finds no
    folder for its logs and cache and prints about 18 lines of its errors; it gets one under the
    results (`<folder>/wandb/service-cache`, `folder` being the run's W&B folder), for the service
    only: HOME and XDG_CACHE_HOME of this process (which the data and weight caches read) are left
    as they are once it has started."""
    if os.environ.get("HOME") or os.environ.get("XDG_CACHE_HOME"):
        yield
        return
    os.environ["XDG_CACHE_HOME"] = os.path.join(folder, "wandb", "service-cache")
    try:
        yield
    finally:
        os.environ.pop("XDG_CACHE_HOME", None)


STEP_PREFIX, EPOCH_PREFIX = "train/", "epoch/"  # W&B history keys; grporm.tracking.wandb_tools reads them back
STEP_KEY, EPOCH_KEY = f"{STEP_PREFIX}step", "epoch"  # the x axes: train/* against the optimiser step, epoch/* the epoch
FIGURE_PREFIX = "figures/"  # the run's figures, as W&B media
# What the run's W&B config holds beyond its RunConfig (grporm.tracking.wandb_tools strips them to validate it):
# the config hash (the record's), the lr the run trained at and the key of the tuning decision it came from.
CONFIG_EXTRAS = ("config_hash", "lr", "tuning_key")
MODEL_ARTIFACT_TYPE = "model"


class Tracker:
    """Logs to W&B (offline by default). Any W&B failure disables it with one warning."""

    def __init__(self, run: RunConfig, enabled: bool = True, folder: str | os.PathLike | None = None):
        """enabled=False: a silent tracker (DDP ranks other than 0, so one run is one W&B run). `folder`:
        where W&B writes the run's files (its `wandb/` folder), e.g. the run's results folder;
        $WANDB_DIR wins when set, the working directory when neither is given."""
        self.wb = None
        mode, decided = resolve_mode(run.tracking.mode) if enabled else ("disabled", "rank")
        self.info: dict = {"mode": mode, "mode_from": decided}
        if mode == "disabled":
            return
        mode, why = online_or_offline(mode)
        if why is not None:
            self.info.update(mode=mode, fallback=why)
        self.log_model = run.tracking.log_model
        folder = os.path.abspath(os.environ.get("WANDB_DIR") or folder or ".")  # absolute: the record must find it
        try:
            os.makedirs(folder, exist_ok=True)
            self.wb = self._start(run, mode, folder)
        except Exception as err:  # noqa: BLE001 - tracking must never stop a run
            if mode == "offline":
                self._fail("start", err)
                return
            _say_once(f"warning: W&B online failed to start ({type(err).__name__}); runs log offline instead "
                      "(upload them later with grporm sync)")
            self.info.update(mode="offline", fallback=f"start failed: {type(err).__name__}: {err}")
            try:
                self.wb = self._start(run, "offline", folder)
            except Exception as again:  # noqa: BLE001
                self._fail("start", again)
                return
        self.info.update(id=self.wb.id, dir=os.path.abspath(self.wb.dir), url=self.wb.url)

    @staticmethod
    def _start(run: RunConfig, mode: str, folder: str):
        import wandb

        os.environ.setdefault("WANDB_SILENT", "true")
        online = mode != "offline"
        with service_environment(folder):
            wb = wandb.init(
                project=run.tracking.project,
                entity=run.tracking.entity,
                name=f"{run.experiment}/{run.run_id}",
                group=run.experiment,
                job_type=run.method,
                tags=[run.method, run.model.name, run.data.display_name()],
                config=run.model_dump(mode="json") | {"config_hash": run.config_hash()},
                mode=mode,
                dir=folder,
                reinit="finish_previous",
                **({"settings": wandb.Settings(init_timeout=INIT_TIMEOUT)} if online else {}),
            )
        # Each family of curves against its own x axis, not W&B's log counter (_step).
        wb.define_metric(STEP_KEY)
        wb.define_metric(f"{STEP_PREFIX}*", step_metric=STEP_KEY)
        wb.define_metric(EPOCH_KEY)
        wb.define_metric(f"{EPOCH_PREFIX}*", step_metric=EPOCH_KEY)
        return wb

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
        """A logged training step's statistics (train/*), against the optimiser step (train/step)."""
        self.log({f"{STEP_PREFIX}{k}": v for k, v in stats.items()} | {STEP_KEY: step})

    def log_epoch(self, epoch: int, metrics: dict) -> None:
        """The per-epoch probe (epoch/*), against the epoch."""
        self.log({f"{EPOCH_PREFIX}{k}": v for k, v in metrics.items()} | {EPOCH_KEY: epoch})

    def note_lr(self, lr: float, tuning_key: str | None = None) -> None:
        """The lr the run trains at (tuned, searched or train.lr) and its decision's key, in the run's
        config: what W&B filters and groups by."""
        if self.wb is None:
            return
        try:
            self.wb.config.update({"lr": lr, "tuning_key": tuning_key}, allow_val_change=True)
        except Exception as err:  # noqa: BLE001
            self._fail("config", err)

    def log_convergence(self, history: list[dict]) -> None:
        """The run's convergence curves (the per-epoch probe) as one figure, logged as an image."""
        if self.wb is None or not history:
            return
        try:
            import wandb

            png = convergence_png(history)
            if png is not None:
                from PIL import Image

                self.wb.log({f"{FIGURE_PREFIX}convergence": wandb.Image(Image.open(io.BytesIO(png)),
                                                                         caption="validation accuracy per epoch")})
        except Exception as err:  # noqa: BLE001
            self._fail("figure", err)

    def log_weights(self, path: str | os.PathLike, name: str) -> None:
        """With tracking.log_model: the final weights file as a W&B model artifact."""
        if self.wb is None or not self.log_model:
            return
        try:
            import wandb

            artifact = wandb.Artifact(name, type=MODEL_ARTIFACT_TYPE, metadata={"config_hash": self.wb.config.get("config_hash")})
            artifact.add_file(str(path))
            self.wb.log_artifact(artifact)
        except Exception as err:  # noqa: BLE001
            self._fail("model artifact", err)

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
        """`summary`: grporm.records.schema's RunRecord.summary() (final/* metrics and the status)."""
        if self.wb is None:
            return
        try:
            self.wb.summary.update(summary)
            self.wb.finish(exit_code=exit_code)
        except Exception as err:  # noqa: BLE001
            self._fail("finish", err)
        self.wb = None


def artifact_name(run: RunConfig) -> str:
    """A W&B artifact name (letters, digits, - _ .) for the run's weights."""
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in f"{run.experiment}-{run.run_id}")[:128]


def convergence_png(history: list[dict]) -> bytes | None:
    """Validation curves per epoch (the probe's metrics in `history`, percent) as PNG bytes, or None
    without any. A bare Figure: no pyplot state, no display needed."""
    from matplotlib.figure import Figure

    names = [k for k in CURVES if any(isinstance(row.get(k), (int, float)) for row in history)]
    if not names:
        return None
    figure = Figure(figsize=(5, 3.2))
    ax = figure.subplots()
    for name in names:
        points = [(row["epoch"], 100 * row[name]) for row in history if isinstance(row.get(name), (int, float))]
        ax.plot(*zip(*points), marker="o", label=CURVES[name])
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation accuracy (%)")
    ax.legend()
    figure.tight_layout()
    out = io.BytesIO()
    figure.savefig(out, format="png", dpi=100)
    return out.getvalue()
