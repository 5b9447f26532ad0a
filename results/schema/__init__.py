"""Leaderboard result files: one JSON per run and setting, sealed, validated before use.

Modules, one job each:
    format    the file's version, kind and field-by-field layout, and the schema that checks it
    seal      section and content hashes: computed (`seal`) and checked
    metrics   a run's metrics from its per-episode records
    build     the sealed, validated result dict of one run (`build_result`, `with_sections`)
    validate  every problem with a loaded result (`validate_result`), its records included
    files     result files on disk: `write_result`, `read_result`, `validate_result_file`

This package re-exports the names used elsewhere, so `from results.schema import X` works.
"""

from results.schema.build import build_result, with_sections
from results.schema.files import read_result, validate_result_file, write_result
from results.schema.format import BOOL, LEARNER_METRICS, SCHEMA_VERSION
from results.schema.seal import seal
from results.schema.validate import validate_result, verify_result_against_records

__all__ = [
    "BOOL",
    "LEARNER_METRICS",
    "SCHEMA_VERSION",
    "build_result",
    "read_result",
    "seal",
    "validate_result",
    "validate_result_file",
    "verify_result_against_records",
    "with_sections",
    "write_result",
]
