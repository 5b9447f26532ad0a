"""Episode records: append, resume after a kill or a torn line, never lose or repeat an episode."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest
from results_factories import fake_records

from results.records import (
    RecordError,
    RecordWriter,
    make_record,
    read_records,
    record_line,
    rejected_path,
    repair_records,
)

REPO = Path(__file__).resolve().parents[1]


def _all(n=12):
    return fake_records("protonet", 0.6, n) + fake_records("part", 0.7, n, seed=1, with_parts=True)


def _key_frame(frame: pd.DataFrame) -> pd.DataFrame:
    cols = ["learner", "episode", "correct", "total"]
    return frame[cols].sort_values(["learner", "episode"]).reset_index(drop=True)


def test_write_and_read_round_trip(tmp_path):
    records = _all()
    with RecordWriter(tmp_path / "r.jsonl") as writer:
        writer.append_many(records[:5])
        writer.append_many(records[5:])
    frame = read_records(tmp_path / "r.jsonl")
    assert len(frame) == len(records)
    first = frame.iloc[0]
    assert first["per_class"] == records[0]["per_class"]
    assert first["accuracy"] == records[0]["correct"] / records[0]["total"]
    assert frame["part_contributions"].isna().sum() == 12


def test_resume_after_torn_last_line_equals_uninterrupted_run(tmp_path):
    records = _all()
    path = tmp_path / "r.jsonl"
    with RecordWriter(path) as writer:
        writer.append_many(records[:7])
    # a kill mid-write: half of the 8th record, no newline
    line = record_line(records[7])
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(line[: len(line) // 2])
    with pytest.warns(UserWarning, match="torn write"):
        writer = RecordWriter(path)
    assert writer.done == {(r["learner"], r["episode"]) for r in records[:7]}
    writer.append_many([r for r in records if (r["learner"], r["episode"]) not in writer.done])
    writer.close()
    with RecordWriter(tmp_path / "straight.jsonl") as straight:
        straight.append_many(records)
    resumed, uninterrupted = read_records(path), read_records(tmp_path / "straight.jsonl")
    assert not resumed.duplicated(["learner", "episode"]).any()
    pd.testing.assert_frame_equal(_key_frame(resumed), _key_frame(uninterrupted))


def test_invalid_json_last_line_is_cut_but_a_bad_middle_line_is_an_error(tmp_path):
    records = _all(3)
    path = tmp_path / "r.jsonl"
    path.write_text("".join(record_line(r) for r in records[:2]) + "{garbage\n")
    with pytest.warns(UserWarning, match="not valid JSON"):
        writer = RecordWriter(path)
    writer.close()
    assert len(path.read_text().splitlines()) == 2
    path.write_text(record_line(records[0]) + "{garbage\n" + record_line(records[1]))
    with pytest.raises(RecordError, match=r"r.jsonl:2: not valid JSON"):
        RecordWriter(path)


def test_repeats_and_foreign_settings_are_refused(tmp_path):
    records = _all(4)
    path = tmp_path / "r.jsonl"
    with RecordWriter(path) as writer:
        writer.append_many(records[:2])
        with pytest.raises(RecordError, match="already recorded"):
            writer.append(records[1])
        with pytest.raises(RecordError, match="already recorded"):
            writer.append_many([records[2], records[2]])
        other = fake_records("protonet", 0.5, 1, run_id="run-b", start=99)[0]
        with pytest.raises(RecordError, match="run_id='run-b'"):
            writer.append(other)
        writer.append(fake_records("protonet", 0.5, 1, k_shot=5, start=99)[0])  # variable shapes
    with pytest.raises(RecordError, match="cannot resume.*run_id"):
        RecordWriter(path, expect={"run_id": "another-run"})
    with pytest.raises(RecordError, match="cannot resume: it holds k_shot=5"):
        RecordWriter(path, expect={"run_id": "run-a", "k_shot": 1})
    with RecordWriter(path, expect={"run_id": "run-a"}) as writer:
        assert writer.done == {("protonet", 0), ("protonet", 1), ("protonet", 99)}
        with pytest.raises(RecordError, match="k_shot=5"):
            RecordWriter(tmp_path / "new.jsonl", expect={"k_shot": 1}).append(
                fake_records("protonet", 0.5, 1, k_shot=5)[0]
            )


def test_make_record_and_reader_reject_bad_records(tmp_path):
    with pytest.raises(RecordError, match=r"correct=9 must lie in \[0, total=5\]"):
        make_record(
            run_id="r",
            learner="a",
            split="test",
            n_way=1,
            k_shot=1,
            n_query=5,
            episode=0,
            correct=9,
            total=5,
            per_class={"n01": [5, 5]},
            per_super_category={"Fish": [5, 5]},
        )
    path = tmp_path / "r.jsonl"
    bad = dict(_all(1)[0])
    del bad["total"]
    path.write_text(record_line(bad))
    with pytest.raises(RecordError, match="r.jsonl:1: missing field 'total'"):
        read_records(path)


def test_reading_the_same_episode_from_two_files_is_an_error(tmp_path):
    records = _all(3)
    for name in ("a.jsonl", "b.jsonl"):
        with RecordWriter(tmp_path / name) as writer:
            writer.append_many(records[:2])
    with pytest.raises(RecordError, match="appears 2 times"):
        read_records(tmp_path)


WRITER_SCRIPT = textwrap.dedent("""
    import sys, time
    sys.path[:0] = [sys.argv[2], sys.argv[3]]
    from results.records import RecordWriter
    from results_factories import fake_records
    records = fake_records("protonet", 0.6, 200)
    with RecordWriter(sys.argv[1]) as writer:
        for start in range(0, 200, 4):
            todo = [r for r in records[start:start + 4] if ("protonet", r["episode"]) not in writer.done]
            writer.append_many(todo)
            time.sleep(0.05)  # 2.5 s in all: the test kills it long before the end
""")


@pytest.mark.slow
def test_killed_writer_resumes_without_losing_or_repeating(tmp_path):
    path = tmp_path / "r.jsonl"
    script = tmp_path / "writer.py"
    script.write_text(WRITER_SCRIPT)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(path), str(REPO), str(REPO / "tests")],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not path.exists() or path.stat().st_size < 3000):
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    written = path.read_text().count("\n")
    assert 0 < written < 200, "the writer must be killed mid-way for this test to mean anything"
    records = fake_records("protonet", 0.6, 200)
    with RecordWriter(path) as writer:
        writer.append_many([r for r in records if ("protonet", r["episode"]) not in writer.done])
    frame = read_records(path)
    assert sorted(frame["episode"]) == list(range(200))
    expected = pd.DataFrame(records)
    pd.testing.assert_frame_equal(_key_frame(frame), _key_frame(expected))


def test_a_second_writer_on_the_same_file_is_refused(tmp_path):
    path = tmp_path / "r.jsonl"
    with RecordWriter(path) as writer:
        writer.append_many(_all(1))
        with pytest.raises(RecordError, match="another process is writing"):
            RecordWriter(path)
        assert writer.setting["run_id"] == "run-a"
    with RecordWriter(path) as again:  # released on close
        assert again.n_resumed == 2


def test_records_from_predictions_counts_per_way_class_and_super_category():
    from results.records import records_from_predictions

    # two 3-way episodes, 2 queries per way; way order differs between episodes
    classes = [["n01", "n02", "n03"], ["n03", "n01", "n02"]]
    labels = [[0, 0, 1, 1, 2, 2], [0, 0, 1, 1, 2, 2]]
    predicted = [[0, 1, 1, 1, 0, 2], [0, 0, 0, 0, 0, 0]]
    supers = {"n01": "Fish", "n02": "Fish", "n03": "Car"}
    records = records_from_predictions(
        run_id="r",
        learner="a",
        split="test",
        k_shot=1,
        episodes=[7, 8],
        classes=classes,
        labels=labels,
        predicted=predicted,
        super_categories=supers,
        part_contributions=[[0.25, 0.75], [1.0, 0.0]],
        slot_names=["Head", "Body"],
    )
    first, second = records
    assert (first["episode"], first["correct"], first["total"], first["n_query"]) == (7, 4, 6, 2)
    assert first["per_class"] == {"n01": [1, 2], "n02": [2, 2], "n03": [1, 2]}
    assert first["per_super_category"] == {"Fish": [3, 4], "Car": [1, 2]}
    assert second["per_class"] == {"n03": [2, 2], "n01": [0, 2], "n02": [0, 2]}
    assert second["per_super_category"] == {"Car": [2, 2], "Fish": [0, 4]}
    assert first["part_contributions"] == {"Head": 0.25, "Body": 0.75}
    with pytest.raises(RecordError, match="no super-category for class 'n03'"):
        records_from_predictions(
            run_id="r",
            learner="a",
            split="test",
            k_shot=1,
            episodes=[7],
            classes=[classes[0]],
            labels=[labels[0]],
            predicted=[labels[0]],
            super_categories={"n01": "Fish", "n02": "Fish"},
        )


def _damaged(tmp_path):
    """A records file with a garbage line, a repeated line and an edited record in the middle."""
    records = _all(4)
    lines = [record_line(r) for r in records]
    edited = json.loads(lines[3])
    edited["correct"] = edited["total"]  # a better score, checksum left as it was
    damaged = [
        lines[0],
        "{garbage\n",
        lines[1],
        lines[1],
        lines[2],
        json.dumps(edited) + "\n",
        *lines[4:],
    ]
    path = tmp_path / "records.jsonl"
    path.write_text("".join(damaged))
    return path, lines, damaged


@pytest.mark.parametrize("opener", [RecordWriter, read_records])
def test_a_bad_middle_line_stops_resume_and_report_with_the_repair(tmp_path, opener):
    path, lines, _ = _damaged(tmp_path)
    with pytest.raises(RecordError) as info:
        opener(path)
    message = str(info.value)
    assert message.startswith(f"{path}:2: not valid JSON") and "\n" not in message
    assert "(and 2 more bad lines)" in message
    assert f"repair with `python -m benchmark repair {path}`" in message
    assert "records.jsonl.rejected" in message


@pytest.mark.parametrize(
    "line, left_at, reason",
    [
        (4, 3, "repeats learner='protonet' episode=1 of line 2"),
        (6, 4, "checksum mismatch: the record was edited after it was written"),
    ],
)
def test_repeated_and_edited_lines_are_named(tmp_path, line, left_at, reason):
    path, _, damaged = _damaged(tmp_path)
    keep = [text for n, text in enumerate(damaged, start=1) if n == line or n not in (2, 4, 6)]
    path.write_text("".join(keep))
    with pytest.raises(RecordError, match=rf"records.jsonl:{left_at}: {reason}"):
        RecordWriter(path)
    with pytest.raises(RecordError, match=reason):
        read_records(path)


def test_repair_moves_bad_lines_aside_and_deletes_nothing(tmp_path):
    path, lines, damaged = _damaged(tmp_path)
    with open(path, "a") as handle:
        handle.write(lines[0][:20])  # and a torn tail
    report = repair_records(path)
    assert [n for n, _ in report.moved] == [2, 4, 6, len(damaged) + 1]
    side = rejected_path(path)
    assert report.side_file == side and report.kept == len(lines) - 1
    kept, rejected = path.read_text().splitlines(), side.read_text().splitlines()
    assert sorted(kept + rejected) == sorted(t.rstrip("\n") for t in damaged + [lines[0][:20]])
    assert kept == [t.rstrip("\n") for t in lines if t != lines[3]]
    with RecordWriter(path) as writer:  # resumable: the edited episode will simply run again
        assert len(writer.done) == len(lines) - 1
        writer.append(_all(4)[3])
    assert len(read_records(path)) == len(lines)
    assert repair_records(path).moved == ()  # a clean file is left alone
    assert side.read_text().splitlines() == rejected


def test_a_torn_tail_is_kept_aside_on_resume(tmp_path):
    records = _all(2)
    path = tmp_path / "r.jsonl"
    path.write_text(record_line(records[0]) + record_line(records[1])[:30])
    with pytest.warns(UserWarning, match="moving its 30 bytes to r.jsonl.rejected"):
        RecordWriter(path).close()
    assert rejected_path(path).read_text() == record_line(records[1])[:30] + "\n"
    assert path.read_text() == record_line(records[0])
