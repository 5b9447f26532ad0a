"""A seeded random learner: a test double and the chance row of a leaderboard (no paper)."""

from __future__ import annotations

import torch

from baselines.base import EpisodeFeatures, Learner, check_support
from baselines.registry import register


@register
class RandomLearner(Learner):
    """Scores drawn uniformly in [0, 1), from each episode's own generator.

    Episode b's scores are torch.rand(n_query, n_way) from a CPU generator seeded with its
    episode seed (see Learner.episode_generators): they depend on the run seed, the learner name
    and the episode index only, never on the batch the episode ran in. `seed` is the run seed
    used when no per-episode seeds are given.
    """

    name = "random"
    paper = "none (chance-level test double)"
    stochastic = True

    def __init__(self, seed: int = 0) -> None:
        self.seed = int(seed)
        self.n_way: int | None = None

    def fit(self, support: EpisodeFeatures, labels: torch.Tensor, n_way: int) -> "RandomLearner":
        check_support(support, labels, n_way, self.name)
        self.n_way = n_way
        return self

    def predict(self, query: EpisodeFeatures) -> torch.Tensor:
        n_way = self._fitted("n_way")
        b, n_query = query.embeddings.shape[:2]
        scores = (
            torch.stack(
                [torch.rand(n_query, n_way, generator=g) for g in self.episode_generators(b)]
            )
            if b
            else torch.empty(0, n_query, n_way)
        )
        return scores.to(query.embeddings.device)
