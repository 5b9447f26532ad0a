"""End to end, accuracies and not only shapes: on the tiny twin, a briefly trained backbone gives
ProtoNet and oracle part_protonet accuracies above chance by more than their CIs, and the same
run with the queries' labels permuted (the bug a harness could have: labels no longer those of
the images scored) falls to chance. Catches label, gather and pooling mix-ups that shape checks
cannot."""

from __future__ import annotations

import numpy as np
import pytest

from benchmark.config.run import config_from_dict
from benchmark.evaluation import feature_learners as evaluate
from benchmark.run import orchestrator as runner
from results.records import read_records
from results.tables import accuracy_table

pytestmark = pytest.mark.slow  # ~20 s: 4 epochs of test_resnet on the tiny twin's train split

CHANCE = 1 / 5


def _accuracies(run_dir) -> dict[str, tuple[float, float]]:
    """learner -> (mean accuracy %, 95% CI half-width), as the report computes them."""
    table = accuracy_table(read_records(run_dir / "records.jsonl"))
    return {row.learner: (row.accuracy, row.ci95) for row in table.itertuples()}


@pytest.fixture(scope="module")
def trained_run(tiny_twin_root, tmp_path_factory):
    from conftest import TINY_TWIN  # tests/ is on sys.path (no package): pytest prepends it

    tmp = tmp_path_factory.mktemp("accuracy")
    raw = {
        "name": "accuracy",
        "output_dir": str(tmp / "outputs"),
        "cache_dir": str(tmp / "cache"),
        "data": {"source": "synthetic", "root": str(tiny_twin_root), "synthetic": TINY_TWIN},
        "backbone": {"name": "test_resnet", "weights": "train", "image_size": 48},
        "train": {
            "epochs": 4,
            "batch_size": 32,
            "lr": 0.1,
            "val_episodes": 20,
            "val_k_shot": 1,
            "val_n_query": 2,
        },
        "features": {"batch_size": 128},
        "episodes": {"n_way": 5, "k_shot": 1, "n_query": 3, "n_episodes": 100, "batch_size": 50},
        "learners": ["protonet", "part_protonet"],
    }
    cfg = config_from_dict(raw)
    return cfg, runner.run(cfg, run_dir=tmp / "run", progress=False)


def test_trained_features_are_above_chance_beyond_the_ci(trained_run):
    _, run_dir = trained_run
    got = _accuracies(run_dir)
    assert set(got) == {"protonet", "part_protonet"}
    for learner, (accuracy, ci) in got.items():
        assert accuracy - ci > 100 * CHANCE + 3, f"{learner}: {accuracy:.1f} ± {ci:.1f}%"


def test_permuted_query_labels_fall_to_chance(trained_run, monkeypatch, tmp_path):
    cfg, run_dir = trained_run
    real = _accuracies(run_dir)
    rng = np.random.default_rng(0)
    predict_batch = evaluate.predict_batch

    def with_permuted_queries(learner, batch, gather_support, gather_query, **seeding):
        def shuffled(idx):  # each episode's query images in a random order: labels now wrong
            return gather_query(rng.permuted(idx, axis=-1))

        return predict_batch(learner, batch, gather_support, shuffled, **seeding)

    monkeypatch.setattr(evaluate, "predict_batch", with_permuted_queries)
    bugged = _accuracies(runner.run(cfg, run_dir=tmp_path / "bugged", progress=False))
    for learner, (accuracy, ci) in bugged.items():
        assert abs(accuracy - 100 * CHANCE) <= ci + 1, f"{learner}: {accuracy:.1f} ± {ci:.1f}%"
        assert accuracy + ci < real[learner][0] - real[learner][1]
