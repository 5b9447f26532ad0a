"""Per-episode records: one JSON object per line, appended as a run goes, so a killed run resumes.

A records file holds the episodes of ONE run (one run_id, one split), for any number of
learners; `(learner, episode)` identifies a record within it. N-way, K-shot and Q are stored per
episode (they vary in the sampler's "variable" mode), and so is mask_mode (per learner: null for
learners that do not use parts). The runner opens a `RecordWriter`, skips the pairs in
`writer.done`, and appends each finished batch with `append_many`, which flushes and fsyncs
before returning: a record on disk is an episode that never needs to run again. A kill can only
tear the last line, which the next open cuts away.

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

A bad line that is not the last (garbage, an edited or foreign record, a repeated episode) stops
every reader with one line naming the file, the line number and the repair:
`repair_records(path)` (`python -m benchmark repair RUN_DIR`) moves such lines into
`<file>.rejected` beside the file, verbatim, and keeps the rest; nothing is deleted, and the
moved episodes simply run again on `--resume`.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from dataclasses import dataclass
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from episodes.storage import (MAX_RECORDS_BYTES, StrictJSONError, atomic_write_bytes,
                              canonical_json, check_input_file, disk_error, json_sha256,
                              loads_strict, read_input_bytes)
from episodes.errors import PartbenchError

try:
    import fcntl  # POSIX: one writer per records file
except ImportError:  # pragma: no cover - Windows
    fcntl = None

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
REJECTED_SUFFIX = ".rejected"

# Fields a record may omit (files written before they existed), with their value when absent.
OPTIONAL_FIELDS: dict[str, Any] = {"transductive": False}

# Fields every record of one file shares: one file = one run on one split.
FILE_FIELDS: tuple[str, ...] = ("run_id", "split")
# Fields `RecordWriter(expect=...)` may pin (checked on every existing and appended record).
EXPECTABLE_FIELDS: tuple[str, ...] = ("run_id", "split", "n_way", "k_shot", "n_query",
                                      "fingerprint")


class RecordError(PartbenchError, ValueError):
    """A record or records file that cannot be used; the message names the file, line and field."""


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
        "run_id": str(run_id), "learner": str(learner), "split": str(split),
        "n_way": int(n_way),
        "k_shot": None if k_shot is None else int(k_shot),
        "n_query": None if n_query is None else int(n_query),
        "episode": int(episode), "correct": int(correct), "total": int(total),
        "per_class": {str(k): [int(v[0]), int(v[1])] for k, v in per_class.items()},
        "per_super_category": {
            str(k): [int(v[0]), int(v[1])] for k, v in per_super_category.items()
        },
        "part_contributions": (
            None if part_contributions is None
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
    n_episodes = episodes.shape[0]
    if classes.ndim != 2 or classes.shape[0] != n_episodes:
        raise RecordError(f"classes must be (B={n_episodes}, N), got shape {classes.shape}")
    if labels.shape != predicted.shape or labels.ndim != 2 or labels.shape[0] != n_episodes:
        raise RecordError(f"labels {labels.shape} and predicted {predicted.shape} must both be "
                          f"(B={n_episodes}, n_queries)")
    n_way = classes.shape[1]
    if labels.size and (labels.min() < 0 or labels.max() >= n_way):
        raise RecordError(f"labels must be way indices in [0, {n_way}), got {labels.min()}..{labels.max()}")
    hits = labels == predicted
    # (B, N) correct and total query counts per way
    per_way_total = np.stack([(labels == j).sum(axis=1) for j in range(n_way)], axis=1)
    per_way_correct = np.stack([(hits & (labels == j)).sum(axis=1) for j in range(n_way)], axis=1)
    if part_contributions is not None:
        part_contributions = np.asarray(part_contributions, dtype=np.float64)
        if slot_names is None or part_contributions.shape != (n_episodes, len(slot_names)):
            raise RecordError(f"part_contributions must be (B={n_episodes}, S) with S slot_names, "
                              f"got {part_contributions.shape} and {slot_names!r}")
    unknown = sorted({str(c) for c in classes.reshape(-1)} - set(super_categories))
    if unknown:
        raise RecordError(f"no super-category for class {unknown[0]!r}: pass a complete "
                          "synset -> super-category mapping (episodes.taxonomy.class_super_categories())")
    records = []
    for b in range(n_episodes):
        per_class: dict[str, list[int]] = {}
        per_super: dict[str, list[int]] = {}
        for j in range(n_way):
            synset = str(classes[b, j])
            pair = [int(per_way_correct[b, j]), int(per_way_total[b, j])]
            per_class[synset] = pair
            counts = per_super.setdefault(super_categories[synset], [0, 0])
            counts[0] += pair[0]
            counts[1] += pair[1]
        records.append(make_record(
            run_id=run_id, learner=learner, split=split, n_way=n_way,
            k_shot=None if variable_shape else k_shot,
            n_query=None if variable_shape else labels.shape[1] // n_way, episode=int(episodes[b]),
            correct=int(hits[b].sum()), total=int(labels.shape[1]),
            per_class=per_class, per_super_category=per_super,
            part_contributions=(None if part_contributions is None else
                                dict(zip(slot_names, part_contributions[b].tolist()))),
            mask_mode=mask_mode, fingerprint=fingerprint, transductive=transductive))
    return records


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
            if (not isinstance(pair, list) or len(pair) != 2
                    or not all(isinstance(v, int) and not isinstance(v, bool) for v in pair)
                    or not 0 <= pair[0] <= pair[1]):
                problems.append(f"{name}[{key!r}]: expected [correct, total] with 0<=correct<=total, "
                                f"got {pair!r}")
        if not problems and counts and sum(p[1] for p in counts.values()) != record["total"]:
            problems.append(f"{name}: totals sum to {sum(p[1] for p in counts.values())}, "
                            f"not total={record['total']}")
    contributions = record["part_contributions"]
    if contributions is not None:
        for key, value in contributions.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                problems.append(f"part_contributions[{key!r}]: expected a finite number, got {value!r}")
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


def _parse_record(raw: bytes) -> tuple[dict[str, Any] | None, str | None, bool]:
    """(record, None, _) for a good line; (None, why, is_json_error) for a bad one."""
    try:
        record = loads_strict(raw)
    except StrictJSONError as exc:
        return None, str(exc), True
    if not isinstance(record, dict):
        return None, f"a record must be a JSON object, got {type(record).__name__}", False
    stored = record.pop(CHECKSUM_FIELD, None)
    problems = record_problems(record)
    if problems:
        return None, "; ".join(problems), False
    if stored is None:
        return None, f"no {CHECKSUM_FIELD!r} field: not written by this partbench", False
    if stored != record_checksum(record):
        return None, (f"{CHECKSUM_FIELD} mismatch: the record was edited after it was written "
                      f"(e.g. its correct/total counts)"), False
    return record, None, False


@dataclass
class _Scan:
    """A records file read line by line, nothing raised yet."""

    records: list[tuple[int, dict[str, Any]]]   # (line number, record) of the good lines
    bad: list[tuple[int, bytes, str]]           # (line number, raw line, why) of the others
    intact: int                                 # bytes up to the end of the last good/bad line
    torn: tuple[int, bytes, str] | None         # a damaged last line (a kill mid-write)


def _scan(data: bytes) -> _Scan:
    """Classify every line: good, bad (garbage, edited, foreign, a repeat), or a torn tail.

    Only the last line may be torn (no final newline, or invalid JSON): a kill mid-write can
    only damage the end of an append-only file. Anything wrong elsewhere is corruption. A record
    whose (learner, episode) appeared before, or whose run_id/split differ from the first
    record's, is bad (one file = one run on one split; each episode once).
    """
    scan = _Scan([], [], 0, None)
    lines = data.split(b"\n")
    first: dict[str, Any] | None = None
    seen: dict[tuple[str, int], int] = {}
    for number, raw in enumerate(lines, start=1):
        if number == len(lines):  # after the final newline: b"" when the file is complete
            if raw.strip():
                scan.torn = (number, raw, f"line {number} has no final newline (torn write)")
            return scan
        if not raw.strip():
            scan.intact += len(raw) + 1
            continue
        record, why, json_error = _parse_record(raw)
        # a bad last complete line is a torn write only when nothing follows it: with a partial
        # line after it, that partial line is the torn tail and this one is corruption
        if record is None and json_error and number == len(lines) - 1 and not lines[-1].strip():
            scan.torn = (number, raw + b"\n", f"line {number} is {why}")
            return scan
        if record is not None:
            key = (record["learner"], record["episode"])
            first = first or record
            foreign = [n for n in FILE_FIELDS if record[n] != first[n]]
            if foreign:
                why = (f"{foreign[0]}={record[foreign[0]]!r} but the first record has "
                       f"{first[foreign[0]]!r}; a records file holds one run on one split")
            elif key in seen:
                why = (f"repeats learner={key[0]!r} episode={key[1]} of line {seen[key]} "
                       "(it would be counted twice)")
            else:
                seen[key] = number
                scan.records.append((number, record))
        if why is not None:
            scan.bad.append((number, raw, why))
        scan.intact += len(raw) + 1
    return scan


def rejected_path(path: str | os.PathLike[str]) -> Path:
    """The side file `repair_records` moves bad lines into: `<records file>.rejected`."""
    path = Path(path)
    return path.with_name(path.name + REJECTED_SUFFIX)


def _raise_on_bad_lines(path: Path, scan: _Scan) -> None:
    if not scan.bad:
        return
    number, _, why = scan.bad[0]
    more = f" (and {len(scan.bad) - 1} more bad lines)" if len(scan.bad) > 1 else ""
    raise RecordError(
        f"{path}:{number}: {why}{more}; repair with `python -m benchmark repair {path}`: it "
        f"moves the bad lines to {rejected_path(path).name} (deleting nothing), and --resume "
        "runs their episodes again")


@dataclass(frozen=True)
class RepairReport:
    """What `repair_records` did: lines kept, lines moved (line number, why), the side file."""

    kept: int
    moved: tuple[tuple[int, str], ...]
    side_file: Path | None


def repair_records(path: str | os.PathLike[str]) -> RepairReport:
    """Move every bad, repeated, foreign or torn line of a records file into `<file>.rejected`.

    The side file is appended to (verbatim lines, fsynced) before the records file is
    rewritten atomically with the good lines in their order: nothing is ever deleted, and a
    kill at any moment leaves every line in one of the two files. Holds the writer's lock, so a
    running run's file cannot be repaired under it. A clean file is left untouched.
    """
    path = Path(path)
    if not path.is_file():
        raise RecordError(f"{path}: no such records file")
    check_input_file(path, what="records file", max_bytes=MAX_RECORDS_BYTES)
    with open(path, "a", encoding="utf-8") as handle:
        _lock_or_refuse(handle, path)
        data = read_input_bytes(path, what="records file", max_bytes=MAX_RECORDS_BYTES)
        scan = _scan(data)
        moved = [(n, raw if raw.endswith(b"\n") else raw + b"\n", why) for n, raw, why in scan.bad]
        if scan.torn is not None:
            n, raw, why = scan.torn
            moved.append((n, raw if raw.endswith(b"\n") else raw + b"\n", why))
        if not moved:
            return RepairReport(len(scan.records), (), None)
        side = rejected_path(path)
        try:
            with open(side, "ab") as out:
                out.write(b"".join(raw for _, raw, _ in moved))
                out.flush()
                os.fsync(out.fileno())
        except OSError as exc:  # a full disk: nothing was changed in the records file
            raise disk_error(exc, side) from None
        try:
            atomic_write_bytes(path, "".join(record_line(r) for _, r in scan.records)
                               .encode("utf-8"))
        except OSError as exc:  # the old file is intact (atomic write) and the side file too
            raise disk_error(exc, path) from None
        return RepairReport(len(scan.records), tuple((n, why) for n, _, why in moved), side)


def _lock_or_refuse(handle: Any, path: Path) -> None:
    if fcntl is None:
        return
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise RecordError(f"{path}: another process is writing this records file; "
                          "wait for it to finish or write elsewhere") from None


class RecordWriter:
    """Appends episode records to a JSONL file; reopening an existing file resumes it.

    On open the existing records are read (a torn last line is truncated away with a warning) and
    `done` holds their (learner, episode) pairs. Every record of a file has the same run_id and
    split. `expect` (e.g. {"run_id": ..., "split": "test", "n_way": 5, "k_shot": 1}; keys from
    EXPECTABLE_FIELDS) makes resuming a file written by a different run or setting an error
    instead of a silent mix, and is checked on every appended record too.

    Only one writer may hold a file at a time (an exclusive lock; a second one is an error).
    Use as a context manager, or call `close()`.
    """

    def __init__(self, path: str | os.PathLike[str], *, expect: Mapping[str, Any] | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists() or self.path.is_symlink():  # a FIFO would block the open below
            check_input_file(self.path, what="records file", max_bytes=MAX_RECORDS_BYTES)
        # Lock before reading, so no other writer appends between our read and our first append.
        self._handle = open(self.path, "a", encoding="utf-8")
        try:
            self._lock()
            self._resume(expect)
        except BaseException:
            self._handle.close()
            raise

    def _lock(self) -> None:
        _lock_or_refuse(self._handle, self.path)

    def _resume(self, expect: Mapping[str, Any] | None) -> None:
        records: list[dict[str, Any]] = []
        if self.path.exists():
            scan = _scan(read_input_bytes(self.path, what="records file",
                                          max_bytes=MAX_RECORDS_BYTES))
            _raise_on_bad_lines(self.path, scan)
            records = [r for _, r in scan.records]
            if scan.torn is not None:
                _, raw, why = scan.torn
                side = rejected_path(self.path)
                warnings.warn(f"{self.path}: {why}; moving its {len(raw)} bytes to {side.name} "
                              "(that episode will run again)", stacklevel=3)
                try:
                    with open(side, "ab") as out:  # kept, never deleted
                        out.write(raw if raw.endswith(b"\n") else raw + b"\n")
                        out.flush()
                        os.fsync(out.fileno())
                except OSError as exc:  # the tail stays in the records file: nothing lost
                    raise disk_error(exc, side) from None
                with open(self.path, "r+b") as handle:
                    handle.truncate(scan.intact)
                    handle.flush()
                    os.fsync(handle.fileno())
        self._setting = {name: records[0][name] for name in FILE_FIELDS} if records else None
        self._records = records
        self._expect: dict[str, Any] = {}
        self.require(expect or {})
        self.done: set[tuple[str, int]] = {(r["learner"], r["episode"]) for r in records}
        # learner -> the run fingerprints its existing records carry (a resume checks them)
        self.fingerprints: dict[str, set[str | None]] = {}
        for record in records:
            self.fingerprints.setdefault(record["learner"], set()).add(record["fingerprint"])
        self.n_resumed = len(records)

    def require(self, expect: Mapping[str, Any]) -> None:
        """Pin fields (keys of EXPECTABLE_FIELDS) for the records read and every one appended.

        Lets a caller take the lock first and pin what it learns later (e.g. the split, once the
        episodes are known). Raises RecordError if a record read from the file differs.
        """
        unknown = sorted(set(expect) - set(EXPECTABLE_FIELDS))
        if unknown:
            raise RecordError(f"expect: unknown field {unknown[0]!r}; "
                              f"valid: {', '.join(EXPECTABLE_FIELDS)}")
        for record in self._records:
            for name, value in expect.items():
                if record[name] != value:
                    raise RecordError(
                        f"{self.path}: cannot resume: it holds {name}={record[name]!r} but this "
                        f"run has {name}={value!r}; delete the file or write elsewhere")
        self._expect.update(expect)

    @property
    def setting(self) -> dict[str, Any] | None:
        """The file's FILE_FIELDS values {run_id, split}, None while it is empty."""
        return None if self._setting is None else dict(self._setting)

    def append_many(self, records: Iterable[Mapping[str, Any]]) -> None:
        """Append records, then flush and fsync once. Rejects invalid, duplicate or foreign ones."""
        batch = [dict(r) for r in records]
        keys: set[tuple[str, int]] = set()
        for record in batch:
            problems = record_problems(record)
            if problems:
                raise RecordError(f"{self.path}: invalid record: " + "; ".join(problems))
            key = (record["learner"], record["episode"])
            if key in self.done or key in keys:
                raise RecordError(f"{self.path}: learner={key[0]!r} episode={key[1]} is already "
                                  "recorded; skip the pairs in writer.done when resuming")
            keys.add(key)
            reference = (self._setting or {n: batch[0][n] for n in FILE_FIELDS}) | self._expect
            for name, value in reference.items():
                if record[name] != value:
                    raise RecordError(f"{self.path}: record has {name}={record[name]!r}, the file "
                                      f"holds {name}={value!r}; one run on one split per file")
        if not batch:
            return
        if self._handle is None:
            raise RecordError(f"{self.path}: an earlier write failed; open a new writer "
                              "(--resume) to go on")
        try:
            self._handle.write("".join(record_line(r) for r in batch))
            self._handle.flush()
            os.fsync(self._handle.fileno())
        except OSError as exc:
            # a full disk or `ulimit -f`: what reached the file is a torn tail that --resume
            # moves aside; drop the rest of the buffer so that close() does not retry it
            self._discard_buffer()
            raise disk_error(exc, self.path) from None
        if self._setting is None:
            self._setting = {name: batch[0][name] for name in FILE_FIELDS}
        self.done |= keys

    def append(self, record: Mapping[str, Any]) -> None:
        self.append_many([record])

    def _discard_buffer(self) -> None:
        handle, self._handle = self._handle, None  # the writer is closed: no more appends
        try:
            os.close(handle.fileno())  # close the descriptor under the buffered handle ...
        except OSError:
            pass
        try:
            handle.close()  # ... so this cannot write the buffer again
        except OSError:
            pass

    def close(self) -> None:
        if self._handle is None:  # closed after a failed write
            return
        try:
            self._handle.close()
        except OSError as exc:
            raise disk_error(exc, self.path) from None

    def __enter__(self) -> "RecordWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _paths(path_or_paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]) -> list[Path]:
    if isinstance(path_or_paths, (str, os.PathLike)):
        path = Path(path_or_paths)
        return sorted(path.glob("*.jsonl")) if path.is_dir() else [path]
    return [Path(p) for p in path_or_paths]


def read_records(path_or_paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]
                 ) -> pd.DataFrame:
    """All records of one or more JSONL files (or a folder's *.jsonl) as a DataFrame.

    One row per record, columns = RECORD_FIELDS, OPTIONAL_FIELDS (filled where absent), `accuracy` (correct / total, a fraction) and
    `source` (the file). A torn last line is skipped with a warning (the file is left as it is).
    The same (run_id, split, learner, episode) twice is an error: it would be counted twice.
    k_shot and n_query are nullable integers (pandas "Int64").
    """
    rows: list[dict[str, Any]] = []
    paths = _paths(path_or_paths)
    if not paths:
        raise RecordError(f"no records files found in {path_or_paths!s}")
    for path in paths:
        if not path.is_file():
            raise RecordError(f"{path}: no such records file")
        scan = _scan(read_input_bytes(path, what="records file", max_bytes=MAX_RECORDS_BYTES))
        _raise_on_bad_lines(path, scan)
        if scan.torn is not None:
            warnings.warn(f"{path}: {scan.torn[2]}; ignoring that line", stacklevel=2)
        rows += [{**OPTIONAL_FIELDS, **r, "source": str(path)} for _, r in scan.records]
    frame = pd.DataFrame(rows, columns=[*RECORD_FIELDS, *OPTIONAL_FIELDS, "source"])
    frame["transductive"] = frame["transductive"].astype(bool)
    for name in ("n_way", "episode", "correct", "total"):
        frame[name] = frame[name].astype("int64")
    for name in ("k_shot", "n_query"):  # null in variable-shape episodes
        frame[name] = frame[name].astype("Int64")
    key = ["run_id", "split", "learner", "episode"]
    duplicated = frame.duplicated(subset=key, keep=False)
    if duplicated.any():
        first = frame[duplicated].iloc[0]
        same = (frame[key] == first[key]) | (frame[key].isna() & first[key].isna())
        copies = frame[same.all(axis=1)]
        raise RecordError(
            f"record learner={first['learner']!r} episode={first['episode']} of run "
            f"{first['run_id']!r} appears {len(copies)} times, in {sorted(set(copies['source']))} "
            f"({int(duplicated.sum())} duplicated rows in all); each episode must be recorded once")
    frame["accuracy"] = frame["correct"] / frame["total"]
    return frame
