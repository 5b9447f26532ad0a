"""Repairing a records file: its bad, repeated, foreign or torn lines moved to the side file."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from episodes.storage import (
    MAX_RECORDS_BYTES,
    atomic_write_bytes,
    check_input_file,
    disk_error,
    read_input_bytes,
)
from results.records.format import RecordError, record_line
from results.records.read import scan_lines
from results.records.rejected import append_rejected
from results.records.write import lock_or_refuse


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
        lock_or_refuse(handle, path)
        scan = scan_lines(read_input_bytes(path, what="records file", max_bytes=MAX_RECORDS_BYTES))
        moved = [*scan.bad, *([scan.torn] if scan.torn is not None else [])]
        if not moved:
            return RepairReport(len(scan.records), (), None)
        side = append_rejected(path, [raw for _, raw, _ in moved])
        try:
            atomic_write_bytes(
                path, "".join(record_line(r) for _, r in scan.records).encode("utf-8")
            )
        except OSError as exc:  # the old file is intact (atomic write) and the side file too
            raise disk_error(exc, path) from None
        return RepairReport(len(scan.records), tuple((n, why) for n, _, why in moved), side)
