"""Merge result files into one ranked table per setting.

Only files that validate take part (the others are listed with their problems in `.invalid`).
Rows ranked together must have been evaluated on the same episodes (same episodes.hash); mixing
is refused unless `allow_mixed_episodes`. Rows whose weights saw the test classes (e.g.
ImageNet-pretrained backbones: PartImageNet's test classes are ImageNet classes) are marked "†".
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from results.schema import read_result, validate_result
from results.tables import format_acc

LEAKED_MARK = "†"


class LeaderboardError(ValueError):
    """Results that cannot be ranked together; the message names the files and what differs."""


class Leaderboard(dict):
    """setting label -> ranked DataFrame, plus `.invalid` {file: problems} and `.duplicates`."""

    def __init__(self) -> None:
        super().__init__()
        self.invalid: dict[str, list[str]] = {}
        self.duplicates: dict[str, str] = {}  # file -> the file with the same content_hash


def setting_label(setting: dict[str, Any]) -> str:
    """A readable, file-name-safe label: "test_5way_1shot_15q_mixed".

    The part masks are not part of the setting: rows of one setting are ranked together and each
    row names its learner's masks (column `masks`).
    """
    def part(value: Any, suffix: str) -> str:
        return f"{'any' if value is None else value}{suffix}"

    pieces = [str(setting.get("split")), part(setting.get("n_way"), "way"),
              part(setting.get("k_shot"), "shot"), part(setting.get("n_query"), "q"),
              str(setting.get("mode") or "default")]
    return "_".join(p.replace("/", "-").replace(" ", "-") for p in pieces)


def result_files(dir_or_files: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]
                 ) -> list[Path]:
    """Files given, or every *.json under a folder (recursively), sorted."""
    if isinstance(dir_or_files, (str, os.PathLike)):
        dir_or_files = [dir_or_files]
    files: list[Path] = []
    for item in dir_or_files:
        path = Path(item)
        files += sorted(path.rglob("*.json")) if path.is_dir() else [path]
    return files


def merge(dir_or_files: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
          allow_mixed_episodes: bool = False) -> Leaderboard:
    """One ranked table per setting from the valid result files.

    Columns: rank, learner, accuracy, ci, "acc ± ci", leaked ("†" if the weights saw the test
    classes), masks (the learner's part masks, "" if none), episodes, backbone, weights, run,
    episodes_hash, file. Setting labels come from
    `setting_label`. Raises LeaderboardError when a setting's rows were evaluated on different
    episode hashes, unless allow_mixed_episodes (each row keeps its own `episodes_hash`).
    """
    board = Leaderboard()
    seen: dict[str, str] = {}
    rows: dict[str, list[dict[str, Any]]] = {}
    for path in result_files(dir_or_files):
        try:
            result = read_result(path)
        except (OSError, ValueError) as exc:
            board.invalid[str(path)] = [f"cannot read: {exc}"]
            continue
        problems = validate_result(result)
        if problems:
            board.invalid[str(path)] = problems
            continue
        if result["content_hash"] in seen:
            board.duplicates[str(path)] = seen[result["content_hash"]]
            continue
        seen[result["content_hash"]] = str(path)
        label = setting_label(result["setting"])
        leaked = result["weights"]["saw_test_classes"]
        for learner, metric in result["metrics"].items():
            rows.setdefault(label, []).append({
                "learner": learner,
                "accuracy": metric["accuracy"],
                "ci": metric["ci"],
                "acc ± ci": format_acc(metric["accuracy"],
                                       float("nan") if metric["ci"] is None else metric["ci"]),
                "leaked": LEAKED_MARK if leaked else "",
                "masks": metric["mask_mode"] or "",
                "episodes": metric["n_episodes"],
                "backbone": result["weights"]["backbone"],
                "weights": result["weights"]["provenance"],
                "run": result["name"],
                "episodes_hash": result["episodes"]["hash"],
                "file": str(path),
            })
    for label in sorted(rows):
        table = pd.DataFrame(rows[label])
        hashes = sorted(set(table["episodes_hash"]))
        if len(hashes) > 1 and not allow_mixed_episodes:
            by_hash = {h: sorted(set(table.loc[table["episodes_hash"] == h, "file"])) for h in hashes}
            detail = "; ".join(f"{h[:19]}…: {', '.join(files)}" for h, files in by_hash.items())
            raise LeaderboardError(
                f"setting {label}: results were evaluated on {len(hashes)} different episode sets "
                f"({detail}); their accuracies are not comparable. Re-run on the same episodes "
                "(same seed and settings, or the same episode file), or pass "
                "allow_mixed_episodes / --allow-mixed to rank them anyway")
        table = table.sort_values(["accuracy", "learner"], ascending=[False, True],
                                  kind="stable").reset_index(drop=True)
        table.insert(0, "rank", table["accuracy"].rank(ascending=False, method="min").astype(int))
        board[label] = table
    return board
