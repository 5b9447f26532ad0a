"""Shared builders for the results tests (no tests here): fake episode records and result files."""

from __future__ import annotations

from typing import Any

import numpy as np

from results.records import make_record
from results.schema import build_result

# (synset, super-category) for 5 fake ways
WAYS = (("n01", "Fish"), ("n02", "Bird"), ("n03", "Car"), ("n04", "Fish"), ("n05", "Boat"))


def fake_records(
    learner: str,
    p_correct: float,
    n_episodes: int = 20,
    *,
    seed: int = 0,
    run_id: str = "run-a",
    k_shot: int = 1,
    n_query: int = 5,
    split: str = "test",
    mask_mode: str | None = "auto",
    with_parts: bool = False,
    start: int = 0,
) -> list[dict[str, Any]]:
    """Episodes whose per-way correct counts are Binomial(n_query, p_correct), seeded.

    mask_mode "auto": "predicted" (annotation protocol none) for a learner whose name starts
    with "part", None (no part features) for any other."""
    if mask_mode == "auto":
        mask_mode = "predicted" if learner.startswith("part") else None
    rng = np.random.default_rng(seed)
    records = []
    for episode in range(start, start + n_episodes):
        per_class, per_super = {}, {}
        for synset, super_category in WAYS:
            correct = int(rng.binomial(n_query, p_correct))
            per_class[synset] = [correct, n_query]
            pair = per_super.setdefault(super_category, [0, 0])
            pair[0] += correct
            pair[1] += n_query
        share = float(rng.uniform(0.2, 0.8))
        records.append(
            make_record(
                run_id=run_id,
                learner=learner,
                split=split,
                n_way=len(WAYS),
                k_shot=k_shot,
                n_query=n_query,
                episode=episode,
                correct=sum(c for c, _ in per_class.values()),
                total=n_query * len(WAYS),
                per_class=per_class,
                per_super_category=per_super,
                part_contributions={"Head": share, "Body": 1 - share} if with_parts else None,
                mask_mode=mask_mode,
            )
        )
    return records


def fake_result(
    records,
    *,
    run_id: str = "run-a",
    name: str = "5way1shot",
    episodes_hash: str = "sha256:" + "e" * 64,
    saw_test_classes: bool = False,
    k_shot: int = 1,
    n_query: int = 5,
    requested: int | None = None,
    backbone: str = "resnet18",
) -> dict[str, Any]:
    n = int(records[records["run_id"] == run_id]["episode"].nunique())
    return build_result(
        run_id=run_id,
        name=name,
        setting={
            "split": "test",
            "n_way": 5,
            "k_shot": k_shot,
            "n_query": n_query,
            "mode": "mixed",
            "mask_mode": "oracle",
        },
        config={"episodes": {"n_way": 5, "k_shot": k_shot}, "learners": ["protonet"]},
        seeds={"episodes": 0, "backbone": 0},
        versions={"partbench": "0.1.0", "torch": "2.14.1", "timm": "1.0.31", "python": "3.11.9"},
        git_commit="0123abcd",
        git_dirty=False,
        hardware={"device": "cpu", "cpu_count": 2},
        dataset={"name": "synthetic-twin", "fingerprint": "sha256:" + "d" * 64},
        weights={
            "backbone": backbone,
            "provenance": "imagenet-hub" if saw_test_classes else "train",
            "sha256": "sha256:" + "w" * 64,
            "saw_test_classes": saw_test_classes,
        },
        episodes_hash=episodes_hash,
        episodes_requested=requested or n,
        wall_time_s=12.5,
        records=records,
        created_utc="2026-01-01T00:00:00+00:00",
    )
