"""Tables from records (checked against hand/numpy computations) and their CSV/Markdown/LaTeX files."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from results_factories import fake_records
from scipy import stats

from results.records import RecordWriter, make_record, read_records
from results.tables import (
    accuracy_table,
    class_table,
    paired_table,
    part_contribution_table,
    report_tables,
    save_table,
    super_category_table,
    write_report,
)


@pytest.fixture()
def frame(tmp_path):
    with RecordWriter(tmp_path / "r.jsonl") as writer:
        writer.append_many(fake_records("protonet", 0.55, 40))
        writer.append_many(fake_records("part_protonet", 0.75, 40, seed=1, with_parts=True))
    return read_records(tmp_path / "r.jsonl")


def test_accuracy_table_is_mean_and_ci_over_episodes(frame):
    table = accuracy_table(frame)
    assert list(table["learner"]) == ["part_protonet", "protonet"]  # best first
    for _, row in table.iterrows():
        acc = frame.loc[frame["learner"] == row["learner"], "correct"].to_numpy() / 25 * 100
        assert row["accuracy"] == pytest.approx(acc.mean())
        assert row["ci95"] == pytest.approx(stats.norm.ppf(0.975) * stats.sem(acc))
        assert row["episodes"] == 40
        assert row["acc ± ci"] == f"{acc.mean():.2f} ± {row['ci95']:.2f}"


def _two_way_record(episode, per_class, per_super_category):
    """A 2-way 1-shot episode of 4 queries per way; correct counts follow from per_class."""
    return make_record(
        run_id="r",
        learner="a",
        split="test",
        n_way=2,
        k_shot=1,
        n_query=4,
        episode=episode,
        correct=sum(c for c, _ in per_class.values()),
        total=8,
        per_class=per_class,
        per_super_category=per_super_category,
    )


def _tiny_record(episode, fish, bird):
    """Two ways: one Fish class and one Bird class, 4 queries each."""
    return _two_way_record(
        episode,
        {"n01": [fish, 4], "n02": [bird, 4]},
        {"Fish": [fish, 4], "Bird": [bird, 4]},
    )


def test_super_category_table_on_hand_made_episodes(tmp_path):
    with RecordWriter(tmp_path / "r.jsonl") as writer:
        writer.append_many([_tiny_record(0, 4, 1), _tiny_record(1, 2, 3), _tiny_record(2, 3, 2)])
    table = super_category_table(read_records(tmp_path / "r.jsonl")).set_index("super_category")
    assert table.loc["Fish", "accuracy"] == pytest.approx(100 * (1 + 0.5 + 0.75) / 3)
    assert table.loc["Bird", "accuracy"] == pytest.approx(100 * (0.25 + 0.75 + 0.5) / 3)
    assert table.loc["Fish", "ci95"] == pytest.approx(
        1.959964 * np.std([100, 50, 75], ddof=1) / np.sqrt(3), rel=1e-6
    )


def test_class_table_averages_over_the_episodes_a_class_appears_in(tmp_path):
    with RecordWriter(tmp_path / "r.jsonl") as writer:
        writer.append_many([_tiny_record(0, 4, 1), _tiny_record(1, 2, 3), _tiny_record(2, 3, 2)])
        # a third class, in episode 3 only, beside n01
        writer.append(_two_way_record(3, {"n01": [1, 4], "n03": [3, 4]}, {"Fish": [4, 8]}))
    records = read_records(tmp_path / "r.jsonl")
    table = class_table(records).set_index("synset")
    assert table.loc["n01", "episodes"] == 4 and table.loc["n03", "episodes"] == 1
    assert table.loc["n01", "accuracy"] == pytest.approx(100 * (1 + 0.5 + 0.75 + 0.25) / 4)
    assert table.loc["n02", "accuracy"] == pytest.approx(100 * (0.25 + 0.75 + 0.5) / 3)
    assert table.loc["n01", "ci95"] == pytest.approx(
        1.959964 * np.std([100, 50, 75, 25], ddof=1) / np.sqrt(4), rel=1e-6
    )
    assert table.loc["n03", "acc ± ci"] == "75.00 ± n/a"  # one episode: no interval
    assert report_tables(records)["per_class"].equals(class_table(records))


def test_part_contributions_only_from_part_learners(frame):
    table = part_contribution_table(frame)
    assert set(table["learner"]) == {"part_protonet"}
    head = table[table["slot"] == "Head"].iloc[0]
    shares = [c["Head"] * 100 for c in frame["part_contributions"].dropna()]
    assert head["contribution"] == pytest.approx(np.mean(shares))
    assert head["episodes"] == 40


def test_paired_table_matches_ttest_rel(frame):
    table = paired_table(frame, "protonet")
    row = table.iloc[0]
    a = frame[frame["learner"] == "part_protonet"].sort_values("episode")["accuracy"] * 100
    b = frame[frame["learner"] == "protonet"].sort_values("episode")["accuracy"] * 100
    assert row["learner"] == "part_protonet" and row["episodes"] == 40
    assert row["difference"] == pytest.approx((a.to_numpy() - b.to_numpy()).mean())
    assert row["p_value"] == pytest.approx(stats.ttest_rel(a, b).pvalue)
    with pytest.raises(ValueError, match="baseline learner 'nope'"):
        paired_table(frame, "nope")


def test_paired_table_refuses_learners_on_different_episodes(frame):
    shifted = frame.copy()
    shifted.loc[shifted["learner"] == "protonet", "episode"] += 1
    with pytest.raises(ValueError, match="not run on the same episodes"):
        paired_table(shifted, "protonet")


def test_saved_tables_round_trip_and_escape(frame, tmp_path):
    table = accuracy_table(frame)
    csv, md, tex = save_table(table, tmp_path / "acc")
    pd.testing.assert_frame_equal(pd.read_csv(csv), table, check_dtype=False)
    lines = md.read_text().splitlines()
    assert len(lines) == 2 + len(table)
    assert lines[2].split(" | ")[4] == "part_protonet"
    latex = tex.read_text()
    assert r"\toprule" in latex and r"n\_way" in latex and r"$\pm$" in latex


def test_write_report_prints_and_saves_every_table(frame, tmp_path, capsys):
    tables = write_report(frame, tmp_path / "out", baseline="protonet")
    assert set(tables) == {
        "accuracy",
        "super_category",
        "per_class",
        "part_contributions",
        "paired",
    }
    out = capsys.readouterr().out
    assert "== accuracy ==" in out
    assert "== per class == (" in out and "in per_class.csv" in out  # saved, not printed
    assert set(tables["per_class"]["learner"]) == set(frame["learner"])
    write_report(frame, tmp_path / "short", printed=("accuracy",))
    out = capsys.readouterr().out
    assert "== accuracy ==" in out and "== super category ==" not in out
    for name in tables:
        for suffix in ("csv", "md", "tex"):
            assert (tmp_path / "out" / f"{name}.{suffix}").stat().st_size > 0


def test_tables_without_mask_mode_and_with_bootstrap(tmp_path):
    with RecordWriter(tmp_path / "r.jsonl") as writer:
        writer.append_many(fake_records("protonet", 0.6, 30, mask_mode=None))
    frame = read_records(tmp_path / "r.jsonl")
    normal = accuracy_table(frame)
    boot = accuracy_table(frame, method="bootstrap", n_boot=2000, seed=0)
    assert len(normal) == len(boot) == 1
    assert boot["accuracy"][0] == normal["accuracy"][0]
    assert boot["ci95"][0] == pytest.approx(normal["ci95"][0], rel=0.25)
    assert "protonet" in save_table(normal, tmp_path / "t")[1].read_text()


def test_learners_with_and_without_masks_are_compared_and_runs_are_not_pooled(tmp_path):
    # As the runner writes them: mask_mode is null for a learner that uses no parts.
    plain = fake_records("protonet", 0.5, 20, mask_mode=None)
    parts = fake_records("part_protonet", 0.8, 20, seed=1, mask_mode="oracle", with_parts=True)
    other_run = fake_records("protonet", 0.9, 20, seed=2, run_id="run-b", mask_mode=None)
    for name, records in (("a.jsonl", plain + parts), ("b.jsonl", other_run)):
        with RecordWriter(tmp_path / name) as writer:
            writer.append_many(records)
    one_run = read_records(tmp_path / "a.jsonl")
    paired = paired_table(one_run, "protonet")
    assert list(paired["learner"]) == ["part_protonet"] and paired["episodes"][0] == 20
    assert "run_id" not in accuracy_table(one_run).columns
    both = accuracy_table(read_records(tmp_path))
    assert list(both["run_id"]) == ["run-a", "run-a", "run-b"]
    assert list(both["episodes"]) == [20, 20, 20]
    assert pd.isna(both.set_index("learner").loc["part_protonet", "mask_mode"]) is False
    assert len(paired_table(read_records(tmp_path), "protonet")) == 1  # run-b has no partner
