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

import os
import socket
import sys
import threading
import warnings
from urllib.parse import urlparse

from grporm.config import RunConfig

PROBE_SECONDS = 5.0  # a reachable server answers a TCP connection well within this
INIT_TIMEOUT = 15.0  # seconds W&B may take to start a run online (its default is 90)
ENV_MODES = {"dryrun": "offline", "run": "online"}  # W&B's older names for its modes
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

STEP_PREFIX, EPOCH_PREFIX = "train/", "epoch/"  # W&B history keys; grporm.wandb_tools reads them back


class Tracker:
    """Logs to W&B (offline by default). Any W&B failure disables it with one warning."""

    def __init__(self, run: RunConfig, enabled: bool = True):
        """enabled=False: a silent tracker (DDP ranks other than 0, so one run is one W&B run)."""
        self.wb = None
        mode, decided = resolve_mode(run.tracking.mode) if enabled else ("disabled", "rank")
        self.info: dict = {"mode": mode, "mode_from": decided}
        if mode == "disabled":
            return
        mode, why = online_or_offline(mode)
        if why is not None:
            self.info.update(mode=mode, fallback=why)
        try:
            self.wb = self._start(run, mode)
        except Exception as err:  # noqa: BLE001 - tracking must never stop a run
            if mode == "offline":
                self._fail("start", err)
                return
            _say_once(f"warning: W&B online failed to start ({type(err).__name__}); runs log offline instead "
                      "(upload them later with grporm sync)")
            self.info.update(mode="offline", fallback=f"start failed: {type(err).__name__}: {err}")
            try:
                self.wb = self._start(run, "offline")
            except Exception as again:  # noqa: BLE001
                self._fail("start", again)
                return
        self.info.update(id=self.wb.id, dir=os.path.abspath(self.wb.dir), url=self.wb.url)

    @staticmethod
    def _start(run: RunConfig, mode: str):
        import wandb

        os.environ.setdefault("WANDB_SILENT", "true")
        online = mode != "offline"
        return wandb.init(
            project=run.tracking.project,
            entity=run.tracking.entity,
            name=f"{run.experiment}/{run.run_id}",
            group=run.experiment,
            job_type=run.method,
            tags=[run.method, run.model.name, run.data.name],
            config=run.model_dump(mode="json"),
            mode=mode,
            dir=os.path.abspath(os.environ.get("WANDB_DIR", ".")),  # absolute: the record must find it
            reinit="finish_previous",
            **({"settings": wandb.Settings(init_timeout=INIT_TIMEOUT)} if online else {}),
        )

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
