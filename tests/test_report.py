"""The paper report: statistics, section tables (Markdown / LaTeX / CSV), figures, REPORT.md, W&B tools.

Built on fake records with the shapes the runner writes (plus the ood / transfer / imbalance / seg
sections other issues add); no training, no network.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from grporm.analysis.manifest import MANIFEST_NAME
from grporm.analysis.records import load_runs
from grporm.analysis.render import cell_text, latex_escape, table_csv, table_latex, table_markdown
from grporm.analysis.report import REPORT_NAME
from grporm.analysis.sections import SECTIONS, build_table, build_tables
from grporm.cli import app
from grporm.errors import GrpormError
from grporm.stats import paired_difference, summarize, t_interval
from grporm.tracking import wandb_tools

FM, CF, BB = "fashion_mnist", "cifar10", "tf_efficientnet_lite0"
CORRUPTIONS = ("gaussian_noise", "contrast")


def ood(base: float) -> dict:
    """Corrupted accuracy = base - 0.02 * severity (same for both corruptions); head missing (null)."""
    return {"ood": {c: {str(s): {"head_top1": None, "sr_top1": base - 0.02 * s, "knn20_top1": base - 0.03 * s}
                        for s in range(1, 6)} for c in CORRUPTIONS},
            "transfer": {"mnist": {"head_top1": base - 0.3, "sr_top1": base - 0.2, "knn20_top1": base - 0.25}}}


def imbalance(base: float) -> dict:
    return {"imbalance": {p: {"overall": base, "many": base + 0.1, "medium": base, "few": base - 0.2}
                          for p in ("head", "sr", "knn20")}}


CE_SR = (0.80, 0.82, 0.84)
GRPO_SR = (0.85, 0.86, 0.87)


@pytest.fixture(scope="module")
def results(write_run, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("report") / "results"
    for s in range(3):
        write_run(root, "main", f"fm-pre-s{s}", method="pretrained", seed=s, sr=0.70 + 0.01 * s)
        write_run(root, "main", f"fm-ce-s{s}", method="ce", seed=s, sr=CE_SR[s], head=CE_SR[s] + 0.01,
                  extra=ood(CE_SR[s]), history=[0.5, 0.6 + 0.01 * s, 0.7], steps=True)
        write_run(root, "main", f"fm-grpo-s{s}", method="grpo_rm", seed=s, sr=GRPO_SR[s], head=GRPO_SR[s] + 0.01,
                  extra=ood(GRPO_SR[s]), history=[0.5, 0.7, 0.8 + 0.01 * s], steps=True, train_seconds=12.0)
        write_run(root, "imb", f"imb-ce-s{s}", method="ce", seed=s, sr=0.6, extra=imbalance(0.6 + 0.01 * s),
                  imbalance_factor=100, axes={"data.imbalance_factor": 100})
        write_run(root, "imb", f"imb-grpo-s{s}", method="grpo_rm", seed=s, sr=0.65, extra=imbalance(0.65),
                  imbalance_factor=100, axes={"data.imbalance_factor": 100})
    for s in range(2):  # two seeds only: daggers
        write_run(root, "main", f"cf-ce-s{s}", dataset=CF, method="ce", seed=s, sr=0.5 + 0.02 * s)
        write_run(root, "main", f"cf-grpo-s{s}", dataset=CF, method="grpo_rm", seed=s, sr=0.53 + 0.02 * s)
        for eps in (0.1, 0.3):
            write_run(root, "ablation_clip", f"abl-eps{eps}-s{s}", method="grpo_rm", seed=s, sr=0.8 + eps / 10,
                      axes={"grpo_rm.clip_eps": eps})
    write_run(root, "seg", "seg-ce-s0", method="ce", seed=0, sr=None, knn20=None, extra={"seg": {"miou": 0.4, "pixel_acc": 0.8}})
    write_run(root, "seg", "seg-grpo-s0", method="grpo_rm", seed=0, sr=None, knn20=None,
              extra={"seg": {"miou": 0.45, "pixel_acc": 0.82}})
    # never averaged in: a failed run and a partial (still running / interrupted) one, with absurd numbers
    write_run(root, "main", "fm-grpo-s3", method="grpo_rm", seed=3, sr=0.01, status="failed")
    write_run(root, "main", "fm-ce-s3", method="ce", seed=3, sr=0.99, status="running")
    return root


@pytest.fixture(scope="module")
def report(results: Path, tmp_path_factory) -> Path:
    """A copy of the results with the report written once by `grporm report` (what `make report` runs)."""
    root = tmp_path_factory.mktemp("written") / "results"
    shutil.copytree(results, root)
    result = CliRunner().invoke(app, ["report", "--results", str(root)])
    assert result.exit_code == 0, result.output
    assert f"start at {root / REPORT_NAME}" in result.output
    return root


def tables(results: Path) -> dict:
    return {section.name: table for section, table in build_tables(load_runs(results))}


# -- statistics ------------------------------------------------------------------------------------
def test_summarize_hand_computed():
    cell = summarize([0.80, 0.82, 0.84])
    assert (cell.mean, cell.std, cell.n, cell.low, cell.high) == pytest.approx((0.82, 0.02, 3, 0.80, 0.84))
    assert not cell.few
    one = summarize([0.5, None, math.nan])  # missing values are not zeros
    assert one.mean == 0.5 and one.n == 1 and math.isnan(one.std) and one.few
    assert summarize([]).n == 0 and not summarize([]).few
    assert summarize([1.0, 2.0, 4.0]).std == pytest.approx(math.sqrt(7 / 3))


def test_paired_difference_hand_computed():
    # differences 0.05, 0.04, 0.03: mean 0.04, sd 0.01; t(0.975, df=2) = 4.302652729911275
    diff = paired_difference({0: 0.85, 1: 0.86, 2: 0.87, 5: 0.99}, {0: 0.80, 1: 0.82, 2: 0.84, 4: 0.10})
    half = 4.302652729911275 * 0.01 / math.sqrt(3)
    assert diff.seeds == (0, 1, 2)  # seeds 4 and 5 have no partner
    assert (diff.mean, diff.std, diff.n) == pytest.approx((0.04, 0.01, 3))
    assert (diff.ci_low, diff.ci_high) == pytest.approx((0.04 - half, 0.04 + half))
    two = paired_difference({0: 0.6, 1: 0.7}, {0: 0.5, 1: 0.5})  # 0.1, 0.2: sd = 0.0707, t(df=1) = 12.7062
    assert two.few and (two.ci_low, two.ci_high) == pytest.approx(
        (0.15 - 12.706204736174707 * math.sqrt(0.005) / math.sqrt(2), 0.15 + 12.706204736174707 * math.sqrt(0.005) / math.sqrt(2)))
    single = paired_difference({0: 0.6}, {0: 0.5, 1: 0.4})
    assert single.n == 1 and single.mean == pytest.approx(0.1) and math.isnan(single.ci_low)
    assert math.isnan(t_interval(0.1, math.nan, 1)[0])


# -- loading ---------------------------------------------------------------------------------------
def test_tidy_metrics_cover_every_family(results: Path):
    run_set = load_runs(results)
    reasons = {Path(p).parent.name: r for p, r in run_set.excluded}
    assert set(reasons) == {"fm-grpo-s3", "fm-ce-s3"}
    assert reasons["fm-grpo-s3"].startswith("failed: TrainingDiverged")
    long = run_set.metrics
    assert set(long["family"]) == {"clean", "cost", "ood", "transfer", "imbalance", "seg"}
    one = long[(long["run_id"] == "fm-ce-s1") & (long["family"] == "ood")]
    assert len(one) == 2 * 5 * 2  # corruptions x severities x (sr, knn20): null head values are dropped
    row = one[(one["condition"] == "contrast") & (one["severity"] == 3) & (one["metric"] == "sr_top1")]
    assert list(row["value"]) == [pytest.approx(0.82 - 0.06)]
    assert not ((long["run_id"] == "fm-pre-s0") & (long["metric"] == "train_seconds")).any()  # did not train
    abl = run_set.runs.set_index("run_id").loc["abl-eps0.3-s1"]
    assert abl["variant"] == "grpo_rm.clip_eps=0.3" and abl["grpo_rm.clip_eps"] == "0.3"  # axes as columns
    assert run_set.runs.set_index("run_id").loc["imb-ce-s0", "imbalance_factor"] == 100
    assert "grpo_rm.clip_eps" in long.columns


def test_malformed_section_excludes_the_run(write_run, tmp_path: Path):
    write_run(tmp_path, "main", "bad", method="ce", seed=0, sr=0.5, extra={"ood": {"noise": {"x": {"sr_top1": 0.4}}}})
    write_run(tmp_path, "main", "pct", method="ce", seed=1, sr=0.5, extra={"seg": {"miou": 45.0}})
    reasons = {Path(p).parent.name: r for p, r in load_runs(tmp_path).excluded}
    assert "severity 'x' is not an integer" in reasons["bad"]
    assert "outside [0, 1]" in reasons["pct"]


# -- tables ----------------------------------------------------------------------------------------
def test_classification_rows_stats_and_no_difference_rows(results: Path):
    table = tables(results)["classification"]
    assert [c.title for c in table.columns] == ["Head", "SR", "kNN@20"]
    rows = {(row.key[:3], row.method): row for row in table.rows}
    sr = [c.title for c in table.columns].index("SR")
    ce = rows[(("main", FM, BB), "ce")]
    assert ce.n_runs == 3 and ce.cells[sr].mean == pytest.approx(0.82) and ce.cells[sr].std == pytest.approx(0.02)
    assert ce.runs == tuple((f"fm-ce-s{s}", hashlib.sha256(f"fm-ce-s{s}".encode()).hexdigest()[:12]) for s in range(3))
    # the failed (sr 0.01) and running (sr 0.99) seeds are in no cell
    assert rows[(("main", FM, BB), "grpo_rm")].cells[sr].n == 3
    # method rows only: a difference from a control is the verdict's, never a table's
    assert [row.method for row in table.rows if row.key[:3] == ("main", FM, BB)] == ["pretrained", "ce", "grpo_rm"]
    assert not any(row.key[0] == "seg" for row in table.rows)  # no SR
    # no experiment name decides a table: `ablation_clip` is a classification experiment like any other
    assert {row.key[3] for row in table.rows if row.key[0] == "ablation_clip"} == {"grpo_rm.clip_eps=0.1", "grpo_rm.clip_eps=0.3"}
    # bold: the best mean per column among the methods of one comparison
    best_sr = {table.rows[r].method for r, c in table.best if c == sr and table.rows[r].key[:3] == ("main", FM, BB)}
    assert best_sr == {"grpo_rm"}


def test_markdown_cells_dagger_and_bold(results: Path):
    text = table_markdown(tables(results)["classification"])
    lines = text.splitlines()
    # the imbalanced runs (matrix axis data.imbalance_factor) are told apart by the Variant column
    assert lines[0] == "| Experiment | Dataset | Backbone | Variant | Method | Head | SR | kNN@20 | Seeds |"
    assert "| imb | fashion_mnist | tf_efficientnet_lite0 | data.imbalance_factor=100 | CE | — | 60.0 ± 0.0 | 58.0 ± 0.0 | 3 |" in lines
    assert "| main | fashion_mnist | tf_efficientnet_lite0 |  | CE | 83.0 ± 2.0 | 82.0 ± 2.0 | 80.0 ± 2.0 | 3 |" in lines
    assert "| main | fashion_mnist | tf_efficientnet_lite0 |  | GRPO-RM | **87.0 ± 1.0** | **86.0 ± 1.0** | **84.0 ± 1.0** | 3 |" in lines
    assert not any("Δ" in line for line in lines)
    cifar_ce = next(line for line in lines if "| cifar10 |" in line and "| CE |" in line)
    assert "51.0 ± 1.4†" in cifar_ce and cifar_ce.endswith("| 2 |")
    assert lines[-1].startswith("† fewer than 3 seeds")


def test_section_tables(results: Path):
    built = tables(results)
    ood = built["ood"]
    titles = [c.title for c in ood.columns]
    assert titles == ["SR clean", "SR mean", "SR s1", "SR s2", "SR s3", "SR s4", "SR s5",
                      "kNN@20 clean", "kNN@20 mean", "kNN@20 s1", "kNN@20 s2", "kNN@20 s3", "kNN@20 s4", "kNN@20 s5"]
    ce = next(row for row in ood.rows if row.method == "ce")
    assert ce.cells[titles.index("SR mean")].mean == pytest.approx(0.82 - 0.06)  # mean over severities 1..5
    assert ce.cells[titles.index("SR s5")].mean == pytest.approx(0.72)
    assert [c.title for c in built["transfer"].columns] == ["SR mnist", "kNN@20 mnist", "Head mnist"]
    assert [c.label for c in built["ood_corruptions"].columns][:2] == ["contrast", "gaussian_noise"]
    imb = built["imbalance"]
    assert imb.keys[3] == "imbalance_factor" and {row.key[3] for row in imb.rows} == {"100"}
    assert [c.label for c in imb.columns[:4]] == ["overall", "many", "medium", "few"]
    assert "many-shot = more than 100 training images, medium-shot = 20 to 100, few-shot = fewer than 20" in imb.legend
    assert "shot" not in built["classification"].legend
    few = next(row for row in imb.rows if row.method == "ce").cells[3]
    assert few.mean == pytest.approx(0.41)
    seg = built["segmentation"]
    assert [c.title for c in seg.columns] == ["mIoU", "Pixel acc."]
    assert [row.method for row in seg.rows] == ["ce", "grpo_rm"]
    assert "ablations" not in built  # no section chosen by an experiment's name
    cost = built["cost"]
    assert [c.title for c in cost.columns] == ["Train time (s)", "Wall time (s)", "Train images/s", "Peak memory (MB)"]
    assert any(row.key[0] == "ablation_clip" for row in cost.rows)  # cost covers every experiment
    train, mem = 0, [c.title for c in cost.columns].index("Peak memory (MB)")
    main_rows = [i for i, row in enumerate(cost.rows) if row.key[:2] == ("main", FM)]
    assert {cost.rows[i].method for i in main_rows if (i, train) in cost.best} == {"ce"}  # lower is better
    assert not any((i, mem) in cost.best for i in main_rows)  # all tied: nothing bold


def test_absent_sections_are_none(write_run, tmp_path: Path):
    write_run(tmp_path, "quick", "a", method="ce", seed=0, sr=0.5)
    built = {s.name: t for s, t in build_tables(load_runs(tmp_path))}
    assert built["classification"] is not None and built["cost"] is not None
    assert all(built[name] is None for name in ("ood", "transfer", "imbalance", "segmentation"))


@pytest.mark.parametrize("name", ["classification", "ood", "imbalance", "cost"])
def test_latex_is_a_balanced_booktabs_tabular(results: Path, name: str):
    table = tables(results)[name]
    tex = table_latex(table)
    assert tex.count("\\begin{tabular}") == tex.count("\\end{tabular}") == 1
    spec = re.search(r"\\begin\{tabular\}\{([lr]+)\}", tex).group(1)
    toprule, bottomrule = tex.index("\\toprule"), tex.index("\\bottomrule")
    assert toprule < tex.index("\\midrule") < bottomrule < tex.index("\\end{tabular}")
    assert tex.count("{") == tex.count("}")
    assert "\\textbf{" in tex
    body = tex[toprule:bottomrule].splitlines()[1:]
    for line in body:
        if line.startswith("\\midrule") or line.startswith("\\cmidrule"):
            continue
        cells = line.removesuffix(" \\\\").split(" & ")
        spans = sum(int(m) for m in re.findall(r"\\multicolumn\{(\d+)\}", line)) - len(re.findall(r"\\multicolumn", line))
        assert len(cells) + spans == len(spec), line
        assert line.endswith("\\\\")
    for first, last in re.findall(r"\\cmidrule\(lr\)\{(\d+)-(\d+)\}", tex):
        assert 1 <= int(first) <= int(last) <= len(spec)
    assert all(ch not in tex.split("\\begin{tabular}")[1] for ch in "±†Δ−")  # unicode only as macros
    assert "_" not in tex.replace("\\_", "")


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex not installed (structure checked above)")
def test_latex_compiles(results: Path, tmp_path: Path):
    body = "\n".join(table_latex(t) for t in tables(results).values() if t is not None)
    doc = "\\documentclass{article}\\usepackage{booktabs}\\usepackage[margin=5mm,paperwidth=90cm]{geometry}" \
          "\\begin{document}\n" + body + "\\end{document}\n"
    (tmp_path / "t.tex").write_text(doc)
    done = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "t.tex"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:]


def test_latex_escape_and_cells(write_run, tmp_path: Path):
    assert latex_escape("a_b & 50% #1") == "a\\_b \\& 50\\% \\#1"
    write_run(tmp_path, "q", "c", method="ce", seed=0, sr=0.5)
    write_run(tmp_path, "q", "g", method="grpo_rm", seed=0, sr=0.6)
    table = build_table(SECTIONS[0], load_runs(tmp_path))
    grpo = next(row for row in table.rows if row.method == "grpo_rm")
    assert cell_text(grpo.cells[0], table.columns[0], grpo.n_runs, latex=True) == "60.0"
    assert [row.method for row in table.rows] == ["ce", "grpo_rm"]


def test_csv_has_every_cell_with_provenance(results: Path):
    table = tables(results)["classification"]
    text = table_csv(table)
    header, *lines = text.splitlines()
    assert header.startswith("experiment,dataset,backbone,variant,method,column_group,column,")
    assert len(lines) == len(table.rows) * len(table.columns)
    line = next(row for row in lines if row.startswith(f"main,{FM},{BB},,ce,SR,"))
    assert "fm-ce-s0 fm-ce-s1 fm-ce-s2," in line and ",0.82," in line
    assert not any(",diff," in row for row in lines)


def test_convergence_curves_carry_wall_time(results: Path):
    from grporm.analysis.figures import convergence_curves

    runs = load_runs(results).runs
    curves = convergence_curves(runs[runs["experiment"] == "main"], None, ("experiment", "dataset", "backbone"))
    ce = curves[("main", FM, BB)]["ce"]
    assert list(ce["train_seconds"]) == pytest.approx([1.0, 5.0, 9.0])  # epoch * 4 + seed, mean over seeds 0..2
    assert list(ce["mean"]) == pytest.approx([0.5, 0.61, 0.7]) and ce.attrs == {"runs": 3, "method": "ce"}
    sr = convergence_curves(runs[runs["experiment"] == "main"], None, ("experiment", "dataset", "backbone"), "sr_top1")
    assert list(sr[("main", FM, BB)]["ce"]["mean"]) == pytest.approx([0.51, 0.62, 0.71])  # the SR column


# -- the report ------------------------------------------------------------------------------------
@pytest.mark.slow
def test_report_files(report: Path):
    text = (report / REPORT_NAME).read_text()
    for section in SECTIONS:
        assert f"## {section.title}" in text
    for name in ("classification", "ood", "ood_corruptions", "transfer", "imbalance", "segmentation", "cost"):
        for suffix in (".md", ".tex", ".csv"):
            path = report / "tables" / f"{name}{suffix}"
            assert path.stat().st_size > 0 and f"tables/{name}{suffix}" in text
    for stem in ("convergence_epochs", "convergence_time", "convergence_sr_epochs", "convergence_sr_time",
                 "ood_severity", "imbalance_shots", "training_stats"):
        png, pdf = report / "figures" / f"{stem}.png", report / "figures" / f"{stem}.pdf"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
        assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 1000
        assert f"(figures/{stem}.png)" in text
    # every section here has data: nothing is stubbed; the one experiment with a control gets its figure
    assert "skipped" not in text and "not drawn" not in text and not (report / "figures" / "ablations.png").exists()
    assert "(figures/forest_main.png)" in text and (report / "main" / "forest.png").exists()
    assert "- `main/runs/fm-grpo-s3/record.json`: failed: TrainingDiverged" in text
    assert "- `main/runs/fm-ce-s3/record.json`: status 'running'" in text
    assert f"main / {FM} / {BB} / GRPO-RM: `fm-grpo-s0` (`{hashlib.sha256(b'fm-grpo-s0').hexdigest()[:12]}`)" in text
    assert "| Python | 3.11.7 | all 25 |" in text and "| CPU | Fake CPU | all 25 |" in text
    assert str(report) not in text and "tmp" not in text  # no absolute path


@pytest.mark.slow
def test_report_computes_its_data_once(results: Path, tmp_path: Path, monkeypatch):
    """The verdict, the section tables and the tuning decisions are computed once per report
    (analysis.report_data.ReportData) and handed to every table, figure and table.md."""
    from grporm.analysis import report_data
    from grporm.analysis.report import report_all

    calls = {"comparisons": 0, "build_tables": 0, "decisions_of": 0}

    def counted(name):
        real = getattr(report_data, name)

        def call(*args, **kwargs):
            calls[name] += 1
            return real(*args, **kwargs)
        return call

    for name in calls:
        monkeypatch.setattr(report_data, name, counted(name))
    root = tmp_path / "results"
    shutil.copytree(results, root)
    report_all(root)
    assert calls == {"comparisons": 1, "build_tables": 1, "decisions_of": 1}


@pytest.mark.slow
def test_report_twice_gives_identical_files_and_drops_stale_ones(report: Path):
    def digest(root: Path) -> dict[str, str]:
        return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(root.rglob("*")) if p.is_file()}

    before = digest(report)
    assert "main/table.md" in before and "main/convergence.png" in before  # the per-experiment files too
    stale = report / "figures" / "old_figure.png"
    stale.write_bytes(b"stale")
    users = report / "tables" / "my_notes.md"
    users.write_text("the user's own file")
    manifest = json.loads((report / MANIFEST_NAME).read_text())
    manifest["files"]["figures/old_figure.png"] = hashlib.sha256(b"stale").hexdigest()  # as an earlier report wrote it
    (report / MANIFEST_NAME).write_text(json.dumps(manifest))
    result = CliRunner().invoke(app, ["report", "--results", str(report)])
    assert result.exit_code == 0, result.output
    assert not stale.exists()  # a report's file it did not write again: deleted
    assert users.read_text() == "the user's own file"  # no report wrote it: kept
    users.unlink()
    assert digest(report) == before


def test_report_without_records_is_one_line(tmp_path: Path):
    (tmp_path / "a_file").write_text("not a folder")
    file = CliRunner().invoke(app, ["report", "--results", str(tmp_path / "a_file")])
    assert file.exit_code == 2 and "a_file is a file, not a results folder" in file.output
    result = CliRunner().invoke(app, ["report", "--results", str(tmp_path / "none")])
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and "grporm run experiments/quick.yaml" in result.output


def test_report_excludes_a_deeply_nested_record_and_a_fifo_without_hanging(write_run, tmp_path: Path):
    """`grporm report` reads records through grporm.records.inputs: a record nested too deeply for json and a record.json that is a FIFO (opening it would block for ever) are excluded runs."""
    import os

    write_run(tmp_path, "quick", "good", method="ce", seed=0, sr=0.5)
    deep = write_run(tmp_path, "quick", "deep", method="ce", seed=1, sr=0.5)
    (deep / "record.json").write_text("[" * 100_000 + "]" * 100_000)
    fifo = tmp_path / "quick" / "runs" / "fifo"
    fifo.mkdir()
    os.mkfifo(fifo / "record.json")
    result = subprocess.run([sys.executable, "-m", "grporm.cli", "report", "--results", str(tmp_path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "RecursionError" not in result.stderr + result.stdout
    for text in ((tmp_path / "REPORT.md").read_text(), (tmp_path / "quick" / "table.md").read_text()):
        excluded = text.split("## Excluded runs", 1)[1]
        assert "deep/record.json`: unreadable record.json: is not valid JSON (nested too deeply)" in excluded
        assert "fifo/record.json`: unreadable record.json: is not a regular file" in excluded


# -- W&B -------------------------------------------------------------------------------------------
class FakeRun:
    def __init__(self, run_id: str, method: str, seed: int, state: str = "finished", sr: float = 0.8):
        self.id, self.name, self.state = f"wb{seed}{method}", f"quick/{run_id}", state
        self.url = f"https://wandb.ai/x/y/runs/{self.id}"
        self.config = {"experiment": "quick", "run_id": run_id, "method": method, "seed": seed,
                       "data": {"name": FM}, "model": {"name": BB}, "axes": {"method": method, "seed": seed}}
        self.summary = {"final/sr_top1": sr, "final/knn20_top1": sr - 0.1, "final/head_top1": None,
                        "final/ood/noise/1/sr_top1": sr - 0.2, "status": "finished", "_runtime": 42.0}
        self.metadata = {"python": "3.11.7", "os": "Linux", "cpu_count": 2}

    def scan_history(self):
        return [{"_step": 0, "epoch": 0, "epoch/knn20_top1": 0.5, "epoch/val_head_top1": 0.1},
                {"_step": 1, "train/reward_mean": 0.3, "train/clip_frac": 0.0},
                {"_step": 2, "epoch": 1, "epoch/knn20_top1": 0.7, "epoch/val_head_top1": 0.6}]


class FakeApi:
    def __init__(self, runs):
        self.queries = []
        self._runs = runs

    def runs(self, path):
        self.queries.append(path)
        return self._runs


def test_record_from_wandb_shape():
    record = wandb_tools.record_from_wandb(FakeRun("fm-ce-s0", "ce", 0), "team/proj")
    assert (record["run_id"], record["experiment"], record["status"], record["method"], record["dataset"],
            record["backbone"], record["seed"]) == ("fm-ce-s0", "quick", "finished", "ce", FM, BB, 0)
    assert record["metrics"]["knn_top1"] == {"20": pytest.approx(0.7)} and record["metrics"]["sr_top1"] == 0.8
    assert record["metrics"]["ood"] == {"noise": {"1": {"sr_top1": pytest.approx(0.6)}}}
    assert record["timing"]["total_seconds"] == 42.0 and record["wandb"]["path"] == "team/proj/wb0ce"
    crashed = wandb_tools.record_from_wandb(FakeRun("x", "ce", 1, state="crashed"))
    assert crashed["status"] == "failed" and "crashed" in crashed["error"]
    history, steps = wandb_tools.history_from_wandb(FakeRun("x", "ce", 0).scan_history())
    assert [h["epoch"] for h in history] == [0, 1] and history[1]["knn20_top1"] == 0.7
    assert steps == [{"step": 1, "reward_mean": 0.3, "clip_frac": 0.0}]


def test_from_wandb_is_cached_and_merged(write_run, tmp_path: Path):
    root = tmp_path / "results"
    write_run(root, "quick", "local-ce-s5", method="ce", seed=5, sr=0.5)
    api = FakeApi([FakeRun("fm-ce-s0", "ce", 0), FakeRun("fm-grpo_rm-s0", "grpo_rm", 0, sr=0.9),
                   FakeRun("fm-grpo_rm-s1", "grpo_rm", 1, state="running")])
    cache = wandb_tools.fetch_project("team/proj", root, api_factory=lambda: api)
    assert cache == root / ".wandb_cache" / "team__proj" and api.queries == ["team/proj"]
    assert (cache / "quick" / "runs" / "fm-ce-s0" / "history.csv").is_file()

    def no_network():
        raise AssertionError("a cached project must not be queried")

    assert wandb_tools.fetch_project("team/proj", root, api_factory=no_network) == cache
    run_set = load_runs(root, cache)
    assert sorted(run_set.runs["run_id"]) == ["fm-ce-s0", "fm-grpo_rm-s0", "local-ce-s5"]
    assert any("running" in reason for _, reason in run_set.excluded)
    assert load_runs(root).runs["run_id"].tolist() == ["local-ce-s5"]  # the cache is not a local experiment


def test_from_wandb_offline_is_one_line(write_run, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    write_run(tmp_path, "quick", "a", method="ce", seed=0, sr=0.5)
    result = CliRunner().invoke(app, ["report", "--results", str(tmp_path), "--from-wandb", "team/proj"])
    assert result.exit_code == 2 and result.output.count("\n") == 1
    assert "WANDB_MODE=offline" in result.output
    assert not (tmp_path / ".wandb_cache" / "team__proj").exists()

    def broken():
        raise ConnectionError("Max retries exceeded\nwith url")

    with pytest.raises(GrpormError, match=r"^cannot read W&B project team/proj: ConnectionError: Max retries exceeded$"):
        wandb_tools.fetch_project("team/proj", tmp_path, api_factory=lambda: SimpleNamespace(runs=lambda p: broken()))
    assert not list((tmp_path / ".wandb_cache").iterdir())  # no half-written cache
    with pytest.raises(GrpormError, match="ENTITY/PROJECT"):
        wandb_tools.parse_project("just-a-project")


def test_dashboard_without_package_exits_2(monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb_workspaces", None)  # import fails
    result = CliRunner().invoke(app, ["dashboard", "team/proj"])
    assert result.exit_code == 2 and result.output.count("\n") == 1 and "wandb-workspaces" in result.output


def test_sync_finds_offline_runs(write_run, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    runner = CliRunner()
    result = runner.invoke(app, ["sync", "--results", str(tmp_path / "results")])
    assert result.exit_code == 0 and result.output.count("\n") == 1 and "no offline W&B runs" in result.output
    new = tmp_path / "wandb" / "offline-run-20250101_000000-abc"
    done = tmp_path / "wandb" / "offline-run-20250101_000001-def"
    elsewhere = tmp_path / "elsewhere" / "wandb" / "offline-run-20250101_000002-ghi"
    for folder in (new, done, elsewhere):
        (folder / "files").mkdir(parents=True)
    (done / "run-def.wandb.synced").write_text("")
    run_dir = write_run(tmp_path / "results", "quick", "a", method="ce", seed=0, sr=0.5)
    record = json.loads((run_dir / "record.json").read_text())
    record["wandb"] = {"mode": "offline", "dir": str(elsewhere / "files")}
    (run_dir / "record.json").write_text(json.dumps(record))
    assert wandb_tools.offline_runs(tmp_path / "results") == sorted([new, elsewhere])
    calls = []
    code = wandb_tools.sync([new], run=lambda cmd, check: calls.append(cmd) or SimpleNamespace(returncode=0))
    assert code == 0 and calls[0][1:] == ["sync", str(new)] and Path(calls[0][0]).name == "wandb"
