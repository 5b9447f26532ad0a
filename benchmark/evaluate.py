"""Evaluate a learner on a stack of episodes over cached features and turn them into records.

One call handles B same-shape episodes at once: features are gathered with one index per side,
the learner fits and predicts for all B, and each episode becomes one JSON-able record.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch

from baselines.base import EpisodeFeatures, Learner
from episodes.episode import Episode, EpisodeBatch
from episodes.taxonomy import PART_SLOTS

# Given image indices of any shape (...), the features of those images: (..., D) etc.
Gather = Callable[[np.ndarray], EpisodeFeatures]


def evaluate_batch(
    learner: Learner,
    batch: EpisodeBatch,
    class_keys: Sequence[str],
    super_category: Mapping[str, str],
    gather_support: Gather,
    gather_query: Gather,
) -> list[dict]:
    """Run `learner` on B fixed-shape episodes; one record per episode.

    batch.support: (B, N, K) and batch.query: (B, N, Q) image indices; way j is label j.
    """
    n_episodes, n_way, k_shot = batch.support.shape
    n_query = batch.query.shape[2]
    support = gather_support(batch.support.reshape(n_episodes, n_way * k_shot))
    query = gather_query(batch.query.reshape(n_episodes, n_way * n_query))
    device = support.embeddings.device
    labels = torch.arange(n_way, device=device).repeat_interleave(k_shot).expand(n_episodes, -1)
    scores = learner.fit(support, labels, n_way).predict(query)  # (B, N*Q, N)
    truth = torch.arange(n_way, device=device).repeat_interleave(n_query)
    hits = (scores.argmax(-1) == truth).view(n_episodes, n_way, n_query).sum(-1)  # (B, N)
    contributions = learner.part_contributions()  # (B, S) or None
    hits_np = hits.cpu().numpy()
    contrib_np = None if contributions is None else contributions.float().cpu().numpy()
    records = []
    for b in range(n_episodes):
        classes = [class_keys[c] for c in batch.classes[b]]
        per_way = [(int(h), n_query) for h in hits_np[b]]
        records.append(_record(
            int(batch.indices[b]), batch.split, classes, per_way, super_category,
            None if contrib_np is None else contrib_np[b],
        ))
    return records


def evaluate_episode(
    learner: Learner,
    episode: Episode,
    super_category: Mapping[str, str],
    gather_support: Gather,
    gather_query: Gather,
) -> dict:
    """Run `learner` on one episode of any shape (variable ways and shots)."""
    support_idx = np.fromiter((i for way in episode.support for i in way), dtype=np.int64)
    query_idx = np.fromiter((i for way in episode.query for i in way), dtype=np.int64)
    support = gather_support(support_idx[None])
    query = gather_query(query_idx[None])
    device = support.embeddings.device
    shots = torch.tensor([len(w) for w in episode.support], device=device)
    queries = torch.tensor([len(w) for w in episode.query], device=device)
    way_ids = torch.arange(episode.n_way, device=device)
    labels = way_ids.repeat_interleave(shots)[None]
    truth = way_ids.repeat_interleave(queries)
    scores = learner.fit(support, labels, episode.n_way).predict(query)[0]  # (n_query, N)
    correct = (scores.argmax(-1) == truth).cpu().numpy()
    bounds = np.cumsum([0, *queries.tolist()])
    per_way = [(int(correct[a:b].sum()), int(b - a)) for a, b in zip(bounds[:-1], bounds[1:])]
    contributions = learner.part_contributions()
    return _record(
        episode.index, episode.split, list(episode.classes), per_way, super_category,
        None if contributions is None else contributions[0].float().cpu().numpy(),
    )


def _record(
    index: int,
    split: str,
    classes: list[str],
    per_way: list[tuple[int, int]],
    super_category: Mapping[str, str],
    contributions: np.ndarray | None,
) -> dict:
    per_super: dict[str, list[int]] = {}
    for synset, (c, t) in zip(classes, per_way):
        tally = per_super.setdefault(super_category.get(synset, "unknown"), [0, 0])
        tally[0] += c
        tally[1] += t
    return {
        "episode": index,
        "split": split,
        "n_way": len(classes),
        "correct": sum(c for c, _ in per_way),
        "total": sum(t for _, t in per_way),
        "per_class": {s: [c, t] for s, (c, t) in zip(classes, per_way)},
        "per_super_category": per_super,
        "part_contributions": None if contributions is None else {
            slot: round(float(v), 6) for slot, v in zip(PART_SLOTS, contributions)
        },
    }
