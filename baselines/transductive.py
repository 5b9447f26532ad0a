"""The common part of the transductive learners (bd_cspn, laplacianshot, tim, pt_map): fit only
keeps the support set, because their work needs the queries that predict() brings."""

from __future__ import annotations

import torch

from baselines.base import EpisodeFeatures, Learner, check_support, class_means, one_hot, to_compute


class TransductiveLearner(Learner):
    """fit() keeps, for predict(), the support features (B, n, D) as `features` makes them,
    their one-hot labels (B, n, N) and the support class means (B, N, D)."""

    transductive = True
    support: torch.Tensor | None = None
    support_onehot: torch.Tensor | None = None
    prototypes: torch.Tensor | None = None

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, n, D) features as the method computes on them (default: float32)."""
        return to_compute(x)

    def fit(self, support: EpisodeFeatures, labels: torch.Tensor, n_way: int) -> Learner:
        check_support(support, labels, n_way, self.name)
        self.support = self.features(support.embeddings)
        self.support_onehot = one_hot(labels, n_way)
        self.prototypes = class_means(self.support, labels, n_way)
        return self
