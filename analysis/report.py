"""`grporm report`: the run records, loaded once, become ``results/REPORT.md`` (every section table as
Markdown, LaTeX and CSV under ``tables/``, every figure as PNG and PDF under ``figures/``, the environment,
the excluded runs, and for every table row the run ids and config hashes behind it) and each experiment's
``table.md`` (+ ``convergence.png``). Records -> the report's data, computed once
(``analysis.report_data``: the sections' tables, ``analysis.verdict``'s comparisons, the tuning decisions)
-> text (``analysis.render``, the only writer of tables; ``analysis.verdict_render`` and
``analysis.tuning`` for theirs) and figures (``analysis.figures``) -> the files here. Deterministic: the
same records give byte-identical files (no dates, no absolute paths, sorted everywhere).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd
from matplotlib.figure import Figure

from grporm.analysis.close_calls import close_call_lines
from grporm.analysis.curves import curves_markdown, sentences
from grporm.analysis.figures import (
    convergence_curves,
    convergence_figure,
    convergence_plot,
    curve_figure,
    experiment_forest,
    imbalance_plot,
    save_figure,
    severity_plot,
    steps_plot,
    summary_forest,
)
from grporm.analysis.manifest import check_inside, prune_and_record
from grporm.analysis.records import RunSet, check_results_folder, load_runs, method_label, method_rank
from grporm.analysis.render import (
    classification_markdown,
    file_links,
    frame_csv,
    markdown_grid,
    table_csv,
    table_latex,
    table_markdown,
)
from grporm.analysis.report_data import ReportData
from grporm.analysis.sections import Table
from grporm.analysis.sequential import looks_lines
from grporm.analysis.tables import classification_table, row_keys
from grporm.analysis.tuning import NAME as TUNING_NAME
from grporm.analysis.tuning import tuning_section
from grporm.analysis.verdict import candidates
from grporm.analysis.verdict_render import NAME as VERDICT_NAME
from grporm.analysis.verdict_render import verdict_section
from grporm.errors import GrpormError
from grporm.records.inputs import read_json
from grporm.records.schema import HEADLINE_KNN, SR
from grporm.records.storage import write_text_atomic
from grporm.tracking.progress import Say, quiet
from grporm.training.methods import method_names

REPORT_NAME = "REPORT.md"
PRODUCE_HINT = "grporm run experiments/quick.yaml"
TABLE_NAME = "table.md"      # per experiment, next to its runs/
FIGURE_NAME = "convergence.png"
FOREST_NAME = "forest"       # per experiment with verdict rows: forest.png and forest.pdf
LEGEND = ("Accuracies are test top-1 in %, mean ± std over seeds (sample std; a single number is one seed); "
          "Head = the model's own classifier (— where there is none, e.g. the pretrained backbone), "
          "SR = softmax regression on frozen features, kNN@20 = DINO kNN (k = 20) on frozen features.")
TABLES_DIR = "tables"
FIGURES_DIR = "figures"
ENV_FIELDS = (("python", "Python"), ("torch", "torch"), ("timm", "timm"), ("platform", "Platform"),
              ("cpu", "CPU"), ("cpu_count", "CPU cores"), ("torch_threads", "torch threads"), ("cuda", "GPU"),
              ("git_commit", "git commit"))


@dataclass(frozen=True)
class FigureSpec:
    stem: str
    title: str
    after: str                                        # the section it is shown in
    draw: Callable[[ReportData], Figure | None]       # the report's data -> figure (None: no data)
    source: str                                       # where its numbers come from


PANEL = ("experiment", "dataset", "backbone")
FOREST = "verdict_forest"        # the compact figure (primary claims) the README embeds
EXPERIMENT_FOREST = "forest_"    # + the experiment's name: its own figure under figures/
CURVE_FIGURE = "curve_"          # + the experiment's name: its curves along a numeric axis (analysis.curves)
CURVES_NAME = "curves"           # tables/curves_summary.md (the README embeds it) and tables/curves_*.csv


# (history column, label, figure name infix): kNN keeps the names figures had before SR was probed
CONVERGENCE = ((HEADLINE_KNN, "kNN@20", ""), (SR, "SR", "_sr"))
FIGURES = (
    FigureSpec(FOREST, "Verdict at a glance: the primary claims", VERDICT_NAME, lambda d: summary_forest(d.primary()),
               f"the verdict table (`{TABLES_DIR}/{VERDICT_NAME}.csv`), primary claims; every claim in each "
               "experiment's figure below."),
    *(FigureSpec(f"convergence{stem}_epochs", f"Convergence: {label} per epoch", "classification",
                 lambda d, c=column: convergence_plot(convergence_curves(d.run_set.runs, None, PANEL, c), "epoch", c),
                 f"`history.csv` (column {column}) of the runs in the Classification table.")
      for column, label, stem in CONVERGENCE),
    *(FigureSpec(f"convergence{stem}_time", f"Convergence: {label} against training wall time", "classification",
                 lambda d, c=column: convergence_plot(convergence_curves(d.run_set.runs, None, PANEL, c),
                                                         "train_seconds", c),
                 f"`history.csv` (columns {column}, train_seconds) of the runs in the Classification table.")
      for column, label, stem in CONVERGENCE),
    FigureSpec("ood_severity", "Accuracy against corruption severity", "ood",
               lambda d: severity_plot(d.tables.get("ood")), "the Out-of-distribution: corruptions table."),
    FigureSpec("imbalance_shots", "Many / medium / few-shot accuracy", "imbalance",
               lambda d: imbalance_plot(d.tables.get("imbalance")), "the Imbalanced training table."),
    FigureSpec("training_stats", "GRPO training statistics over steps", "training",
               lambda d: steps_plot(d.run_set.runs), "`steps.csv` of every finished run."),
)


def _stem(experiment: str, prefix: str = EXPERIMENT_FOREST) -> str:
    """A figure file name for an experiment (a merged folder's name holds '/')."""
    return prefix + re.sub(r"[^A-Za-z0-9_.=+-]+", "_", experiment)


def _sources(runs: pd.DataFrame) -> list[str]:
    """'dataset / backbone / [variant /] Method: id, id, id' per table row, in table order."""
    lines = []
    groups = sorted(runs.groupby(row_keys(runs), sort=False),
                    key=lambda item: (*item[0][:-1], method_rank(item[0][-1])))
    for key, group in groups:
        method = key[-1]
        line = f"- {' / '.join(map(str, key[:-1]))} / {method_label(method)}: {', '.join(group['run_id'])}"
        repeated = sorted(int(s) for s, count in group["seed"].value_counts().items() if count > 1)
        if repeated:
            line += (f" — note: seed(s) {', '.join(map(str, repeated))} appear in several runs with different "
                     "configs, all averaged in this row")
        lines.append(line)
    return lines


def experiment_markdown(experiment: str, runs: pd.DataFrame, excluded: list[tuple[Path, str]], exp_dir: Path,
                        figure: Path | None, forest: Path | None = None, close_calls: list[str] = ()) -> str:
    """An experiment's table.md: its classification table, its convergence figure, its verdict's figure and
    close calls, its excluded runs."""
    parts = [f"# {experiment}", "", LEGEND, ""]
    if runs.empty:
        parts += ["No finished runs yet.", ""]
    else:
        parts += [classification_markdown(classification_table(runs)).rstrip("\n"), ""]
    if figure is not None:
        parts += [f"![kNN@20 per epoch]({FIGURE_NAME})", ""]
    else:
        parts += ["No convergence figure: no finished run has a history.csv with kNN@20 values.", ""]
    if forest is not None:
        parts += ["Its verdict: each arm minus the control, paired by seed (point = mean, line = the interval "
                  "its word uses, dashed = the margin \u03b4; every number in the report's verdict tables):", "",
                  f"![Forest plot of {experiment}]({forest.name})", ""]
    parts += list(close_calls)
    if excluded:
        parts += ["## Excluded runs", "", "Not averaged into the table:", ""]
        parts += [f"- `{_relative(path, (exp_dir,))}`: {reason}" for path, reason in excluded]
        parts.append("")
    if not runs.empty:
        parts += ["## Runs per row", ""] + _sources(runs) + [""]
    return "\n".join(parts)


def write_experiment_tables(root: Path, run_set: RunSet, say: Say = quiet, data: ReportData | None = None) -> list[Path]:
    """For every ``<experiment>/`` under ``root`` with run records, ``table.md``, ``convergence.png`` (when
    some run has a history) and ``forest.png`` (when it has a verdict) next to its ``runs/``, from its share
    of ``run_set`` (and of ``data``, the report's data computed from it, when given); returns the written paths."""
    frame = (data or ReportData.of(run_set)).frame
    written: list[Path] = []
    for exp_dir in sorted(root.iterdir()):
        if not (exp_dir.is_dir() and (exp_dir / "runs").is_dir() and any((exp_dir / "runs").glob("*/record.json"))):
            continue
        say(f"table of experiment {exp_dir.name}")
        runs = run_set.runs
        if not runs.empty:
            mine = exp_dir.resolve()
            runs = runs[[Path(p).is_relative_to(mine) for p in runs["path"]]]
        excluded = [(path, reason) for path, reason in run_set.excluded if Path(path).is_relative_to(exp_dir)]
        figure_path = exp_dir / FIGURE_NAME
        figure = convergence_figure(runs, exp_dir, figure_path) if not runs.empty else None
        lines = frame[frame["experiment"] == exp_dir.name]
        forest = _experiment_forest(lines, exp_dir)
        notes = close_call_lines(lines, root) + _looks_lines(exp_dir)
        table_path = exp_dir / TABLE_NAME
        write_text_atomic(table_path, experiment_markdown(exp_dir.name, runs, excluded, exp_dir, figure, forest, notes))
        written += [table_path] + ([figure] if figure is not None else []) + ([forest] if forest is not None else [])
    # a stale figure or table of an earlier report would mislead: delete those (and only those)
    prune_and_record(root, written + [p.with_suffix(".pdf") for p in written if p.name == f"{FOREST_NAME}.png"],
                     lambda name: not _in_report_part(name))
    return written


def _looks_lines(exp_dir: Path) -> list[str]:
    """The experiment's search for seeds until decided (its looks.json), when it had one."""
    path = exp_dir / "looks.json"
    if not path.is_file():
        return []
    try:
        document = read_json(path, "the log of a search for seeds until decided", "rerun `grporm run EXP --until-decided`",
                             fields={"looks": list, "design": dict})
    except GrpormError as err:
        return [f"Seeds until decided: {path.name} unreadable ({err}); not shown.", ""]
    return ["## Seeds until decided", "", "```", *looks_lines(document), "```", ""]


def _experiment_forest(lines: pd.DataFrame, exp_dir: Path) -> Path | None:
    """The experiment's lines of the verdict frame as ``forest.png`` (+ .pdf) next to its table.md; a stale
    plot is removed when the experiment has no verdict line."""
    fig = experiment_forest(lines, exp_dir.name)
    if fig is None:
        return None  # a stale plot of an earlier report is deleted by prune_and_record
    return save_figure(fig, exp_dir / FOREST_NAME)[0]


def _relative(path: Path, roots: tuple[Path, ...]) -> str:
    for root in roots:
        try:
            return str(Path(path).resolve().relative_to(root.resolve()))
        except ValueError:
            continue
    return Path(path).name


def _provenance(table: Table) -> list[str]:
    """The run ids and config hashes behind every row, folded (the CSV has them per cell too)."""
    lines = ["<details><summary>Provenance: the runs behind each row (run id, config hash)</summary>", ""]
    for row in table.rows:
        where = " / ".join(v for v in row.key if v)
        runs = ", ".join(f"`{run_id}` (`{config_hash or 'no hash'}`)" for run_id, config_hash in row.runs)
        lines.append(f"- {where} / {row.label}: {runs}")
    lines += ["", "</details>"]
    return lines


def _environment(run_set: RunSet) -> list[str]:
    """One line per env field: each distinct value with the number of runs that recorded it."""
    envs = [record.env or {} for _, record in sorted(run_set.records.items())]
    if not envs:
        return ["No finished run, so no environment to report."]
    rows = []
    for key, title in ENV_FIELDS + tuple((k, k) for k in sorted({k for e in envs for k in e} - {f for f, _ in ENV_FIELDS})):
        counts: dict[str, int] = {}
        for env in envs:
            counts[str(env.get(key, "not recorded"))] = counts.get(str(env.get(key, "not recorded")), 0) + 1
        rows += [[title, value.replace("|", "/"), f"{'all ' if count == len(envs) else ''}{count}"]
                 for value, count in sorted(counts.items())]
    return markdown_grid(["Field", "Value", "Runs"], rows, "llr").rstrip("\n").split("\n")


def _write(path: Path, text: str, written: list[Path]) -> None:
    write_text_atomic(path, text)
    written.append(path)


def _in_report_part(name: str) -> bool:
    """REPORT.md, tables/ and figures/ (write_report's part of the manifest); the rest is the
    experiments' table.md and figures (write_experiment_tables')."""
    return name == REPORT_NAME or name.split("/")[0] in (TABLES_DIR, FIGURES_DIR)


def _header(run_set: RunSet, sources: list[str]) -> list[str]:
    runs = run_set.runs
    experiments = sorted(set(runs["experiment"])) if not runs.empty else []
    return [
        "# GRPO-RM reproduction: report", "",
        "Generated by `grporm report` (`make report`) from " + " and ".join(sources) + "; nothing here is typed "
        "by hand, regenerate instead of editing.", "",
        f"{len(runs)} finished run(s) in {len(experiments)} experiment(s)"
        + (f" ({', '.join(experiments)})" if experiments else "")
        + f"; {len(run_set.excluded)} record(s) excluded (see [Excluded runs](#excluded-runs)).", "",
        "Conventions: mean ± std over seeds (sample std); a cell with one value is that run's number; "
        "† marks fewer than 3 seeds; bold = best mean of the column among the rows it is compared with; every "
        "difference from a control is the verdict's (each experiment's declared control, else its CE arm), "
        "paired by seed. Methods: "
        + ", ".join(f"{label} (`{name}`)" for name, label in ((n, method_label(n)) for n in method_names())) + ".", "",
    ]


def _experiment_figures(data: ReportData, root: Path, written: list[Path]) -> list[str]:
    """Each experiment's verdict figure under figures/ (linked here; its table.md links its own copy)."""
    frame = data.frame
    parts = []
    for experiment in dict.fromkeys(frame["experiment"]):
        lines = frame[frame["experiment"] == experiment]
        fig = experiment_forest(lines, experiment)
        if fig is None:
            continue
        png, pdf = save_figure(fig, root / FIGURES_DIR / _stem(experiment))
        written += [png, pdf]
        parts += [f"### Verdict of `{experiment}`", "", f"![Verdict of {experiment}]({FIGURES_DIR}/{png.name})", "",
                  f"[PDF]({FIGURES_DIR}/{pdf.name}) · data: its lines of `{TABLES_DIR}/{VERDICT_NAME}.csv`", ""]
        parts += close_call_lines(lines, root)
    return parts


def _curves(data: ReportData, root: Path, written: list[Path]) -> list[str]:
    """The curves along a numeric axis (analysis.curves): their section, tables and one figure each."""
    found = data.curves
    lines = curves_markdown(found)
    if not lines:
        return []
    for experiment in found.experiments():
        margin = next((float(c.declaration.margin) for c in data.found if c.experiment == experiment), 1.0)
        fig = curve_figure(found.points, found.levels, experiment, margin)
        if fig is None:
            continue
        png, pdf = save_figure(fig, root / FIGURES_DIR / _stem(experiment, CURVE_FIGURE))
        written += [png, pdf]
        lines += [f"![Curves of {experiment}]({FIGURES_DIR}/{png.name})", ""]
    _write(root / TABLES_DIR / f"{CURVES_NAME}_summary.md", "\n".join(sentences(found)) + "\n", written)
    for name, frame in (("points", found.points), ("levels", found.levels), ("steps", found.steps),
                        ("trends", found.trends)):
        _write(root / TABLES_DIR / f"{CURVES_NAME}_{name}.csv", frame_csv(frame), written)
    return lines


def write_report(root: Path, run_set: RunSet, sources: list[str] | None = None, say: Say = quiet,
                 data: ReportData | None = None) -> list[Path]:
    """Write REPORT.md, tables/ and figures/ under ``root`` from ``run_set`` (``data``: the report's data
    computed from it, else computed here); returns the written paths. A section without data is left out
    (the report describes its folder, nothing else)."""
    sources = sources or ["the run records under this folder (`<experiment>/runs/<run_id>/record.json`)"]
    check_inside(root, (TABLES_DIR, FIGURES_DIR))
    data = data or ReportData.of(run_set, root)
    written: list[Path] = []
    figures = {}
    for number, spec in enumerate(FIGURES, 1):
        say(f"figure {number} of {len(FIGURES)}: {spec.stem}")
        figures[spec.stem] = spec.draw(data)
    figure_files: dict[str, list[Path]] = {}
    say(f"saving {sum(fig is not None for fig in figures.values())} figure(s) (PNG and PDF)")
    for stem, fig in figures.items():
        if fig is not None:
            figure_files[stem] = save_figure(fig, root / FIGURES_DIR / stem)
            written += figure_files[stem]

    parts = _header(run_set, sources)
    say("verdict")
    if any(not c.frame.empty or (c.notes and _compares(run_set, c.experiment)) for c in data.found):
        verdict_lines, verdict_files = verdict_section(data.found)
        for suffix in (".md", "_summary.md"):
            if FOREST in figure_files and verdict_files.get(suffix):
                # the README embeds the summary (tools/embed.py rewrites its relative links): the plot goes in both
                verdict_files[suffix] = verdict_files[suffix].rstrip("\n") + "\n\n" + \
                    f"![Verdict forest plot](../{FIGURES_DIR}/{FOREST}.png)\n"
        verdict_lines = verdict_lines + _figures_markdown(VERDICT_NAME, figures, figure_files)
        verdict_lines += _experiment_figures(data, root, written)
        verdict_lines += _curves(data, root, written)
        for suffix, text in verdict_files.items():
            _write(root / TABLES_DIR / f"{VERDICT_NAME}{suffix}", text, written)
        parts += verdict_lines
    for section, table in data.built:
        parts += _section_markdown(section, table, root, written)
        parts += _figures_markdown(section.name, figures, figure_files) if table is not None else []
    tuning_lines, tuning_files = tuning_section(data.decisions)
    for suffix, text in tuning_files.items():
        _write(root / TABLES_DIR / f"{TUNING_NAME}{suffix}", text, written)
    parts += tuning_lines
    training = _figures_markdown("training", figures, figure_files)
    parts += ["## Training dynamics", ""] + training if training else []
    parts += ["## Excluded runs", ""]
    parts += ([f"- `{_relative(path, run_set.roots)}`: {reason}" for path, reason in run_set.excluded]
              or ["None: every record under the results folder is a finished run."]) + [""]
    parts += ["## Environment", "", "From the `env` of each finished run's record.", ""] + _environment(run_set) + [""]
    say(f"writing {root / REPORT_NAME}")
    _write(root / REPORT_NAME, "\n".join(parts), written)
    # a stale table would outlive its records: delete the files of an earlier report this one did not
    # write (e.g. a section whose runs were deleted), never a file a report did not write
    prune_and_record(root, written, _in_report_part)
    return written


def _compares(run_set: RunSet, experiment: str) -> bool:
    """Does the experiment have something to compare (two arms or methods that train)? Only then is a
    missing verdict worth a word (a CE-only experiment has none to give)."""
    runs = run_set.runs[run_set.runs["experiment"] == experiment]
    return len(candidates(runs)[0]) >= 2


def _section_markdown(section, table: Table | None, root: Path, written: list[Path]) -> list[str]:
    if table is None:  # no run here has these metrics: the section is left out, not stubbed
        return []
    parts = [f"## {section.title}", ""]
    stem = root / TABLES_DIR / section.name
    for suffix, render in ((".md", table_markdown), (".tex", table_latex), (".csv", table_csv)):
        _write(stem.with_suffix(suffix), render(table), written)
    return parts + [table.legend, "", table_markdown(table).rstrip("\n"), "", file_links(section.name, TABLES_DIR), ""] + \
        _provenance(table) + [""]


def _figures_markdown(after: str, figures: dict, files: dict[str, list[Path]]) -> list[str]:
    parts = []
    for spec in FIGURES:
        if spec.after != after or spec.stem not in files:
            continue  # a figure without data is not drawn, and not mentioned
        png, pdf = (f"{FIGURES_DIR}/{p.name}" for p in files[spec.stem])
        parts += [f"### {spec.title}", "", f"![{spec.title}]({png})", "",
                  f"[PDF]({pdf}) · data: {spec.source}", ""]
    return parts


def report_all(results_dir: str | Path, wandb_project: str | None = None, refresh: bool = False,
               say: Say = quiet) -> list[Path]:
    """What `grporm report` does: load the records once (with ``wandb_project``, "entity/project", the runs of
    that W&B project join in, read through the cache under ``results/.wandb_cache/``), then each experiment's
    ``table.md`` (local records) and REPORT.md with its tables and figures. Raises GrpormError when there
    is no record at all."""
    root = Path(results_dir)
    if root.is_file():
        check_results_folder(root)  # "is a file, not a results folder"
    command = PRODUCE_HINT if root == Path("results") else f"{PRODUCE_HINT} --results {root}"
    no_records = f"no run records under {root}: produce them with `{command}`"
    has_local = root.is_dir() and any(root.glob("*/runs/*/record.json"))
    if not has_local and not wandb_project:
        raise GrpormError(no_records)
    check_inside(root, (TABLES_DIR, FIGURES_DIR))  # before anything is written
    extra: tuple[Path, ...] = ()
    sources = None
    if wandb_project:
        from grporm.tracking.wandb_tools import fetch_project

        cache = fetch_project(wandb_project, root, refresh=refresh)
        extra = (cache,)
        sources = ["the run records under this folder (`<experiment>/runs/<run_id>/record.json`)",
                   f"the runs of W&B project `{wandb_project}` (cached under `{_relative(cache, (root,))}`)"]
    say(f"loading {sum(1 for r in (root, *extra) for _ in r.glob('*/runs/*/record.json'))} record(s)")
    run_set = load_runs(root, *extra)
    if run_set.runs.empty and not run_set.excluded:
        raise GrpormError(no_records)
    say("the report's data: sections, verdict, tuning decisions")
    data = ReportData.of(run_set, root)  # computed once for every table, figure and table.md
    written = write_experiment_tables(root, run_set, say, data) if has_local else []
    return written + write_report(root, run_set, sources, say, data)
