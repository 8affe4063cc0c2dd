"""`grporm report`: per experiment, a Markdown table (table.md) and a convergence figure (convergence.png)."""
from __future__ import annotations

from pathlib import Path

from analysis.figures import convergence_figure
from analysis.records import RunSet, load_runs, method_label, method_rank
from analysis.tables import classification_table, row_keys, to_markdown
from grporm.errors import GrpormError

PRODUCE_HINT = "grporm run experiments/quick.yaml"
TABLE_NAME = "table.md"
FIGURE_NAME = "convergence.png"
LEGEND = ("Accuracies are test top-1 in %, mean ± std over seeds (sample std; a single number is one seed); "
          "Head = the model's own classifier (— where there is none, e.g. the pretrained backbone), "
          "SR = softmax regression on frozen features, kNN@20 = DINO kNN (k = 20) on frozen features.")


def _relative(path: Path, base: Path) -> str:
    try:
        return str(path.relative_to(base))
    except ValueError:
        return str(path)


def _sources(runs) -> list[str]:
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


def _markdown(experiment: str, run_set: RunSet, exp_dir: Path, figure: Path | None) -> str:
    runs = run_set.runs
    parts = [f"# {experiment}", "", LEGEND, ""]
    if runs.empty:
        parts += ["No finished runs yet.", ""]
    else:
        parts += [to_markdown(classification_table(runs)).rstrip("\n"), ""]
    if figure is not None:
        parts += [f"![kNN@20 per epoch]({FIGURE_NAME})", ""]
    else:
        parts += ["No convergence figure: no finished run has a history.csv with kNN@20 values.", ""]
    if run_set.excluded:
        parts += ["## Excluded runs", "", "Not averaged into the table:", ""]
        parts += [f"- `{_relative(path, exp_dir)}`: {reason}" for path, reason in run_set.excluded]
        parts.append("")
    if not runs.empty:
        parts += ["## Runs per row", ""] + _sources(runs) + [""]
    return "\n".join(parts)


def write_report(results_dir: str | Path) -> list[Path]:
    """For every ``<experiment>/`` with a ``runs/`` folder under ``results_dir``, write ``table.md``
    and ``convergence.png`` (when some run has a history) next to ``runs/``; return the written paths.
    Raises GrpormError when there are no run records at all."""
    root = Path(results_dir)
    command = PRODUCE_HINT if root == Path("results") else f"{PRODUCE_HINT} --results {root}"
    no_records = f"no run records under {root}: produce them with `{command}`"
    if not root.is_dir():
        raise GrpormError(no_records)
    experiments = [d for d in sorted(root.iterdir()) if d.is_dir() and (d / "runs").is_dir()
                   and any((d / "runs").glob("*/record.json"))]
    if not experiments:
        raise GrpormError(no_records)

    loaded = [(exp_dir, load_runs(exp_dir)) for exp_dir in experiments]
    written: list[Path] = []
    for exp_dir, run_set in loaded:
        figure_path = exp_dir / FIGURE_NAME
        figure = convergence_figure(run_set.runs, exp_dir, figure_path) if not run_set.runs.empty else None
        if figure is None:
            figure_path.unlink(missing_ok=True)  # a stale figure from an earlier report would mislead
        table_path = exp_dir / TABLE_NAME
        table_path.write_text(_markdown(exp_dir.name, run_set, exp_dir, figure), encoding="utf-8")
        written += [table_path] + ([figure] if figure is not None else [])
    return written
