"""The record format: one episode's result, its checks, and the checksummed line it is stored as.

A records file holds the episodes of ONE run (one run_id, one split), for any number of
learners; `(learner, episode)` identifies a record within it. N-way, K-shot and Q are stored per
episode (they vary in the sampler's "variable" mode), and so is mask_mode (per learner: null for
learners that do not use parts).

Record fields (`RECORD_FIELDS`):
    run_id: str                     the run that produced the episode
    learner: str                    registered learner name
    split: str                      "train" | "val" | "test" (or a user's split name)
    n_way: int                      the episode's number of ways
    k_shot, n_query: int | None     shots and queries per way; null where they vary within the
                                    episode (variable mode)
    episode: int                    the episode index i (with the sampler's seed it fixes the episode)
    correct, total: int             correctly classified queries / queries in the episode
    per_class: {synset: [correct, total]}
    per_super_category: {name: [correct, total]}
    part_contributions: {slot: float} | None   mean share of the decision owed to each part slot
    mask_mode: str | None           part masks behind the learner's features ("oracle", ...);
                                    null for learners that use no parts
    transductive: bool              (optional; absent = false) the learner's predict() used the
                                    episode's queries jointly: another protocol than inductive
    fingerprint: str | None         the run fingerprint (what determines the records: dataset,
                                    weights, features, episodes, learner and options); a resume
                                    under another fingerprint is refused

Each line also carries `checksum` (CHECKSUM_FIELD): the first 16 hex digits of sha256 of the
record's canonical JSON without it, added on write and checked on every read, so an edited
record (a changed `correct`, say) is caught. Like the result file's content hash it is a seal
against careless edits, not a signature.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from episodes.errors import PartbenchError
from episodes.storage import canonical_json, json_sha256

# name -> (accepted Python types, may be None)
RECORD_FIELDS: dict[str, tuple[tuple[type, ...], bool]] = {
    "run_id": ((str,), False),
    "learner": ((str,), False),
    "split": ((str,), False),
    "n_way": ((int,), False),
    "k_shot": ((int,), True),
    "n_query": ((int,), True),
    "episode": ((int,), False),
    "correct": ((int,), False),
    "total": ((int,), False),
    "per_class": ((dict,), False),
    "per_super_category": ((dict,), False),
    "part_contributions": ((dict,), True),
    "mask_mode": ((str,), True),
    "fingerprint": ((str,), True),
}
CHECKSUM_FIELD = "checksum"

# Fields a record may omit (files written before they existed), with their value when absent.
OPTIONAL_FIELDS: dict[str, Any] = {"transductive": False}

# Fields every record of one file shares: one file = one run on one split.
FILE_FIELDS: tuple[str, ...] = ("run_id", "split")


class RecordError(PartbenchError, ValueError):
    """A record or records file that cannot be used; the message names the file, line and field."""


def record_problems(record: Any) -> list[str]:
    """Every way `record` breaks the record schema (empty when it is valid)."""
    if not isinstance(record, dict):
        return [f"a record must be a JSON object, got {type(record).__name__}"]
    problems = []
    missing = [name for name in RECORD_FIELDS if name not in record]
    problems += [f"missing field {name!r}" for name in missing]
    unknown = sorted(set(record) - set(RECORD_FIELDS) - set(OPTIONAL_FIELDS))
    problems += [f"unknown field {name!r}" for name in unknown]
    for name, absent in OPTIONAL_FIELDS.items():
        if name in record and type(record[name]) is not type(absent):
            problems.append(f"{name}: expected {type(absent).__name__}, got {record[name]!r}")
    for name, (types_, nullable) in RECORD_FIELDS.items():
        if name not in record:
            continue
        value = record[name]
        if value is None and nullable:
            continue
        if isinstance(value, bool) or not isinstance(value, types_):
            problems.append(f"{name}: expected {types_[0].__name__}, got {value!r}")
    if problems:
        return problems
    if not 0 <= record["correct"] <= record["total"]:
        problems.append(f"correct={record['correct']} must lie in [0, total={record['total']}]")
    if record["total"] < 1:
        problems.append(f"total must be at least 1, got {record['total']}")
    if record["episode"] < 0:
        problems.append(f"episode must be >= 0, got {record['episode']}")
    for name in ("per_class", "per_super_category"):
        counts = record[name]
        for key, pair in counts.items():
            if (
                not isinstance(pair, list)
                or len(pair) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in pair)
                or not 0 <= pair[0] <= pair[1]
            ):
                problems.append(
                    f"{name}[{key!r}]: expected [correct, total] with 0<=correct<=total, "
                    f"got {pair!r}"
                )
        if not problems and counts and sum(p[1] for p in counts.values()) != record["total"]:
            problems.append(
                f"{name}: totals sum to {sum(p[1] for p in counts.values())}, "
                f"not total={record['total']}"
            )
    contributions = record["part_contributions"]
    if contributions is not None:
        for key, value in contributions.items():
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not math.isfinite(value)
            ):
                problems.append(
                    f"part_contributions[{key!r}]: expected a finite number, got {value!r}"
                )
    return problems


def _dumps(record: Mapping[str, Any]) -> str:
    return canonical_json(record)


def record_checksum(record: Mapping[str, Any]) -> str:
    """The first 16 hex digits of sha256 of the record's canonical JSON (without a checksum)."""
    body = {k: v for k, v in record.items() if k != CHECKSUM_FIELD}
    return json_sha256(body)[:16]


def record_line(record: Mapping[str, Any]) -> str:
    """The line a record is stored as: canonical JSON with its checksum, and a newline."""
    body = {k: v for k, v in record.items() if k != CHECKSUM_FIELD}
    return _dumps({**body, CHECKSUM_FIELD: record_checksum(body)}) + "\n"
