"""A run with the part-stage, control and DN4 settings: every learner gets the features its mask
mode asks for, on the same episodes, and the records say which regions each pooled over."""

from __future__ import annotations

import json

import pytest

from benchmark.config.errors import ConfigError
from benchmark.config.run import config_from_dict
from benchmark.run import orchestrator as runner
from results.records import read_records

pytestmark = pytest.mark.slow  # a random resnet10t on the tiny twin: a few seconds


def test_controls_and_dn4_run_beside_part_protonet_at_stride_16(tiny_run_config, tmp_path):
    raw = dict(
        tiny_run_config,
        features=dict(tiny_run_config["features"], part_stage=16, dense=True),
        episodes=dict(tiny_run_config["episodes"], n_episodes=16),
        learners=["part_protonet", "part_protonet_grid2", "part_protonet_shuffled", "dn4"],
    )
    run_dir = runner.run(config_from_dict(raw), run_dir=tmp_path / "run", progress=False)
    records = read_records(run_dir / "records.jsonl")
    assert sorted(records.groupby("learner")["episode"].nunique().items()) == [
        ("dn4", 16),
        ("part_protonet", 16),
        ("part_protonet_grid2", 16),
        ("part_protonet_shuffled", 16),
    ]
    rows = [json.loads(line) for line in (run_dir / "records.jsonl").read_text().splitlines()]
    modes = {r["learner"]: r["mask_mode"] for r in rows}
    assert modes == {
        "part_protonet": "oracle",
        "part_protonet_grid2": "grid2",
        "part_protonet_shuffled": "shuffled",
        "dn4": None,
    }
    grid = next(r for r in rows if r["learner"] == "part_protonet_grid2")
    assert sorted(grid["part_contributions"]) == ["cell 0,0", "cell 0,1", "cell 1,0", "cell 1,1"]
    # the same episodes for every learner: the paired table pairs them all
    assert (run_dir / "tables" / "paired.csv").read_text().count("part_protonet") >= 3


@pytest.mark.parametrize(
    "features, learners, message",
    [
        (
            {"part_stage": 64},
            ["part_protonet"],
            "features.part_stage=64: resnet10t has feature maps at strides",
        ),
        ({}, ["dn4"], "set features.dense: true"),
    ],
)
def test_part_settings_the_backbone_or_learners_cannot_use_are_config_errors(
    tiny_run_config, tmp_path, features, learners, message
):
    raw = dict(
        tiny_run_config, features=dict(tiny_run_config["features"], **features), learners=learners
    )
    with pytest.raises(ConfigError, match=message):
        runner.run(config_from_dict(raw), run_dir=tmp_path / "run", progress=False)


def test_a_stride_the_backbone_lacks_is_refused_before_training_or_any_folder(
    tiny_run_config, tmp_path
):
    raw = dict(
        tiny_run_config,
        features=dict(tiny_run_config["features"], part_stage=7),
        backbone=dict(tiny_run_config["backbone"], weights="train"),
        learners=["part_protonet"],
    )
    with pytest.raises(ConfigError, match=r"features.part_stage=7: resnet10t has feature maps"):
        runner.run(config_from_dict(raw), run_dir=tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()
    assert not (tmp_path / "cache" / "checkpoints").exists()  # nothing was trained
