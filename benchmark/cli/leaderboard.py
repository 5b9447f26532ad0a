"""`leaderboard`: rank result files verified against their records."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    board = sub.add_parser("leaderboard", help="rank result files verified against their records")
    board.add_argument("dir", help="a folder of result files (searched recursively)")
    board.add_argument(
        "--allow-mixed-episodes",
        action="store_true",
        help="rank together rows evaluated on different episodes",
    )
    board.add_argument("--out", help="folder for CSV/Markdown tables")
    board.add_argument(
        "--records",
        nargs="+",
        metavar="JSONL",
        help="records.jsonl files to verify the rows against (default: the "
        "records.jsonl beside each result file)",
    )
    board.add_argument(
        "--allow-unverified",
        action="store_true",
        help="list files without records apart, unranked, instead of refusing them",
    )
    board.add_argument(
        "--html", metavar="DIR", help="also write a self-contained web page DIR/index.html"
    )


def main(args: argparse.Namespace) -> int:
    from results.cli import leaderboard_main

    return leaderboard_main(
        args.dir,
        allow_mixed=args.allow_mixed_episodes,
        out=args.out,
        records=args.records,
        allow_unverified=args.allow_unverified,
        html=args.html,
    )
