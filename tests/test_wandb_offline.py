"""What a run sends to W&B, proven from W&B's own offline file (run-<id>.wandb), not from our calls.

The file is W&B's transaction log: a 7-byte header (':W&B', magic 0xBEE1, version 0), then 32 KiB
blocks of LevelDB log records (crc32 of type + data, length, type FULL/FIRST/MIDDLE/LAST; a block
tail shorter than a record header is zero padding), each payload one protobuf
`wandb.proto.wandb_internal_pb2.Record`. The installed wandb (0.31) reads and writes that log in
its Go core (wandb-core) and no longer ships the Python `DataStore`, so `read_records` below follows
the same format, checks every checksum, and leaves the decoding to wandb's own protobuf classes.
"""
from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import pandas as pd
import pytest

from grporm.tracking.tracker import CONFIG_EXTRAS, EPOCH_KEY, EPOCH_PREFIX, FIGURE_PREFIX, STEP_KEY, STEP_PREFIX

from tiny_runs import RUN_ID, invoke, record, run_folder, write_experiment

wandb = pytest.importorskip("wandb")
from wandb.proto import wandb_internal_pb2 as pb  # noqa: E402

HEADER = struct.Struct("<4sHB")  # ident, magic, version
CHUNK = struct.Struct("<IHB")  # crc32, length, type
BLOCK = 32768
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def read_records(path: Path) -> list[pb.Record]:
    data = path.read_bytes()
    assert HEADER.unpack_from(data) == (b":W&B", 0xBEE1, 0), "not a W&B transaction log"
    records, pending, pos = [], None, HEADER.size
    while pos + CHUNK.size <= len(data):
        if BLOCK - pos % BLOCK < CHUNK.size:  # no room for a chunk header: the rest of the block is padding
            pos += BLOCK - pos % BLOCK
            continue
        crc, length, kind = CHUNK.unpack_from(data, pos)
        if (crc, length, kind) == (0, 0, 0):  # zero padding to the end of the block
            pos += BLOCK - pos % BLOCK
            continue
        payload = data[pos + CHUNK.size: pos + CHUNK.size + length]
        assert zlib.crc32(bytes([kind]) + payload) == crc, f"bad checksum at byte {pos}"
        pos += CHUNK.size + length
        if kind == FULL:
            records.append(payload)
        elif kind == FIRST:
            pending = payload
        elif kind == MIDDLE:
            pending += payload
        elif kind == LAST:
            records.append(pending + payload)
            pending = None
    out = []
    for raw in records:
        message = pb.Record()
        message.ParseFromString(raw)
        out.append(message)
    return out


def items(updates) -> dict:
    """HistoryItem / ConfigItem / SummaryItem list -> {key: value}, nested keys joined by '/'."""
    return {(u.key or "/".join(u.nested_key)): json.loads(u.value_json) for u in updates}


def read_run(files_folder: Path) -> dict[str, list]:
    """The records of the one offline run whose files/ folder is `files_folder`, by record type."""
    files = list(Path(files_folder).parent.glob("run-*.wandb"))
    assert len(files) == 1, files
    by_type: dict[str, list] = {}
    for message in read_records(files[0]):
        by_type.setdefault(message.WhichOneof("record_type"), []).append(message)
    return by_type


def logged_config(by_type) -> dict:
    config = items(by_type["run"][0].run.config.update)
    for m in by_type.get("config", []):  # later config updates, in order
        config.update(items(m.config.update))
    config.pop("_wandb", None)
    return config


@pytest.fixture(scope="module")
def offline_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("wandb_run")
    write_experiment(folder, train={"epochs": 2}, tracking={"mode": "offline", "project": "grporm-test"})
    mp = pytest.MonkeyPatch()
    mp.delenv("WANDB_DIR", raising=False)  # the default: the run's files beside its record
    try:
        result = invoke(folder)
        wandb.teardown()  # stop W&B's service process: everything it holds is on disk
    finally:
        mp.undo()
    assert result.exit_code == 0, result.output
    rec = record(folder)
    assert rec["wandb"]["mode"] == "offline", rec["wandb"]
    return folder, rec, read_run(rec["wandb"]["dir"])


def test_run_files_sit_in_the_run_folder(offline_run):
    folder, rec, _ = offline_run
    assert Path(rec["wandb"]["dir"]).is_relative_to(run_folder(folder) / "wandb")
    assert not (folder / "wandb").exists()  # nothing in the working directory


def test_run_identity_config_tags_and_group(offline_run):
    folder, rec, by_type = offline_run
    (run,) = [m.run for m in by_type["run"]]
    assert run.run_id == rec["wandb"]["id"] and run.project == "grporm-test"
    assert run.display_name == f"tiny/{RUN_ID}" and run.run_group == "tiny" and run.job_type == "grpo_rm"
    assert list(run.tags) == ["grpo_rm", "test_vit", "digits"]
    config = logged_config(by_type)
    extras = {k: config.pop(k) for k in CONFIG_EXTRAS}
    assert config == rec["config"]  # every section, every value
    assert extras == {"config_hash": rec["config_hash"], "lr": rec["lr"], "tuning_key": None}  # no decision: train.lr
    assert [m.exit.exit_code for m in by_type["exit"]] == [0]  # the run was finished, not cut off


def test_curves_have_their_own_x_axes(offline_run):
    _, _, by_type = offline_run
    metrics = {(m.metric.name or m.metric.glob_name): m.metric.step_metric for m in by_type["metric"]}
    assert metrics[f"{STEP_PREFIX}*"] == STEP_KEY and metrics[f"{EPOCH_PREFIX}*"] == EPOCH_KEY
    assert {STEP_KEY, EPOCH_KEY} <= set(metrics)


def test_the_convergence_figure_is_logged_as_media(offline_run):
    folder, rec, by_type = offline_run
    rows = [items(m.history.item) for m in by_type["history"]]
    key = f"{FIGURE_PREFIX}convergence/"  # a media value is logged as nested keys
    (image,) = [{k[len(key):]: v for k, v in r.items() if k.startswith(key)} for r in rows if f"{key}_type" in r]
    assert image["_type"] == "image-file" and image["format"] == "png"
    assert (Path(rec["wandb"]["dir"]) / image["path"]).stat().st_size > 1000  # a drawn figure, in the run's files


def test_history_per_step_and_per_epoch_match_the_local_files(offline_run):
    folder, rec, by_type = offline_run
    rows = [items(m.history.item) for m in by_type["history"]]
    steps = pd.read_csv(run_folder(folder) / "steps.csv")
    logged_steps = [r for r in rows if any(k.startswith("train/") for k in r)]
    assert len(logged_steps) == len(steps) == 2 * 5  # 2 epochs x 5 steps, log_every 1
    for row, (_, local) in zip(logged_steps, steps.iterrows()):
        train = {k[len("train/"):]: v for k, v in row.items() if k.startswith("train/")}
        assert {"loss", "reward_mean", "clip_frac", "entropy", "pi_y", "lr", "step"} <= set(train)  # step: the optimiser's
        assert set(train) <= set(local.index)
        assert train == pytest.approx({k: float(local[k]) for k in train}, rel=1e-6, abs=1e-12)

    history = pd.read_csv(run_folder(folder) / "history.csv")
    logged_epochs = [r for r in rows if any(k.startswith("epoch/") for k in r)]
    assert [r["epoch"] for r in logged_epochs] == history["epoch"].tolist() == [0, 1, 2]
    for row, (_, local) in zip(logged_epochs, history.iterrows()):
        epoch = {k[len("epoch/"):]: v for k, v in row.items() if k.startswith("epoch/")}
        assert set(epoch) >= {"knn20_top1", "sr_top1", "val_head_top1"}
        assert epoch == pytest.approx({k: float(local[k]) for k in epoch}, rel=1e-6)


def test_summary_holds_the_final_metrics_of_the_record(offline_run):
    folder, rec, by_type = offline_run
    summary: dict = {}
    for m in by_type["summary"]:  # updates in order: the last value of each key stands
        summary.update(items(m.summary.update))
    final = {k[len("final/"):]: v for k, v in summary.items() if k.startswith("final/")}
    metrics = rec["metrics"]
    expected = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
    expected |= {f"knn{k}_top1": v for k, v in metrics["knn_top1"].items()}
    assert final == pytest.approx(expected, rel=1e-6) and {"sr_top1", "head_top1", "ece", "knn5_top1"} <= set(final)
    assert summary["status"] == "finished" == rec["status"]


def _sections(run_set) -> list[tuple]:
    """Every (family, metric, condition, severity, value) the report builds its sections from, except cost
    (W&B keeps no timing but its runtime)."""
    tidy = run_set.metrics
    tidy = tidy[tidy["family"] != "cost"]
    return sorted(tidy[["run_id", "family", "metric", "condition", "severity", "value"]].itertuples(index=False, name=None))


def test_every_section_goes_to_wandb_and_comes_back(tmp_path, monkeypatch):
    """A run with clean, OOD (per corruption and severity, and the clean subset), transfer, imbalance and one
    with segmentation metrics: their summaries written by the Tracker into a real offline .wandb file, read
    back from that file, give the report the same section rows as the local records."""
    from types import SimpleNamespace

    from grporm.analysis.records import load_runs
    from grporm.config import RunConfig
    from grporm.records.schema import Metrics, RunRecord, SegScores
    from grporm.tracking.tracker import Tracker
    from grporm.tracking.wandb_tools import record_from_wandb

    classification = Metrics(
        head_top1=0.7, ece=0.05, sr_top1=0.8, knn_top1={5: 0.55, 20: 0.6},
        ood={c: {str(s): {"head_top1": 0.7 - 0.05 * s, "sr_top1": 0.8 - 0.05 * s, "knn20_top1": None}
                 for s in (1, 2, 5)} for c in ("contrast", "gaussian_noise")},
        ood_clean={"head_top1": 0.71, "sr_top1": 0.81, "knn20_top1": 0.61},
        transfer={"mnist": {"head_top1": 0.3, "sr_top1": 0.4, "knn20_top1": 0.35}},
        imbalance={p: {"overall": 0.5, "many": 0.8, "medium": 0.5, "few": 0.1} for p in ("head", "sr", "knn20")})
    segmentation = Metrics(seg=SegScores(0.42, 0.88), per_class={"iou": [0.9, 0.1]})
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    local, remote = tmp_path / "local", tmp_path / "remote"
    for seed, metrics in enumerate((classification, segmentation)):
        run = RunConfig(method="ce", seed=seed, experiment="e", run_id=f"r{seed}",
                        tracking={"mode": "offline", "project": "grporm-test"})
        record = RunRecord(run_id=run.run_id, experiment="e", status="finished", method="ce", dataset="d",
                           backbone="b", seed=seed, config_hash=f"h{seed}", metrics=metrics)
        tracker = Tracker(run)
        assert tracker.wb is not None, tracker.info
        folder = Path(tracker.info["dir"]).parent
        tracker.finish(record.summary())
        wandb.teardown()
        summary: dict = {}
        for message in read_records(next(folder.glob("run-*.wandb"))):
            if message.WhichOneof("record_type") == "summary":
                summary.update(items(message.summary.update))
        fake = SimpleNamespace(id=f"wb{seed}", name=f"e/{run.run_id}", state="finished", summary=summary,
                               config={"experiment": "e", "run_id": run.run_id, "method": "ce", "seed": seed,
                                       "data": {"name": "d"}, "model": {"name": "b"}})
        for root, data in ((local, record.to_json()), (remote, record_from_wandb(fake))):
            (root / "e" / "runs" / run.run_id).mkdir(parents=True)
            (root / "e" / "runs" / run.run_id / "record.json").write_text(json.dumps(data))
    from_local, from_wandb = load_runs(local), load_runs(remote)
    assert not from_local.excluded and not from_wandb.excluded
    families = {row[1] for row in _sections(from_local)}
    assert families == {"clean", "ood", "transfer", "imbalance", "seg"}
    assert _sections(from_wandb) == _sections(from_local)  # JSON keeps floats exact
    assert len(_sections(from_local)) == 5 + 2 * 3 * 2 + 3 + 12 + 2  # clean, ood (no kNN), transfer, imbalance, seg
    assert Metrics.from_json(json.loads((remote / "e/runs/r0/record.json").read_text())["metrics"]).ood_clean \
        == classification.ood_clean


def test_tuned_lr_and_key_in_config_model_artifact_and_wandb_dir(tmp_path, monkeypatch):
    """The calls a tuned run makes, on a Tracker of its own: lr and decision key in the config, the final
    weights as a model artifact (tracking.log_model), files under $WANDB_DIR when it is set."""
    from grporm.config import RunConfig
    from grporm.tracking.tracker import MODEL_ARTIFACT_TYPE, Tracker

    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "elsewhere"))
    run = RunConfig(method="ce", experiment="e", run_id="r0", data={"name": "imagefolder", "root": str(tmp_path / "flowers")},
                    tracking={"mode": "offline", "project": "grporm-test", "log_model": True})
    weights = tmp_path / "model.pt"
    weights.write_bytes(b"weights")
    tracker = Tracker(run, folder=tmp_path / "results")
    assert tracker.wb is not None, tracker.info
    tracker.note_lr(0.003, "abc123")
    tracker.log_weights(weights, "e-r0")
    tracker.finish({"status": "finished"})
    wandb.teardown()
    assert Path(tracker.info["dir"]).is_relative_to(tmp_path / "elsewhere") and not (tmp_path / "results").exists()
    by_type = read_run(tracker.info["dir"])
    assert list(by_type["run"][0].run.tags) == ["ce", run.model.name, "flowers"]  # the folder's name, not imagefolder
    config = logged_config(by_type)
    assert (config["lr"], config["tuning_key"], config["config_hash"]) == (0.003, "abc123", run.config_hash())
    (artifact,) = [m.artifact for m in by_type["artifact"]]
    assert artifact.type == MODEL_ARTIFACT_TYPE and artifact.name == "e-r0"
    assert [e.path for e in artifact.manifest.contents] == ["model.pt"]


def test_no_model_artifact_by_default(tmp_path, monkeypatch):
    from grporm.config import RunConfig
    from grporm.tracking.tracker import Tracker

    monkeypatch.delenv("WANDB_DIR", raising=False)
    run = RunConfig(experiment="e", run_id="r0", tracking={"mode": "offline", "project": "grporm-test"})
    weights = tmp_path / "model.pt"
    weights.write_bytes(b"weights")
    tracker = Tracker(run, folder=tmp_path)
    tracker.log_weights(weights, "e-r0")
    tracker.finish({"status": "finished"})
    wandb.teardown()
    assert "artifact" not in read_run(tracker.info["dir"])


def test_a_run_read_back_from_wandb_keeps_hash_lr_and_data_set_name():
    """What the tracker adds to the config (hash, lr, tuning key) is read back into the record's own fields,
    not left in its config, where it would stop the config from validating."""
    from types import SimpleNamespace

    from grporm.config import RunConfig
    from grporm.tracking.wandb_tools import record_from_wandb

    run = RunConfig(method="ce", experiment="e", run_id="r0", data={"name": "imagefolder", "root": "/data/flowers"})
    config = run.model_dump(mode="json") | {"config_hash": run.config_hash(), "lr": 0.003, "tuning_key": "abc123"}
    fake = SimpleNamespace(id="wb0", name="e/r0", state="finished", summary={"status": "finished"}, config=config)
    record = record_from_wandb(fake, "team/proj")
    assert record["config_hash"] == run.config_hash() and record["lr"] == 0.003
    assert record["config"] == run.model_dump(mode="json") and record["dataset"] == "flowers"
