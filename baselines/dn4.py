"""DN4: image-to-class k-nearest neighbours over local descriptors, batched over episodes.

Li, Wang, Xu, Huo, Gao & Luo, "Revisiting Local Descriptor based Image-to-Class Measure for
Few-shot Learning", CVPR 2019, https://arxiv.org/abs/1903.12290. Every cell of an image's feature
map is a local descriptor. The descriptors of all support images of a class form that class's
pool; a query's score for the class is, over each of its descriptors, the sum of the cosine
similarities to its k nearest descriptors in the pool:

    score(q, c) = sum_{i=1..L} sum_{j=1..k} cos(x_i, NN_j^c(x_i))

Here the descriptors come from frozen features (the cache's dense part-stage maps,
`features.dense`), and nothing is meta-trained: the metric alone is compared with the
global-embedding and part-pooled learners.
"""

from __future__ import annotations

import torch

from baselines.base import EpisodeFeatures, Learner, check_support, to_compute
from baselines.registry import register


@register
class DN4(Learner):
    """Sum over query descriptors of the k best cosine matches among a class's descriptors."""

    name = "dn4"
    paper = "Li et al. 2019, DN4: Revisiting Local Descriptor based Image-to-Class Measure (arXiv:1903.12290)"
    uses_local_descriptors = True

    def __init__(self, k: int = 3) -> None:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(
                f"dn4: k (neighbours per query descriptor) must be an int >= 1, got {k!r}"
            )
        self.k = k
        self.support: torch.Tensor | None = None  # (B, n, L, D) unit-norm descriptors
        self.labels: torch.Tensor | None = None  # (B, n)
        self.n_way: int | None = None

    def fit(self, support: EpisodeFeatures, labels: torch.Tensor, n_way: int) -> "DN4":
        check_support(support, labels, n_way, self.name)
        self.support = _descriptors(support, self.name)
        self.labels, self.n_way = labels, n_way
        return self

    def predict(self, query: EpisodeFeatures) -> torch.Tensor:
        """(B, n_query, N) image-to-class similarities (higher is likelier)."""
        support = self._fitted("support")
        q = _descriptors(query, self.name)  # (B, m, L, D)
        b, m, l_q, d = q.shape
        _, n, l_s, _ = support.shape
        if support.shape[-1] != d:
            raise ValueError(
                f"{self.name}: query descriptors have D={d}, support D={support.shape[-1]}"
            )
        # every query descriptor against every support descriptor: (B, m*L, n, L')
        sim = torch.bmm(q.reshape(b, m * l_q, d), support.reshape(b, n * l_s, d).transpose(1, 2))
        sim = sim.view(b, m * l_q, n, l_s)
        scores = sim.new_empty(b, m, self.n_way)
        for way in range(self.n_way):  # N masked top-k's; the pool sizes may differ per class
            members = self.labels == way  # (B, n)
            pool = int(members.sum(1).min()) * l_s  # descriptors of the smallest such pool
            k = min(self.k, pool)
            masked = sim.masked_fill(~members[:, None, :, None], float("-inf")).flatten(2)
            best = masked.topk(k, dim=-1).values.sum(-1)  # (B, m*L)
            scores[..., way] = best.view(b, m, l_q).sum(-1)
        return scores


def _descriptors(features: EpisodeFeatures, learner: str) -> torch.Tensor:
    """(B, n, L, D) float32 L2-normalised local descriptors, checked."""
    local = features.local_descriptors
    if local is None:
        raise ValueError(
            f"{learner}: needs local descriptors (dense feature maps: set features.dense: true)"
        )
    if local.dim() != 4:
        raise ValueError(
            f"{learner}: local_descriptors must be (B, n, L, D), got {tuple(local.shape)}"
        )
    return torch.nn.functional.normalize(to_compute(local), dim=-1)
