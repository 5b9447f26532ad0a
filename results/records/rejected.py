"""The side file bad lines are moved into, `<records file>.rejected`: its path and the append."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from episodes.storage import disk_error

REJECTED_SUFFIX = ".rejected"


def rejected_path(path: str | os.PathLike[str]) -> Path:
    """The side file `repair_records` moves bad lines into: `<records file>.rejected`."""
    path = Path(path)
    return path.with_name(path.name + REJECTED_SUFFIX)


def append_rejected(path: str | os.PathLike[str], lines: Iterable[bytes]) -> Path:
    """Append raw lines, verbatim (a missing final newline added), to the side file of the
    records file `path`, flushed and fsynced before returning: kept, never deleted."""
    side = rejected_path(path)
    try:
        with open(side, "ab") as out:
            out.write(b"".join(raw if raw.endswith(b"\n") else raw + b"\n" for raw in lines))
            out.flush()
            os.fsync(out.fileno())
    except OSError as exc:  # a full disk: the lines are still where they were
        raise disk_error(exc, side) from None
    return side
