"""Leaderboard: verified rows only, grouped by dataset/setting/protocol, tie-aware ranks, bad files."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
from results_factories import fake_records, fake_result

from results.cli import leaderboard_main
from results.leaderboard import LEAKED_MARK, merge, rank_rule, tie_aware_ranks
from results.records import RecordWriter
from results.schema import BOOL, LEARNER_METRICS, seal, validate_result, write_result

HASH_A, HASH_B = "sha256:" + "a" * 64, "sha256:" + "b" * 64
SETTING = "test_5way_1shot_5q_mixed"
TWIN = "synthetic-twin@dddddddd"


def allow_transductive_flag(monkeypatch) -> None:
    """Let result files carry metrics.<learner>.transductive where this schema does not yet."""
    if "transductive" not in LEARNER_METRICS.fields and "transductive" not in getattr(
        LEARNER_METRICS, "optional", {}
    ):
        monkeypatch.setattr(LEARNER_METRICS, "extra", BOOL)


def _write(
    folder,
    name,
    learners,
    *,
    run_id,
    episodes_hash=HASH_A,
    leaked=False,
    k_shot=1,
    records=True,
    dataset=None,
    edit=None,
    n_episodes=20,
    transductive=None,
):
    """A run folder folder/name/ holding result.json and (if `records`) its records.jsonl.

    learners: [(name, p_correct)]; dataset: replaces the result's dataset section; edit(result):
    changes the result before it is (re-)sealed, as a forger would; transductive: the learners
    flagged transductive (in the records, where they carry the flag, and in the result).
    """
    rows = [
        r
        for i, (learner, p) in enumerate(learners)
        for r in fake_records(learner, p, n_episodes, seed=i, run_id=run_id, k_shot=k_shot)
    ]
    if transductive is not None and "transductive" in rows[0]:
        for row in rows:
            row["transductive"] = row["learner"] in transductive
    frame = pd.DataFrame(rows)
    frame["accuracy"] = frame["correct"] / frame["total"]
    result = fake_result(
        frame,
        run_id=run_id,
        name=name,
        episodes_hash=episodes_hash,
        saw_test_classes=leaked,
        k_shot=k_shot,
    )
    if dataset is not None:
        result["dataset"] = dataset
    if transductive is not None:
        for learner, metric in result["metrics"].items():
            metric["transductive"] = learner in transductive
    if edit is not None:
        edit(result)
    result = seal(result)
    run_dir = folder / name
    if records:
        with RecordWriter(run_dir / "records.jsonl") as writer:
            writer.append_many(rows)
    return write_result(run_dir / "result.json", result), result


def _label(dataset=TWIN, setting=SETTING, protocol="inductive"):
    return f"{dataset}_{setting}_{protocol}"


def test_verified_rows_are_ranked_with_paired_tests_and_leaked_weights_ranked_apart(tmp_path):
    _, clean = _write(tmp_path, "clean", [("protonet", 0.5), ("part_protonet", 0.9)], run_id="r1")
    _, leaked = _write(tmp_path, "leaky", [("protonet", 0.95)], run_id="r2", leaked=True)
    _write(tmp_path, "five-shot", [("protonet", 0.8)], run_id="r3", k_shot=5, episodes_hash=HASH_B)
    board = merge(tmp_path)
    leaky_label = _label() + "_leaked-weights"
    assert sorted(board) == sorted(
        [_label(), leaky_label, _label(setting="test_5way_5shot_5q_mixed")]
    )
    table = board[_label()]
    expected = [
        (clean["metrics"]["part_protonet"]["accuracy"], "clean"),
        (clean["metrics"]["protonet"]["accuracy"], "clean"),
    ]
    assert list(table["accuracy"]) == [a for a, _ in expected]
    assert list(table["run"]) == [r for _, r in expected]
    assert list(table["rank"]) == [1, 2]  # 90% / 50% over 20 episodes: apart
    assert table["tie"][0] == "leader"
    assert table["tie"][1].startswith("apart: paired p=")
    assert set(table["leaked"]) == {""}  # the leaked row, the best number, is not rank 1 here
    apart = board[leaky_label]
    assert list(apart["run"]) == ["leaky"] and list(apart["leaked"]) == [LEAKED_MARK]
    assert apart["accuracy"][0] == leaked["metrics"]["protonet"]["accuracy"]
    assert "WEIGHTS SAW THE TEST CLASSES" in board.groups[leaky_label].title
    assert set(table["dataset"]) == {TWIN}
    assert board.rules[_label()] == rank_rule(0.95)
    assert not board.invalid and not board.unverified


def test_rows_are_grouped_by_dataset_name_and_fingerprint(tmp_path):
    small = {"name": "synthetic-twin", "fingerprint": "sha256:" + "1" * 64, "n_images": 400}
    large = {"name": "synthetic-twin", "fingerprint": "sha256:" + "2" * 64, "n_images": 4598}
    real = {"name": "partimagenet-ood", "fingerprint": "sha256:" + "3" * 64, "n_images": 4598}
    for name, dataset in (("small", small), ("large", large), ("real", real)):
        # the same episode hash everywhere: only the dataset tells the rows apart
        _write(tmp_path, name, [("protonet", 0.6)], run_id=name, dataset=dataset)
    board = merge(tmp_path)
    assert sorted(board) == sorted(
        [
            _label("synthetic-twin@11111111"),
            _label("synthetic-twin@22222222"),
            _label("partimagenet-ood@33333333"),
        ]
    )
    for label, table in board.items():
        assert len(table) == 1 and list(table["rank"]) == [1]
        assert table["dataset"][0] == label.split("_")[0]
        assert board.groups[label].dataset_label in board.groups[label].title


def test_ci_overlap_ties_share_the_leaders_rank():
    table = pd.DataFrame(
        {
            "accuracy": [60.0, 70.0, 67.0, 59.5, 50.0],
            "ci": [1.0, 2.0, 2.0, 1.0, None],
            "episodes_hash": [HASH_A] * 5,
        }
    )
    ranks, ties = tie_aware_ranks(table, {})
    # 70±2 leads; 67±2 overlaps it, and a single episode (no CI) cannot be told apart from it.
    # 60±1 is apart, so it opens rank 4 (three rows above); 59.5±1 overlaps 60±1.
    assert ranks == [4, 1, 1, 4, 1]
    assert ties == [
        "apart: CIs disjoint",
        "leader",
        "tied: CIs overlap",
        "tied: CIs overlap",
        "tied: no CI (one episode)",
    ]


def test_paired_test_separates_rows_whose_cis_overlap_and_ties_noise():
    rng = np.random.default_rng(0)
    base = pd.Series(rng.uniform(30, 90, 60), index=range(60))
    better = base + 2 + rng.normal(0, 0.5, 60)  # always ~2 points better on the same episode
    same = base + rng.normal(0, 0.5, 60)  # no real difference
    table = pd.DataFrame(
        {
            "accuracy": [better.mean(), base.mean(), same.mean()],
            "ci": [8.0, 8.0, 8.0],
            "episodes_hash": [HASH_A] * 3,
        }
    )
    ranks, ties = tie_aware_ranks(table, {0: better, 1: base, 2: same})
    assert ranks == [1, 2, 2]
    assert ties[0] == "leader" and ties[1].startswith("apart: paired p=")
    assert ties[2].startswith("tied: paired p=")
    assert tie_aware_ranks(table, {}) == (
        [1, 1, 1],
        ["leader", "tied: CIs overlap", "tied: CIs overlap"],
    )
    # different episode sets: the pairing is impossible and the CIs decide
    other = table.assign(episodes_hash=[HASH_A, HASH_B, HASH_A])
    assert tie_aware_ranks(other, {0: better, 1: base, 2: same})[1][1] == "tied: CIs overlap"


def test_transductive_rows_get_their_own_table(tmp_path, monkeypatch):
    allow_transductive_flag(monkeypatch)
    _write(tmp_path, "run", [("protonet", 0.5), ("tim", 0.9)], run_id="r1", transductive={"tim"})
    board = merge(tmp_path)
    assert sorted(board) == [_label(protocol="inductive"), _label(protocol="transductive")]
    assert list(board[_label(protocol="transductive")]["learner"]) == ["tim"]
    assert list(board[_label(protocol="inductive")]["learner"]) == ["protonet"]
    assert board.groups[_label(protocol="transductive")].title.endswith(
        "transductive · annotations: none"
    )


def _forge(result):
    metric = result["metrics"]["protonet"]
    metric["accuracy"], metric["ci"] = 99.9, 0.1


def test_a_forged_resealed_result_is_never_ranked(tmp_path, capsys):
    _write(tmp_path, "honest", [("protonet", 0.5)], run_id="r1")
    forged, _ = _write(tmp_path, "forged", [("protonet", 0.5)], run_id="r2", edit=_forge)
    board = merge(tmp_path)
    assert list(board[_label()]["run"]) == ["honest"]
    assert any("recomputed from the records" in p for p in board.invalid[str(forged)])
    assert leaderboard_main(tmp_path) == 0
    out = capsys.readouterr().out
    assert f"refused {forged}: metrics.protonet.accuracy: 99.9 in the file" in out
    # without records beside it, it is not ranked either, even with --allow-unverified
    (forged.parent / "records.jsonl").unlink()
    for allow in (False, True):
        board = merge(tmp_path, allow_unverified=allow)
        ranked = pd.concat([t for label, t in board.items() if board.groups[label].verified])
        assert list(ranked["run"]) == ["honest"]
        assert str(forged) in board.invalid or str(forged) in board.unverified


def test_files_without_records_are_refused_or_listed_apart(tmp_path, capsys):
    _write(tmp_path, "verified", [("protonet", 0.5)], run_id="r1")
    bare, _ = _write(tmp_path, "bare", [("protonet", 0.9)], run_id="r2", records=False)
    board = merge(tmp_path)
    assert list(board) == [_label()] and list(board[_label()]["run"]) == ["verified"]
    assert "no records.jsonl beside it" in board.unverified[str(bare)]
    board = merge(tmp_path, allow_unverified=True)
    apart = _label() + "_unverified"
    assert list(board) == [_label(), apart]
    assert "rank" not in board[apart].columns and list(board[apart]["run"]) == ["bare"]
    assert list(board[_label()]["run"]) == ["verified"]  # the 90% row does not outrank it
    assert leaderboard_main(tmp_path) == 0
    assert f"refused {bare}: cannot be verified" in capsys.readouterr().out
    assert leaderboard_main(tmp_path, allow_unverified=True) == 0
    out = capsys.readouterr().out
    assert "UNVERIFIED (not ranked)" in out and f"unverified {bare}" in out


def test_records_given_verify_files_that_have_none_beside_them(tmp_path):
    _write(tmp_path / "records", "run", [("protonet", 0.5)], run_id="r1")
    results = tmp_path / "results"
    results.mkdir()
    (results / "run.json").write_text((tmp_path / "records" / "run" / "result.json").read_text())
    assert leaderboard_main(results) == 1  # nothing verifiable
    assert leaderboard_main(results, records=[tmp_path / "records" / "run" / "records.jsonl"]) == 0
    assert leaderboard_main(results, records=[tmp_path / "missing.jsonl"]) == 2


def test_malformed_and_deeply_nested_files_do_not_stop_the_folder(tmp_path, capsys):
    _write(tmp_path, "good", [("protonet", 0.5)], run_id="r1")
    bad = {
        "deep.json": "[" * 100_000 + "]" * 100_000,
        "deep-config.json": '{"schema_version": 1, "config": '
        + '{"a": ' * 5000
        + "1"
        + "}" * 5000
        + "}",
        "garbage.json": "{not json",
        "list.json": "[1, 2]",
        "binary.json": b"\xff\xfe\x00".decode("latin-1"),
    }
    for name, text in bad.items():
        (tmp_path / name).write_text(text, encoding="latin-1")
    board = merge(tmp_path)
    assert list(board[_label()]["run"]) == ["good"]
    assert sorted(board.invalid) == sorted(str(tmp_path / n) for n in bad)
    assert leaderboard_main(tmp_path) == 0
    lines = capsys.readouterr().out.splitlines()
    for name in bad:
        assert len([line for line in lines if line.startswith(f"refused {tmp_path / name}:")]) == 1


def test_duplicate_files_are_left_out(tmp_path):
    path, _ = _write(tmp_path, "good", [("protonet", 0.5)], run_id="r1")
    (tmp_path / "good" / "copy.json").write_text(path.read_text())
    # a copy without records that sorts first (e.g. the --html folder's copy) is a duplicate too
    (tmp_path / "a-site").mkdir()
    (tmp_path / "a-site" / "001-good-result.json").write_text(path.read_text())
    board = merge(tmp_path)
    copies = {str(path), str(tmp_path / "good" / "copy.json")}  # both verified: either ranks
    assert len(board[_label()]) == 1 and board[_label()]["file"][0] in copies
    assert sorted(board.duplicates) == sorted(
        copies - {board[_label()]["file"][0]} | {str(tmp_path / "a-site" / "001-good-result.json")}
    )
    assert not board.unverified


def test_mixed_episode_sets_are_refused_unless_allowed(tmp_path, capsys):
    _write(tmp_path, "a", [("protonet", 0.5)], run_id="r1", episodes_hash=HASH_A)
    _write(tmp_path, "b", [("protonet", 0.6)], run_id="r2", episodes_hash=HASH_B)
    refused = merge(tmp_path)  # the other set's rows are refused, the rest ranked
    assert list(refused[_label()]["episodes_hash"]) == [HASH_A]
    assert len(refused.mixed) == 1
    assert "2 different episode sets" in next(iter(refused.mixed.values()))
    board = merge(tmp_path, allow_mixed_episodes=True)
    table = board[_label()]
    assert set(table["episodes_hash"]) == {HASH_A, HASH_B}
    assert "paired" not in " ".join(table["tie"])  # other episodes: no pairing
    assert leaderboard_main(tmp_path) == 1
    assert "different episode sets" in capsys.readouterr().out
    assert leaderboard_main(tmp_path, allow_mixed=True) == 0


def test_leaderboard_main_prints_the_rule_and_writes_tables(tmp_path, capsys):
    results = tmp_path / "results"
    _write(results, "a", [("protonet", 0.5), ("part_protonet", 0.8)], run_id="r1", leaked=True)
    out = tmp_path / "board"
    assert leaderboard_main(results, out=out) == 0
    text = capsys.readouterr().out
    title = (
        f"== {TWIN} · test 5-way 1-shot 5 queries (mixed) · inductive · annotations: none · "
        f"{LEAKED_MARK} WEIGHTS SAW THE TEST CLASSES =="
    )
    assert title in text and "weights saw the test" in text
    table_part = text[text.index(title) :]
    assert table_part.index("part_protonet") < table_part.index(rank_rule(0.95))
    csv = pd.read_csv(out / f"{_label()}_leaked-weights.csv")
    assert list(csv["learner"]) == ["part_protonet", "protonet"]
    assert list(csv["dataset"]) == [TWIN, TWIN]
    md = (out / f"{_label()}_leaked-weights.md").read_text().splitlines()
    assert len(md) == 4 and md[0].startswith("| rank | tie | learner |")
    assert leaderboard_main(tmp_path / "empty") == 2


def test_cli_wires_records_unverified_and_html(tmp_path, capsys):
    from benchmark.__main__ import main

    _write(tmp_path, "bare", [("protonet", 0.5)], run_id="r1", records=False)
    assert main(["leaderboard", str(tmp_path)]) == 1
    assert (
        main(["leaderboard", str(tmp_path), "--allow-unverified", "--html", str(tmp_path / "site")])
        == 0
    )
    assert (tmp_path / "site" / "index.html").is_file()
    capsys.readouterr()
    records = tmp_path / "r.jsonl"
    with RecordWriter(records) as writer:
        writer.append_many(fake_records("protonet", 0.5, 20, seed=0, run_id="r1"))
    assert main(["leaderboard", str(tmp_path), "--records", str(records)]) == 0
    assert "rank: tie-aware" in capsys.readouterr().out


def test_rows_say_how_many_training_seeds_stand_behind_them(tmp_path):
    spread = {
        "seeds": [0, 1, 2],
        "n_seeds": 3,
        "this_seed": 1,
        "confidence": 0.95,
        "learners": {
            "protonet": {
                "accuracy": 60.0,
                "seed_std": 1.5,
                "episode_ci": 2.0,
                "per_seed": {"0": 58.5, "1": 60.0, "2": 61.5},
            }
        },
    }
    _write(tmp_path, "one-seed", [("protonet", 0.5)], run_id="r1")
    _write(
        tmp_path,
        "seed-1",
        [("protonet", 0.6)],
        run_id="r2",
        edit=lambda result: result.update(seed_spread=spread),
    )
    table = merge(tmp_path)[_label()].set_index("run")
    assert table.loc["seed-1", "seeds"] == "3 seeds"
    assert table.loc["one-seed", "seeds"] == "single seed"


def test_a_run_folders_run_json_is_not_taken_for_a_result_file(tmp_path):
    path, _ = _write(tmp_path, "run", [("protonet", 0.5)], run_id="r1")
    (path.parent / "run.json").write_text('{"config": {}, "content": {}, "wall_time_s": 1.0}')
    (path.parent / "config.yaml").write_text("name: run\n")
    board = merge(tmp_path)
    assert not board.invalid and list(board[_label()]["run"]) == ["run"]


def test_each_annotation_protocol_is_ranked_in_its_own_table_and_all_is_marked(tmp_path):
    # The same learner over oracle masks (queries' annotations: "all") and predicted masks
    # ("none") in one result: two tables, the "all" one titled as using test-time annotations.
    rows = [
        r
        for i, (learner, p, mode) in enumerate(
            [
                ("protonet", 0.5, None),
                ("part_predicted", 0.55, "predicted"),
                ("part_oracle", 0.9, "oracle"),
            ]
        )
        for r in fake_records(learner, p, 20, seed=i, run_id="r1", mask_mode=mode)
    ]
    frame = pd.DataFrame(rows)
    frame["accuracy"] = frame["correct"] / frame["total"]
    result = fake_result(frame, run_id="r1")
    assert result["metrics"]["part_oracle"]["annotations"] == "all"
    assert result["metrics"]["part_predicted"]["annotations"] == "none"
    assert result["metrics"]["protonet"]["annotations"] == "none"
    with RecordWriter(tmp_path / "a" / "records.jsonl") as writer:
        writer.append_many(rows)
    write_result(tmp_path / "a" / "result.json", result)
    board = merge(tmp_path)
    assert sorted(board) == sorted([_label(), _label() + "_annotations-all"])
    assert list(board[_label()]["learner"]) == ["part_predicted", "protonet"]
    assert list(board[_label() + "_annotations-all"]["learner"]) == ["part_oracle"]
    assert "USES TEST-TIME ANNOTATIONS" in board.groups[_label() + "_annotations-all"].title
    assert "USES" not in board.groups[_label()].title


def test_a_declared_protocol_that_contradicts_the_mask_mode_is_refused(tmp_path):
    # A file claiming "none" for a learner whose features pooled the queries' annotations.
    rows = fake_records("part_protonet", 0.8, 20, run_id="r1", mask_mode="oracle")
    frame = pd.DataFrame(rows)
    frame["accuracy"] = frame["correct"] / frame["total"]
    result = fake_result(frame, run_id="r1")
    result["metrics"]["part_protonet"]["annotations"] = "none"
    result = seal(result)
    problems = validate_result(result)
    assert any(
        "metrics.part_protonet.annotations: declares 'none'" in p and "'all'" in p for p in problems
    )
    result["metrics"]["part_protonet"]["annotations"] = "sometimes"
    assert any("is not one of" in p for p in validate_result(seal(result)))


def test_a_folder_of_other_json_skips_it_and_refuses_a_damaged_result(tmp_path):
    _write(tmp_path, "clean", [("protonet", 0.5)], run_id="r1")
    (tmp_path / "data").mkdir()
    coco = {"images": [], "annotations": [], "categories": []}  # a dataset's annotation file
    (tmp_path / "data" / "test.json").write_text(json.dumps(coco))
    (tmp_path / "damaged").mkdir()
    (tmp_path / "damaged" / "result.json").write_text(json.dumps({"schema_version": 1}))
    board = merge(tmp_path)
    assert list(board) == [_label()]
    assert "not a result file" in board.skipped[str(tmp_path / "data" / "test.json")]
    assert str(tmp_path / "damaged" / "result.json") in board.invalid  # checked, not skipped
