"""Image-level learners: the protocol, Baseline++ fine-tuning, and running them on twin episodes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from baselines import ImageLearner, get_learner, learner_names
from baselines.finetune import augment


def colour_episode(n_way=3, k_shot=2, n_query=4, seed=0, size=8):
    """Images of constant colour per class plus noise: (support, labels, query, truth)."""
    g = torch.Generator().manual_seed(seed)
    colours = torch.randn(n_way, 3, generator=g) * 2

    def side(per_way):
        labels = torch.arange(n_way).repeat_interleave(per_way)
        images = colours[labels][:, :, None, None] + 0.3 * torch.randn(
            len(labels), 3, size, size, generator=g
        )
        return images, labels

    support, labels = side(k_shot)
    query, truth = side(n_query)
    return support, labels, query, truth


class MeanColour(nn.Module):
    """A 'backbone' whose embedding is a linear map of each image's mean colour, with a stage."""

    def __init__(self):
        super().__init__()
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.stage = nn.Linear(3, 6)
        g = torch.Generator().manual_seed(0)  # fixed weights: no global random state
        with torch.no_grad():
            self.stage.weight.copy_(torch.randn(6, 3, generator=g))
            self.stage.bias.zero_()

    def forward(self, x):
        return self.stage(self.pool(x))

    def last_stage(self):
        return self.stage


def seeded(name="finetune", seed=0, **options) -> ImageLearner:
    learner = get_learner(name, **options)
    learner.seed_episode(seed)
    return learner


def test_finetune_is_a_registered_image_learner():
    assert "finetune" in learner_names(ImageLearner)
    assert get_learner("finetune").stochastic


def test_zero_steps_from_prototypes_is_cosine_protonet():
    support, labels, query, _ = colour_episode()
    net = MeanColour()
    scores = seeded(steps=0, scale=10.0).fit(support, labels, 3, net).predict(query)
    s, q = F.normalize(net(support), dim=-1), F.normalize(net(query), dim=-1)
    means = F.normalize(torch.stack([s[labels == j].mean(0) for j in range(3)]), dim=-1)
    torch.testing.assert_close(scores, 10.0 * q @ means.T)


def test_finetune_from_random_learns_the_support_set():
    support, labels, query, truth = colour_episode(seed=1)
    untrained = seeded(steps=0, init="random").fit(support, labels, 3, MeanColour()).predict(query)
    trained = (
        seeded(steps=150, lr=0.5, init="random")
        .fit(support, labels, 3, MeanColour())
        .predict(query)
    )
    accuracy = lambda s: (s.argmax(-1) == truth).float().mean().item()  # noqa: E731
    assert accuracy(trained) == 1.0 and accuracy(untrained) < 1.0


def test_last_stage_fine_tunes_a_copy_and_leaves_the_backbone_alone():
    support, labels, query, _ = colour_episode(seed=2)
    net = MeanColour()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    learner = seeded(steps=10, lr=0.5, last_stage=True).fit(support, labels, 3, net)
    for key, value in net.state_dict().items():
        torch.testing.assert_close(value, before[key], rtol=0, atol=0)
    assert not torch.equal(learner.body.stage.weight, net.stage.weight)
    with pytest.raises(ValueError, match="last_stage"):
        seeded(last_stage=True).fit(support, labels, 3, nn.Sequential(MeanColour().pool))


def test_the_episode_seed_fixes_the_result():
    support, labels, query, _ = colour_episode(seed=3)
    run = lambda seed: (
        seeded(seed=seed, steps=20, lr=0.3, init="random")
        .fit(support, labels, 3, MeanColour())
        .predict(query)
    )
    torch.testing.assert_close(run(5), run(5), rtol=0, atol=0)
    assert not torch.equal(run(5), run(6))
    with pytest.raises(RuntimeError, match="seed_episode"):
        get_learner("finetune").fit(support, labels, 3, MeanColour())


def test_augment_is_seeded_and_keeps_the_image_inside():
    images = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    first = augment(images, torch.Generator().manual_seed(1))
    again = augment(images, torch.Generator().manual_seed(1))
    assert first.shape == images.shape and torch.equal(first, again)
    assert not torch.equal(first, augment(images, torch.Generator().manual_seed(2)))
    # a crop of the image, never padding: values stay within the image's range
    assert first.min() >= images.min() - 1e-6 and first.max() <= images.max() + 1e-6
    # scale 1 (min_scale=1) is the image itself or its mirror
    whole = augment(images, torch.Generator().manual_seed(3), min_scale=1.0)
    for x, y in zip(whole, images):
        assert torch.allclose(x, y, atol=1e-5) or torch.allclose(x, y.flip(-1), atol=1e-5)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"steps": -1}, "steps >= 0"),
        ({"init": "zeros"}, "init must be one of"),
        ({"batch_size": 0}, "batch_size >= 1"),
    ],
)
def test_bad_options_are_rejected(options, message):
    with pytest.raises(ValueError, match=message):
        get_learner("finetune", **options)


def test_finetune_on_twin_episodes_does_not_depend_on_order(tiny_twin_root):
    from benchmark.data.partimagenet import load_partimagenet
    from benchmark.evaluation.image_learners import (
        EmbeddingNet,
        EpisodeImages,
        predict_image_episode,
    )
    from benchmark.models.backbones import build_backbone
    from episodes import EpisodeSampler

    dataset = load_partimagenet(tiny_twin_root)
    backbone = build_backbone("resnet10t", weights="random", image_size=32, seed=0)
    sampler = EpisodeSampler(dataset.labels, seed=0, split="test", n_way=5, k_shot=1, n_query=2)
    images = EpisodeImages(dataset, backbone, torch.device("cpu"))
    net = EmbeddingNet(backbone.model)
    assert net.last_stage() is backbone.model.layer4
    learner = get_learner("finetune", steps=3, last_stage=True)
    run = lambda i: predict_image_episode(
        learner,
        sampler[i],
        images,
        net,
        torch.float32,
        run_seed=0,
        learner_name="finetune",
    )
    forward = [run(i) for i in range(3)]
    backward = [run(i) for i in reversed(range(3))][::-1]
    for a, b in zip(forward, backward):
        np.testing.assert_array_equal(a.predicted, b.predicted)
    assert forward[0].labels.tolist() == [[0, 0, 1, 1, 2, 2, 3, 3, 4, 4]]
    masks = images.masks([sampler[0].support[0][0]])
    assert masks.shape == (1, 13, 32, 32) and masks.dtype == torch.bool and masks.any()


def test_finetune_runs_and_resumes_through_the_runner(tiny_run_config, tmp_path, monkeypatch):
    from benchmark.config.run import config_from_dict
    from benchmark.evaluation.image_learners import ImageEvaluator
    from benchmark.run import orchestrator as runner
    from benchmark.run.folder import load_run_config
    from results.cli import validate_main
    from results.records import read_records
    from results.schema import read_result

    raw = dict(
        tiny_run_config,
        learners=["protonet", {"name": "finetune", "options": {"steps": 2, "last_stage": True}}],
        episodes=dict(tiny_run_config["episodes"], n_episodes=6),
    )
    reference = runner.run(config_from_dict(raw), run_dir=tmp_path / "reference", progress=False)
    result = read_result(reference / "result.json")
    assert result["metrics"]["finetune"]["n_episodes"] == 6
    assert result["metrics"]["finetune"]["origin"]["kind"] == "builtin"
    assert result["metrics"]["finetune"]["transductive"] is False
    assert validate_main([reference / "result.json"], records=[reference / "records.jsonl"]) == 0

    # a fault after three fine-tuned episodes keeps them; --resume completes the other three
    real, calls = ImageEvaluator.positions, []

    def failing(self, *args, **kwargs):
        if len(calls) == 3:
            raise RuntimeError("simulated fault")
        calls.append(1)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(ImageEvaluator, "positions", failing)
    broken = tmp_path / "broken"
    with pytest.raises(RuntimeError, match="simulated fault"):
        runner.run(config_from_dict(raw), run_dir=broken, progress=False)
    assert (read_records(broken / "records.jsonl")["learner"] == "finetune").sum() == 3
    monkeypatch.setattr(ImageEvaluator, "positions", real)
    runner.run(load_run_config(broken, []), run_dir=broken, resume=True, progress=False)
    key = ["learner", "episode", "correct", "per_class"]
    resumed = read_records(broken / "records.jsonl").sort_values(["learner", "episode"])[key]
    fresh = read_records(reference / "records.jsonl").sort_values(["learner", "episode"])[key]
    assert resumed.to_dict("records") == fresh.to_dict("records")
