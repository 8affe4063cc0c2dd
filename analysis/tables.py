"""The classification table as data: head, SR and kNN@20 test top-1 per (dataset, backbone, [variant,] method)."""
from __future__ import annotations

import pandas as pd

from grporm.analysis.records import method_rank
from grporm.records.schema import PROTOCOLS
from grporm.stats import summarize

# (column prefix in the table, column in RunSet.runs, Markdown header)
TABLE_METRICS = PROTOCOLS
INDEX = ["dataset", "backbone", "method"]
TABLE_COLUMNS = [f"{prefix}_{stat}" for prefix, _, _ in TABLE_METRICS for stat in ("mean", "std", "n")] + ["n_seeds"]


def row_keys(runs: pd.DataFrame) -> list[str]:
    """Rows also split by variant (the matrix values of an ablation) when the runs have any."""
    has_variants = "variant" in runs.columns and runs["variant"].fillna("").astype(bool).any()
    return INDEX[:2] + ["variant"] + INDEX[2:] if has_variants else INDEX


def classification_table(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (dataset, backbone, method), methods in registration order (grporm.training.methods); per (dataset, backbone,
    variant, method) when some run has a variant.

    Columns ``<m>_mean``, ``<m>_std`` (sample std, ddof=1; NaN with fewer than two values) and ``<m>_n``
    (number of runs with a value) for m in head, sr, knn20, plus ``n_seeds`` (runs in the row).
    Values stay fractions, like ``runs``; ``analysis.render.classification_markdown`` shows them in %.
    """
    rows, keys, index = [], [], row_keys(runs)
    if not runs.empty:
        for key, group in runs.groupby(index, sort=False):
            row: dict[str, float] = {}
            for prefix, column, _ in TABLE_METRICS:
                cell = summarize(pd.to_numeric(group[column], errors="coerce"))
                row[f"{prefix}_mean"], row[f"{prefix}_std"], row[f"{prefix}_n"] = cell.mean, cell.std, cell.n
            row["n_seeds"] = len(group)
            rows.append(row)
            keys.append(key)
    order = sorted(range(len(keys)), key=lambda i: (*keys[i][:-1], method_rank(keys[i][-1])))
    return pd.DataFrame([rows[i] for i in order], columns=TABLE_COLUMNS,
                        index=pd.MultiIndex.from_tuples([keys[i] for i in order], names=index))
