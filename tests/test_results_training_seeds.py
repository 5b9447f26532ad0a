"""Training-seed spread tables: mean over seeds, between-seed std, within-seed paired differences."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from results.stats import mean_ci
from results.training_seeds import seed_accuracy_table, seed_paired_table, seed_summary


def _records(accuracies: dict[str, list[float]]) -> pd.DataFrame:
    """One seed's records: learner -> per-episode accuracy (fractions), episodes 0..n-1."""
    rows = [
        {
            "split": "test",
            "n_way": 5,
            "k_shot": 1,
            "n_query": 15,
            "learner": name,
            "mask_mode": None,
            "episode": e,
            "accuracy": a,
        }
        for name, values in accuracies.items()
        for e, a in enumerate(values)
    ]
    return pd.DataFrame(rows)


# three seeds, four episodes, two learners (accuracies as fractions)
SEEDS = {
    0: _records({"protonet": [0.4, 0.6, 0.5, 0.7], "part": [0.6, 0.6, 0.7, 0.7]}),
    1: _records({"protonet": [0.5, 0.5, 0.6, 0.6], "part": [0.5, 0.7, 0.7, 0.8]}),
    2: _records({"protonet": [0.3, 0.5, 0.4, 0.6], "part": [0.5, 0.5, 0.6, 0.6]}),
}


def test_accuracy_is_the_mean_over_seeds_with_their_spread_beside_the_episode_ci():
    table = seed_accuracy_table(SEEDS).set_index("learner")
    # protonet per-seed means: 55, 55, 45 -> mean 51.667, std(ddof=1) 5.7735
    assert table.loc["protonet", "accuracy"] == pytest.approx(155 / 3)
    assert table.loc["protonet", "seed_std"] == pytest.approx(np.std([55, 55, 45], ddof=1))
    assert [table.loc["protonet", f"seed {s}"] for s in (0, 1, 2)] == pytest.approx([55, 55, 45])
    halves = [
        mean_ci(np.asarray(SEEDS[s].query("learner == 'protonet'")["accuracy"]) * 100)[1]
        for s in (0, 1, 2)
    ]
    assert table.loc["protonet", "episode_ci"] == pytest.approx(np.mean(halves))
    assert table.loc["part", "seeds"] == 3 and table.loc["part", "episodes"] == 4
    assert table.index[0] == "part"  # best first


def test_paired_difference_is_taken_within_each_seed_then_combined():
    table = seed_paired_table(SEEDS, "protonet").set_index("learner")
    # per-seed differences (points): 70-60, 67.5-55, 55-45 -> mean 10.833
    assert [table.loc["part", f"seed {s}"] for s in (0, 1, 2)] == pytest.approx([10, 12.5, 10])
    assert table.loc["part", "difference"] == pytest.approx(32.5 / 3)
    assert table.loc["part", "seed_std"] == pytest.approx(np.std([10, 12.5, 10], ddof=1))
    # the episode CI is a paired t interval over the seed-averaged per-episode differences
    diffs = (
        np.mean(
            [
                np.asarray(SEEDS[s].query("learner == 'part'")["accuracy"])
                - np.asarray(SEEDS[s].query("learner == 'protonet'")["accuracy"])
                for s in (0, 1, 2)
            ],
            axis=0,
        )
        * 100
    )
    from scipy import stats

    interval = stats.ttest_1samp(diffs, 0).confidence_interval(0.95)
    assert (table.loc["part", "ci_low"], table.loc["part", "ci_high"]) == pytest.approx(
        (interval.low, interval.high)
    )


def test_seeds_scored_on_different_episodes_are_refused():
    other = {0: SEEDS[0], 1: SEEDS[1][SEEDS[1]["episode"] < 3]}
    with pytest.raises(ValueError, match="seed 1 was not scored on the same"):
        seed_accuracy_table(other)
    with pytest.raises(ValueError, match="baseline learner 'dn4'"):
        seed_paired_table(SEEDS, "dn4")


def test_summary_records_every_seed_and_marks_one_seed_as_having_no_spread():
    summary = seed_summary(SEEDS)
    assert summary["seeds"] == [0, 1, 2] and summary["n_seeds"] == 3
    assert summary["learners"]["protonet"]["per_seed"] == {"0": 55.0, "1": 55.0, "2": 45.0}
    single = seed_summary({7: SEEDS[0]})
    assert single["n_seeds"] == 1 and single["learners"]["part"]["seed_std"] is None
