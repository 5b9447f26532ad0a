"""Results: per-episode records -> tables with 95% CIs, paired comparisons, leaderboard files, plots.

Builds everything from files alone (pandas, numpy, scipy, matplotlib; never torch, never a
learner). The public face is the names below, imported on first use so that `import results`
stays cheap; the modules behind them (records, stats, tables, schema, scoring, leaderboard,
leaderboard_html, plots, provenance, cli) are internal and may change.

    from results import read_records, accuracy_table, paired_table
    records = read_records("outputs/5way1shot-.../records.jsonl")
    print(accuracy_table(records))
"""

from __future__ import annotations

import importlib

# public name -> the module that defines it
_PUBLIC = {
    "read_records": "results.records",
    "repair_records": "results.records",
    "RecordError": "results.records",
    "mean_ci": "results.stats",
    "paired_difference": "results.stats",
    "accuracy_table": "results.tables",
    "super_category_table": "results.tables",
    "class_table": "results.tables",
    "part_contribution_table": "results.tables",
    "paired_table": "results.tables",
    "write_report": "results.tables",
    "read_result": "results.schema",
    "validate_result": "results.schema",
    "validate_result_file": "results.schema",
    "read_predictions": "results.scoring",
    "score": "results.scoring",
    "predictions_source": "results.scoring",
    "ScoreError": "results.scoring",
    "merge": "results.leaderboard",
    "LeaderboardError": "results.leaderboard",
    "write_html": "results.leaderboard_html",
    "write_plots": "results.plots",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'results' has no attribute {name!r}")
