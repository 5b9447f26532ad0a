"""Support for methods that run their own loop: episode image names out, predictions scored in.

`python -m benchmark episodes ... --names` writes, beside the episode file E.json, E.names.json:
each episode's class synsets and image files as "<split>/<file_name>" (way-major, the order
predictions must follow), so a method with its own PartImageNet loader uses the very same
episodes. `python -m benchmark score` turns that method's predictions into records and a result
file (results.scoring does the work; this module reads the files and the flags).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmark.config.errors import ConfigError
from episodes import EpisodeFileError, load_episodes
from episodes.episode import Episode
from episodes.storage import atomic_write_text
from episodes.taxonomy import class_super_categories
from results.run_result import DATASET_NAMES
from results.scoring import ScoreError, predictions_source, read_predictions, score

NAMES_FORMAT = "partbench-episode-names"


def names_path(episode_file: str | Path) -> Path:
    """E.json -> E.names.json (the image names beside an episode file)."""
    path = Path(episode_file)
    return path.with_name(f"{path.stem}.names.json")


def write_episode_names(path: str | Path, dataset: Any, episodes: Sequence[Episode], *,
                        episodes_hash: str, dataset_name: str) -> Path:
    """Write the episodes' synsets and image names ("<split>/<file_name>") as JSON, atomically."""
    def names(ways: tuple[tuple[int, ...], ...]) -> list[list[str]]:
        return [[f"{dataset.images[i].split}/{dataset.images[i].file_name}" for i in way]
                for way in ways]

    doc = {"format": NAMES_FORMAT, "format_version": 1, "episodes_hash": episodes_hash,
           "dataset": {"name": dataset_name, "fingerprint": dataset.fingerprint,
                       "root": str(dataset.root)},  # where this machine's copy lies
           "episodes": [{"episode": e.index, "split": e.split, "classes": list(e.classes),
                         "support": names(e.support), "query": names(e.query)}
                        for e in episodes]}
    lines = ",\n".join(json.dumps(e, separators=(",", ":")) for e in doc.pop("episodes"))
    text = json.dumps(doc, separators=(",", ":"))[:-1] + ',"episodes":[\n' + lines + "\n]}\n"
    return atomic_write_text(path, text)


def score_files(predictions: str | Path, episode_file: str | Path, *, name: str, out_dir: str | Path,
                backbone: str | None = None, saw_test_classes: bool | None = None,
                transductive: bool = False, dataset_name: str | None = None) -> Path:
    """Score a predictions JSONL against an episode file; the result file written.

    dataset_name defaults to the one recorded in the episode file's E.names.json. Every user
    error is a ConfigError naming the file or episode.
    """
    try:
        frozen = load_episodes(Path(episode_file))
    except EpisodeFileError as exc:
        raise ConfigError(f"--episodes: {exc}") from None
    dataset = {"name": dataset_name or _recorded_dataset_name(episode_file, frozen.episodes_hash),
               "fingerprint": frozen.dataset_fingerprint}
    try:
        return score(read_predictions(predictions), frozen.episodes, name=name, out_dir=out_dir,
                     episodes_hash=frozen.episodes_hash, settings=frozen.settings,
                     dataset=dataset, super_categories=class_super_categories(),
                     backbone=backbone, saw_test_classes=saw_test_classes,
                     transductive=transductive, source=predictions_source(predictions))
    except ScoreError as exc:
        raise ConfigError(str(exc)) from None


def _recorded_dataset_name(episode_file: str | Path, episodes_hash: str) -> str:
    path = names_path(episode_file)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        recorded, name = doc["episodes_hash"], doc["dataset"]["name"]
    except FileNotFoundError:
        raise ConfigError(f"{path} not found: give --dataset-name "
                          f"({' or '.join(DATASET_NAMES.values())})") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: not a names file written by `episodes --names` ({exc}); "
                          "give --dataset-name instead") from None
    if recorded != episodes_hash:
        raise ConfigError(f"{path} was written for other episodes than {episode_file}; "
                          "rewrite both with `episodes --names` or give --dataset-name")
    return name
