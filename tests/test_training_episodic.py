"""ProtoNet loss and the val-episode accuracy used for model selection, on hand-made embeddings."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from test_training_data import make_toy_dataset

from benchmark.training.episodic import (
    EpisodeSpec,
    episode_arrays,
    episode_sampler,
    protonet_accuracy,
    protonet_loss,
)


def test_protonet_loss_by_hand():
    # 2-way 1-shot 1-query: prototypes (0, 0) and (2, 0); queries (0.5, 0) of way 0 and (2.5, 0)
    # of way 1. Squared distances (0.25, 2.25) and (6.25, 0.25): losses log(1 + e^-2) and
    # log(1 + e^-6), averaged.
    embeddings = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.5, 0.0], [2.5, 0.0]])
    loss, acc = protonet_loss(embeddings, n_way=2, k_shot=1)
    expected = (math.log1p(math.exp(-2.0)) + math.log1p(math.exp(-6.0))) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert acc.item() == 1.0


def test_protonet_accuracy_counts_queries_nearest_their_prototype():
    ds = make_toy_dataset()
    spec = EpisodeSpec(n_way=5, k_shot=1, n_query=3, n_episodes=12)
    support, query = episode_arrays(episode_sampler(ds.labels, seed=0, split="val", spec=spec), 12)
    assert support.shape == (12, 5, 1) and query.shape == (12, 5, 3)
    val = ds.split_indices("val")
    assert np.isin(support, val).all() and np.isin(query, val).all()
    classes = sorted(set(ds.labels[val].tolist()))
    one_hot = torch.eye(len(classes))[[classes.index(s) for s in ds.labels[val]]]  # (n, 5)
    assert protonet_accuracy(one_hot * 3, val, support, query) == 1.0
    # noisy embeddings: compare with a per-episode, per-query loop in numpy
    rng = np.random.default_rng(0)
    noisy = one_hot.numpy() + rng.normal(0, 0.6, one_hot.shape)
    row = {int(i): r for r, i in enumerate(val)}
    correct = total = 0
    for s_ep, q_ep in zip(support, query):
        prototypes = np.stack([noisy[[row[int(i)] for i in way]].mean(0) for way in s_ep])
        for way, images in enumerate(q_ep):
            for i in images:
                d = ((prototypes - noisy[row[int(i)]]) ** 2).sum(1)
                correct += int(d.argmin() == way)
                total += 1
    expected = correct / total
    assert 0.3 < expected < 0.95  # a case where the counting matters
    assert protonet_accuracy(torch.from_numpy(noisy).float(), val, support, query) == pytest.approx(
        expected
    )
    # episodes are a function of the seed
    again = episode_arrays(episode_sampler(ds.labels, seed=0, split="val", spec=spec), 12)
    other = episode_arrays(episode_sampler(ds.labels, seed=1, split="val", spec=spec), 12)
    assert np.array_equal(again[1], query) and not np.array_equal(other[1], query)


def test_protonet_accuracy_refuses_episodes_on_images_it_was_not_given():
    embedded = np.array([0, 1, 2, 3])
    support = np.array([[[0], [1]]])
    query = np.array([[[2], [9]]])  # image 9 was never embedded
    with pytest.raises(ValueError, match=r"not embedded.*\[9\]"):
        protonet_accuracy(torch.eye(4), embedded, support, query)
