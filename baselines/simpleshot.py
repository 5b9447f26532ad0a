"""SimpleShot: centre on the train-split mean, L2-normalise, nearest centroid (the "CL2N" setting).

Wang, Chao, Weinberger & van der Maaten, "SimpleShot: Revisiting Nearest-Neighbor
Classification for Few-Shot Learning", 2019, https://arxiv.org/abs/1911.04623.
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


@register
class SimpleShot(Learner):
    """Nearest centroid of centred, L2-normalised features; needs prepare(train embeddings)."""

    name = "simpleshot"
    paper = "Wang et al. 2019, SimpleShot (arXiv:1911.04623)"
    needs_base_features = True

    def __init__(self) -> None:
        self.base_mean: torch.Tensor | None = None  # (D,)
        self.prototypes: torch.Tensor | None = None  # (B, N, D)

    def prepare(self, base_embeddings: torch.Tensor | None) -> None:
        """Store the mean (D,) of the train-split embeddings base_embeddings (n, D)."""
        if base_embeddings is None or base_embeddings.dim() != 2 or len(base_embeddings) == 0:
            raise ValueError(
                "simpleshot: prepare() needs the train-split embeddings as an (n, D) "
                "tensor with n >= 1"
            )
        self.base_mean = to_compute(base_embeddings).mean(0)

    def _transform(self, x: torch.Tensor) -> torch.Tensor:
        """Centre on the train mean, then scale each (.., D) row to unit L2 norm."""
        if self.base_mean is None:
            raise RuntimeError("simpleshot: call prepare(train-split embeddings (n, D)) first")
        x = to_compute(x)
        if x.shape[-1] != self.base_mean.shape[0]:
            raise ValueError(
                f"simpleshot: features have D={x.shape[-1]} but prepare() saw "
                f"D={self.base_mean.shape[0]}"
            )
        return torch.nn.functional.normalize(x - self.base_mean.to(x.device), dim=-1)

    def fit(self, support: EpisodeFeatures, labels: torch.Tensor, n_way: int) -> "SimpleShot":
        check_support(support, labels, n_way, self.name)
        self.prototypes = class_means(self._transform(support.embeddings), labels, n_way)
        return self

    def predict(self, query: EpisodeFeatures) -> torch.Tensor:
        """(B, n_query, N) = -||T(q) - centroid||^2 with T = centre + L2-normalise."""
        return -squared_euclidean(self._transform(query.embeddings), self._fitted("prototypes"))
