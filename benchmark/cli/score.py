"""`score`: turn a method's own predictions into records and a result file."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    score = sub.add_parser(
        "score",
        help="turn a method's own predictions into records and a result file",
        description="PREDICTIONS holds one JSON line per episode of the episode file: "
        '{"episode": i, "predictions": [predicted way of each query, in the '
        "episode's query order]}. Writes OUT/records.jsonl and OUT/result.json.",
    )
    score.add_argument("predictions", help="the predictions (JSONL)")
    score.add_argument("--episodes", required=True, help="the episode file the method ran")
    score.add_argument("--name", required=True, help="the method's name in the tables")
    score.add_argument("--out", required=True, help="folder for records.jsonl and result.json")
    score.add_argument("--backbone", help="the model whose features or weights the method used")
    score.add_argument(
        "--saw-test-classes",
        choices=("yes", "no"),
        help="whether those weights saw the test classes (undeclared: yes)",
    )
    score.add_argument(
        "--transductive", action="store_true", help="the method used each episode's queries jointly"
    )
    score.add_argument(
        "--dataset-name",
        help="dataset name for the result file (default: the "
        "one in the episode file's .names.json)",
    )


def main(args: argparse.Namespace) -> int:
    from benchmark.evaluation.own_loop import score_files
    from results.run_files import RECORDS_FILE

    declared = None if args.saw_test_classes is None else args.saw_test_classes == "yes"
    path = score_files(
        args.predictions,
        args.episodes,
        name=args.name,
        out_dir=args.out,
        backbone=args.backbone,
        saw_test_classes=declared,
        transductive=args.transductive,
        dataset_name=args.dataset_name,
    )
    print(
        f"result file: {path}  (check it with: python -m benchmark validate {path} "
        f"--records {Path(args.out) / RECORDS_FILE})"
    )
    return 0
