"""`repair`: move the bad or repeated lines of a run's records aside."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    repair = sub.add_parser(
        "repair",
        help="move the bad or repeated lines of a run's records aside",
        description="Move every bad, edited, repeated or torn line of a records file into "
        "<file>.rejected beside it (verbatim; nothing is deleted) and keep the rest, "
        "so `report` and `run --resume` work again; --resume re-runs the moved "
        "episodes.",
    )
    repair.add_argument("run", help="a run folder or its records.jsonl")


def main(args: argparse.Namespace) -> int:
    from results.records import repair_records
    from results.run_files import records_path

    path = records_path(args.run)
    report = repair_records(path)
    if not report.moved:
        print(f"{path}: nothing to repair ({report.kept} good records)")
        return 0
    for number, why in report.moved:
        print(f"moved line {number}: {why}")
    print(
        f"{path}: kept {report.kept} records; moved {len(report.moved)} lines to "
        f"{report.side_file} (nothing deleted); `run --resume` runs their episodes again"
    )
    return 0
