"""Adapters to PyTorch DataLoaders and learn2learn; torch and learn2learn are imported lazily.

Image order, everywhere: the support images way-major (way 0's K shots, then way 1's, ...), then
the query images way-major. Way j's label is j.

PyTorch (the shape easyfsl users know):

    from episodes import EpisodeBatchSampler, EpisodicCollate
    loader = DataLoader(image_dataset, batch_sampler=EpisodeBatchSampler(sampler, 0, 600),
                        collate_fn=EpisodicCollate(sampler))
    for support_x, support_y, query_x, query_y, class_keys in loader: ...

learn2learn:

    from episodes import l2l_taskset
    taskset = l2l_taskset(sampler, image_dataset, start=0, stop=600)
    X, y = taskset[17]          # episode 17, labels = ways
    (xs, ys), (xq, yq) = l2l.data.partition_task(X, y, shots=sampler.k_shot)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cache
from typing import Any

from episodes.episode import Episode
from episodes.sampler import EpisodeSampler


def episode_indices(episode: Episode) -> list[int]:
    """The episode's image indices in loader order: support way-major, then query way-major."""
    return [i for way in episode.support for i in way] + [i for way in episode.query for i in way]


def episode_way_labels(episode: Episode) -> list[int]:
    """The way label (0..N-1) of each image of episode_indices(episode), in the same order."""
    return [j for j, way in enumerate(episode.support) for _ in way] + [
        j for j, way in enumerate(episode.query) for _ in way
    ]


def _episode_range(sampler: EpisodeSampler, start: int, stop: int | None) -> range:
    if stop is None:
        if sampler.n_episodes is None:
            raise ValueError("pass stop=... (the sampler has no n_episodes)")
        stop = sampler.n_episodes
    if not 0 <= start <= stop:
        raise ValueError(f"need 0 <= start <= stop, got start={start}, stop={stop}")
    return range(start, stop)


@cache
def _batch_sampler_class() -> type:
    import torch.utils.data

    class EpisodeBatchSampler(torch.utils.data.Sampler):
        """A batch sampler over episodes start..stop-1: each batch = one episode's image indices.

        Use as `DataLoader(dataset, batch_sampler=EpisodeBatchSampler(sampler, start, stop))`;
        works with every mode, variable included. Episodes are yielded in index order, so a
        DataLoader with workers still returns them in order.
        """

        def __init__(
            self, sampler: EpisodeSampler, start: int = 0, stop: int | None = None
        ) -> None:
            # torch's Sampler has no __init__ arguments to pass (easyfsl 1.5.0 breaks on exactly that)
            self.sampler = sampler
            self.episode_range = _episode_range(sampler, start, stop)

        def __len__(self) -> int:
            return len(self.episode_range)

        def __iter__(self):
            r = self.episode_range
            step = 1024
            for first in range(r.start, r.stop, step):
                for episode in self.sampler.episodes(first, min(first + step, r.stop)):
                    yield episode_indices(episode)

    EpisodeBatchSampler.__module__, EpisodeBatchSampler.__qualname__ = (
        __name__,
        "EpisodeBatchSampler",
    )
    return EpisodeBatchSampler


class EpisodicCollate:
    """collate_fn for a DataLoader driven by EpisodeBatchSampler on a fixed-shape sampler.

    Items may be `(image, label)` pairs or bare images (tensors). Returns
    `(support_images (N*K, ...), support_labels (N*K,) int64, query_images (N*Q, ...),
    query_labels (N*Q,) int64, true_labels)`, where labels are ways (0..N-1) and true_labels
    holds each way's dataset label (from way j's first support item; None for bare images), as
    easyfsl's `episodic_collate_fn` returns.
    """

    def __init__(self, sampler: EpisodeSampler) -> None:
        if sampler.mode == "variable":
            raise ValueError(
                "EpisodicCollate needs fixed-shape episodes; with mode='variable', read the shape "
                "from sampler[i] (episode_way_labels gives the labels)"
            )
        self.n_way, self.k_shot, self.n_query = sampler.n_way, sampler.k_shot, sampler.n_query

    def __call__(self, items: Sequence[Any]) -> tuple:
        import torch

        n, k, q = self.n_way, self.k_shot, self.n_query
        if len(items) != n * (k + q):
            raise ValueError(
                f"EpisodicCollate: got {len(items)} items, expected N*(K+Q) = {n * (k + q)}"
            )
        pairs = isinstance(items[0], (tuple, list))
        images = torch.stack([torch.as_tensor(it[0] if pairs else it) for it in items])
        true_labels = [items[j * k][1] if pairs else None for j in range(n)]
        support_labels = torch.arange(n).repeat_interleave(k)
        query_labels = torch.arange(n).repeat_interleave(q)
        return images[: n * k], support_labels, images[n * k :], query_labels, true_labels


@cache
def _taskset_class() -> type:
    import learn2learn as l2l

    class EpisodeTaskset(l2l.data.Taskset):
        """A learn2learn Taskset (TaskDataset: its deprecated alias) whose task i is episode start + i.

        `taskset[i]`, iteration and DataLoaders over it give exactly the sampler's episodes.
        (`taskset.sample()` picks i with Python's global `random`, as learn2learn does.)
        """

        def __init__(
            self,
            sampler: EpisodeSampler,
            dataset: Any,
            start: int,
            stop: int | None,
            task_collate: Callable | None,
        ) -> None:
            self.episode_range = _episode_range(sampler, start, stop)
            if not len(self.episode_range):
                raise ValueError(
                    "l2l_taskset: the episode range is empty (learn2learn needs >= 1 task)"
                )
            if not isinstance(dataset, l2l.data.MetaDataset):
                # learn2learn would otherwise read every item once to learn its label
                dataset = l2l.data.MetaDataset(
                    dataset, labels_to_indices=sampler.labels_to_indices()
                )
            super().__init__(
                dataset,
                task_transforms=[],
                num_tasks=len(self.episode_range),
                task_collate=task_collate,
            )
            self.sampler = sampler

        def task_description(self, i: int) -> list:
            """learn2learn DataDescriptions of task i: load the item, then set its label to its way."""
            episode = self.sampler[self.episode_range[i]]
            load = self.dataset.__getitem__
            description = []
            for index, way in zip(episode_indices(episode), episode_way_labels(episode)):
                dd = l2l.data.DataDescription(index)
                dd.transforms = [load, _WayLabel(way)]
                description.append(dd)
            return description

        def __getitem__(self, i: int):
            i = range(self.num_tasks)[i]  # IndexError outside [-n, n)
            if i not in self.sampled_descriptions:
                self.sampled_descriptions[i] = self.task_description(i)
            return self.get_task(self.sampled_descriptions[i])

        def sample_task_description(self):
            raise NotImplementedError("EpisodeTaskset tasks are indexed: use taskset[i] or iterate")

    EpisodeTaskset.__module__, EpisodeTaskset.__qualname__ = __name__, "EpisodeTaskset"
    return EpisodeTaskset


class _WayLabel:
    """learn2learn data transform: (x, dataset label) -> (x, way)."""

    def __init__(self, way: int) -> None:
        self.way = way

    def __call__(self, item: Any) -> tuple[Any, int]:
        return item[0], self.way


def l2l_taskset(
    sampler: EpisodeSampler,
    dataset: Any,
    *,
    start: int = 0,
    stop: int | None = None,
    task_collate: Callable | None = None,
):
    """A learn2learn `Taskset` (`TaskDataset`) whose task i is episode start + i of `sampler`.

    Args:
        sampler: the EpisodeSampler (any mode).
        dataset: a torch Dataset whose item i is `(x, label)` for image i of the sampler's labels,
            or an `l2l.data.MetaDataset` over one.
        start, stop: the episode range (stop defaults to sampler.n_episodes).
        task_collate: learn2learn's task_collate (default: torch's default_collate).

    Returns:
        An `l2l.data.Taskset` subclass instance: `X, y = taskset[i]`, y = way labels; images in
        the order support way-major then query way-major, so `l2l.data.partition_task(X, y,
        shots=sampler.k_shot)` splits support from query for fixed-shape samplers.
    """
    return _taskset_class()(sampler, dataset, start, stop, task_collate)


def __getattr__(name: str) -> Any:
    if name == "EpisodeBatchSampler":
        return _batch_sampler_class()
    if name == "EpisodeTaskset":
        return _taskset_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
