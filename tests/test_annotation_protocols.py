"""What a learner may see at test time, on the tiny twin: the leak probe `presence_only` reads the
queries' annotations only under protocol "all", and nothing on the query side reads annotations
under "support" (support-oracle) or "none" (predicted)."""

from __future__ import annotations

import torch

from benchmark.config.run import config_from_dict
from benchmark.models.backbones import build_backbone
from benchmark.models.part_head import part_head_for
from benchmark.run import orchestrator as runner
from results.protocols import annotations_of_mask_mode

N_WAY = 5


def _random_head_backbone(name, **kwargs):
    """A random-weights backbone with a random (seeded) part head: its predicted masks carry no
    information about the image's class."""
    backbone = build_backbone(name, **kwargs)
    head = part_head_for(backbone.model)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in head.parameters():
            p.copy_(torch.randn(p.shape, generator=generator))
    backbone.part_head_state = head.state_dict()
    return backbone


def _run(tiny_run_config, tmp_path, monkeypatch, masks, learners, tag):
    def resolve(cfg, dataset, progress=True, needs_part_head=False):
        bb = cfg.backbone
        return _random_head_backbone(
            bb.name, weights="random", image_size=bb.image_size, seed=bb.seed
        )

    monkeypatch.setattr(runner, "resolve_backbone", resolve)
    raw = dict(
        tiny_run_config,
        learners=learners,
        features={"masks": masks, "batch_size": 128},
        episodes=dict(tiny_run_config["episodes"], n_query=5, n_episodes=60),
    )
    return runner.run_benchmark(config_from_dict(raw), run_dir=tmp_path / tag, progress=False)


def test_presence_only_leaks_under_all_and_is_at_chance_under_none(
    tiny_run_config, tmp_path, monkeypatch
):
    chance = 100.0 / N_WAY
    oracle = _run(tiny_run_config, tmp_path, monkeypatch, "oracle", ["presence_only"], "all")
    metric = oracle.result["metrics"]["presence_only"]
    assert metric["annotations"] == "all"
    # the queries' annotations alone name their super-category: far above chance
    assert metric["accuracy"] - metric["ci"] > chance + 15

    none = _run(tiny_run_config, tmp_path, monkeypatch, "predicted", ["presence_only"], "none")
    metric = none.result["metrics"]["presence_only"]
    assert metric["annotations"] == "none"
    # a random head's presence says nothing about the class
    assert abs(metric["accuracy"] - chance) <= metric["ci"] + 1.0


def test_support_protocol_never_hands_a_query_its_annotations(
    tiny_run_config, tmp_path, monkeypatch
):
    out = _run(
        tiny_run_config,
        tmp_path,
        monkeypatch,
        "support-oracle",
        ["presence_only", "part_protonet_oracle"],
        "support",
    )
    metrics = out.result["metrics"]
    assert metrics["presence_only"]["annotations"] == "support"
    assert metrics["part_protonet_oracle"]["annotations"] == "all"  # the labelled upper bound
    # under "support" the queries' presence is the random head's: no better than chance
    assert metrics["presence_only"]["accuracy"] - metrics["presence_only"]["ci"] < 100 / N_WAY + 5


def test_provider_pools_support_oracle_queries_over_predicted_masks(tiny_twin_root, tmp_path):
    from benchmark.data.source import resolve_dataset
    from benchmark.features.provider import FeatureProvider

    raw = {
        "data": {
            "source": "synthetic",
            "root": str(tiny_twin_root),
            "synthetic": {"images_per_class": 6, "image_size": 48, "seed": 0},
        },
        "backbone": {"name": "resnet10t", "weights": "random", "image_size": 32},
        "features": {"masks": "support-oracle", "batch_size": 128},
        "cache_dir": str(tmp_path / "cache"),
        "learners": ["presence_only"],
    }
    cfg = config_from_dict(raw)
    dataset = resolve_dataset(cfg.data, cfg.cache_dir)
    backbone = _random_head_backbone("resnet10t", weights="random", image_size=32)
    provider = FeatureProvider(dataset, backbone, cfg.features, None, progress=False)
    indices = dataset.split_indices("test")[:60]
    gather_support, gather_query = provider.gatherers(indices)
    rows = indices.reshape(1, -1)
    support, query = gather_support(rows), gather_query(rows)
    oracle = provider.features(indices, "oracle", "episodes").gather(rows)
    predicted = provider.features(indices, "predicted", "episodes").gather(rows)
    assert torch.equal(support.part_present, oracle.part_present)
    # every query-side tensor is the part head's, none is the annotations'
    assert torch.equal(query.part_present, predicted.part_present)
    assert torch.equal(query.part_embeddings, predicted.part_embeddings)
    assert not torch.equal(query.part_present, oracle.part_present)
    assert annotations_of_mask_mode("support-oracle") == "support"
