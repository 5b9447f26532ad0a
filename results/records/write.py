"""Writing records: the RecordWriter that appends a run's records, durably, and resumes a file.

The runner opens a `RecordWriter`, skips the pairs in `writer.done`, and appends each finished
batch with `append_many`, which flushes and fsyncs before returning: a record on disk is an
episode that never needs to run again. A kill can only tear the last line, which the next open
cuts away (into the side file, `<file>.rejected`).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from episodes.storage import MAX_RECORDS_BYTES, check_input_file, disk_error, read_input_bytes
from results.records.format import FILE_FIELDS, RecordError, record_line, record_problems
from results.records.read import LineScan, raise_on_bad_lines, scan_lines
from results.records.rejected import append_rejected, rejected_path

try:
    import fcntl  # POSIX: one writer per records file
except ImportError:  # pragma: no cover - Windows
    fcntl = None

# Fields `RecordWriter(expect=...)` may pin (checked on every existing and appended record).
EXPECTABLE_FIELDS: tuple[str, ...] = (
    "run_id",
    "split",
    "n_way",
    "k_shot",
    "n_query",
    "fingerprint",
)


def lock_or_refuse(handle: Any, path: Path) -> None:
    """Take the exclusive lock on an open records file; RecordError if another process holds it."""
    if fcntl is None:
        return
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise RecordError(
            f"{path}: another process is writing this records file; "
            "wait for it to finish or write elsewhere"
        ) from None


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
        lock_or_refuse(self._handle, self.path)

    def _resume(self, expect: Mapping[str, Any] | None) -> None:
        records: list[dict[str, Any]] = []
        if self.path.exists():
            scan = scan_lines(
                read_input_bytes(self.path, what="records file", max_bytes=MAX_RECORDS_BYTES)
            )
            raise_on_bad_lines(self.path, scan)
            records = [r for _, r in scan.records]
            if scan.torn is not None:
                self._cut_torn_tail(scan)
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

    def _cut_torn_tail(self, scan: LineScan) -> None:
        """Move the torn last line to the side file (kept, never deleted), then cut it away."""
        _, raw, why = scan.torn
        side = rejected_path(self.path)
        warnings.warn(
            f"{self.path}: {why}; moving its {len(raw)} bytes to {side.name} "
            "(that episode will run again)",
            stacklevel=4,
        )
        append_rejected(self.path, [raw])
        with open(self.path, "r+b") as handle:
            handle.truncate(scan.intact)
            handle.flush()
            os.fsync(handle.fileno())

    def require(self, expect: Mapping[str, Any]) -> None:
        """Pin fields (keys of EXPECTABLE_FIELDS) for the records read and every one appended.

        Lets a caller take the lock first and pin what it learns later (e.g. the split, once the
        episodes are known). Raises RecordError if a record read from the file differs.
        """
        unknown = sorted(set(expect) - set(EXPECTABLE_FIELDS))
        if unknown:
            raise RecordError(
                f"expect: unknown field {unknown[0]!r}; valid: {', '.join(EXPECTABLE_FIELDS)}"
            )
        for record in self._records:
            for name, value in expect.items():
                if record[name] != value:
                    raise RecordError(
                        f"{self.path}: cannot resume: it holds {name}={record[name]!r} but this "
                        f"run has {name}={value!r}; delete the file or write elsewhere"
                    )
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
                raise RecordError(
                    f"{self.path}: learner={key[0]!r} episode={key[1]} is already "
                    "recorded; skip the pairs in writer.done when resuming"
                )
            keys.add(key)
            reference = (self._setting or {n: batch[0][n] for n in FILE_FIELDS}) | self._expect
            for name, value in reference.items():
                if record[name] != value:
                    raise RecordError(
                        f"{self.path}: record has {name}={record[name]!r}, the file "
                        f"holds {name}={value!r}; one run on one split per file"
                    )
        if not batch:
            return
        if self._handle is None:
            raise RecordError(
                f"{self.path}: an earlier write failed; open a new writer (--resume) to go on"
            )
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
