"""A seeded random learner: a test double and the chance row of a leaderboard (no paper)."""

from __future__ import annotations

import torch

from baselines.base import EpisodeFeatures, Learner, check_support
from baselines.registry import register


@register
class RandomLearner(Learner):
    """Scores drawn uniformly in [0, 1) from its own generator seeded with `seed`.

    The same seed and query shape give the same scores on every call and every device; an
    episode's scores depend on its position in the batch (the learner never sees episode ids).
    """

    name = "random"
    paper = "none (chance-level test double)"

    def __init__(self, seed: int = 0) -> None:
        self.seed = int(seed)
        self.n_way: int | None = None

    def fit(self, support: EpisodeFeatures, labels: torch.Tensor, n_way: int) -> "RandomLearner":
        check_support(support, labels, n_way, self.name)
        self.n_way = n_way
        return self

    def predict(self, query: EpisodeFeatures) -> torch.Tensor:
        n_way = self._fitted("n_way")
        generator = torch.Generator().manual_seed(self.seed)
        b, n_query = query.embeddings.shape[:2]
        scores = torch.rand(b, n_query, n_way, generator=generator)
        return scores.to(query.embeddings.device)
