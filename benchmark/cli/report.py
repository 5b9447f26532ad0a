"""`report`: tables and plots from the records of one or more runs."""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmark.config.errors import ConfigError


def register(sub: argparse._SubParsersAction) -> None:
    report = sub.add_parser("report", help="tables and plots from the records of one or more runs")
    report.add_argument("runs", nargs="+", help="run folders or records.jsonl files")
    report.add_argument("--out", required=True, help="folder for the tables and plots")
    report.add_argument(
        "--baseline", help="learner the others are compared with, episode by episode"
    )
    report.add_argument("--bootstrap", action="store_true", help="bootstrap CIs (seeded)")


def main(args: argparse.Namespace) -> int:
    from results.plots import write_plots
    from results.records import read_records
    from results.run_files import records_path
    from results.tables import write_report

    paths = [records_path(p) for p in args.runs]
    records = read_records(paths)
    if records.empty:
        raise ConfigError(
            f"{', '.join(map(str, paths))}: no records to report (an empty "
            "records file); name the records of a run that finished episodes"
        )
    learners = sorted(set(records["learner"]))
    if args.baseline is not None and args.baseline not in learners:
        raise ConfigError(
            f"--baseline {args.baseline!r}: not a learner of these records; "
            f"give one of {', '.join(learners)}"
        )
    method = "bootstrap" if args.bootstrap else "normal"
    write_report(records, Path(args.out), baseline=args.baseline, method=method)
    for path in write_plots(records, Path(args.out), method=method):
        print(f"plot: {path}")
    return 0
