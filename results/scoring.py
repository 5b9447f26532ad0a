"""Score a method's own evaluation loop: predictions per episode -> records and a sealed result.

A method with its own loader runs the very episodes of an episode file (`python -m benchmark
episodes ... --names` lists each episode's image files) and writes one JSON line per episode:

    {"episode": 17, "predictions": [2, 0, 4, ...]}

the predicted way of each query, in the episode's query order (way-major: way 0's queries, then
way 1's, ...). `score` checks that every episode is there exactly once with one prediction per
query, each a way of the episode, and writes records.jsonl and a sealed result.json that
`validate --records` accepts and `leaderboard` merges. Undeclared weights count as having seen
the test classes. Python use (no torch):

    from episodes import load_episodes
    from episodes.taxonomy import class_super_categories
    from results.scoring import read_predictions, score

    frozen = load_episodes("test600.json")
    path = score(read_predictions("mine.jsonl"), frozen.episodes, name="mine", out_dir="scored",
                 episodes_hash=frozen.episodes_hash, settings=frozen.settings,
                 dataset={"name": "partimagenet-ood", "fingerprint": frozen.dataset_fingerprint},
                 super_categories=class_super_categories(), backbone="resnet50",
                 saw_test_classes=True)

Episodes are duck-typed (`index`, `split`, `classes`, `support`, `query` as episodes.Episode),
so results/ stays free of the episodes package.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from episodes.errors import PartbenchError
from episodes.storage import (
    MAX_EPISODE_FILE_BYTES,
    MAX_LINE_BYTES,
    InputFileError,
    StrictJSONError,
    file_sha256,
    json_sha256,
    loads_strict,
    read_input_bytes,
)
from results.provenance import package_versions
from results.records import RecordWriter, read_records, records_from_predictions
from results.run_files import RECORDS_FILE, RESULT_FILE
from results.schema import build_result, write_result


class ScoreError(PartbenchError, ValueError):
    """A predictions file or call that cannot be scored; the message names the episode or line."""


def read_predictions(path: str | os.PathLike[str]) -> dict[int, list[int]]:
    """Episode index -> predicted ways, from a JSONL file of {"episode": i, "predictions": [...]}.

    Raises ScoreError naming the line for bad JSON (a key twice included), missing keys,
    non-integer values, or an episode given twice; and naming the file for one that is not a
    plain file, is larger than MAX_EPISODE_FILE_BYTES or has a line over MAX_LINE_BYTES.
    """
    path = Path(path)
    try:
        data = read_input_bytes(path, what="predictions file", max_bytes=MAX_EPISODE_FILE_BYTES)
        lines = data.decode("utf-8").splitlines()
    except InputFileError as exc:
        raise ScoreError(str(exc)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ScoreError(f"{path}: cannot read the predictions: {exc}") from None
    found: dict[int, list[int]] = {}
    first_line: dict[int, int] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        if len(line) > MAX_LINE_BYTES:
            raise ScoreError(
                f"{where}: a line of {len(line):,} characters (at most "
                f"{MAX_LINE_BYTES:,}); one episode's predictions are far shorter"
            )
        try:
            entry = loads_strict(line)
        except StrictJSONError as exc:
            raise ScoreError(f"{where}: {exc}") from None
        if not isinstance(entry, dict) or set(entry) != {"episode", "predictions"}:
            raise ScoreError(
                f'{where}: expected {{"episode": i, "predictions": [...]}}, got {line[:80]!r}'
            )
        episode, predictions = entry["episode"], entry["predictions"]
        if not _is_int(episode) or episode < 0:
            raise ScoreError(
                f'{where}: "episode" must be an episode index (int >= 0), got {episode!r}'
            )
        if not isinstance(predictions, list) or not all(_is_int(p) for p in predictions):
            raise ScoreError(
                f'{where}: episode {episode}: "predictions" must be a list of integer way indices'
            )
        if episode in found:
            raise ScoreError(
                f"{where}: episode {episode} is given twice (first on line "
                f"{first_line[episode]}); give each episode once"
            )
        found[episode], first_line[episode] = predictions, number
    return found


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def score_records(
    predictions: Mapping[int, Sequence[int]],
    episodes: Sequence[Any],
    *,
    run_id: str,
    learner: str,
    super_categories: Mapping[str, str],
    transductive: bool = False,
) -> list[dict[str, Any]]:
    """One record per episode (results.records format), after checking the predictions.

    predictions: episode index -> predicted way per query (way-major query order).
    Raises ScoreError naming the episode: missing, extra (not in `episodes`), a wrong number of
    predictions, or a way outside [0, n_way).
    """
    by_index = {int(e.index): e for e in episodes}
    if len(by_index) != len(episodes):
        raise ScoreError("the episodes repeat an episode index")
    extra = sorted(set(predictions) - set(by_index))
    if extra:
        raise ScoreError(
            f"episode {extra[0]} is not in the episode file ({len(extra)} such "
            f"episodes: {_shown(extra)})"
        )
    missing = sorted(set(by_index) - set(predictions))
    if missing:
        raise ScoreError(
            f"episode {missing[0]} has no predictions ({len(missing)} of "
            f"{len(by_index)} episodes missing: {_shown(missing)})"
        )
    records = []
    for index in sorted(by_index):
        episode, predicted = by_index[index], list(predictions[index])
        n_way = len(episode.classes)
        n_queries = [len(way) for way in episode.query]
        if len(predicted) != sum(n_queries):
            raise ScoreError(
                f"episode {index}: {len(predicted)} predictions, but it has "
                f"{sum(n_queries)} queries ({' + '.join(map(str, n_queries))} per way)"
            )
        bad = [(q, p) for q, p in enumerate(predicted) if not 0 <= p < n_way]
        if bad:
            raise ScoreError(
                f"episode {index}: query {bad[0][0]} is predicted as way {bad[0][1]}, "
                f"not a way in [0, {n_way})"
            )
        shots = {len(way) for way in episode.support}
        fixed = len(shots) == 1 and len(set(n_queries)) == 1
        made = records_from_predictions(
            run_id=run_id,
            learner=learner,
            split=episode.split,
            k_shot=shots.pop() if fixed else None,
            episodes=[index],
            classes=[list(episode.classes)],
            labels=[np.repeat(np.arange(n_way), n_queries)],
            predicted=[predicted],
            super_categories=super_categories,
            variable_shape=not fixed,
            transductive=transductive,
        )
        records += made
    return records


def _shown(indices: list[int], limit: int = 5) -> str:
    more = f", ... ({len(indices) - limit} more)" if len(indices) > limit else ""
    return ", ".join(map(str, indices[:limit])) + more


def score(
    predictions: Mapping[int, Sequence[int]],
    episodes: Sequence[Any],
    *,
    name: str,
    out_dir: str | os.PathLike[str],
    episodes_hash: str,
    settings: Mapping[str, Any],
    dataset: Mapping[str, Any],
    super_categories: Mapping[str, str],
    backbone: str | None = None,
    saw_test_classes: bool | None = None,
    transductive: bool = False,
    source: Mapping[str, Any] | None = None,
) -> Path:
    """Write out_dir/records.jsonl and out_dir/result.json for `predictions`; returns the result.

    episodes, episodes_hash, settings: from the episode file (episodes.load_episodes).
    dataset: {name, fingerprint, ...} of the data the episodes index. backbone: the model the
    method used; saw_test_classes: whether its weights saw the test classes (None, undeclared,
    counts as True). source: what to record about where the predictions came from (e.g. the
    file's name and sha256). Refuses to write over an existing result or records file.
    """
    started = time.time()
    out = Path(out_dir)
    for existing in (out / RECORDS_FILE, out / RESULT_FILE):
        if existing.exists():
            raise ScoreError(f"{existing} exists; choose another --out folder")
    if not name or ":" in name or "/" in name:
        raise ScoreError(f"name {name!r}: give a short method name (no ':' or '/')")
    digest = json_sha256(
        {
            "name": name,
            "episodes_hash": episodes_hash,
            "predictions": {str(k): list(v) for k, v in sorted(predictions.items())},
        }
    )
    run_id = "scored-" + digest[:16]
    records = score_records(
        predictions,
        episodes,
        run_id=run_id,
        learner=name,
        super_categories=super_categories,
        transductive=transductive,
    )
    out.mkdir(parents=True, exist_ok=True)
    with RecordWriter(out / RECORDS_FILE) as writer:
        writer.append_many(records)
    frame = read_records(out / RECORDS_FILE)
    declared = saw_test_classes is not None
    origin = {"kind": "predictions", "predictions_sha256": digest, **dict(source or {})}
    seed = settings.get("seed")
    result = build_result(
        run_id=run_id,
        name=name,
        setting={
            "split": records[0]["split"],
            "n_way": settings.get("n_way"),
            "k_shot": settings.get("k_shot"),
            "n_query": settings.get("n_query"),
            "mode": settings.get("mode"),
            "mask_mode": None,
        },
        config={
            "scored": {
                "name": name,
                "backbone": backbone,
                "saw_test_classes": saw_test_classes,
                "transductive": transductive,
            }
        },
        seeds={"episodes": seed} if _is_int(seed) else {},
        versions=package_versions(),
        git_commit=None,
        git_dirty=None,
        hardware={"device": "unknown (scored from the method's own predictions)"},
        dataset=dict(dataset),
        weights={
            "backbone": backbone or "undeclared",
            "provenance": "declared by the submitter" if declared else "undeclared",
            "sha256": None,
            "saw_test_classes": bool(saw_test_classes) if declared else True,
        },
        episodes_hash=episodes_hash,
        episodes_requested=len(episodes),
        wall_time_s=time.time() - started,
        records=frame,
        origins={name: origin},
    )
    return write_result(out / RESULT_FILE, result)


def predictions_source(path: str | os.PathLike[str]) -> dict[str, str]:
    """{"predictions_file": name, "predictions_file_sha256": ...} of a predictions file."""
    return {"predictions_file": Path(path).name, "predictions_file_sha256": file_sha256(path)}
