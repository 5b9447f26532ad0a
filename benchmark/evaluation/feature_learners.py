"""Run a learner on episodes over cached features: true and predicted way labels per query.

One call handles B same-shape episodes at once: features are gathered with one index per side,
and the learner fits and predicts for all B; an episode of variable ways and shots goes alone.
`predict_positions` picks the way for the episodes of an EpisodeSource, and
`results.records.records_from_predictions` turns its output into per-episode records. A
stochastic learner gets its episodes' seeds from (run_seed, learner name, episode index) before
fit, so results never depend on the batching.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from baselines.base import EpisodeFeatures, Learner
from baselines.seeding import episode_seeds
from benchmark.evaluation.guard import checked_contributions, checked_scores
from episodes.episode import Episode, EpisodeBatch
from episodes.source import EpisodeSource

# Given image indices of any shape (...), the features of those images: (..., D) etc.
Gather = Callable[[np.ndarray], EpisodeFeatures]


@dataclass
class Predictions:
    """Outcome of B episodes.

    Attributes:
        labels: (B, n_query_total) true way index of each query.
        predicted: (B, n_query_total) argmax of the learner's scores.
        contributions: (B, S) part-slot shares of the decision, or None.
    """

    labels: np.ndarray
    predicted: np.ndarray
    contributions: np.ndarray | None


def predict_batch(
    learner: Learner,
    batch: EpisodeBatch,
    gather_support: Gather,
    gather_query: Gather,
    *,
    run_seed: int = 0,
    learner_name: str | None = None,
) -> Predictions:
    """B fixed-shape episodes: batch.support (B, N, K) and batch.query (B, N, Q) image indices.

    run_seed, learner_name (default: learner.name): what a stochastic learner's per-episode
    seeds are derived from, with batch.indices.
    """
    _seed(learner, run_seed, learner_name, batch.indices)
    n_episodes, n_way, k_shot = batch.support.shape
    n_query = batch.query.shape[2]
    shots = np.full(n_way, k_shot)
    queries = np.full(n_way, n_query)
    return _predict(
        learner,
        batch.support.reshape(n_episodes, -1),
        batch.query.reshape(n_episodes, -1),
        shots,
        queries,
        gather_support,
        gather_query,
        who=learner_name or learner.name,
        episodes=batch.indices,
    )


def predict_episode(
    learner: Learner,
    episode: Episode,
    gather_support: Gather,
    gather_query: Gather,
    *,
    run_seed: int = 0,
    learner_name: str | None = None,
) -> Predictions:
    """One episode of any shape (variable ways and shots), as a batch of one."""
    _seed(learner, run_seed, learner_name, [episode.index])
    support = np.fromiter((i for way in episode.support for i in way), dtype=np.int64)
    query = np.fromiter((i for way in episode.query for i in way), dtype=np.int64)
    shots = np.array([len(way) for way in episode.support])
    queries = np.array([len(way) for way in episode.query])
    return _predict(
        learner,
        support[None],
        query[None],
        shots,
        queries,
        gather_support,
        gather_query,
        who=learner_name or learner.name,
        episodes=[episode.index],
    )


def _seed(learner: Learner, run_seed: int, learner_name: str | None, indices) -> None:
    if learner.stochastic:
        learner.seed_episodes(episode_seeds(run_seed, learner_name or learner.name, indices))


def _predict(
    learner: Learner,
    support_idx: np.ndarray,
    query_idx: np.ndarray,
    shots: np.ndarray,
    queries: np.ndarray,
    gather_support: Gather,
    gather_query: Gather,
    *,
    who: str,
    episodes: Sequence[int],
) -> Predictions:
    """support_idx (B, n_s) and query_idx (B, n_q) are way-major: way j's images are contiguous.
    who, episodes: the learner's name and the B episode indices, for a refusal of its scores."""
    n_episodes, n_way = support_idx.shape[0], len(shots)
    support = gather_support(support_idx)
    query = gather_query(query_idx)
    device = support.embeddings.device
    ways = torch.arange(n_way, device=device)
    support_labels = ways.repeat_interleave(torch.as_tensor(shots, device=device))
    scores = learner.fit(support, support_labels.expand(n_episodes, -1), n_way).predict(query)
    scores = checked_scores(scores, (n_episodes, query_idx.shape[1], n_way), who, episodes)
    contributions = checked_contributions(learner.part_contributions(), n_episodes, who, episodes)
    query_labels = np.repeat(np.arange(n_way), queries)
    return Predictions(
        labels=np.broadcast_to(query_labels, (n_episodes, len(query_labels))),
        predicted=scores.argmax(-1).cpu().numpy(),
        contributions=None if contributions is None else contributions.float().cpu().numpy(),
    )


@dataclass
class EvaluatedEpisodes:
    """A learner's predictions on some episodes of a source, with what records need to name them.

    Attributes:
        predictions: labels and predicted (B, n_query_total), contributions (B, S) or None.
        episodes: (B,) episode indices.
        classes: (B, N) synsets of each episode's ways, in way order.
        k_shot: support images per way, or None for an episode of variable shape.
    """

    predictions: Predictions
    episodes: np.ndarray
    classes: np.ndarray
    k_shot: int | None


def predict_positions(
    learner: Learner,
    source: EpisodeSource,
    positions: list[int],
    gather_support: Gather,
    gather_query: Gather,
    *,
    run_seed: int = 0,
    learner_name: str | None = None,
) -> EvaluatedEpisodes:
    """The episodes at `positions` of `source`: stacked into one batch when the source's episodes
    share a shape, else (variable ways and shots) one episode, len(positions) == 1.
    run_seed, learner_name: the seeds of a stochastic learner (see predict_batch)."""
    seeding = dict(run_seed=run_seed, learner_name=learner_name)
    if source.batched:
        batch = source.batch(positions)
        return EvaluatedEpisodes(
            predict_batch(learner, batch, gather_support, gather_query, **seeding),
            np.asarray(batch.indices),
            np.asarray(source.class_keys())[batch.classes],
            int(batch.support.shape[2]),
        )
    (position,) = positions
    episode = source.episode(position)
    return EvaluatedEpisodes(
        predict_episode(learner, episode, gather_support, gather_query, **seeding),
        np.array([episode.index]),
        np.array([episode.classes]),
        None,
    )


def preview(
    learner: Learner,
    episode: Episode,
    gather_support: Gather,
    gather_query: Gather,
    queries_per_way: int = 2,
    predict: Callable[[Episode], Predictions] | None = None,
) -> tuple[Episode, np.ndarray]:
    """`episode` cut to its first `queries_per_way` queries per way, and the learner's predicted
    way (n,) of each of those queries (way-major), for drawing it. `predict`: how to run the
    learner on an episode (default: predict_episode over the gathers)."""
    shown = Episode(
        episode.index,
        episode.split,
        episode.classes,
        episode.support,
        tuple(q[:queries_per_way] for q in episode.query),
    )
    if predict is None:
        return shown, predict_episode(learner, shown, gather_support, gather_query).predicted[0]
    return shown, predict(shown).predicted[0]
