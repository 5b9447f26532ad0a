"""The seal of a result file: section and content hashes, computed and checked.

`content_hash` is the sha256 of the canonical JSON of everything else in the file, and
`section_hashes` holds one per top-level section and per learner's metrics, so an edit after
writing is detected and named. The hash is a seal against accidental or careless edits, not a
signature: anyone can recompute it. The strong check is recomputing the metrics from the
per-episode records (`validate_result(..., records=...)`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from episodes.storage import json_sha256

SEAL_FIELDS: tuple[str, ...] = ("section_hashes", "content_hash")


def _sections(result: Mapping[str, Any]) -> dict[str, Any]:
    """What section_hashes covers: each top-level field and each learner's metrics."""
    sections = {k: v for k, v in result.items() if k not in SEAL_FIELDS}
    metrics = result.get("metrics")
    if isinstance(metrics, dict):
        sections |= {f"metrics.{learner}": m for learner, m in metrics.items()}
    return sections


def seal(result: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of `result` with section_hashes and content_hash (re)computed."""
    body = {k: v for k, v in result.items() if k not in SEAL_FIELDS}
    body["section_hashes"] = {name: json_sha256(value) for name, value in _sections(body).items()}
    body["content_hash"] = json_sha256(body)
    return body


def seal_problems(result: Mapping[str, Any]) -> list[str]:
    """Where a result disagrees with its seal: the edited sections named (empty: intact)."""
    body = {k: v for k, v in result.items() if k != "content_hash"}
    try:
        if result["content_hash"] == json_sha256(body):
            return []
    except (TypeError, ValueError) as exc:  # NaN or a non-JSON value
        return [f"content_hash: cannot hash the file's content ({exc})"]
    edited = "content hash mismatch — the file was edited after it was written"
    stored = result.get("section_hashes")
    if not isinstance(stored, dict):
        return [f"{edited} (section_hashes missing, cannot say where)"]
    recomputed = {name: json_sha256(value) for name, value in _sections(result).items()}
    changed = [
        name
        for name in sorted(set(stored) | set(recomputed))
        if stored.get(name) != recomputed.get(name)
    ]
    # "metrics" changes whenever one learner's metrics change: name the learner instead.
    if any(name.startswith("metrics.") for name in changed):
        changed = [name for name in changed if name != "metrics"]
    if not changed:
        return [f"section_hashes: {edited}"]
    return [f"{name}: {edited}" for name in changed]
