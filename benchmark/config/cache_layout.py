"""The cache's layout, defined once: where a run keeps what is costly to remake (the twin, trained
weights, features, decoded training images, image-size checks), each kind's folder name, and the
short keys that name cache entries after everything that changes their content."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from episodes.storage import json_sha256


def cache_root(cache_dir: str | None) -> Path:
    """The cache folder: `cache_dir` if set, else $PARTBENCH_CACHE, else ~/.cache/partbench."""
    root = cache_dir or os.environ.get("PARTBENCH_CACHE") or Path.home() / ".cache" / "partbench"
    return Path(root).expanduser()


def short_key(payload: object) -> str:
    """The first 16 hex digits of json_sha256(payload): a cache entry's (or a run's) name."""
    return json_sha256(payload)[:16]


# Each kind's folder under the cache root (the twin: one folder per parameter key, TWIN_PREFIX + key).
TWIN_PREFIX = "twin-"
CHECKPOINTS_FOLDER = "checkpoints"
FEATURES_FOLDER = "features"
DECODED_FOLDER = "decoded"
IMAGE_SIZES_FOLDER = "image-sizes"
# What `python -m benchmark cache` lists and clears: kind -> glob under the cache root.
CACHE_KINDS = {
    "twin": f"{TWIN_PREFIX}*",
    "checkpoints": CHECKPOINTS_FOLDER,
    "features": FEATURES_FOLDER,
    "decoded": DECODED_FOLDER,
    "image-sizes": IMAGE_SIZES_FOLDER,
}


def cache_usage(root: Path) -> dict[str, int]:
    """Bytes on disk per kind of cache entry under `root` (0 for kinds not there)."""
    usage = {}
    for kind, pattern in CACHE_KINDS.items():
        files = (p for entry in root.glob(pattern) for p in [entry, *entry.rglob("*")])
        usage[kind] = sum(p.stat().st_size for p in files if p.is_file())
    return usage


def clear_cache(root: Path, kind: str) -> int:
    """Delete every entry of one kind under `root`; the bytes freed."""
    if kind not in CACHE_KINDS:
        raise ValueError(f"unknown cache kind {kind!r}; one of {sorted(CACHE_KINDS)}")
    freed = cache_usage(root)[kind]
    for entry in root.glob(CACHE_KINDS[kind]):
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    return freed
