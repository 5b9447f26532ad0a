"""Content hashes of episodes: what a result file records to prove which episodes were run."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

from episodes.episode import Episode
from episodes.storage import canonical_json


def episode_record(episode: Episode) -> dict[str, Any]:
    """The canonical JSON-able form of one episode (also its form in episode files)."""
    return {
        "index": episode.index,
        "split": episode.split,
        "classes": list(episode.classes),
        "support": [list(s) for s in episode.support],
        "query": [list(q) for q in episode.query],
    }


def episode_from_record(record: dict[str, Any]) -> Episode:
    """The inverse of episode_record; raises KeyError/TypeError/ValueError on a malformed record."""
    return Episode(
        index=int(record["index"]),
        split=str(record["split"]),
        classes=tuple(str(c) for c in record["classes"]),
        support=tuple(tuple(int(i) for i in s) for s in record["support"]),
        query=tuple(tuple(int(i) for i in q) for q in record["query"]),
    )


def episodes_hash(episodes: Iterable[Episode]) -> str:
    """sha256 (hex) of the episodes in the given order, one canonical JSON line each.

    Two lists of episodes have the same hash iff they have the same indices, splits, classes in
    way order and support/query image indices in order.
    """
    digest = hashlib.sha256()
    for episode in episodes:
        digest.update(canonical_json(episode_record(episode)).encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()
