"""Per-episode records: one JSON object per line, appended as a run goes, so a killed run resumes.

Modules, one job each:
    format    the record's fields and checks, its checksum and the line it is stored as
    make      records from their fields (`make_record`) or from a learner's predictions
    read      every line of a file classified (good, bad, torn); `read_records` as a DataFrame
    write     `RecordWriter`: durable appends, one writer per file, resuming a file
    rejected  the side file bad lines are moved into (`rejected_path`)
    repair    `repair_records`: bad lines moved to the side file, the rest kept

This package re-exports the names used elsewhere, so `from results.records import X` works.
"""

from results.records.format import RecordError, record_line
from results.records.make import make_record, records_from_predictions
from results.records.read import read_records
from results.records.rejected import rejected_path
from results.records.repair import repair_records
from results.records.write import RecordWriter

__all__ = [
    "RecordError",
    "RecordWriter",
    "make_record",
    "read_records",
    "record_line",
    "records_from_predictions",
    "rejected_path",
    "repair_records",
]
