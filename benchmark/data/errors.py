"""Errors and warnings of the data layer.

Every message names the file, field or folder at fault and, where it can, what would fix it.
"""

from __future__ import annotations

from collections.abc import Iterable

from episodes.errors import PartbenchError


class DatasetError(PartbenchError, ValueError):
    """The dataset on disk is missing, in an unknown layout, or disagrees with the packaged tables."""


class DatasetDefectWarning(UserWarning):
    """Some annotations had known defects of the real files and were skipped; the run goes on."""


def first_few(items: Iterable[object], n: int = 5) -> str:
    """Render the first `n` items and how many there are in all, e.g. "a, b, c, ... (12 in all)"."""
    items = list(items)
    shown = ", ".join(str(x) for x in items[:n])
    return f"{shown}, ... ({len(items)} in all)" if len(items) > n else shown
