"""The functions behind `python -m benchmark validate` and `python -m benchmark leaderboard`.

They print to stdout and return an exit code; argument parsing stays in benchmark/__main__.py.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

from results.leaderboard import LEAKED_MARK, LeaderboardError, merge, result_files
from results.records import RecordError, read_records
from results.schema import validate_result_file
from results.tables import save_table, to_text


def validate_main(
    paths: Iterable[str | os.PathLike[str]],
    *,
    episodes_hash: str | None = None,
    episodes_file: str | os.PathLike[str] | None = None,
    episode_file_hasher: Callable[[Path], str] | None = None,
    records: Iterable[str | os.PathLike[str]] | None = None,
) -> int:
    """Validate result files (folders are searched for *.json); print OK or each problem.

    Returns 0 when every file is valid, 1 when any is not, 2 when there is nothing to check or
    the records cannot be read.
    """
    skipped: dict[str, str] = {}
    files = result_files(list(paths), skipped)
    for path, why in skipped.items():
        print(f"skipped {path}: {why}")
    if not files:
        print("validate: no result files given")
        return 2
    frame = None
    if records:
        try:
            frame = read_records(list(records))
        except RecordError as exc:
            print(f"validate: cannot read the records: {exc}")
            return 2
    if episodes_file is not None:
        if episode_file_hasher is None:
            raise TypeError("episodes_file needs episode_file_hasher (a function Path -> hash)")
        try:  # once, not per result file: the episode file is the same for all of them
            episodes_hash = episode_file_hasher(Path(episodes_file))
        except (OSError, ValueError) as exc:
            print(f"validate: cannot use --episodes {episodes_file}: {exc}")
            return 2
    failed = 0
    for path in files:
        try:  # one unreadable or hostile file must not stop the others from being checked
            problems = validate_result_file(path, episodes_hash=episodes_hash, records=frame)
        except (ValueError, TypeError, KeyError, RecursionError) as exc:
            problems = [f"cannot be checked: {type(exc).__name__}: {exc}"]
        if problems:
            failed += 1
            print(f"FAIL {path}")
            for problem in problems:
                print(f"  - {problem}")
        else:
            print(f"OK   {path}")
    print(f"{len(files) - failed} of {len(files)} result files valid")
    return 1 if failed else 0


def leaderboard_main(
    dir: str | os.PathLike[str],
    allow_mixed: bool = False,
    out: str | os.PathLike[str] | None = None,
    *,
    records: Iterable[str | os.PathLike[str]] | None = None,
    allow_unverified: bool = False,
    html: str | os.PathLike[str] | None = None,
) -> int:
    """Print the ranked tables (one per dataset, setting and protocol), each with its rank rule.

    out: also write <out>/<label>.{csv,md,tex}; html: write <html>/index.html (see
    results.leaderboard_html). records: records.jsonl files to verify against (else the one
    beside each result file). Refused files get one line each and the others are still ranked.
    Returns 0 when tables were built, 1 when mixing episode sets was refused or nothing could be
    ranked, 2 when the folder or the records given cannot be read.
    """
    if not Path(dir).is_dir():
        print(f"leaderboard: {dir} is not a folder (give the folder holding the result files)")
        return 2
    frame = None
    if records:
        try:
            frame = read_records(list(records))
        except (RecordError, OSError) as exc:
            print(f"leaderboard: cannot read the records: {exc}")
            return 2
    try:
        board = merge(
            dir, allow_mixed_episodes=allow_mixed, records=frame, allow_unverified=allow_unverified
        )
    except LeaderboardError as exc:
        print(f"leaderboard: {exc}")
        return 1
    for path, problems in board.invalid.items():
        more = f" (+{len(problems) - 1} more: run validate on it)" if len(problems) > 1 else ""
        print(f"refused {path}: {problems[0]}{more}")
    for path, why in board.unverified.items():
        if allow_unverified:
            print(f"unverified {path}: {why}; listed apart, not ranked")
        else:
            print(
                f"refused {path}: cannot be verified ({why}); pass --records RECORDS.jsonl, "
                "or --allow-unverified to list it apart"
            )
    for path, original in board.duplicates.items():
        print(f"skipped {path}: same content as {original}")
    for path, why in board.skipped.items():
        print(f"skipped {path}: {why}")
    for path, why in board.mixed.items():
        print(f"refused {path}: {why}")
    if not board:
        print(f"leaderboard: no verifiable result files in {dir}")
        return 1
    for label, table in board.items():
        print(f"\n== {board.groups[label].title} ==")
        shown = table.drop(columns=["accuracy", "ci", "confidence", "file"]).copy()
        shown["episodes_hash"] = shown["episodes_hash"].str[:15]
        print(to_text(shown))
        print(board.rules[label])
        if out is not None:
            save_table(table, Path(out) / label)
    if any((t["leaked"] == LEAKED_MARK).any() for t in board.values()):
        print(
            f"\n{LEAKED_MARK}: weights saw the test classes (e.g. ImageNet-pretrained); "
            "not a clean few-shot result"
        )
    if html is not None:
        # Imported here: the page's plots load matplotlib, which `validate` never needs.
        from results.leaderboard_html import write_html

        print(f"html: {write_html(board, html)}")
    return 1 if board.mixed else 0
