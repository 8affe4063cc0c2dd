"""`grporm run --until-decided` (grporm/plan/sequential_runner.py): which runs each look adds, on a scripted
verdict (fast), and a tiny real experiment end to end (slow): a batch added, the stop at the cap,
resuming without redoing a run, two shards meeting at the barrier."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from grporm.errors import ConfigError, GrpormError
from grporm.plan.experiment import build_experiment
from grporm.plan.matrix import RunsFailed
from grporm.plan.sequential_runner import (
    State,
    _launch,
    design_of,
    extended_runs,
    matches,
    next_batch,
    refuse_options,
    replay,
    run_until_decided,
    seed_sequence,
    undecided,
    unit,
    write_looks,
)

from tiny_runs import BASE, RESULTS, env, invoke, record, run_folder

EXPERIMENT = {
    "name": "seq",
    "tune": {"seeds": [5, 6]},  # tuning seeds inside the range the search grows into: skipped
    "matrix": {"arm": [{"name": "pretrained", "method": "pretrained"}, {"name": "ce", "method": "ce"},
                       {"name": "a", "method": "grpo_rm"}, {"name": "b", "method": "grpo_rm", "grpo_rm.clip_eps": 0.3},
                       {"name": "anchor", "method": "grpo_rm", "grpo_rm.advantage_scale": "none"}],
               "seed": [2, 3, 4]},
    "verdict": {"control": "ce", "aa": ["anchor"], "max_seeds": 7, "batch": 2,
                "claims": [{"name": "SR", "measure": "sr"}, {"name": "kNN", "measure": "knn20", "primary": False}]},
}


def experiment(tmp_path: Path, **changes) -> tuple[Path, list]:
    raw = json.loads(json.dumps(EXPERIMENT))
    for key, value in changes.items():
        raw[key] = {**raw[key], **value} if isinstance(value, dict) else value
    path = tmp_path / "seq.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path, build_experiment(raw, str(path)).runs


def scripted(decided_at: dict[str, int]):
    """A verdict as a function of the runs: treatment X's cell is decided once it has decided_at[X]
    seeds; SR reads contradicted when every treatment cell is decided; the secondary kNN claim and the
    A/A arm never decide. The frame has the columns both the verdict's `undecided_treatments` and the
    fallback read."""
    def frame(runs) -> pd.DataFrame:
        seeds: dict[str, int] = {}
        for r in runs:
            seeds[unit(r)] = seeds.get(unit(r), 0) + 1
        lines = []
        for claim, primary in (("SR", True), ("kNN", False)):
            treated = {t: primary and seeds[t] >= decided_at[t] for t in ("a", "b")}
            word = "contradicted" if all(treated.values()) else "inconclusive"
            for who, role in (("a", "treatment"), ("b", "treatment"), ("anchor", "aa")):
                lines.append({"experiment": "seq", "claim": claim, "primary": primary, "dataset": "fashion_mnist",
                              "backbone": "tf_efficientnet_lite0", "axes": "", "treatment": who, "role": role,
                              "n": seeds[who], "decided": treated.get(who, False), "last_look": seeds[who] >= 7,
                              "claim_word": word, "word": "no difference"})
        return pd.DataFrame(lines)
    return frame


def ids(runs) -> set[str]:
    return {r.run_id for r in runs}


def by_arm(runs) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for r in runs:
        out.setdefault(unit(r), []).append(r.seed)
    return {k: sorted(v) for k, v in sorted(out.items())}


def test_new_seeds_follow_the_largest_and_skip_the_tuning_seeds():
    assert seed_sequence([4, 2, 3], [5, 6], 7) == (2, 3, 4, 7, 8, 9, 10)
    assert seed_sequence([100, 101, 102], [0, 1], 5) == (100, 101, 102, 103, 104)
    assert seed_sequence([2, 3], [0, 1], 2) == (2, 3)


def test_the_design_reads_the_cap_the_batch_and_the_primary_claims(tmp_path):
    path, runs = experiment(tmp_path)
    design = design_of(runs, str(path))
    assert (design.n0, design.batch, design.max_seeds, design.counts) == (3, 2, 7, (3, 5, 7))
    assert design.seeds == (2, 3, 4, 7, 8, 9, 10) and design.control == "ce" and design.primary == {"SR"}
    extended = extended_runs(path, [], design, None)
    assert ids(runs) <= ids(extended) and len(extended) == 5 * 7
    same = {r.run_id: r.config_hash() for r in extended}
    assert all(same[r.run_id] == r.config_hash() for r in runs)  # the design's runs keep their identity


@pytest.mark.parametrize("verdict, fragment", [
    ({"max_seeds": None}, "--until-decided needs a cap of seeds per cell: set verdict.max_seeds"),
    ({"max_seeds": 3}, "verdict.max_seeds 3 leaves no seed to add to the matrix's 3 per cell; raise it above 3"),
])
def test_a_search_without_room_to_grow_is_one_line(tmp_path, verdict, fragment):
    path, runs = experiment(tmp_path, verdict=verdict)
    with pytest.raises(ConfigError) as err:
        design_of(runs, str(path))
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_each_look_adds_seeds_to_the_undecided_treatments_and_the_control_only(tmp_path):
    path, runs = experiment(tmp_path)
    design = design_of(runs, str(path))
    extended = extended_runs(path, [], design, None)
    done = ids(runs)
    frame = scripted({"a": 5, "b": 99})

    def state():
        return replay(design, runs, extended, lambda r: r.run_id in done, frame, lambda r: None)

    first = state()  # the design is finished: look 0 says both treatments are undecided
    assert first.look == 1 and first.stopped == "" and ids(first.pending) == ids(first.batch)
    assert by_arm(first.batch) == {"a": [7, 8], "b": [7, 8], "ce": [7, 8]}  # not the A/A arm, not pretrained
    assert first.looks[0].undecided == ["a", "b"] and first.looks[0].claims == {"SR": "inconclusive"}
    done |= ids(first.batch[:1])
    assert ids(state().pending) == ids(first.batch[1:])  # a look half done: the same batch, less what finished
    done |= ids(first.batch)
    second = state()  # look 1: a is decided (5 seeds) and stops; b still needs seeds, and so the control
    assert second.look == 2 and by_arm(second.batch) == {"b": [9, 10], "ce": [9, 10]}
    assert second.looks[1].undecided == ["b"] and second.looks[1].decided_cells == ["SR / fashion_mnist/tf_efficientnet_lite0 / a"]
    done |= ids(second.batch)
    last = state()
    assert last.stopped == "cap" and not last.pending and len(last.looks) == 3
    assert last.looks[-1].seeds == {"fashion_mnist/tf_efficientnet_lite0": {"pretrained": 3, "ce": 7, "a": 5, "b": 7, "anchor": 3}}
    assert state().looks[-1].to_json() == last.looks[-1].to_json()  # the records alone decide: resuming replays it


def test_a_search_stops_when_every_primary_claim_is_decided(tmp_path):
    path, runs = experiment(tmp_path)
    design = design_of(runs, str(path))
    extended = extended_runs(path, [], design, None)
    done = ids(extended)  # even with every run of the cap there, the search stops where it decided
    state = replay(design, runs, extended, lambda r: r.run_id in done, scripted({"a": 5, "b": 5}), lambda r: None)
    assert state.stopped == "decided" and len(state.looks) == 2  # the secondary kNN claim never keeps it going
    assert state.looks[-1].claims == {"SR": "contradicted"} and by_arm(state.required)["b"] == [2, 3, 4, 7, 8]


def test_the_looks_log_is_written_whole(tmp_path):
    path, runs = experiment(tmp_path)
    design = design_of(runs, str(path))
    extended = extended_runs(path, [], design, None)
    state = replay(design, runs, extended, lambda r: r.run_id in ids(runs), scripted({"a": 5, "b": 99}),
                   lambda r: {"timing": {"total_seconds": 60.0}, "env": {"torch_threads": 2}})
    log = json.loads(write_looks(tmp_path / "results", state).read_text())
    assert log["design"] == {"n0": 3, "batch": 2, "max_seeds": 7, "seeds": [2, 3, 4, 7, 8, 9, 10], "control": "ce",
                             "counts": [3, 5, 7]}
    assert log["looks"][0]["cpu_minutes"] == 2.0 * len(runs)  # a minute of wall time on 2 threads each
    assert log["current_look"] == 1 and len(log["pending_runs"]) == 6 and log["stopped"] is None
    level = log["looks"][0]["level"]  # the α look 0 spends, where the verdict has a sequential procedure
    assert level is None or 0 < level < 0.05


def test_the_fallback_reads_inconclusive_claims_and_undecided_cells():
    frame = scripted({"a": 1, "b": 99})([r for r in build_experiment(EXPERIMENT, "x.yaml").runs])
    assert undecided(frame[frame["primary"]]) == {"b"}
    assert undecided(frame.iloc[0:0]) == set()


def test_a_treatment_with_an_axis_only_treatments_have_is_matched_by_it():
    runs = build_experiment({"matrix": {"arm": [{"name": "ce", "method": "ce"}, {"name": "g", "method": "grpo_rm"}],
                                        "grpo_rm.clip_eps": [0.2, 0.3]}}, "x.yaml").runs
    g3 = [r for r in runs if unit(r) == "g" and r.grpo_rm.clip_eps == 0.3]
    assert [r for r in runs if matches(r, "g, grpo_rm.clip_eps=0.3")] == g3 and not any(matches(r, "h") for r in runs)


@pytest.mark.parametrize("option, fix", [("force", "delete its folder"), ("sensitivity", "after the search"),
                                         ("only", "drop --only"), ("nproc", "drop --nproc"), ("shard", "--slurm tasks=N")])
def test_options_a_search_cannot_keep_are_one_line(option, fix):
    with pytest.raises(ConfigError, match=f"^--until-decided and --{option} do not go together: .*{fix}"):
        refuse_options({option: True})
    refuse_options({option: False})


def test_a_search_under_torchrun_is_refused(tmp_path, monkeypatch):
    path, _ = experiment(tmp_path)
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match="--nproc do not go together.*without torchrun"):
        run_until_decided(path, [], results=tmp_path / "r", checkpoints=tmp_path / "c", dry_run=True)


def test_next_batch_adds_nothing_past_the_cap(tmp_path):
    path, runs = experiment(tmp_path)
    design = design_of(runs, str(path))
    assert next_batch(extended_runs(path, [], design, None), ids(runs), {"a"}, design, 3) == []


def test_a_look_through_a_launcher_submits_the_batch_as_shards_and_waits(tmp_path, monkeypatch):
    from grporm.plan import requirements
    from grporm.process import launch
    path, runs = experiment(tmp_path)
    design = design_of(runs, str(path))
    state = State(design, look=1, batch=runs[:4], pending=runs[1:4])
    submitted = {}
    monkeypatch.setattr(requirements, "preflight", lambda exp: None)
    monkeypatch.setattr(launch, "submit", lambda *a, **k: submitted.update(args=a, kwargs=k) or ["job"])
    monkeypatch.setattr(launch, "wait", lambda jobs, echo: 0)
    _launch("local", [], state, ["run", str(path), "--until-decided"], tmp_path, lambda line: None)
    launcher, name, run_ids, selected, argv = submitted["args"][:5]
    assert (launcher, name, run_ids, selected) == ("local", "seq", [r.run_id for r in runs[:4]], [r.run_id for r in runs[1:4]])
    assert argv == ["run", str(path), "--until-decided", "--batch-only"]  # each task: its shard of this look, then stop
    monkeypatch.setattr(launch, "wait", lambda jobs, echo: 1)
    with pytest.raises(RunsFailed, match="1 of 1 task"):
        _launch("local", [], state, ["run"], tmp_path, lambda line: None)
    with pytest.raises(GrpormError, match="--launcher 'nope'"):
        _launch("nope", [], state, ["run"], tmp_path, lambda line: None)


# ---------------------------------------------------------------- end to end on tiny real runs
TINY = {**BASE, "train": {**BASE["train"], "epochs": 1},
        "matrix": {"arm": [{"name": "ce", "method": "ce"}, {"name": "grpo", "method": "grpo_rm"}], "seed": [0, 1]},
        "verdict": {"control": "ce", "max_seeds": 3, "batch": 1, "claims": [{"name": "SR", "measure": "sr"}]}}


def tiny(folder: Path, **verdict) -> None:
    config = json.loads(json.dumps(TINY))
    config["verdict"].update(verdict)
    (folder / "exp.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


def stamps(folder: Path) -> dict[str, str]:
    return {p.parent.name: json.loads(p.read_text())["finished_at"]
            for p in (folder / RESULTS / "tiny" / "runs").glob("*/record.json")}


@pytest.mark.slow
def test_until_decided_adds_a_batch_stops_at_the_cap_and_resumes_without_redoing_runs(tmp_path):
    tiny(tmp_path)
    assert invoke(tmp_path, "--dry-run", "--until-decided", "--force").exit_code == 2  # options it cannot keep: refused
    design = invoke(tmp_path)  # the matrix alone (a fixed design): look 0 of a search, already done
    assert design.exit_code == 0, design.output
    before = stamps(tmp_path)
    assert set(before) == {f"digits-test_vit-{m}-arm={a}-s{s}" for m, a in (("ce", "ce"), ("grpo_rm", "grpo")) for s in (0, 1)}

    result = invoke(tmp_path, "--until-decided")
    assert result.exit_code == 0, result.output
    log = json.loads((tmp_path / RESULTS / "tiny" / "looks.json").read_text())
    after = stamps(tmp_path)
    assert {k: after[k] for k in before} == before  # nothing of look 0 redone
    if log["looks"][0]["undecided"]:  # (2 seeds rarely decide a claim) look 1 added seed 2 to both arms, then the cap
        assert set(after) - set(before) == {"digits-test_vit-ce-arm=ce-s2", "digits-test_vit-grpo_rm-arm=grpo-s2"}
        assert len(log["looks"]) == 2 and log["looks"][1]["seeds_per_row"] == {"digits/test_vit": {"ce": 3, "grpo": 3}}
    assert log["stopped"] in ("cap", "decided") and log["pending_runs"] == []
    assert "look(s) at 2" in result.output and "CPU-minutes" in result.output and "seeds, digits/test_vit: ce" in result.output

    again = invoke(tmp_path, "--until-decided")  # a finished search: nothing runs, the summary again
    assert again.exit_code == 0 and "run 1 of" not in again.output and stamps(tmp_path) == after
    assert record(tmp_path, run_id="digits-test_vit-ce-arm=ce-s0")["status"] == "finished"


@pytest.mark.slow
def test_two_shards_meet_at_the_barrier_and_run_each_run_once(tmp_path):
    tiny(tmp_path, max_seeds=3)
    procs = [subprocess.Popen([sys.executable, "-m", "grporm", "run", "exp.yaml", "--until-decided", "--shard", f"{i}/2"],
                              cwd=tmp_path, env={**env(), "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for i in range(2)]
    outputs = [p.communicate(timeout=900)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    lines = [line.split("] ", 1)[1] if line.startswith("[shard ") else line for out in outputs for line in out.splitlines()]
    started = [line.split(": ", 1)[1].split()[0] for line in lines if line.startswith("run ") and " of " in line and ": " in line]
    assert len(started) == len(set(started)) and set(started) == set(stamps(tmp_path))  # every run once, by one shard
    log = json.loads((tmp_path / RESULTS / "tiny" / "looks.json").read_text())
    assert log["stopped"] in ("cap", "decided") and all(run_folder(tmp_path, r).exists() for r in started)
    assert all(os.path.getsize(run_folder(tmp_path, r) / "record.json") for r in started)
