"""Making records: one checked record from its fields, or a batch from a learner's predictions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from results.records.format import RecordError, record_problems


def make_record(
    *,
    run_id: str,
    learner: str,
    split: str,
    n_way: int,
    k_shot: int | None,
    n_query: int | None,
    episode: int,
    correct: int,
    total: int,
    per_class: Mapping[str, tuple[int, int] | list[int]],
    per_super_category: Mapping[str, tuple[int, int] | list[int]],
    part_contributions: Mapping[str, float] | None = None,
    mask_mode: str | None = None,
    fingerprint: str | None = None,
    transductive: bool = False,
) -> dict[str, Any]:
    """One checked record as a plain JSON-able dict (numpy scalars become Python numbers)."""
    record = {
        "run_id": str(run_id),
        "learner": str(learner),
        "split": str(split),
        "n_way": int(n_way),
        "k_shot": None if k_shot is None else int(k_shot),
        "n_query": None if n_query is None else int(n_query),
        "episode": int(episode),
        "correct": int(correct),
        "total": int(total),
        "per_class": {str(k): [int(v[0]), int(v[1])] for k, v in per_class.items()},
        "per_super_category": {
            str(k): [int(v[0]), int(v[1])] for k, v in per_super_category.items()
        },
        "part_contributions": (
            None
            if part_contributions is None
            else {str(k): float(v) for k, v in part_contributions.items()}
        ),
        "mask_mode": None if mask_mode is None else str(mask_mode),
        "fingerprint": None if fingerprint is None else str(fingerprint),
        "transductive": bool(transductive),
    }
    problems = record_problems(record)
    if problems:
        raise RecordError("invalid record: " + "; ".join(problems))
    return record


def records_from_predictions(
    *,
    run_id: str,
    learner: str,
    split: str,
    k_shot: int | None,
    episodes: Any,
    classes: Any,
    labels: Any,
    predicted: Any,
    super_categories: Mapping[str, str],
    part_contributions: Any = None,
    slot_names: Sequence[str] | None = None,
    mask_mode: str | None = None,
    fingerprint: str | None = None,
    variable_shape: bool = False,
    transductive: bool = False,
) -> list[dict[str, Any]]:
    """Records for B same-shape episodes from a learner's predictions (numpy in, dicts out).

    episodes: (B,) episode indices. classes: (B, N) synsets (str) in way order.
    labels, predicted: (B, n) int way indices of the queries (true / argmax of the scores).
    super_categories: synset -> super-category. part_contributions: (B, S) floats or None, with
    slot_names (S,) naming the slots (e.g. episodes.taxonomy.PART_SLOTS).
    n_query in the record is n // N (queries per way); with variable_shape (one episode whose
    ways differ in shots or queries) k_shot and n_query are recorded as None.
    """
    episodes = np.asarray(episodes).reshape(-1)
    classes = np.asarray(classes)
    labels, predicted = np.asarray(labels), np.asarray(predicted)
    _check_prediction_shapes(episodes, classes, labels, predicted)
    n_episodes, n_way = classes.shape
    hits = labels == predicted
    # (B, N) correct and total query counts per way
    per_way_total = np.stack([(labels == j).sum(axis=1) for j in range(n_way)], axis=1)
    per_way_correct = np.stack([(hits & (labels == j)).sum(axis=1) for j in range(n_way)], axis=1)
    if part_contributions is not None:
        part_contributions = np.asarray(part_contributions, dtype=np.float64)
        if slot_names is None or part_contributions.shape != (n_episodes, len(slot_names)):
            raise RecordError(
                f"part_contributions must be (B={n_episodes}, S) with S slot_names, "
                f"got {part_contributions.shape} and {slot_names!r}"
            )
    unknown = sorted({str(c) for c in classes.reshape(-1)} - set(super_categories))
    if unknown:
        raise RecordError(
            f"no super-category for class {unknown[0]!r}: pass a complete "
            "synset -> super-category mapping (episodes.taxonomy.class_super_categories())"
        )
    records = []
    for b in range(n_episodes):
        per_class, per_super = _class_counts(
            classes[b], per_way_correct[b], per_way_total[b], super_categories
        )
        records.append(
            make_record(
                run_id=run_id,
                learner=learner,
                split=split,
                n_way=n_way,
                k_shot=None if variable_shape else k_shot,
                n_query=None if variable_shape else labels.shape[1] // n_way,
                episode=int(episodes[b]),
                correct=int(hits[b].sum()),
                total=int(labels.shape[1]),
                per_class=per_class,
                per_super_category=per_super,
                part_contributions=(
                    None
                    if part_contributions is None
                    else dict(zip(slot_names, part_contributions[b].tolist()))
                ),
                mask_mode=mask_mode,
                fingerprint=fingerprint,
                transductive=transductive,
            )
        )
    return records


def _check_prediction_shapes(
    episodes: np.ndarray, classes: np.ndarray, labels: np.ndarray, predicted: np.ndarray
) -> None:
    """RecordError unless classes is (B, N), labels and predicted (B, n), labels in [0, N)."""
    n_episodes = episodes.shape[0]
    if classes.ndim != 2 or classes.shape[0] != n_episodes:
        raise RecordError(f"classes must be (B={n_episodes}, N), got shape {classes.shape}")
    if labels.shape != predicted.shape or labels.ndim != 2 or labels.shape[0] != n_episodes:
        raise RecordError(
            f"labels {labels.shape} and predicted {predicted.shape} must both be "
            f"(B={n_episodes}, n_queries)"
        )
    n_way = classes.shape[1]
    if labels.size and (labels.min() < 0 or labels.max() >= n_way):
        raise RecordError(
            f"labels must be way indices in [0, {n_way}), got {labels.min()}..{labels.max()}"
        )


def _class_counts(
    classes: np.ndarray, correct: np.ndarray, total: np.ndarray, super_categories: Mapping[str, str]
) -> tuple[dict[str, list[int]], dict[str, list[int]]]:
    """One episode's [correct, total] per class and per super-category.

    classes: (N,) synsets in way order; correct, total: (N,) query counts per way.
    """
    per_class: dict[str, list[int]] = {}
    per_super: dict[str, list[int]] = {}
    for j in range(len(classes)):
        synset = str(classes[j])
        pair = [int(correct[j]), int(total[j])]
        per_class[synset] = pair
        counts = per_super.setdefault(super_categories[synset], [0, 0])
        counts[0] += pair[0]
        counts[1] += pair[1]
    return per_class, per_super
