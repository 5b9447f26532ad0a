"""The PyTorch batch sampler + collate and the learn2learn Taskset give exactly the sampler's episodes."""

from __future__ import annotations

import pickle

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from episodes import EpisodeSampler, taxonomy
from episodes.adapters import (
    EpisodeBatchSampler,
    EpisodicCollate,
    episode_indices,
    episode_way_labels,
    l2l_taskset,
)

LABELS = [c.synset for c in taxonomy.classes() for _ in range(20)]


class IndexImages(Dataset):
    """Item i = (a 'image' tensor holding i, the synset of image i); counts reads."""

    def __init__(self) -> None:
        self.reads = 0

    def __len__(self) -> int:
        return len(LABELS)

    def __getitem__(self, i):
        self.reads += 1
        return torch.full((3, 2, 2), float(i)), LABELS[i]


def _ids(images: torch.Tensor) -> list[int]:
    return images[:, 0, 0, 0].long().tolist()


def test_dataloader_with_batch_sampler_and_collate():
    sampler = EpisodeSampler(LABELS, seed=2, n_way=4, k_shot=2, n_query=3, n_episodes=12)
    loader = DataLoader(
        IndexImages(),
        batch_sampler=EpisodeBatchSampler(sampler, 2, 9),
        collate_fn=EpisodicCollate(sampler),
    )
    assert len(loader) == 7
    seen = 0
    for i, (sx, sy, qx, qy, true_labels) in zip(range(2, 9), loader):
        ep = sampler[i]
        assert sx.shape == (8, 3, 2, 2) and qx.shape == (12, 3, 2, 2)
        assert _ids(sx) == [x for way in ep.support for x in way]
        assert _ids(qx) == [x for way in ep.query for x in way]
        assert sy.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
        assert qy.tolist() == [j for j in range(4) for _ in range(3)]
        assert true_labels == list(ep.classes)
        seen += 1
    assert seen == 7
    assert isinstance(EpisodeBatchSampler(sampler), torch.utils.data.Sampler)
    assert len(EpisodeBatchSampler(sampler)) == 12


def test_batch_sampler_handles_variable_episodes():
    sampler = EpisodeSampler(LABELS, seed=2, mode="variable", split="train")
    batches = list(EpisodeBatchSampler(sampler, 0, 3))
    for i, indices in enumerate(batches):
        assert indices == episode_indices(sampler[i])
        assert len(episode_way_labels(sampler[i])) == len(indices)
    with pytest.raises(ValueError, match="stop"):
        EpisodeBatchSampler(sampler)
    with pytest.raises(ValueError, match="fixed-shape"):
        EpisodicCollate(sampler)


def test_collate_checks_the_episode_size():
    sampler = EpisodeSampler(LABELS, seed=2, n_way=2, k_shot=1, n_query=1)
    with pytest.raises(ValueError, match="expected N\\*\\(K\\+Q\\) = 4"):
        EpisodicCollate(sampler)([(torch.zeros(1), "x")] * 3)


def test_learn2learn_taskset_yields_the_same_episodes():
    import learn2learn as l2l

    # the release .ci/build_learn2learn builds from source for Python 3.11 (docs/learn2learn.md)
    assert l2l.__version__ == "0.2.0"

    sampler = EpisodeSampler(LABELS, seed=4, n_way=5, k_shot=2, n_query=3, n_episodes=20)
    images = IndexImages()
    taskset = l2l_taskset(sampler, images, start=5, stop=15)
    assert isinstance(taskset, l2l.data.Taskset)  # TaskDataset: its deprecated alias in 0.2.0
    assert images.reads == 0  # labels came from the sampler, not from reading every item
    assert len(taskset) == 10
    tasks = list(taskset)
    assert len(tasks) == 10
    for i, (x, y) in enumerate(tasks):
        ep = sampler[5 + i]
        assert _ids(x) == episode_indices(ep)
        assert y.tolist() == episode_way_labels(ep)
    x, y = taskset[-1]
    assert _ids(x) == episode_indices(sampler[14])
    (xs, ys), (xq, yq) = l2l.data.partition_task(x, y, shots=2)
    assert _ids(xs) == [i for way in sampler[14].support for i in way]
    assert _ids(xq) == [i for way in sampler[14].query for i in way]
    # a DataLoader over the taskset, as learn2learn users write it
    loaded = [batch for batch in DataLoader(taskset, batch_size=None, shuffle=False)]
    assert _ids(loaded[3][0]) == episode_indices(sampler[8])
    with pytest.raises(IndexError):
        taskset[10]


def test_learn2learn_taskset_over_a_metadataset_and_variable_mode():
    import learn2learn as l2l

    sampler = EpisodeSampler(LABELS, seed=4, mode="variable", split="train")
    meta = l2l.data.MetaDataset(IndexImages(), labels_to_indices=sampler.labels_to_indices())
    taskset = l2l_taskset(sampler, meta, stop=3)
    for i in range(3):
        x, y = taskset[i]
        assert _ids(x) == episode_indices(sampler[i])


def test_adapter_classes_pickle_by_name():
    sampler = EpisodeSampler(LABELS, seed=0, n_episodes=3)
    copy = pickle.loads(pickle.dumps(EpisodeBatchSampler(sampler)))
    assert list(copy) == list(EpisodeBatchSampler(sampler))
