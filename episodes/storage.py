"""The file primitives every partbench package shares: one canonical JSON, one sha256 format
(lowercase hex, no prefix), and one atomic write.

Standard library only. It lives in `episodes`, the lowest package, so that results/, baselines/
and benchmark/ use the same definitions (results imports nothing else from episodes).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO


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
