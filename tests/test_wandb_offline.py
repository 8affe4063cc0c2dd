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


@pytest.fixture(scope="module")
def offline_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("wandb_run")
    write_experiment(folder, train={"epochs": 2}, tracking={"mode": "offline", "project": "grporm-test"})
    mp = pytest.MonkeyPatch()
    mp.setenv("WANDB_DIR", str(folder))
    try:
        result = invoke(folder)
        wandb.teardown()  # stop W&B's service process: everything it holds is on disk
    finally:
        mp.undo()
    assert result.exit_code == 0, result.output
    rec = record(folder)
    files = list(Path(rec["wandb"]["dir"]).parent.glob("run-*.wandb"))
    assert rec["wandb"]["mode"] == "offline" and len(files) == 1, rec["wandb"]
    by_type: dict[str, list] = {}
    for message in read_records(files[0]):
        by_type.setdefault(message.WhichOneof("record_type"), []).append(message)
    return folder, rec, by_type


def test_run_identity_config_tags_and_group(offline_run):
    folder, rec, by_type = offline_run
    (run,) = [m.run for m in by_type["run"]]
    assert run.run_id == rec["wandb"]["id"] and run.project == "grporm-test"
    assert run.display_name == f"tiny/{RUN_ID}" and run.run_group == "tiny" and run.job_type == "grpo_rm"
    assert list(run.tags) == ["grpo_rm", "test_vit", "digits"]
    config = items(run.config.update)
    for m in by_type.get("config", []):  # later config updates, if any
        config.update(items(m.config.update))
    config.pop("_wandb", None)
    assert config == rec["config"]  # every section, every value
    assert [m.exit.exit_code for m in by_type["exit"]] == [0]  # the run was finished, not cut off


def test_history_per_step_and_per_epoch_match_the_local_files(offline_run):
    folder, rec, by_type = offline_run
    rows = [items(m.history.item) for m in by_type["history"]]
    steps = pd.read_csv(run_folder(folder) / "steps.csv")
    logged_steps = [r for r in rows if any(k.startswith("train/") for k in r)]
    assert len(logged_steps) == len(steps) == 2 * 5  # 2 epochs x 5 steps, log_every 1
    for row, (_, local) in zip(logged_steps, steps.iterrows()):
        train = {k[len("train/"):]: v for k, v in row.items() if k.startswith("train/")}
        assert {"loss", "reward_mean", "clip_frac", "entropy", "pi_y", "lr"} <= set(train)
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
