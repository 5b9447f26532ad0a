"""End to end on the tiny twin: predicted-mask runs carry their masks' quality, and a multi-seed
run gives one valid result per training seed plus the spread between seeds."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from benchmark.__main__ import main
from benchmark.config.errors import ConfigError
from benchmark.config.run import config_from_dict
from benchmark.data.source import resolve_dataset
from benchmark.run import orchestrator as runner
from benchmark.run.training_seeds import run_seeds
from benchmark.training.checkpoint import load_checkpoint
from results.records import read_records
from results.schema import validate_result_file

pytestmark = pytest.mark.slow


def test_predicted_mask_run_reports_the_part_heads_iou(tiny_run_config, tmp_path):
    raw = dict(
        tiny_run_config,
        learners=["part_protonet"],
        backbone=dict(tiny_run_config["backbone"], weights="train"),
        features={"masks": "predicted", "batch_size": 128},
        train={"epochs": 1, "batch_size": 32, "val_episodes": 4, "val_k_shot": 1, "val_n_query": 2},
        episodes=dict(tiny_run_config["episodes"], n_episodes=8),
    )
    out = runner.run_benchmark(config_from_dict(raw), run_dir=tmp_path / "run", progress=False)
    quality = out.result["mask_quality"]
    # the images the episodes draw from: the test split's
    assert quality["n_images"] == _split_size(out, "test")
    assert quality["grid"] == [16, 16]  # 32 px: the part head decodes at stride 2
    assert set(quality["grid_iou"]) >= {"Head", "Body"}
    assert 0 <= quality["image_miou"] <= 1
    table = pd.read_csv(tmp_path / "run" / "tables" / "mask_quality.csv")
    assert table["slot"].iloc[-1] == "mIoU"
    assert validate_result_file(tmp_path / "run" / "result.json") == []

    # oracle masks for the run, predicted ones for one learner: the same head is measured
    both = dict(
        raw,
        features={"masks": "oracle", "batch_size": 128},
        learners=["part_protonet", "part_protonet_predicted"],
    )
    mixed = runner.run_benchmark(config_from_dict(both), run_dir=tmp_path / "mixed", progress=False)
    assert mixed.result["mask_quality"] == quality  # same checkpoint (cached), same images
    modes = mixed.records.groupby("learner")["mask_mode"].first().to_dict()
    assert modes == {"part_protonet": "oracle", "part_protonet_predicted": "predicted"}


def _split_size(out, split: str) -> int:
    cfg = config_from_dict(out.result["config"])
    return len(resolve_dataset(cfg.data, cfg.cache_dir).split_indices(split))


def test_each_seed_is_a_valid_run_on_the_same_episodes_with_the_spread_beside(
    tiny_run_config, tmp_path
):
    raw = dict(
        tiny_run_config,
        backbone=dict(tiny_run_config["backbone"], seeds=[0, 1]),
        episodes=dict(tiny_run_config["episodes"], n_episodes=12),
    )
    out = run_seeds(config_from_dict(raw), run_dir=tmp_path / "run", progress=False)
    assert sorted(out.seeds) == [0, 1]
    per_seed = {}
    for seed in (0, 1):
        path = tmp_path / "run" / f"seed-{seed}" / "result.json"
        assert validate_result_file(path) == []
        result = json.loads(path.read_text())
        assert result["config"]["backbone"]["seed"] == seed
        assert "mask_quality" not in result  # oracle masks only: no part head to measure
        spread = result["seed_spread"]
        assert spread["n_seeds"] == 2 and spread["this_seed"] == seed
        per_seed[seed] = result["metrics"]["protonet"]["accuracy"]
        assert spread["learners"]["protonet"]["per_seed"][str(seed)] == pytest.approx(
            per_seed[seed], abs=1e-5
        )
        records = read_records(tmp_path / "run" / f"seed-{seed}" / "records.jsonl")
        assert sorted(set(records["episode"])) == list(range(12))
    assert per_seed[0] != per_seed[1]  # other random weights, other numbers
    table = pd.read_csv(tmp_path / "run" / "tables" / "seeds_accuracy.csv").set_index("learner")
    assert table.loc["protonet", "accuracy"] == pytest.approx((per_seed[0] + per_seed[1]) / 2)
    assert (tmp_path / "run" / "tables" / "seeds_paired.csv").is_file()


def test_seeds_flag_is_checked(tiny_run_config, tmp_path, capsys):
    assert main(["run", "--config", "5way1shot", "--seeds", "0,x"]) == 2
    assert "--seeds '0,x'" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="backbone.seeds"):
        config_from_dict(dict(tiny_run_config, backbone={"seeds": [1, 1]}))


def test_another_part_head_setting_trains_the_head_alone_on_the_cached_backbone(
    tiny_run_config, monkeypatch
):
    from benchmark.training import weights

    trained: list[tuple[str, bool]] = []
    real = weights.train_backbone

    def recording(dataset, train, *, out_dir, backbone_phase_from=None, **kwargs):
        trained.append((Path(out_dir).name, backbone_phase_from is not None))
        return real(
            dataset, train, out_dir=out_dir, backbone_phase_from=backbone_phase_from, **kwargs
        )

    monkeypatch.setattr(weights, "train_backbone", recording)
    train = {"epochs": 1, "batch_size": 32, "val_episodes": 4, "val_k_shot": 1, "val_n_query": 2}
    raw = dict(tiny_run_config, backbone=dict(tiny_run_config["backbone"], weights="train"))
    cfg = config_from_dict(dict(raw, train=train))
    dataset = resolve_dataset(cfg.data, cfg.cache_dir)
    head = weights.trained_checkpoint(cfg, dataset, False, needs_part_head=True)
    assert [adopted for _, adopted in trained] == [False, True]  # backbone, then the head on it
    (backbone_folder, _), (head_folder, _) = trained
    assert head.parent.name == head_folder != backbone_folder
    # another head setting: the head alone, on the same backbone
    longer = config_from_dict(dict(raw, train=dict(train, part_head_epochs=2)))
    other = weights.trained_checkpoint(longer, dataset, False, needs_part_head=True)
    assert trained[2][1] is True and len(trained) == 3
    assert other.parent.name not in {backbone_folder, head_folder}
    # no head: the backbone folder, nothing trained
    plain = weights.trained_checkpoint(cfg, dataset, False)
    assert plain.parent.name == backbone_folder and len(trained) == 3
    a, b = (load_checkpoint(p)["model"] for p in (plain, other))
    assert all(torch.equal(a[k], b[k]) for k in a)
