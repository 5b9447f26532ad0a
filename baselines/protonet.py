"""Prototypical Networks on fixed features, and a cosine-similarity variant.

Snell, Swersky & Zemel, "Prototypical Networks for Few-shot Learning", NeurIPS 2017,
https://arxiv.org/abs/1703.05175. A class's prototype is the mean of its support embeddings; a
query's score for a class is minus its squared Euclidean distance to the prototype (the paper's
choice: a Bregman divergence, making the classifier linear in the query).
"""

from __future__ import annotations

import torch

from baselines.base import (
    EpisodeFeatures,
    Learner,
    check_support,
    class_means,
    squared_euclidean,
    to_compute,
)
from baselines.registry import register

PAPER = "Snell et al. 2017, Prototypical Networks for Few-shot Learning (arXiv:1703.05175)"


@register
class ProtoNet(Learner):
    """Nearest class mean under squared Euclidean distance; no Python loop over episodes."""

    name = "protonet"
    paper = PAPER

    def __init__(self) -> None:
        self.prototypes: torch.Tensor | None = None  # (B, N, D)

    def fit(self, support: EpisodeFeatures, labels: torch.Tensor, n_way: int) -> "ProtoNet":
        check_support(support, labels, n_way, self.name)
        self.prototypes = class_means(to_compute(support.embeddings), labels, n_way)
        return self

    def predict(self, query: EpisodeFeatures) -> torch.Tensor:
        """(B, n_query, N) = -||q - prototype||^2."""
        return -squared_euclidean(to_compute(query.embeddings), self._fitted("prototypes"))


@register
class CosineProtoNet(Learner):
    """ProtoNet scoring by cosine similarity between the query and the (unnormalised) class mean."""

    name = "protonet_cosine"
    paper = PAPER + "; cosine variant"

    def __init__(self) -> None:
        self.prototypes: torch.Tensor | None = None  # (B, N, D), unit norm

    def fit(self, support: EpisodeFeatures, labels: torch.Tensor, n_way: int) -> "CosineProtoNet":
        check_support(support, labels, n_way, self.name)
        means = class_means(to_compute(support.embeddings), labels, n_way)
        self.prototypes = torch.nn.functional.normalize(means, dim=-1)
        return self

    def predict(self, query: EpisodeFeatures) -> torch.Tensor:
        """(B, n_query, N) cosine similarities in [-1, 1]."""
        q = torch.nn.functional.normalize(to_compute(query.embeddings), dim=-1)
        return torch.bmm(q, self._fitted("prototypes").transpose(1, 2))
