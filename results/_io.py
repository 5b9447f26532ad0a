"""Atomic file writes, and strict JSON reading for every file partbench reads back.

Writes: a temporary name in the same folder, fsync, then os.replace. Readers see the old file or
the whole new one, never a part: a killed process leaves at most a stray hidden temporary file.
Reads: `loads_strict` refuses duplicate keys and absurd nesting with a one-line reason. Standard
library only, so any part of partbench (episodes/ included) may use it.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO


def atomic_write(path: str | os.PathLike[str], write: Callable[[BinaryIO], None]) -> Path:
    """Call `write(handle)` on a temporary file beside `path`, then move it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; a plain open() honours the umask
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)  # the only portable way to read it is to set it
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    return atomic_write(path, lambda handle: handle.write(data))


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


# ------------------------------------------------------------------ reading JSON back, strictly

# Deeper than any file partbench writes (result files nest about 5 levels), far below the
# interpreter's recursion limit, which json and every later walk of the value would hit.
MAX_JSON_DEPTH = 64
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_JSON_BRACKET = re.compile(r"[\[\]{}]")


class StrictJSONError(ValueError):
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
