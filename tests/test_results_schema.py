"""Result files: build, write, validate; tampering, missing fields and wrong episodes are caught."""

from __future__ import annotations

import json

import numpy as np
import pytest
from results_factories import fake_records, fake_result
from scipy import stats

from results.cli import validate_main
from results.records import RecordWriter, read_records
from results.schema import (
    SCHEMA_VERSION,
    build_result,
    seal,
    validate_result,
    validate_result_file,
    verify_result_against_records,
    write_result,
)


@pytest.fixture()
def records(tmp_path):
    path = tmp_path / "records.jsonl"
    with RecordWriter(path) as writer:
        writer.append_many(fake_records("protonet", 0.6, 30))
        writer.append_many(fake_records("part_protonet", 0.7, 30, seed=1, with_parts=True))
    return path


@pytest.fixture()
def result_file(tmp_path, records):
    return write_result(tmp_path / "result.json", fake_result(read_records(records)))


def _edit(path, change):
    result = json.loads(path.read_text())
    change(result)
    path.write_text(json.dumps(result, indent=2))


def test_metrics_are_the_records_mean_and_ci(records):
    frame = read_records(records)
    result = fake_result(frame)
    acc = frame[frame["learner"] == "protonet"]["accuracy"].to_numpy() * 100
    metric = result["metrics"]["protonet"]
    assert metric["accuracy"] == pytest.approx(acc.mean())
    assert metric["ci"] == pytest.approx(stats.norm.ppf(0.975) * stats.sem(acc))
    assert metric["n_episodes"] == 30
    fish = []
    for counts in frame[frame["learner"] == "protonet"]["per_super_category"]:
        fish.append(100 * counts["Fish"][0] / counts["Fish"][1])
    assert metric["per_super_category"]["Fish"]["accuracy"] == pytest.approx(np.mean(fish))
    assert result["schema_version"] == SCHEMA_VERSION
    assert result["episodes"] == {"hash": "sha256:" + "e" * 64, "requested": 30, "run": 30}


def test_written_file_validates_and_matches_its_records(result_file, records):
    assert validate_result_file(result_file) == []
    assert validate_result_file(result_file, records=records) == []
    assert validate_result_file(result_file, episodes_hash="sha256:" + "e" * 64) == []
    assert not list(result_file.parent.glob(".*.tmp"))  # atomic write left no temporary


def test_tampered_metric_is_named(result_file, records):
    _edit(result_file, lambda r: r["metrics"]["protonet"].__setitem__("accuracy", 99.0))
    problems = validate_result_file(result_file)
    assert (
        "metrics.protonet: content hash mismatch — the file was edited after it was written"
        in problems
    )
    assert not any("part_protonet" in p for p in problems)


def test_tampered_and_resealed_metric_is_caught_by_the_records(result_file, records):
    def cheat(result):
        result["metrics"]["protonet"]["accuracy"] += 3.0
        result.update(seal(result))

    _edit(result_file, cheat)
    assert validate_result_file(result_file) == []  # the seal alone cannot catch a re-seal...
    problems = validate_result_file(result_file, records=records)
    assert (
        len(problems) == 1
        and problems[0].startswith("metrics.protonet.accuracy:")
        and "recomputed from the records" in problems[0]
    )


def test_missing_field_is_named(result_file):
    _edit(result_file, lambda r: r["dataset"].pop("fingerprint"))
    assert validate_result_file(result_file) == ["missing field dataset.fingerprint"]


def test_wrong_type_and_unknown_field_are_named(result_file):
    _edit(
        result_file,
        lambda r: (
            r["weights"].__setitem__("saw_test_classes", "no"),
            r["episodes"].__setitem__("extra", 1),
        ),
    )
    problems = validate_result_file(result_file)
    assert "weights.saw_test_classes: expected true/false, got str 'no'" in problems
    assert "unknown field episodes.extra" in problems


def test_wrong_episode_hash_is_reported(result_file, tmp_path):
    problems = validate_result_file(result_file, episodes_hash="sha256:" + "f" * 64)
    assert len(problems) == 1 and problems[0].startswith("episodes.hash does not match")
    episode_file = tmp_path / "episodes.json"
    episode_file.write_text("[]")
    problems = validate_result_file(
        result_file, episodes_file=episode_file, episode_file_hasher=lambda p: "sha256:" + "f" * 64
    )
    assert problems and problems[0].startswith("episodes.hash does not match")


def test_version_kind_and_unreadable_files(result_file, tmp_path):
    _edit(result_file, lambda r: r.__setitem__("schema_version", SCHEMA_VERSION + 1))
    assert "newer than this partbench reads" in validate_result_file(result_file)[0]
    (tmp_path / "x.json").write_text("{not json")
    assert validate_result_file(tmp_path / "x.json")[0].startswith("not valid JSON")
    assert validate_result({"schema_version": SCHEMA_VERSION, "kind": "other"})[0].startswith(
        "kind"
    )


def test_consistency_checks_catch_impossible_numbers(records):
    result = fake_result(read_records(records))
    # A CI wider than any 30 episodes with this mean allow (accuracy moved to 99.9%).
    bad = json.loads(json.dumps(result))
    bad["metrics"]["protonet"]["accuracy"] = 99.9
    problems = validate_result(seal(bad))
    assert any(p.startswith("metrics.protonet.ci:") and "wider than" in p for p in problems)
    bad = json.loads(json.dumps(result))
    bad["episodes"]["requested"] = 10
    assert "episodes.run (30) exceeds episodes.requested (10)" in validate_result(seal(bad))
    bad = json.loads(json.dumps(result))
    bad["metrics"]["protonet"]["n_episodes"] = 29
    assert any("every learner must run the same episodes" in p for p in validate_result(seal(bad)))


def test_write_result_refuses_an_invalid_result(tmp_path, records):
    result = fake_result(read_records(records))
    del result["versions"]["timm"]
    with pytest.raises(ValueError, match="missing field versions.timm"):
        write_result(tmp_path / "r.json", result)
    assert not (tmp_path / "r.json").exists()


def test_build_result_refuses_records_of_another_run(records):
    with pytest.raises(ValueError, match="no episode of run_id 'other'"):
        fake_result(read_records(records), run_id="other")


def test_validate_main_exit_codes(result_file, tmp_path, capsys, records):
    assert validate_main([result_file], records=[records]) == 0
    assert "OK" in capsys.readouterr().out
    broken = tmp_path / "broken.json"
    broken.write_text(result_file.read_text().replace('"fingerprint"', '"fingerprnt"'))
    assert validate_main([tmp_path]) == 1
    out = capsys.readouterr().out
    assert f"FAIL {broken}" in out and "missing field dataset.fingerprint" in out
    assert validate_main([]) == 2


def test_runner_shaped_records_validate_and_a_wrong_setting_is_named(tmp_path):
    # protonet uses no parts (mask_mode null); part_protonet uses oracle masks; variable k_shot
    path = tmp_path / "r.jsonl"
    with RecordWriter(path) as writer:
        writer.append_many(fake_records("protonet", 0.6, 10, mask_mode=None, k_shot=None))
        writer.append_many(
            fake_records("part_protonet", 0.7, 10, seed=1, k_shot=None, mask_mode="oracle")
        )
    frame = read_records(path)
    result = build_result(
        **{
            **_runner_args(frame),
            "setting": {
                "split": "test",
                "n_way": 5,
                "k_shot": None,
                "n_query": 5,
                "mode": "variable",
                "mask_mode": "oracle",
            },
        }
    )
    assert result["metrics"]["protonet"]["mask_mode"] is None
    assert result["metrics"]["part_protonet"]["mask_mode"] == "oracle"
    assert validate_result(result, records=frame) == []
    wrong = build_result(
        **{
            **_runner_args(frame),
            "setting": {
                "split": "test",
                "n_way": 5,
                "k_shot": 1,
                "n_query": 5,
                "mode": "mixed",
                "mask_mode": "predicted",
            },
        }
    )
    problems = validate_result(wrong, records=frame)
    assert "setting.k_shot: 1 but the records hold []" in problems
    # mask modes are checked per learner (metrics.<learner>.mask_mode against its records):
    # a run's learners may pool over other masks than setting.mask_mode (the controls)


def _runner_args(frame):
    return dict(
        run_id="run-a",
        name="variable",
        config={},
        seeds={"episodes": 0},
        versions={"partbench": "0.1.0", "torch": "2.14.1", "timm": "1.0.31", "python": "3.11.9"},
        git_commit=None,
        git_dirty=None,
        hardware={"device": "cpu"},
        dataset={"name": "synthetic-twin", "fingerprint": "sha256:0"},
        weights={
            "backbone": "resnet18",
            "provenance": "train",
            "sha256": None,
            "saw_test_classes": False,
        },
        episodes_hash="sha256:1",
        episodes_requested=10,
        wall_time_s=1.0,
        records=frame,
    )


def _resealed(result, change):
    bad = json.loads(json.dumps(result))
    change(bad)
    return seal(bad)


@pytest.mark.parametrize(
    "change, message",
    [
        (
            lambda r: r["setting"].__setitem__("k_shot", -5),
            "setting.k_shot: must be at least 1, got -5",
        ),
        (
            lambda r: r["setting"].__setitem__("n_way", 1),
            "setting.n_way: must be at least 2, got 1",
        ),
        (
            lambda r: r["setting"].__setitem__("n_query", 0),
            "setting.n_query: must be at least 1, got 0",
        ),
        (
            lambda r: r["weights"].__setitem__("provenance", "hub"),
            "weights.saw_test_classes: false, but hub weights (ImageNet-pretrained) saw the test "
            "classes; it must be true",
        ),
        (
            lambda r: r["metrics"]["protonet"].__setitem__("accuracy", 100.5),
            "metrics.protonet.accuracy: 100.5 is not a percentage in [0, 100]",
        ),
        (
            lambda r: r["metrics"].__setitem__("copycat", r["metrics"]["part_protonet"]),
            "metrics.copycat: identical to metrics.part_protonet in every number; the same results "
            "cannot stand under two learners",
        ),
    ],
)
def test_resealed_forgeries_break_the_consistency_rules(records, change, message):
    result = fake_result(read_records(records))
    assert message in validate_result(_resealed(result, change))


def test_a_ci_from_one_episode_is_refused(tmp_path):
    path = tmp_path / "one.jsonl"
    with RecordWriter(path) as writer:
        writer.append_many(fake_records("protonet", 0.6, 1))
    result = fake_result(read_records(path))
    assert result["metrics"]["protonet"]["ci"] is None and validate_result(result) == []

    def forge(r):
        r["metrics"]["protonet"]["ci"] = 1.0

    assert any(
        "a CI needs at least 2 episodes" in p for p in validate_result(_resealed(result, forge))
    )


def test_records_copied_under_a_second_learner_are_named(tmp_path):
    honest, copied = tmp_path / "honest.jsonl", tmp_path / "copy.jsonl"
    for path, seed in ((honest, 1), (copied, 0)):
        with RecordWriter(path) as writer:
            writer.append_many(fake_records("protonet", 0.6, 8))
            writer.append_many(fake_records("simpleshot", 0.6, 8, seed=seed))  # 0: same numbers
    result = fake_result(read_records(honest))
    assert verify_result_against_records(result, read_records(honest)) == []
    with pytest.raises(ValueError, match="identical to metrics.protonet in every number"):
        fake_result(read_records(copied))  # the runner can never write such a result
    problems = verify_result_against_records(result, read_records(copied))
    assert any(
        "learner 'simpleshot' has the same per-episode results as 'protonet'" in p for p in problems
    )


@pytest.mark.parametrize(
    "text, message",
    [
        ('{"schema_version": 1, "schema_version": 1}', "key 'schema_version' appears twice"),
        ('{"a": ' * 3000 + "1" + "}" * 3000, "nest deeper than 64 levels"),
    ],
)
def test_ambiguous_or_absurd_json_is_named(tmp_path, text, message):
    (tmp_path / "x.json").write_text(text)
    assert message in validate_result_file(tmp_path / "x.json")[0]


def test_validate_reports_every_file_of_a_folder(result_file, tmp_path, capsys):
    (tmp_path / "deep.json").write_text("[" * 100000 + "]" * 100000)
    version = f'"schema_version": {SCHEMA_VERSION},'
    (tmp_path / "dup.json").write_text(result_file.read_text().replace(version, version * 2))
    (tmp_path / "zz.json").write_text(result_file.read_text())
    assert validate_main([tmp_path]) == 1
    out = capsys.readouterr().out
    assert f"FAIL {tmp_path / 'deep.json'}" in out and f"FAIL {tmp_path / 'dup.json'}" in out
    assert f"OK   {tmp_path / 'zz.json'}" in out and f"OK   {result_file}" in out
    assert "2 of 4 result files valid" in out


def _fingerprinted(path, fingerprint):
    with RecordWriter(path) as writer:
        writer.append_many(
            {**r, "fingerprint": fingerprint} for r in fake_records("protonet", 0.6, 6)
        )
    return read_records(path)


def test_validate_records_refuses_records_of_another_fingerprint(tmp_path):
    result = fake_result(_fingerprinted(tmp_path / "a.jsonl", "a" * 16))
    assert result["metrics"]["protonet"]["fingerprint"] == "a" * 16
    assert verify_result_against_records(result, read_records(tmp_path / "a.jsonl")) == []
    problems = verify_result_against_records(result, _fingerprinted(tmp_path / "b.jsonl", "b" * 16))
    assert problems == [
        f"metrics.protonet.fingerprint: the result was made under run fingerprint "
        f"'{'a' * 16}' but the records carry '{'b' * 16}': records of another "
        "setting (data, weights, features, episodes or options)"
    ]


def test_records_of_two_fingerprints_under_one_learner_are_refused(tmp_path):
    path = tmp_path / "mixed.jsonl"
    with RecordWriter(path) as writer:
        writer.append_many({**r, "fingerprint": "a" * 16} for r in fake_records("protonet", 0.6, 3))
        writer.append_many(
            {**r, "fingerprint": "b" * 16} for r in fake_records("protonet", 0.6, 3, start=3)
        )
    with pytest.raises(ValueError, match="records of 2 run fingerprints"):
        fake_result(read_records(path))


def test_real_learners_that_tie_on_every_number_are_not_copies(tmp_path):
    # a degenerate backbone can make two learners agree everywhere; their fingerprints differ
    path = tmp_path / "tie.jsonl"
    with RecordWriter(path) as writer:
        for learner, fingerprint in (("protonet", "a" * 16), ("simpleshot", "b" * 16)):
            writer.append_many(
                {**r, "learner": learner, "fingerprint": fingerprint}
                for r in fake_records("protonet", 0.6, 6)
            )
    frame = read_records(path)
    result = fake_result(frame)
    assert validate_result(result, records=frame) == []
    copied = _resealed(
        result,
        lambda r: r["metrics"]["simpleshot"].__setitem__(
            "fingerprint", r["metrics"]["protonet"]["fingerprint"]
        ),
    )
    assert any("identical to metrics.protonet" in p for p in validate_result(copied))


def test_learners_pooling_over_their_own_masks_verify_against_their_records(tmp_path):
    # the controls (grid3 here) pool over their own regions, not the run's oracle masks
    rows = fake_records("part_protonet", 0.7, 12, seed=1, mask_mode="oracle") + fake_records(
        "part_protonet_grid3", 0.5, 12, seed=2, mask_mode="grid3"
    )
    with RecordWriter(tmp_path / "records.jsonl") as writer:
        writer.append_many(rows)
    frame = read_records(tmp_path / "records.jsonl")
    result = fake_result(frame)
    assert result["setting"]["mask_mode"] == "oracle"
    assert result["metrics"]["part_protonet_grid3"]["mask_mode"] == "grid3"
    assert validate_result(result, records=frame) == []
    # a learner whose file says other masks than its records is still caught
    result["metrics"]["part_protonet_grid3"]["mask_mode"] = "oracle"
    assert any(
        "part_protonet_grid3.mask_mode" in p for p in validate_result(seal(result), records=frame)
    )
