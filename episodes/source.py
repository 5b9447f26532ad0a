"""The episodes a run evaluates: drawn by an EpisodeSampler, or read from a fixed episode file.

`EpisodeSource` gives one interface over both, so an evaluation loop need not care where its
episodes come from: an episode by position, many same-shape episodes stacked, the image indices
the episodes can use (the ones to extract features of), and the hash a result file records.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from episodes.episode import Episode, EpisodeBatch
from episodes.files import EpisodeFileError, load_episodes
from episodes.hashing import episodes_hash
from episodes.sampler import EpisodeSampler
from episodes.stacking import episode_shape, stack_episodes

# Episodes hashed per sampler call: bounds memory when hashing many thousands of episodes.
_HASH_STEP = 4096


class SplitIndexed(Protocol):
    """A dataset that lists the image indices of a split (e.g. benchmark's PartDataset)."""

    def split_indices(self, split: str) -> np.ndarray: ...


@dataclass
class EpisodeSource:
    """The episodes of one run, `n_episodes` of them, all on `split`.

    Attributes:
        split: the split every episode is drawn from.
        n_episodes: how many episodes are evaluated.
        settings: the sampler settings (EpisodeSampler.settings, or those recorded in the file).
        sampler: the sampler that draws them, or None for fixed episodes.
        fixed: the fixed episodes (from a file), or None for sampled ones.
    """

    split: str
    n_episodes: int
    settings: dict
    sampler: EpisodeSampler | None = None
    fixed: tuple[Episode, ...] | None = None

    @classmethod
    def sampled(cls, sampler: EpisodeSampler, n_episodes: int) -> "EpisodeSource":
        """The first `n_episodes` episodes of `sampler`."""
        return cls(sampler.split, n_episodes, dict(sampler.settings), sampler=sampler)

    @classmethod
    def from_file(
        cls,
        path: str | Path,
        dataset_fingerprint: str | None = None,
        labels: Sequence[str] | None = None,
        image_splits: Sequence[str] | None = None,
    ) -> "EpisodeSource":
        """The episodes of an episode file, verified (and made for `dataset_fingerprint` if given;
        with `labels`/`image_splits` of the dataset, every episode is checked for meaning).

        Raises EpisodeFileError for a file that does not verify or holds no episode."""
        loaded = load_episodes(
            path, dataset_fingerprint=dataset_fingerprint, labels=labels, image_splits=image_splits
        )
        if not loaded.episodes:
            raise EpisodeFileError(f"{path} holds no episode")
        return cls(
            loaded.episodes[0].split,
            len(loaded.episodes),
            dict(loaded.settings),
            fixed=loaded.episodes,
        )

    @property
    def batched(self) -> bool:
        """True when the episodes share one shape and can be evaluated many at a time."""
        if self.sampler is not None:
            return self.sampler.mode != "variable"
        return (
            len({episode_shape(e) for e in self.fixed}) == 1
            and episode_shape(self.fixed[0]) is not None
        )

    @property
    def indices(self) -> list[int]:
        """Episode index of each position (records identify an episode by its index)."""
        if self.sampler is not None:
            return list(range(self.n_episodes))
        return [e.index for e in self.fixed]

    def class_keys(self) -> tuple[str, ...]:
        """The synsets that EpisodeBatch.classes index into."""
        if self.sampler is not None:
            return tuple(self.sampler.class_keys)
        return tuple(sorted({c for e in self.fixed for c in e.classes}))

    def episode(self, position: int) -> Episode:
        return self.sampler[position] if self.sampler is not None else self.fixed[position]

    def batch(self, positions: Sequence[int]) -> EpisodeBatch:
        """The episodes at `positions`, stacked (only when `batched`)."""
        if self.sampler is not None:
            return self.sampler.take(list(positions))
        return stack_episodes([self.fixed[p] for p in positions], self.class_keys())

    def image_indices(self, dataset: SplitIndexed) -> np.ndarray:
        """(n,) int64 dataset images the episodes can use: the split's, or the fixed episodes' own."""
        if self.sampler is not None:
            return dataset.split_indices(self.split)
        used = {i for e in self.fixed for way in (*e.support, *e.query) for i in way}
        return np.array(sorted(used), dtype=np.int64)

    def hash(self) -> str:
        """episodes_hash of every evaluated episode, in order (the value result files record)."""
        if self.fixed is not None:
            return episodes_hash(self.fixed)
        if self.sampler.mode == "variable":
            return episodes_hash(self.sampler[i] for i in range(self.n_episodes))
        return episodes_hash(
            e
            for start in range(0, self.n_episodes, _HASH_STEP)
            for e in self.sampler.episodes(start, min(start + _HASH_STEP, self.n_episodes))
        )
