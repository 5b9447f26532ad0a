"""An episode's result depends on (run seed, learner, episode index), never on the batching."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from baselines import EpisodeFeatures, get_learner
from benchmark.evaluation.feature_learners import predict_batch, predict_episode
from episodes import EpisodeSampler
from episodes.taxonomy import class_super_categories, classes
from results.records import records_from_predictions


@pytest.fixture(scope="module")
def sampler_and_gather():
    test = [c.synset for c in classes() if c.split == "test"]
    labels = np.repeat(test, 8)  # 8 images per test class
    table = torch.randn(len(labels), 6, generator=torch.Generator().manual_seed(0))
    sampler = EpisodeSampler(
        labels, seed=0, split="test", n_way=5, k_shot=1, n_query=3, n_episodes=70
    )
    return sampler, lambda idx: EpisodeFeatures(table[torch.as_tensor(idx)])


def records(learner_name, options, sampler, gather, batch_size):
    learner = get_learner(learner_name, **options)
    out = []
    for start in range(0, len(sampler), batch_size):
        batch = sampler.take(list(range(start, min(start + batch_size, len(sampler)))))
        pred = predict_batch(learner, batch, gather, gather, run_seed=3, learner_name=learner_name)
        out += records_from_predictions(
            run_id="r",
            learner=learner_name,
            split="test",
            k_shot=1,
            episodes=batch.indices,
            classes=np.asarray(sampler.class_keys)[batch.classes],
            labels=pred.labels,
            predicted=pred.predicted,
            super_categories=class_super_categories(),
        )
    return out


@pytest.mark.parametrize("name, options", [("random", {}), ("maml", {"init_std": 0.3, "steps": 2})])
def test_records_are_identical_with_batch_size_1_7_and_64(sampler_and_gather, name, options):
    sampler, gather = sampler_and_gather
    by_size = {b: records(name, options, sampler, gather, b) for b in (1, 7, 64)}
    assert by_size[1] == by_size[7] == by_size[64]
    # and one episode on its own (the variable-shape path) agrees too
    learner = get_learner(name, **options)
    alone = predict_episode(learner, sampler[66], gather, gather, run_seed=3, learner_name=name)
    assert alone.predicted[0].tolist() != [] and by_size[7][66]["correct"] == int(
        (alone.predicted[0] == alone.labels[0]).sum()
    )


def test_random_is_no_longer_periodic_in_the_batch(sampler_and_gather):
    sampler, gather = sampler_and_gather
    learner = get_learner("random")
    first = predict_batch(learner, sampler.take(list(range(0, 6))), gather, gather).predicted
    second = predict_batch(learner, sampler.take(list(range(64, 70))), gather, gather).predicted
    # before: batch position b gave episode b and b + 64 the very same predictions
    assert all(not np.array_equal(a, b) for a, b in zip(first, second))
    rows = records("random", {}, sampler, gather, 64)
    total = sum(r["correct"] for r in rows) / sum(r["total"] for r in rows)
    assert abs(total - 0.2) < 0.08  # chance on 70 x 15 queries


def test_random_records_through_the_runner_are_identical_with_batch_size_1_7_64(
    tiny_run_config, tmp_path
):
    from benchmark.config.run import config_from_dict
    from benchmark.run import orchestrator as runner
    from results.records import read_records

    def run(batch_size):
        raw = dict(
            tiny_run_config,
            learners=["random"],
            episodes=dict(tiny_run_config["episodes"], n_episodes=70, batch_size=batch_size),
        )
        out = runner.run(config_from_dict(raw), run_dir=tmp_path / f"b{batch_size}", progress=False)
        rows = read_records(out / "records.jsonl").sort_values("episode")
        return rows.drop(columns=["run_id", "source"]).to_dict("records")

    assert run(1) == run(7) == run(64)
