"""steps_plot (analysis/figures.py): the training diagnostics become a second row of panels when the
steps.csv files have them; old files without them draw the figure as before."""
from pathlib import Path

import pandas as pd

from grporm.analysis.figures import STEP_DIAGNOSTICS, STEP_STATS, steps_plot

OLD = ["reward_mean", "clip_frac", "entropy", "pi_y"]
NEW = [column for column, _ in STEP_DIAGNOSTICS]


def write_runs(root: Path, columns: list[str], experiment: str = "e") -> pd.DataFrame:
    rows = []
    for method in ("ce", "grpo_rm"):
        for seed in (0, 1):
            run_dir = root / experiment / method / str(seed)
            run_dir.mkdir(parents=True)
            logged = [c for c in columns if method == "grpo_rm" or c not in ("reward_mean", "clip_frac")]
            frame = pd.DataFrame({"step": range(4), **{c: [0.1 * (i + seed) for i in range(4)] for c in logged}})
            frame.to_csv(run_dir / "steps.csv", index=False)
            rows.append({"path": str(run_dir), "method": method, "seed": seed, "experiment": experiment,
                         "dataset": "d", "backbone": "b", "variant": ""})
    return pd.DataFrame(rows)


def visible_titles(fig) -> list[str]:
    return [ax.get_title() for ax in fig.axes if ax.get_visible()]


def test_old_steps_files_draw_one_row_of_the_original_statistics(tmp_path):
    fig = steps_plot(write_runs(tmp_path, OLD))
    titles = visible_titles(fig)
    assert len(fig.axes) == len(STEP_STATS) == len(titles)
    assert not any(title.endswith(label) for title in titles for _, label in STEP_DIAGNOSTICS)


def test_diagnostics_add_a_row_of_panels_with_ce_and_grpo_lines(tmp_path):
    fig = steps_plot(write_runs(tmp_path, OLD + NEW))
    titles = visible_titles(fig)
    assert len(titles) == len(STEP_STATS) + len(STEP_DIAGNOSTICS)
    for _, label in STEP_DIAGNOSTICS:
        ax = next(a for a in fig.axes if a.get_visible() and a.get_title().endswith(label))
        assert len(ax.get_lines()) >= 2  # a CE and a GRPO-RM line: same names for both methods


def test_old_and_new_experiments_together_hide_the_old_ones_empty_row(tmp_path):
    runs = pd.concat([write_runs(tmp_path, OLD, "old"), write_runs(tmp_path, OLD + NEW, "new")])
    fig = steps_plot(runs)
    assert len(visible_titles(fig)) == 2 * len(STEP_STATS) + len(STEP_DIAGNOSTICS)
