"""Result files on disk: writing one (validated first), reading one, and validating a file."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from episodes.storage import (
    MAX_RESULT_BYTES,
    StrictJSONError,
    atomic_write_text,
    loads_strict,
    read_input_bytes,
)
from results.records import read_records
from results.schema.validate import validate_result


def write_result(path: str | os.PathLike[str], result: Mapping[str, Any]) -> Path:
    """Write a result atomically (indented JSON); refuses a result that does not validate."""
    problems = validate_result(result)
    if problems:
        raise ValueError(
            f"{path}: refusing to write an invalid result:\n  " + "\n  ".join(problems)
        )
    text = json.dumps(result, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    return atomic_write_text(path, text)


def read_result(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load a result file (no validation; see validate_result_file).

    Raises:
        OSError: unreadable. StrictJSONError: not JSON, a key twice, or absurdly nested.
    """
    return loads_strict(read_input_bytes(path, what="result file", max_bytes=MAX_RESULT_BYTES))


def validate_result_file(
    path: str | os.PathLike[str],
    *,
    episodes_hash: str | None = None,
    episodes_file: str | os.PathLike[str] | None = None,
    episode_file_hasher: Callable[[Path], str] | None = None,
    records: pd.DataFrame | str | os.PathLike[str] | list | None = None,
) -> list[str]:
    """Every problem with a result file, as precise one-line messages (empty: valid).

    episodes_file + episode_file_hasher: hash the episode file with the hasher (the caller
    supplies it, e.g. one built on `episodes.episodes_hash`; results/ does not read episode files)
    and compare with episodes.hash. records: a DataFrame or path(s) for `read_records`.
    """
    path = Path(path)
    try:
        result = read_result(path)
    except FileNotFoundError:
        return ["no such file"]
    except OSError as exc:
        return [f"cannot read: {exc}"]
    except StrictJSONError as exc:
        return [str(exc)]
    if episodes_file is not None:
        if episode_file_hasher is None:
            raise TypeError("episodes_file needs episode_file_hasher (a function Path -> hash)")
        episodes_hash = episode_file_hasher(Path(episodes_file))
    if records is not None and not isinstance(records, pd.DataFrame):
        records = read_records(records)
    return validate_result(result, episodes_hash=episodes_hash, records=records)
