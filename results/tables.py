"""Tables from per-episode records alone: accuracy (%) with CIs, by setting, super-category, class,
part slot, and paired comparisons; printed in the terminal and saved as CSV, Markdown and LaTeX.

Every mean is a mean over episodes of a per-episode accuracy (the few-shot convention), and every
interval is `stats.mean_ci` over those episodes. A super-category's (or class's) accuracy is the
mean, over the episodes that contain it, of that episode's accuracy on its queries.

Rows are keyed by the setting (split, n_way, k_shot, n_query), the learner and its mask_mode;
when the records come from several runs, by run_id too, so different runs are never pooled.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from episodes.storage import atomic_write_text
from results.protocols import annotations_of_mask_mode
from results.stats import mean_ci, paired_difference

# The columns that name one evaluation setting; a table has one block per distinct combination.
SETTING_COLUMNS: tuple[str, ...] = ("split", "n_way", "k_shot", "n_query")
# What tells two rows of one setting apart (mask_mode: part masks behind a learner's features).
LEARNER_COLUMNS: tuple[str, ...] = ("learner", "mask_mode")
ACC_CI = "acc ± ci"
# Tables too long for a terminal (a row per test class and learner): written, not echoed.
SAVED_NOT_PRINTED: tuple[str, ...] = ("per_class",)


def format_acc(mean: float, half_width: float, digits: int = 2) -> str:
    """ "71.23 ± 0.85" (NaN half-width, i.e. a single episode, prints as "± n/a")."""
    if half_width != half_width:  # NaN
        return f"{mean:.{digits}f} ± n/a"
    return f"{mean:.{digits}f} ± {half_width:.{digits}f}"


def _summarise(
    frame: pd.DataFrame,
    by: Sequence[str],
    value: str,
    confidence: float,
    method: str,
    seed: int,
    n_boot: int,
    scale: float,
    name: str,
) -> pd.DataFrame:
    """One row per group of `by`: episodes, mean and CI half-width of `value` (times `scale`)."""
    rows: list[dict[str, Any]] = []
    for key, group in frame.groupby(list(by), dropna=False, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        mean, half = mean_ci(
            group[value].to_numpy() * scale, confidence, method, n_boot=n_boot, seed=seed
        )
        row = dict(zip(by, key))
        row |= {"episodes": len(group), name: mean, "ci": half, ACC_CI: format_acc(mean, half)}
        rows.append(row)
    columns = [*by, "episodes", name, "ci", ACC_CI]
    table = pd.DataFrame(rows, columns=columns)
    return table.rename(columns={"ci": f"ci{round(confidence * 100):d}"})


def one_setting(records: pd.DataFrame) -> pd.DataFrame:
    """`records` with n_way blanked (NA, like k_shot and n_query) in variable-shape episodes:
    a variable-mode run is one setting, as its result file has one number per learner, not one
    block per way count its sampler happened to draw."""
    variable = records["k_shot"].isna()
    if not variable.any():
        return records
    return records.assign(n_way=records["n_way"].astype("Int64").mask(variable))


def _run_columns(records: pd.DataFrame) -> list[str]:
    """["run_id"] when the records hold several runs (never pool them), else []."""
    return ["run_id"] if records["run_id"].nunique() > 1 else []


def _default_by(records: pd.DataFrame, extra: Sequence[str] = ()) -> list[str]:
    return [*_run_columns(records), *SETTING_COLUMNS, *LEARNER_COLUMNS, *extra]


def accuracy_table(
    records: pd.DataFrame,
    by: Sequence[str] | None = None,
    *,
    confidence: float = 0.95,
    method: str = "normal",
    seed: int = 0,
    n_boot: int = 10_000,
) -> pd.DataFrame:
    """Mean episode accuracy (%) with its CI per group (default: [run_id,] setting x learner).

    records: `read_records(...)` output. Returns columns by... (with `annotations`, the protocol
    of the row's mask_mode, after mask_mode), episodes, accuracy, ci95, "acc ± ci",
    rows sorted by setting then by accuracy, best first.
    """
    by = list(by) if by is not None else _default_by(records)
    table = _summarise(records, by, "accuracy", confidence, method, seed, n_boot, 100.0, "accuracy")
    if "mask_mode" in table:  # the test-time annotations behind each row (results.protocols)
        table.insert(
            table.columns.get_loc("mask_mode") + 1,
            "annotations",
            [annotations_of_mask_mode(None if m != m else m) for m in table["mask_mode"]],
        )
    keep = [c for c in by if c not in LEARNER_COLUMNS]
    return _rank(table, keep, "accuracy")


def _rank(table: pd.DataFrame, within: list[str], score: str) -> pd.DataFrame:
    if table.empty:
        return table
    order = within + [score]
    return table.sort_values(
        order, ascending=[True] * len(within) + [False], na_position="first", kind="stable"
    ).reset_index(drop=True)


def _explode_counts(records: pd.DataFrame, column: str, key_name: str) -> pd.DataFrame:
    """One row per (record, key of records[column]) with that key's per-episode accuracy."""
    rows = []
    keep = ["run_id", *SETTING_COLUMNS, *LEARNER_COLUMNS, "episode"]
    for record in records[keep + [column]].itertuples(index=False):
        counts = getattr(record, column)
        base = dict(zip(keep, record[: len(keep)]))
        for key, (correct, total) in counts.items():
            if total > 0:
                rows.append(
                    base
                    | {
                        key_name: key,
                        "correct": correct,
                        "total": total,
                        "accuracy": correct / total,
                    }
                )
    return pd.DataFrame(rows, columns=[*keep, key_name, "correct", "total", "accuracy"])


def super_category_table(
    records: pd.DataFrame,
    *,
    confidence: float = 0.95,
    method: str = "normal",
    seed: int = 0,
    n_boot: int = 10_000,
) -> pd.DataFrame:
    """Accuracy (%) per super-category with its CI, per setting x learner."""
    long = _explode_counts(records, "per_super_category", "super_category")
    by = _default_by(records, ["super_category"])
    return _summarise(long, by, "accuracy", confidence, method, seed, n_boot, 100.0, "accuracy")


def class_table(
    records: pd.DataFrame,
    *,
    confidence: float = 0.95,
    method: str = "normal",
    seed: int = 0,
    n_boot: int = 10_000,
) -> pd.DataFrame:
    """Accuracy (%) per class (synset) with its CI, per setting x learner: the mean, over the
    episodes the class appears in, of that episode's accuracy on the class's queries."""
    long = _explode_counts(records, "per_class", "synset")
    by = _default_by(records, ["synset"])
    return _summarise(long, by, "accuracy", confidence, method, seed, n_boot, 100.0, "accuracy")


def part_contribution_table(
    records: pd.DataFrame,
    *,
    confidence: float = 0.95,
    method: str = "normal",
    seed: int = 0,
    n_boot: int = 10_000,
) -> pd.DataFrame:
    """Mean share (%) of the decision owed to each part slot, with its CI, per setting x learner.

    Only records whose `part_contributions` is not null take part (learners that use parts).
    """
    rows = []
    keep = ["run_id", *SETTING_COLUMNS, *LEARNER_COLUMNS, "episode"]
    with_parts = records[records["part_contributions"].notna()]
    for record in with_parts[keep + ["part_contributions"]].itertuples(index=False):
        base = dict(zip(keep, record[: len(keep)]))
        for slot, share in record.part_contributions.items():
            rows.append(base | {"slot": slot, "contribution": share})
    long = pd.DataFrame(rows, columns=[*keep, "slot", "contribution"])
    by = _default_by(records, ["slot"])
    table = _summarise(
        long, by, "contribution", confidence, method, seed, n_boot, 100.0, "contribution"
    )
    return table.rename(columns={ACC_CI: "share ± ci"})


def paired_table(
    records: pd.DataFrame, baseline: str, *, confidence: float = 0.95, test: str = "ttest"
) -> pd.DataFrame:
    """Each learner minus `baseline`, per run and setting, on the same episodes (points of %).

    Columns: [run_id,] setting..., learner, baseline, episodes, difference, ci_low, ci_high,
    p_value, "diff ± ci". Learners are compared within one run, episode by episode; a learner whose
    episode set differs from the baseline's is refused with an error (see `paired_difference`).
    To compare across runs evaluated on the same episodes, call `stats.paired_difference` on
    Series indexed by episode.
    """
    if baseline not in set(records["learner"]):
        raise ValueError(
            f"baseline learner {baseline!r} is not in the records "
            f"(learners: {', '.join(sorted(set(records['learner'])))})"
        )
    rows = []
    group_by = ["run_id", *SETTING_COLUMNS]
    shown = [*_run_columns(records), *SETTING_COLUMNS]
    for setting, block in records.groupby(group_by, dropna=False, sort=True):
        by_learner = {
            name: group.set_index("episode")["accuracy"] * 100.0
            for name, group in block.groupby("learner")
        }
        if baseline not in by_learner or len(by_learner[baseline]) < 2:
            continue  # no pairs to compare (a paired CI needs two episodes)
        for name in sorted(by_learner):
            if name == baseline:
                continue
            result = paired_difference(by_learner[name], by_learner[baseline], confidence, test)
            rows.append(
                {k: v for k, v in zip(group_by, setting) if k in shown}
                | {
                    "learner": name,
                    "baseline": baseline,
                    "episodes": result.n,
                    "difference": result.mean_difference,
                    "ci_low": result.ci_low,
                    "ci_high": result.ci_high,
                    "p_value": result.p_value,
                    "diff ± ci": format_acc(result.mean_difference, result.half_width),
                }
            )
    columns = [
        *shown,
        "learner",
        "baseline",
        "episodes",
        "difference",
        "ci_low",
        "ci_high",
        "p_value",
        "diff ± ci",
    ]
    return pd.DataFrame(rows, columns=columns)


def report_tables(
    records: pd.DataFrame,
    *,
    confidence: float = 0.95,
    method: str = "normal",
    seed: int = 0,
    n_boot: int = 10_000,
    baseline: str | None = None,
) -> dict[str, pd.DataFrame]:
    """The standard set: accuracy, super_category, per_class, part_contributions and (with
    `baseline`) paired. A variable-shape run's episodes form one setting (see one_setting)."""
    records = one_setting(records)
    options = dict(confidence=confidence, method=method, seed=seed, n_boot=n_boot)
    tables = {
        "accuracy": accuracy_table(records, **options),
        "super_category": super_category_table(records, **options),
        "per_class": class_table(records, **options),
        "part_contributions": part_contribution_table(records, **options),
    }
    if baseline is not None:
        tables["paired"] = paired_table(records, baseline, confidence=confidence)
    return tables


# ---------------------------------------------------------------- rendering


def _cell(value: Any, digits: int, column: str = "") -> str:
    if value is None or (pd.api.types.is_scalar(value) and pd.isna(value)):
        return ""
    if isinstance(value, (float, np.floating)):
        if column == "p_value":  # p-values span many orders of magnitude
            return f"{value:.2g}"
        return f"{value:.{digits}f}"
    return str(value)


def _cells(table: pd.DataFrame, digits: int) -> pd.DataFrame:
    """Every cell as display text (numbers rounded to `digits`, p-values to 2 significant)."""
    return pd.DataFrame(
        {c: [_cell(v, digits, c) for v in table[c]] for c in table.columns}, columns=table.columns
    )


def to_text(table: pd.DataFrame, digits: int = 2) -> str:
    """The table as aligned plain text for the terminal."""
    if table.empty:
        return "(no rows)"
    return _cells(table, digits).to_string(index=False)


def to_markdown(table: pd.DataFrame, digits: int = 2) -> str:
    """A GitHub-flavoured Markdown table (written here: pandas' to_markdown needs `tabulate`)."""
    header = [str(c) for c in table.columns]
    numeric = [pd.api.types.is_numeric_dtype(table[c]) for c in table.columns]
    lines = [
        "| " + " | ".join(header) + " |",
        "| " + " | ".join("---:" if n else "---" for n in numeric) + " |",
    ]
    for row in _cells(table, digits).itertuples(index=False):
        lines.append("| " + " | ".join(v.replace("|", "\\|") for v in row) + " |")
    return "\n".join(lines) + "\n"


def to_latex(table: pd.DataFrame, digits: int = 2) -> str:
    """A LaTeX tabular (booktabs rules) via pandas' Styler, special characters escaped."""
    numeric = [pd.api.types.is_numeric_dtype(table[c]) for c in table.columns]
    styler = _cells(table, digits).style.hide(axis="index")
    styler = styler.format(escape="latex").format_index(escape="latex", axis=1)
    text = styler.to_latex(hrules=True, column_format="".join("r" if n else "l" for n in numeric))
    return text.replace("±", r"$\pm$").replace("†", r"\dag{}")


def save_table(table: pd.DataFrame, stem: str | os.PathLike[str], digits: int = 2) -> list[Path]:
    """Write `<stem>.csv`, `<stem>.md` and `<stem>.tex` atomically; returns the three paths.

    The CSV keeps full precision; Markdown and LaTeX round numbers to `digits` decimals.
    """
    stem = Path(stem)
    return [
        atomic_write_text(stem.with_name(stem.name + ".csv"), table.to_csv(index=False)),
        atomic_write_text(stem.with_name(stem.name + ".md"), to_markdown(table, digits)),
        atomic_write_text(stem.with_name(stem.name + ".tex"), to_latex(table, digits)),
    ]


def write_report(
    records: pd.DataFrame,
    out_dir: str | os.PathLike[str] | None = None,
    *,
    confidence: float = 0.95,
    method: str = "normal",
    seed: int = 0,
    n_boot: int = 10_000,
    baseline: str | None = None,
    echo: bool = True,
    printed: Sequence[str] | None = None,
) -> dict[str, pd.DataFrame]:
    """`report_tables`, printed (if `echo`: those named in `printed`, default all but
    SAVED_NOT_PRINTED) and saved as `<out_dir>/<name>.{csv,md,tex}`."""
    tables = report_tables(
        records, confidence=confidence, method=method, seed=seed, n_boot=n_boot, baseline=baseline
    )
    for name, table in tables.items():
        shown = name not in SAVED_NOT_PRINTED if printed is None else name in printed
        if echo and not shown and printed is None:
            where = f", in {name}.csv" if out_dir is not None else ""
            print(f"\n== {name.replace('_', ' ')} == ({len(table)} rows{where})")
        elif echo and shown:
            print(f"\n== {name.replace('_', ' ')} ==")
            compact = [c for c in table.columns if c not in ("ci_low", "ci_high", "difference")]
            print(to_text(table[compact]))
        if out_dir is not None:
            save_table(table, Path(out_dir) / name)
    return tables
