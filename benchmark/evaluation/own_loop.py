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
from episodes.storage import (
    MAX_EPISODE_FILE_BYTES,
    InputFileError,
    atomic_write_text,
    loads_strict,
    read_input_bytes,
)
from episodes.taxonomy import class_super_categories
from results.run_result import DATASET_NAMES
from results.scoring import ScoreError, predictions_source, read_predictions, score

NAMES_FORMAT = "partbench-episode-names"


def names_path(episode_file: str | Path) -> Path:
    """E.json -> E.names.json (the image names beside an episode file)."""
    path = Path(episode_file)
    return path.with_name(f"{path.stem}.names.json")


def write_episode_names(
    path: str | Path,
    dataset: Any,
    episodes: Sequence[Episode],
    *,
    episodes_hash: str,
    dataset_name: str,
) -> Path:
    """Write the episodes' synsets and image names ("<split>/<file_name>") as JSON, atomically."""

    def names(ways: tuple[tuple[int, ...], ...]) -> list[list[str]]:
        return [
            [f"{dataset.images[i].split}/{dataset.images[i].file_name}" for i in way]
            for way in ways
        ]

    doc = {
        "format": NAMES_FORMAT,
        "format_version": 1,
        "episodes_hash": episodes_hash,
        "dataset": {
            "name": dataset_name,
            "fingerprint": dataset.fingerprint,
            "root": str(dataset.root),
        },  # where this machine's copy lies
        "episodes": [
            {
                "episode": e.index,
                "split": e.split,
                "classes": list(e.classes),
                "support": names(e.support),
                "query": names(e.query),
            }
            for e in episodes
        ],
    }
    lines = ",\n".join(json.dumps(e, separators=(",", ":")) for e in doc.pop("episodes"))
    text = json.dumps(doc, separators=(",", ":"))[:-1] + ',"episodes":[\n' + lines + "\n]}\n"
    return atomic_write_text(path, text)


def score_files(
    predictions: str | Path,
    episode_file: str | Path,
    *,
    name: str,
    out_dir: str | Path,
    backbone: str | None = None,
    saw_test_classes: bool | None = None,
    transductive: bool = False,
    dataset_name: str | None = None,
) -> Path:
    """Score a predictions JSONL against an episode file; the result file written.

    dataset_name defaults to the one recorded in the episode file's E.names.json. Every user
    error is a ConfigError naming the file or episode.
    """
    try:
        frozen = load_episodes(Path(episode_file))
    except EpisodeFileError as exc:
        raise ConfigError(f"--episodes: {exc}") from None
    if dataset_name is not None and dataset_name not in DATASET_NAMES.values():
        raise ConfigError(
            f"--dataset-name {dataset_name!r}: not a dataset partbench knows; give "
            f"{' or '.join(DATASET_NAMES.values())}"
        )
    recorded = _recorded_dataset_name(
        episode_file, frozen.episodes_hash, required=dataset_name is None
    )
    if dataset_name is not None and recorded is not None and dataset_name != recorded:
        # the names file says which data the episodes index: another name would publish, say,
        # twin episodes as the real release
        raise ConfigError(
            f"--dataset-name {dataset_name!r} contradicts {names_path(episode_file)}, "
            f"which says the episodes index {recorded!r}; drop --dataset-name"
        )
    dataset = {"name": dataset_name or recorded, "fingerprint": frozen.dataset_fingerprint}
    try:
        return score(
            read_predictions(predictions),
            frozen.episodes,
            name=name,
            out_dir=out_dir,
            episodes_hash=frozen.episodes_hash,
            settings=frozen.settings,
            dataset=dataset,
            super_categories=class_super_categories(),
            backbone=backbone,
            saw_test_classes=saw_test_classes,
            transductive=transductive,
            source=predictions_source(predictions),
        )
    except ScoreError as exc:
        raise ConfigError(str(exc)) from None


def _recorded_dataset_name(
    episode_file: str | Path, episodes_hash: str, *, required: bool = True
) -> str | None:
    """The dataset name of the episode file's names file; None if there is none and not
    `required`."""
    path = names_path(episode_file)
    if not path.exists() and not path.is_symlink():
        if not required:
            return None
        raise ConfigError(
            f"{path} not found: give --dataset-name ({' or '.join(DATASET_NAMES.values())})"
        )
    try:
        doc = loads_strict(
            read_input_bytes(path, what="names file", max_bytes=MAX_EPISODE_FILE_BYTES)
        )
        recorded, name = doc["episodes_hash"], doc["dataset"]["name"]
    except InputFileError as exc:
        raise ConfigError(str(exc)) from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(
            f"{path}: not a names file written by `episodes --names` ({exc}); "
            "give --dataset-name instead"
        ) from None
    if recorded != episodes_hash:
        if not required:
            return None  # a stale names file says nothing about these episodes
        raise ConfigError(
            f"{path} was written for other episodes than {episode_file}; "
            "rewrite both with `episodes --names` or give --dataset-name"
        )
    if name not in DATASET_NAMES.values():
        raise ConfigError(
            f"{path}: dataset name {name!r} is not one partbench knows "
            f"({' or '.join(DATASET_NAMES.values())}); rewrite it with "
            "`episodes --names`"
        )
    return name
