"""Data-free descriptions of few-shot episodes.

An episode names classes and image indices, never pixels: image indices point into the list of
images the sampler was built from (the order of `PartDataset.images` in the harness).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Episode:
    """One N-way task.

    Attributes:
        index: the episode's number i; with the sampler's seed and settings it determines the rest.
        split: the split its classes come from ("train", "val", "test" or a user's split name).
        classes: class keys (synsets), one per way, in way order: way j is label j.
        support: per way, the image indices of its support examples (K_j of them).
        query: per way, the image indices of its query examples (Q_j of them).
    """

    index: int
    split: str
    classes: tuple[str, ...]
    support: tuple[tuple[int, ...], ...]
    query: tuple[tuple[int, ...], ...]

    @property
    def n_way(self) -> int:
        return len(self.classes)


@dataclass(frozen=True)
class EpisodeBatch:
    """B fixed-shape episodes stacked, for learners that run many episodes at once.

    Attributes:
        indices: (B,) episode numbers.
        classes: (B, N) int, indices into the sampler's `class_keys`.
        support: (B, N, K) int64 image indices; way j's support is support[:, j].
        query: (B, N, Q) int64 image indices.
    """

    split: str
    indices: np.ndarray
    classes: np.ndarray
    support: np.ndarray
    query: np.ndarray

    def __len__(self) -> int:
        return int(self.indices.shape[0])
