"""`validate`: check leaderboard result files (schema, hashes, records, episodes)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    validate = sub.add_parser(
        "validate",
        help="check leaderboard result files",
        description="Check schema, field types and content hashes of result files; with "
        "--records, recompute every metric from the per-episode records; with "
        "--episodes, check the evaluated episodes' hash against an episode file.",
    )
    validate.add_argument("files", nargs="+", help="result files or folders of them")
    validate.add_argument(
        "--records",
        nargs="+",
        metavar="JSONL",
        help="the run's records.jsonl, to recompute the metrics",
    )
    validate.add_argument(
        "--episodes",
        metavar="FILE",
        help="an episode file that the results must have been evaluated on",
    )


def main(args: argparse.Namespace) -> int:
    from episodes import load_episodes
    from results.cli import validate_main

    return validate_main(
        args.files,
        records=args.records,
        episodes_file=args.episodes,
        episode_file_hasher=lambda path: load_episodes(path).episodes_hash,
    )
