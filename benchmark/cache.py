"""Where a run caches what is costly to remake (the twin, trained weights, features), and the
short keys that name cache entries after everything that changes their content."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path


def cache_root(cache_dir: str | None) -> Path:
    """The cache folder: `cache_dir` if set, else $PARTBENCH_CACHE, else ~/.cache/partbench."""
    root = cache_dir or os.environ.get("PARTBENCH_CACHE") or Path.home() / ".cache" / "partbench"
    return Path(root).expanduser()


def short_key(payload: object) -> str:
    """16 hex digits of the sha256 of `payload`'s JSON (sorted keys): a cache entry's name."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]
