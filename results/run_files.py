"""The file names of a run folder, defined once: the harness writes them (benchmark.run) and the
leaderboard, scoring and repair read them (results), so they live at the bottom.

A run folder holds:
    records.jsonl   one checksummed line per (learner, episode)
    result.json     the sealed result file built from the records
    run.json        the run's identity: what a resume must match
    config.yaml     the config the run was started with
    tables/, plots  the report
"""

from __future__ import annotations

from pathlib import Path

RECORDS_FILE = "records.jsonl"
RESULT_FILE = "result.json"
IDENTITY_FILE = "run.json"
CONFIG_FILE = "config.yaml"
TABLES_FOLDER = "tables"


def records_path(run_or_records: str | Path) -> Path:
    """A run folder's records file, or the path itself when it names a file."""
    path = Path(run_or_records)
    return path / RECORDS_FILE if path.is_dir() else path
