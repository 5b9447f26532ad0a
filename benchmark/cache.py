"""Where a run caches what is costly to remake (the twin, trained weights, features), and the
short keys that name cache entries after everything that changes their content."""

from __future__ import annotations

import os
from pathlib import Path

from episodes.storage import json_sha256


def cache_root(cache_dir: str | None) -> Path:
    """The cache folder: `cache_dir` if set, else $PARTBENCH_CACHE, else ~/.cache/partbench."""
    root = cache_dir or os.environ.get("PARTBENCH_CACHE") or Path.home() / ".cache" / "partbench"
    return Path(root).expanduser()


def short_key(payload: object) -> str:
    """The first 16 hex digits of json_sha256(payload): a cache entry's (or a run's) name."""
    return json_sha256(payload)[:16]
