"""Reading records files: every line classified (good, bad or torn), and the records as a table.

A bad line that is not the last (garbage, an edited or foreign record, a repeated episode) stops
every reader with one line naming the file, the line number and the repair:
`repair_records(path)` (`python -m benchmark repair RUN_DIR`) moves such lines into
`<file>.rejected` beside the file, verbatim, and keeps the rest; nothing is deleted, and the
moved episodes simply run again on `--resume`.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from episodes.storage import MAX_RECORDS_BYTES, StrictJSONError, loads_strict, read_input_bytes
from results.records.format import (
    CHECKSUM_FIELD,
    FILE_FIELDS,
    OPTIONAL_FIELDS,
    RECORD_FIELDS,
    RecordError,
    record_checksum,
    record_problems,
)
from results.records.rejected import rejected_path


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
        return (
            None,
            (
                f"{CHECKSUM_FIELD} mismatch: the record was edited after it was written "
                f"(e.g. its correct/total counts)"
            ),
            False,
        )
    return record, None, False


@dataclass
class LineScan:
    """A records file read line by line, nothing raised yet."""

    records: list[tuple[int, dict[str, Any]]]  # (line number, record) of the good lines
    bad: list[tuple[int, bytes, str]]  # (line number, raw line, why) of the others
    intact: int  # bytes up to the end of the last good/bad line
    torn: tuple[int, bytes, str] | None  # a damaged last line (a kill mid-write)


def scan_lines(data: bytes) -> LineScan:
    """Classify every line: good, bad (garbage, edited, foreign, a repeat), or a torn tail.

    Only the last line may be torn (no final newline, or invalid JSON): a kill mid-write can
    only damage the end of an append-only file. Anything wrong elsewhere is corruption. A record
    whose (learner, episode) appeared before, or whose run_id/split differ from the first
    record's, is bad (one file = one run on one split; each episode once).
    """
    scan = LineScan([], [], 0, None)
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
                why = (
                    f"{foreign[0]}={record[foreign[0]]!r} but the first record has "
                    f"{first[foreign[0]]!r}; a records file holds one run on one split"
                )
            elif key in seen:
                why = (
                    f"repeats learner={key[0]!r} episode={key[1]} of line {seen[key]} "
                    "(it would be counted twice)"
                )
            else:
                seen[key] = number
                scan.records.append((number, record))
        if why is not None:
            scan.bad.append((number, raw, why))
        scan.intact += len(raw) + 1
    return scan


def raise_on_bad_lines(path: Path, scan: LineScan) -> None:
    """RecordError naming the first bad line of `path`, if any, and the repair."""
    if not scan.bad:
        return
    number, _, why = scan.bad[0]
    more = f" (and {len(scan.bad) - 1} more bad lines)" if len(scan.bad) > 1 else ""
    raise RecordError(
        f"{path}:{number}: {why}{more}; repair with `python -m benchmark repair {path}`: it "
        f"moves the bad lines to {rejected_path(path).name} (deleting nothing), and --resume "
        "runs their episodes again"
    )


def _paths(path_or_paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]) -> list[Path]:
    if isinstance(path_or_paths, (str, os.PathLike)):
        path = Path(path_or_paths)
        return sorted(path.glob("*.jsonl")) if path.is_dir() else [path]
    return [Path(p) for p in path_or_paths]


def read_records(
    path_or_paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
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
        scan = scan_lines(read_input_bytes(path, what="records file", max_bytes=MAX_RECORDS_BYTES))
        raise_on_bad_lines(path, scan)
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
            f"({int(duplicated.sum())} duplicated rows in all); each episode must be recorded once"
        )
    frame["accuracy"] = frame["correct"] / frame["total"]
    return frame
