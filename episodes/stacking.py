"""Converting between per-episode descriptions (Episode) and stacked arrays (EpisodeBatch)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from episodes.episode import Episode, EpisodeBatch


def to_episodes(batch: EpisodeBatch, class_keys: Sequence[str]) -> list[Episode]:
    """The B episodes of a batch, with class indices turned back into class keys."""
    keys = np.asarray(class_keys, dtype=object)
    names = keys[batch.classes].tolist()
    support = batch.support.tolist()
    query = batch.query.tolist()
    return [
        Episode(
            index=index,
            split=batch.split,
            classes=tuple(names[b]),
            support=tuple(map(tuple, support[b])),
            query=tuple(map(tuple, query[b])),
        )
        for b, index in enumerate(batch.indices.tolist())
    ]


def stack_episodes(episodes: Iterable[Episode], class_keys: Sequence[str]) -> EpisodeBatch:
    """Stack fixed-shape episodes (same split, N, K and Q) into one EpisodeBatch.

    Raises ValueError if the episodes differ in split or shape, or name a class not in class_keys.
    """
    episodes = list(episodes)
    if not episodes:
        raise ValueError("stack_episodes: no episodes given")
    position = {key: j for j, key in enumerate(class_keys)}
    first = episodes[0]
    shape = episode_shape(first)
    for episode in episodes:
        if episode.split != first.split:
            raise ValueError(
                f"stack_episodes: episode {episode.index} is from split {episode.split!r}, "
                f"episode {first.index} from {first.split!r}; stack one split at a time"
            )
        if shape is None or episode_shape(episode) != shape:
            raise ValueError(
                f"stack_episodes: episode {episode.index} has (N, K, Q) = {episode_shape(episode)}, "
                f"episode {first.index} has {shape}; variable-shape episodes cannot be stacked "
                "(None: the ways differ in shots or queries)"
            )
        missing = [c for c in episode.classes if c not in position]
        if missing:
            raise ValueError(
                f"stack_episodes: episode {episode.index} names classes {missing} that are not in "
                "class_keys; pass the class_keys of the sampler that made the episodes"
            )
    return EpisodeBatch(
        split=first.split,
        indices=np.array([e.index for e in episodes], dtype=np.int64),
        classes=np.array([[position[c] for c in e.classes] for e in episodes], dtype=np.int64),
        support=np.array([e.support for e in episodes], dtype=np.int64).reshape(
            len(episodes), *shape[:2]
        ),
        query=np.array([e.query for e in episodes], dtype=np.int64).reshape(
            len(episodes), shape[0], shape[2]
        ),
    )


def episode_shape(episode: Episode) -> tuple[int, int, int] | None:
    """(N, K, Q) of a fixed-shape episode; None when its ways differ in shots or queries."""
    shots = {len(s) for s in episode.support}
    queries = {len(q) for q in episode.query}
    if len(shots) != 1 or len(queries) != 1:
        return None
    return episode.n_way, shots.pop(), queries.pop()
