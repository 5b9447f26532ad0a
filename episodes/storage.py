"""The file primitives every partbench package shares: one canonical JSON, one sha256 format
(lowercase hex, no prefix), one atomic write, and one strict JSON reader (no duplicate key,
bounded nesting) for every file partbench reads back.

Standard library only. It lives in `episodes`, the lowest package, so that results/, baselines/
and benchmark/ use the same definitions (results imports nothing else from episodes).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from episodes.errors import PartbenchError

# ------------------------------------------------------------------ reading any input, bounded

MiB = 1 << 20
# The bounds on what partbench reads whole into memory, each far above the largest such file a
# run writes (a 10,000-episode file is ~20 MB, its records ~30 MB) and far below this machine's
# memory, so that `/dev/zero` or a mistaken 50 GB file is one line, not a MemoryError.
MAX_RESULT_BYTES = 32 * MiB  # a result file (one per run: tables and per-learner metrics)
MAX_EPISODE_FILE_BYTES = 512 * MiB  # an episode file or its .names.json
MAX_RECORDS_BYTES = 2048 * MiB  # a records.jsonl (one line per learner and episode)
MAX_SMALL_FILE_BYTES = 16 * MiB  # run.json, a config, a marker, a header, an annotation file
MAX_LINE_BYTES = 16 * MiB  # one line of a JSONL file (records, predictions)


class InputFileError(PartbenchError, OSError):
    """A path partbench was asked to read that is not a plain file it can read: missing, a
    folder, a FIFO or device (which would hang or never end), or larger than the bound."""


def check_input_file(path: str | os.PathLike[str], *, what: str, max_bytes: int) -> int:
    """Refuse `path` unless it is a plain file of at most `max_bytes`; returns its size.

    For files another library opens (zip archives, images, checkpoints): it stats, and never
    opens, so a FIFO cannot block it. Raises InputFileError naming `what` and the path.
    """
    path = Path(path)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise InputFileError(f"{what} {path}: no such file") from None
    except OSError as exc:
        raise InputFileError(f"{what} {path}: cannot be read ({exc.strerror or exc})") from None
    return _check_stat(info, path, what=what, max_bytes=max_bytes)


def _check_stat(info: os.stat_result, path: Path, *, what: str, max_bytes: int) -> int:
    if stat.S_ISDIR(info.st_mode):
        raise InputFileError(f"{what} {path}: is a folder, not a file; name the file")
    if not stat.S_ISREG(info.st_mode):
        kind = (
            "a FIFO (named pipe)"
            if stat.S_ISFIFO(info.st_mode)
            else (
                "a device"
                if stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode)
                else "a socket"
                if stat.S_ISSOCK(info.st_mode)
                else "not a plain file"
            )
        )
        raise InputFileError(
            f"{what} {path}: is {kind}, not a plain file; partbench reads only "
            "plain files (copy the data into a file first)"
        )
    if info.st_size > max_bytes:
        raise InputFileError(
            f"{what} {path}: {info.st_size:,} bytes, more than the "
            f"{max_bytes:,} such a file can be; name the right file"
        )
    return info.st_size


def read_input_bytes(path: str | os.PathLike[str], *, what: str, max_bytes: int) -> bytes:
    """The bytes of a plain file of at most `max_bytes`, or InputFileError naming it.

    Every reader of a file partbench reads whole goes through here: the file is opened without
    blocking (a FIFO is refused, not waited on), checked to be a plain file after opening (no
    race with a swap), and read to at most `max_bytes + 1` bytes (a file that grows is refused).
    """
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise InputFileError(f"{what} {path}: no such file") from None
    except IsADirectoryError:
        raise InputFileError(f"{what} {path}: is a folder, not a file; name the file") from None
    except OSError as exc:
        raise InputFileError(f"{what} {path}: cannot be read ({exc.strerror or exc})") from None
    with os.fdopen(fd, "rb") as handle:
        _check_stat(os.fstat(fd), path, what=what, max_bytes=max_bytes)
        try:
            data = handle.read(max_bytes + 1)
        except OSError as exc:
            raise InputFileError(f"{what} {path}: cannot be read ({exc.strerror or exc})") from None
    if len(data) > max_bytes:
        raise InputFileError(
            f"{what} {path}: more than the {max_bytes:,} bytes such a file can "
            "be; name the right file"
        )
    return data


class DiskWriteError(PartbenchError, OSError):
    """A write that the disk or the system refused (full, over quota, over `ulimit -f`); the
    message names the file and what would fix it."""


def disk_error(exc: OSError, path: str | os.PathLike[str]) -> DiskWriteError:
    """The DiskWriteError to raise for `exc`, an OSError while writing `path`."""
    return DiskWriteError(disk_error_message(exc, path))


def disk_error_message(exc: OSError, path: str | os.PathLike[str]) -> str:
    """One line for a failed write: the file and what would fix it (a full disk, a size limit)."""
    where = exc.filename or path
    if exc.errno == errno.ENOSPC:
        return f"{where}: no space left on the device; free space (or choose another folder)"
    if exc.errno == errno.EFBIG:
        return f"{where}: file too large for this system's file size limit (ulimit -f)"
    if exc.errno == errno.EDQUOT:
        return f"{where}: disk quota exceeded; free space (or choose another folder)"
    return f"{where}: {exc.strerror or exc}"


def canonical_json(value: Any) -> str:
    """The one JSON text of `value` that partbench hashes: sorted keys, no spaces, non-ASCII
    kept as is (hash its UTF-8 bytes), NaN and infinity refused (ValueError)."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def sha256_hex(data: bytes) -> str:
    """sha256 of `data` as 64 lowercase hex digits: the project's one hash format."""
    return hashlib.sha256(data).hexdigest()


def json_sha256(value: Any) -> str:
    """sha256_hex of the canonical JSON of `value` (UTF-8)."""
    return sha256_hex(canonical_json(value).encode("utf-8"))


def file_sha256(path: str | os.PathLike[str], chunk_size: int = 1 << 20) -> str:
    """sha256_hex of a file's bytes (e.g. a weights checkpoint), read in chunks."""
    digest = hashlib.sha256()
    with open(Path(path), "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def _umask() -> int:
    # The only portable way to read the umask is to set it; set it straight back.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike[str], write: Callable[[BinaryIO], None]) -> Path:
    """Call `write(handle)` on a temporary file beside `path`, fsync it, then move it over `path`.

    Readers see the old file or the whole new one, never a part: a killed process leaves at most
    a stray hidden temporary file. The file gets the permissions of a plainly created one
    (0666 less the umask; mkstemp alone would leave 0600). The parent folder is created.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """`data` to `path`, atomically (see atomic_write)."""
    return atomic_write(path, lambda handle: handle.write(data))


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """`text` (UTF-8) to `path`, atomically (see atomic_write)."""
    return atomic_write_bytes(path, text.encode("utf-8"))


# ------------------------------------------------------------------ reading JSON back, strictly

# Deeper than any file partbench writes (result files nest about 5 levels), far below the
# interpreter's recursion limit, which json and every later walk of the value would hit.
MAX_JSON_DEPTH = 64
# Longer than any integer partbench writes (byte counts, seeds < 2**64 have 20 digits); Python
# refuses to parse ints of more than 4,300 digits with a ValueError of its own, and a long one
# is never a count or an index of a real file.
MAX_INT_DIGITS = 40
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_JSON_BRACKET = re.compile(r"[\[\]{}]")


class StrictJSONError(PartbenchError, ValueError):
    """JSON that partbench refuses to read back: malformed, a key twice, nested too deep, or an
    integer of more than MAX_INT_DIGITS digits."""


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise StrictJSONError(
            f"an integer of {len(text.lstrip('-')):,} digits (at most "
            f"{MAX_INT_DIGITS}); no partbench file holds one"
        )
    return int(text)


def _refuse_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise StrictJSONError(
                f"key {key!r} appears twice in one object (JSON keeps only the "
                "last, so the file is ambiguous)"
            )
        out[key] = value
    return out


def json_depth(text: str) -> int:
    """How deeply arrays and objects nest in JSON text (0 for a scalar), without parsing it."""
    depth = deepest = 0
    for bracket in _JSON_BRACKET.findall(_JSON_STRING.sub('""', text)):
        depth += 1 if bracket in "[{" else -1
        deepest = max(deepest, depth)
    return deepest


def loads_strict(text: str | bytes, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """json.loads that refuses duplicate keys, nesting deeper than `max_depth` and integers of
    more than MAX_INT_DIGITS digits.

    Raises:
        StrictJSONError: with a one-line reason (malformed JSON, duplicate key, too deep).
    """
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise StrictJSONError(f"not UTF-8 text ({exc})") from None
    # Counting brackets is C-fast and bounds the depth: scan only text that could be too deep.
    if text.count("[") + text.count("{") > max_depth and json_depth(text) > max_depth:
        raise StrictJSONError(
            f"arrays/objects nest deeper than {max_depth} levels; no partbench "
            "file does, so it was not written by partbench"
        )
    try:
        return json.loads(text, object_pairs_hook=_refuse_duplicate_keys, parse_int=_bounded_int)
    except json.JSONDecodeError as exc:
        raise StrictJSONError(f"not valid JSON ({exc})") from None
    except ValueError as exc:  # the interpreter's own integer bound, say; one line either way
        if isinstance(exc, StrictJSONError):
            raise
        raise StrictJSONError(f"not valid JSON ({exc})") from None
    except RecursionError:  # pragma: no cover - the depth check comes first
        raise StrictJSONError("arrays/objects nest too deeply") from None
