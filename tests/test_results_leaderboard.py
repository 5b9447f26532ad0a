"""Leaderboard merge: ranking, leaked-weight marks, invalid files, and refusing mixed episodes."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from results.cli import leaderboard_main
from results.leaderboard import LEAKED_MARK, LeaderboardError, merge
from results.schema import write_result
from results_factories import fake_records, fake_result

HASH_A, HASH_B = "sha256:" + "a" * 64, "sha256:" + "b" * 64


def _write(folder, name, learners, *, run_id, episodes_hash=HASH_A, leaked=False, k_shot=1):
    records = pd.DataFrame(
        [r for i, (learner, p) in enumerate(learners)
         for r in fake_records(learner, p, 20, seed=i, run_id=run_id, k_shot=k_shot)])
    records["accuracy"] = records["correct"] / records["total"]
    result = fake_result(records, run_id=run_id, name=name, episodes_hash=episodes_hash,
                         saw_test_classes=leaked, k_shot=k_shot)
    return write_result(folder / f"{name}.json", result), result


def test_merge_ranks_by_accuracy_and_marks_leaked_weights(tmp_path):
    _, clean = _write(tmp_path, "clean", [("protonet", 0.5), ("part_protonet", 0.9)], run_id="r1")
    _, leaked = _write(tmp_path, "leaky", [("protonet", 0.7)], run_id="r2", leaked=True)
    _write(tmp_path, "five-shot", [("protonet", 0.8)], run_id="r3", k_shot=5, episodes_hash=HASH_B)
    board = merge(tmp_path)
    assert sorted(board) == ["test_5way_1shot_5q_mixed", "test_5way_5shot_5q_mixed"]
    table = board["test_5way_1shot_5q_mixed"]
    expected = sorted([(clean["metrics"]["part_protonet"]["accuracy"], "clean"),
                       (leaked["metrics"]["protonet"]["accuracy"], "leaky"),
                       (clean["metrics"]["protonet"]["accuracy"], "clean")], reverse=True)
    assert list(table["accuracy"]) == [a for a, _ in expected]
    assert list(table["run"]) == [r for _, r in expected]
    assert list(table["rank"]) == [1, 2, 3]
    assert list(table["leaked"]) == [LEAKED_MARK if r == "leaky" else "" for _, r in expected]


def test_invalid_and_duplicate_files_are_left_out_with_reasons(tmp_path):
    path, _ = _write(tmp_path, "good", [("protonet", 0.5)], run_id="r1")
    (tmp_path / "copy.json").write_text(path.read_text())
    tampered = json.loads(path.read_text())
    tampered["metrics"]["protonet"]["accuracy"] = 100.0
    (tmp_path / "tampered.json").write_text(json.dumps(tampered))
    board = merge(tmp_path)
    assert len(board["test_5way_1shot_5q_mixed"]) == 1
    assert list(board.invalid) == [str(tmp_path / "tampered.json")]
    assert any("content hash mismatch" in p for p in board.invalid[str(tmp_path / "tampered.json")])
    assert len(board.duplicates) == 1


def test_mixed_episode_sets_are_refused_unless_allowed(tmp_path, capsys):
    _write(tmp_path, "a", [("protonet", 0.5)], run_id="r1", episodes_hash=HASH_A)
    _write(tmp_path, "b", [("protonet", 0.6)], run_id="r2", episodes_hash=HASH_B)
    with pytest.raises(LeaderboardError, match="2 different episode sets"):
        merge(tmp_path)
    board = merge(tmp_path, allow_mixed_episodes=True)
    assert set(board["test_5way_1shot_5q_mixed"]["episodes_hash"]) == {HASH_A, HASH_B}
    assert leaderboard_main(tmp_path) == 1
    assert "different episode sets" in capsys.readouterr().out
    assert leaderboard_main(tmp_path, allow_mixed=True) == 0


def test_leaderboard_main_prints_and_writes_tables(tmp_path, capsys):
    results = tmp_path / "results"
    results.mkdir()
    _write(results, "a", [("protonet", 0.5), ("part_protonet", 0.8)], run_id="r1", leaked=True)
    out = tmp_path / "board"
    assert leaderboard_main(results, out=out) == 0
    text = capsys.readouterr().out
    assert "== test_5way_1shot_5q_mixed ==" in text and "weights saw the test" in text
    csv = pd.read_csv(out / "test_5way_1shot_5q_mixed.csv")
    assert list(csv["learner"]) == ["part_protonet", "protonet"]
    md = (out / "test_5way_1shot_5q_mixed.md").read_text().splitlines()
    assert len(md) == 4 and md[0].startswith("| rank | learner |")
    assert leaderboard_main(tmp_path / "empty") == 1
