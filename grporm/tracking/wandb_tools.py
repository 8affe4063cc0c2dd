"""Weights & Biases beyond logging: read a project's runs into local records (cached), create a report
(dashboard) of the comparison, and upload offline runs. Every failure the user can fix is a one-line
GrpormError (exit code 2); ``wandb`` and ``wandb_workspaces`` are imported only when needed.

The cache is a results-like folder, ``results/.wandb_cache/<entity>__<project>/<experiment>/runs/<run_id>/``
with ``record.json``, ``history.csv`` and ``steps.csv`` rebuilt from W&B, so the report reads W&B runs
with the same code as local runs; a second report reads the cache and does not query (``--refresh``).
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable
from urllib.parse import urlparse

from grporm.errors import GrpormError, first_line
from grporm.records.schema import HEAD, HEADLINE_KNN, SR, SUMMARY_PREFIX, VAL_HEAD, Metrics, RunRecord, Timing
from grporm.records.storage import write_csv, write_json
from grporm.tracking.tracker import CONFIG_EXTRAS, EPOCH_PREFIX, STEP_KEY, STEP_PREFIX

CACHE_DIR = ".wandb_cache"
CACHE_MARKER = "query.json"
DEFAULT_BASE_URL = "https://api.wandb.ai"
TIMEOUT_SECONDS = 10
# what the dashboard plots: (title, W&B key), keys as grporm.tracking.tracker logs them
DASHBOARD_LINES = (("kNN@20 per epoch (val)", f"{EPOCH_PREFIX}{HEADLINE_KNN}"), ("SR per epoch (val)", f"{EPOCH_PREFIX}{SR}"),
                   ("val head top-1 per epoch", f"{EPOCH_PREFIX}{VAL_HEAD}"),
                   ("reward mean", f"{STEP_PREFIX}reward_mean"), ("clip fraction", f"{STEP_PREFIX}clip_frac"),
                   ("policy entropy", f"{STEP_PREFIX}entropy"), ("mean pi(y)", f"{STEP_PREFIX}pi_y"))
DASHBOARD_BARS = (("SR top-1 (test)", f"{SUMMARY_PREFIX}{SR}"), ("kNN@20 top-1 (test)", f"{SUMMARY_PREFIX}{HEADLINE_KNN}"),
                  ("head top-1 (test)", f"{SUMMARY_PREFIX}{HEAD}"))
GROUP_BY = ("config.experiment", "config.method")  # the tables' comparison: experiment x method


def parse_project(text: str) -> tuple[str, str]:
    parts = str(text).strip().split("/")
    if len(parts) != 2 or not all(parts):
        raise GrpormError(f"W&B project must be ENTITY/PROJECT (e.g. my-team/grporm), not {text!r}")
    return parts[0], parts[1]


def offline_reason(base_url: str | None = None, timeout: float = TIMEOUT_SECONDS) -> str | None:
    """Why W&B cannot be reached, or None: WANDB_MODE says offline/disabled, or no TCP connection to
    the API host (checked up front, because the W&B client retries for minutes)."""
    mode = os.environ.get("WANDB_MODE", "").strip().lower()
    if mode in ("offline", "disabled", "dryrun"):
        return f"W&B is switched off here (WANDB_MODE={mode}); unset WANDB_MODE to go online"
    url = urlparse(base_url or os.environ.get("WANDB_BASE_URL") or DEFAULT_BASE_URL)
    host, port = url.hostname or "", url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as err:
        return f"W&B is unreachable ({host}:{port}: {err.strerror or type(err).__name__})"


def _status(state: str, summary: dict) -> tuple[str, str | None]:
    said = summary.get("status")
    if state == "running":
        return "running", None
    if state in ("failed", "crashed", "killed") or said == "failed":
        return "failed", f"W&B run state {state!r}" + (f", status {said!r}" if said else "")
    if state == "finished" and said in (None, "finished"):
        return "finished", None
    return str(said or state), None


def _config_hash(config: dict) -> str:
    """The same hash as a local record (grporm.config), so a run read from W&B and its local record are
    recognised as one run (runs that did not log theirs); '' when the config no longer validates (then
    it cannot be matched)."""
    try:
        from grporm.config import RunConfig

        return RunConfig.from_stored(config).config_hash()
    except Exception:  # noqa: BLE001 - an old or foreign config: keep the run, without a hash
        return ""


def _dataset_name(data: dict) -> str | None:
    """The data set as the local record names it (DataConfig.display_name), from the logged config."""
    try:
        from grporm.config import DataConfig

        return DataConfig.model_validate(data).display_name()
    except Exception:  # noqa: BLE001
        return data.get("label") or data.get("name")


def record_from_wandb(run, entity_project: str = "") -> dict:
    """A record.json-shaped dict from a W&B public-API run (``config`` as grporm.tracking.tracker logs it, the
    ``final/*`` summary as metrics). W&B holds no per-run timing except the runtime, no env beyond
    its own metadata: those fields stay empty rather than invented."""
    logged = dict(run.config or {})
    config = {k: v for k, v in logged.items() if k not in CONFIG_EXTRAS}  # what grporm.tracking.tracker adds to the RunConfig
    summary = dict(getattr(run.summary, "_json_dict", None) or run.summary or {})
    status, error = _status(str(run.state), summary)
    meta = dict(getattr(run, "metadata", None) or {})
    data, model = config.get("data") or {}, config.get("model") or {}
    # built unvalidated: a W&B run may hold anything; the analysis judges the record when it reads it back
    return RunRecord.model_construct(
        run_id=str(config.get("run_id") or str(run.name).split("/")[-1]),
        experiment=str(config.get("experiment") or getattr(run, "group", None) or "wandb"),
        status=status, error=error,
        method=config.get("method"), dataset=_dataset_name(data), backbone=model.get("name"),
        seed=config.get("seed"), axes=config.get("axes") or {},
        config_hash=str(logged.get("config_hash") or "") or _config_hash(config), config=config, lr=logged.get("lr"),
        metrics=Metrics.from_summary(summary),
        timing=Timing(total_seconds=summary.get("_runtime")),
        env={"python": meta.get("python"), "platform": meta.get("os"), "cpu_count": meta.get("cpu_count"),
             "cuda": meta.get("gpu"), "git_commit": (meta.get("git") or {}).get("commit")},
        source="wandb",
        wandb={"id": run.id, "path": f"{entity_project}/{run.id}", "url": getattr(run, "url", None)},
    ).to_json()


def history_from_wandb(rows: Iterable[dict]) -> tuple[list[dict], list[dict]]:
    """(history.csv rows, steps.csv rows) from W&B history rows. Epoch rows carry ``epoch`` and
    ``epoch/*``; step rows carry ``train/*`` with the optimiser step as ``train/step`` (runs logged
    before it was sent: W&B's ``_step``, a log counter)."""
    history, steps = [], []
    for row in rows:
        if row.get("epoch") is not None and any(k.startswith(EPOCH_PREFIX) for k in row):
            history.append({"epoch": row["epoch"],
                             **{k[len(EPOCH_PREFIX):]: v for k, v in row.items() if k.startswith(EPOCH_PREFIX)}})
        train = {k[len(STEP_PREFIX):]: v for k, v in row.items() if k.startswith(STEP_PREFIX)}
        if train:
            steps.append({"step": row.get("_step"), **train})
    return history, steps


def fetch_project(entity_project: str, results: str | Path, refresh: bool = False,
                  api_factory: Callable[[], Any] | None = None) -> Path:
    """The cache folder of ``entity_project`` under ``results/.wandb_cache/``, filled from the W&B public
    API unless already cached (``refresh`` re-queries). The cache is replaced only after a complete
    download, so an interrupted query never leaves half a project."""
    entity, project = parse_project(entity_project)
    cache = Path(results) / CACHE_DIR / f"{entity}__{project}"
    if (cache / CACHE_MARKER).is_file() and not refresh:
        return cache
    if api_factory is None:
        reason = offline_reason()
        if reason:
            raise GrpormError(f"cannot read W&B project {entity}/{project}: {reason}")

        def api_factory():
            import wandb

            return wandb.Api(timeout=TIMEOUT_SECONDS)
    staged = Path(tempfile.mkdtemp(prefix=".fetch-", dir=_ensure(cache.parent)))
    try:
        runs = list(api_factory().runs(f"{entity}/{project}"))
        for run in runs:
            record = record_from_wandb(run, f"{entity}/{project}")
            folder = staged / record["experiment"] / "runs" / record["run_id"]
            write_json(folder / "record.json", record)
            history, steps = history_from_wandb(run.scan_history())
            if history:
                write_csv(folder / "history.csv", history)
            if steps:
                write_csv(folder / "steps.csv", steps)
        write_json(staged / CACHE_MARKER, {"project": f"{entity}/{project}", "runs": len(runs)})
    except Exception as err:  # noqa: BLE001 - network, auth, missing project: one line for the user
        shutil.rmtree(staged, ignore_errors=True)
        if isinstance(err, GrpormError):
            raise
        raise GrpormError(f"cannot read W&B project {entity}/{project}: {first_line(err, with_type=True)}") from None
    shutil.rmtree(cache, ignore_errors=True)
    staged.rename(cache)
    return cache


def _ensure(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return folder


# -- dashboard -------------------------------------------------------------------------------------
def dashboard_blocks(wr, entity: str, project: str) -> list:
    """The report's blocks with ``wr`` = wandb_workspaces.reports.v2: runs grouped by experiment and
    method (as the tables), test accuracies as bars, convergence and GRPO statistics as lines."""
    def runsets():
        return [wr.Runset(entity=entity, project=project, name="finished runs", groupby=list(GROUP_BY),
                          filters="State = 'finished'")]

    return [
        wr.H1(text="GRPO-RM vs cross-entropy fine-tuning"),
        wr.P(text="Runs grouped by experiment and method, as in results/REPORT.md (which holds the "
                  "statistics: mean ± std over seeds and paired GRPO-RM − CE intervals)."),
        wr.H2(text="Test accuracy"),
        wr.PanelGrid(runsets=runsets(), panels=[wr.BarPlot(title=title, metrics=[key]) for title, key in DASHBOARD_BARS]),
        wr.H2(text="Convergence and training statistics"),
        wr.PanelGrid(runsets=runsets(), panels=[
            wr.LinePlot(title=title, x="epoch" if key.startswith(EPOCH_PREFIX) else STEP_KEY, y=[key])
            for title, key in DASHBOARD_LINES]),
    ]


def create_dashboard(entity_project: str) -> str:
    """Create (save) a W&B report for the project; returns its URL."""
    entity, project = parse_project(entity_project)
    try:
        import wandb_workspaces.reports.v2 as wr
    except ImportError:
        raise GrpormError("grporm dashboard needs the package wandb-workspaces: "
                          "pip install 'grporm[dashboard]' (or pip install wandb-workspaces)") from None
    reason = offline_reason()
    if reason:
        raise GrpormError(f"cannot create a W&B report: {reason}")
    try:
        report = wr.Report(entity=entity, project=project, title="GRPO-RM vs CE",
                           description="Created by `grporm dashboard`.", blocks=dashboard_blocks(wr, entity, project))
        report.save()
        return str(report.url)
    except Exception as err:  # noqa: BLE001
        raise GrpormError(f"cannot create a W&B report in {entity}/{project}: {first_line(err, with_type=True)}") from None


# -- sync ------------------------------------------------------------------------------------------
def wandb_folder() -> Path:
    """Where our offline runs are: grporm.tracking.tracker passes dir=$WANDB_DIR (default '.'), and W&B
    writes its runs into a ``wandb/`` folder there."""
    return Path(os.environ.get("WANDB_DIR") or ".") / "wandb"


def offline_runs(results: str | Path | None = None, folder: Path | None = None) -> list[Path]:
    """Offline run folders (``offline-run-*``) under the W&B folder, plus those named by the records
    under ``results`` (record["wandb"]["dir"] is the run's files/ folder), not yet synced."""
    found = set((folder or wandb_folder()).glob("offline-run-*")) if (folder or wandb_folder()).is_dir() else set()
    if results is not None and Path(results).is_dir():
        for path in Path(results).glob("*/runs/*/record.json"):
            try:
                where = (json.loads(path.read_text()).get("wandb") or {}).get("dir")
            except (OSError, ValueError, AttributeError):
                continue
            run_folder = Path(where).parent if where else None
            if run_folder is not None and run_folder.name.startswith("offline-run-"):
                found.add(run_folder)
    return sorted(p for p in found if p.is_dir() and not any(p.glob("*.wandb.synced")))


def wandb_executable() -> str:
    beside = Path(sys.executable).parent / "wandb"
    found = str(beside) if beside.is_file() else shutil.which("wandb")
    if not found:
        raise GrpormError("the wandb command is not installed: pip install wandb")
    return found


def sync_command(folders: list[Path]) -> list[str]:
    return [wandb_executable(), "sync", *map(str, folders)]


def sync(folders: list[Path], run: Callable = subprocess.run) -> int:
    """``wandb sync`` over ``folders``; returns its exit code."""
    return run(sync_command(folders), check=False).returncode
