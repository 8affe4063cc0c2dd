"""Where a verdict rests on a close learning-rate call that no runner-up run has checked: the words a
report puts next to those rows, with the exact command that runs the check (`grporm run ... --sensitivity`).

A close call (grporm/tuning/decisions.py) is a decision whose margin is below its own noise: the runner-up learning
rate may be as good, and the verdict's word may turn there. The verdict frame marks such a line
`no_rerun` (the ‡ of the tables)."""
from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

EXPERIMENT_GLOBS = ("*.yaml", "*.yml", "experiments/**/*.yaml")  # where an experiment's file is looked for
NAME_LINE = re.compile(r"^name:\s*['\"]?([A-Za-z0-9_.-]+)['\"]?\s*(#.*)?$", re.MULTILINE)


def experiment_file(experiment: str, where: Path = Path(".")) -> str | None:
    """The experiment file (relative to `where`, the working folder) whose top-level `name:` is
    `experiment`: records keep the name, not the file; None when none is found (or several are)."""
    found = []
    for pattern in EXPERIMENT_GLOBS:
        for path in sorted(where.glob(pattern)):
            try:
                text = path.read_text(encoding="utf-8", errors="replace")[:20_000]
            except OSError:
                continue
            match = NAME_LINE.search(text)
            if match and match.group(1) == experiment:
                found.append(path.relative_to(where).as_posix())
    return found[0] if len(set(found)) == 1 else None


def sensitivity_command(experiment: str, results: Path, where: Path = Path(".")) -> str:
    """The command that runs the runner-up runs of an experiment's close calls, then redraws the report."""
    file = experiment_file(experiment, where) or f"<the experiment file of {experiment}>"
    folder = "" if Path(results) == Path("results") else f" --results {results}"
    return f"grporm run {file} --sensitivity{folder} && grporm report{folder}"


def close_call_lines(lines: pd.DataFrame, results: Path, where: Path = Path(".")) -> list[str]:
    """Markdown: per experiment, the verdict rows whose word rests on a close call without runner-up runs,
    said in words, and the command; [] when there is none."""
    if lines is None or lines.empty or "no_rerun" not in lines.columns:
        return []
    shaky = lines[lines["no_rerun"].astype(bool)]
    parts = []
    for experiment, mine in shaky.groupby("experiment", sort=False):
        rows = [f"`{line['treatment']}` on {line['claim']} ({line['backbone']}{', ' + line['axes'] if line['axes'] else ''}): "
                f"*{line['word']}*" for _, line in mine.iterrows()]
        parts += [f"**Close calls not yet checked (‡) in `{experiment}`**: the learning rate of the control or of "
                  "the arm was a close call (its runner-up scored within noise), and no run at the runner-up "
                  "learning rate exists, so these words may turn there: " + "; ".join(rows) + ". "
                  f"Check them with `{sensitivity_command(str(experiment), results, where)}` (the runner-up runs of "
                  "every close call; the verdict then shows the word at the runner-up beside each cell).", ""]
    return parts
