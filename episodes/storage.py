"""The file primitives every partbench package shares: one canonical JSON, one sha256 format
(lowercase hex, no prefix), one atomic write, and one strict JSON reader (no duplicate key,
bounded nesting) for every file partbench reads back.

Standard library only. It lives in `episodes`, the lowest package, so that results/, baselines/
and benchmark/ use the same definitions (results imports nothing else from episodes).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO
from episodes.errors import PartbenchError


def canonical_json(value: Any) -> str:
    """The one JSON text of `value` that partbench hashes: sorted keys, no spaces, non-ASCII
    kept as is (hash its UTF-8 bytes), NaN and infinity refused (ValueError)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)


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
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_JSON_BRACKET = re.compile(r"[\[\]{}]")


class StrictJSONError(PartbenchError, ValueError):
    """JSON that partbench refuses to read back: malformed, a key twice, or nested too deep."""


def _refuse_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise StrictJSONError(f"key {key!r} appears twice in one object (JSON keeps only the "
                                  "last, so the file is ambiguous)")
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
    """json.loads that refuses duplicate keys and nesting deeper than `max_depth`.

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
        raise StrictJSONError(f"arrays/objects nest deeper than {max_depth} levels; no partbench "
                              "file does, so it was not written by partbench")
    try:
        return json.loads(text, object_pairs_hook=_refuse_duplicate_keys)
    except json.JSONDecodeError as exc:
        raise StrictJSONError(f"not valid JSON ({exc})") from None
    except RecursionError:  # pragma: no cover - the depth check comes first
        raise StrictJSONError("arrays/objects nest too deeply") from None
