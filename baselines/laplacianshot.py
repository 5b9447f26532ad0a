"""LaplacianShot: query assignments regularised by a k-NN graph over the episode's queries.

Ziko, Dolz, Granger & Ben Ayed, "Laplacian Regularized Few-Shot Learning", ICML 2020,
https://arxiv.org/abs/2006.15486. Transductive: predict() uses all queries of an episode.

As easyfsl 1.5.0's `LaplacianShot`: prototypes rectified as in BD-CSPN (baselines.bd_cspn);
a_q = squared Euclidean distances of the queries to them; W the 0/1 k-NN affinity of the queries
(W[i, j] = 1 when j is one of i's nearest neighbours; not symmetrised); then the bound updates of
the paper's Algorithm 1,

    Y <- softmax(-a + lambda * W Y)        (rows of Y: soft assignments, (m, N))

for at most `inference_steps`, stopping an episode once its upper bound (the paper's Eq. 7)
E(Y) = sum(Y log Y + a Y - lambda (W Y) Y) changes by at most 1e-6 relatively (from the third
step on). Episodes stop independently, each as it would alone; the scores are the final Y.
"""

from __future__ import annotations

import torch

from baselines.base import (
    EpisodeFeatures,
    squared_euclidean,
    to_compute,
)
from baselines.bd_cspn import rectify_prototypes
from baselines.registry import register
from baselines.transductive import TransductiveLearner

RELATIVE_TOLERANCE = 1e-6  # easyfsl's and the authors' stopping rule on the bound


def knn_neighbours(x: torch.Tensor, knn: int) -> torch.Tensor:
    """(B, m, k) indices of each point's k = knn - 1 nearest other points, x: (B, m, D).

    The affinity W of the paper and easyfsl is the 0/1 matrix with W[b, i, j] = 1 iff j is one of
    these; it is kept as indices because W Y is then a gather of k rows instead of an (m, m)
    product. `knn` counts the point itself, as easyfsl and the authors' code do (they take the
    knn nearest points and drop the first, the point itself): knn=3 links 2 neighbours. Here
    the point is excluded explicitly (its distance set to +inf), so a duplicate query cannot
    displace it. Capped at the m - 1 other points.
    """
    m = x.shape[1]
    k = max(min(knn - 1, m - 1), 0)
    distances = squared_euclidean(x, x)
    distances.diagonal(dim1=1, dim2=2).fill_(float("inf"))
    return distances.topk(k, dim=-1, largest=False).indices


def affinity_times(neighbours: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """W Y (B, m, N) for the k-NN affinity W given by neighbours (B, m, k), y: (B, m, N)."""
    b, m, k = neighbours.shape
    index = neighbours.reshape(b, m * k, 1).expand(-1, -1, y.shape[2])
    return y.gather(1, index).view(b, m, k, y.shape[2]).sum(2)


def bound_updates(
    scores: torch.Tensor, neighbours: torch.Tensor, lam: float, steps: int
) -> torch.Tensor:
    """Soft assignments (B, m, N) by Algorithm 1, each episode stopped on its own bound.

    scores: a (B, m, N) distances to the prototypes; neighbours: W as (B, m, k) indices.
    """
    assignments = (-scores).softmax(-1)
    active = torch.ones(scores.shape[0], dtype=torch.bool, device=scores.device)
    previous = torch.full_like(active, float("inf"), dtype=torch.float64)
    for step in range(steps):
        updated = (lam * affinity_times(neighbours, assignments) - scores).softmax(-1)
        # a stopped episode keeps the assignments it stopped with
        assignments = torch.where(active[:, None, None], updated, assignments)
        pairwise = affinity_times(neighbours, assignments)
        bound = assignments * (assignments + 1e-12).log() + (scores - lam * pairwise) * assignments
        # in float64 as easyfsl compares Python floats; the sum itself is float32 as there
        bound = bound.sum((1, 2)).double()
        if step > 1:
            active &= (bound - previous).abs() > RELATIVE_TOLERANCE * previous.abs()
            if not bool(active.any()):
                break
        previous = bound
    return assignments


@register
class LaplacianShot(TransductiveLearner):
    """Laplacian-regularised soft assignments after BD-CSPN rectification; no episode loop.

    Options (easyfsl's defaults, tuned there for 5-way 5-shot miniImageNet):
    `inference_steps=20` bound updates at most, `knn=3` (counting the point itself),
    `lambda_regularization=0.7` the weight of the Laplacian term.
    """

    name = "laplacianshot"
    paper = "Ziko et al. 2020, Laplacian Regularized Few-Shot Learning (arXiv:2006.15486)"

    def __init__(
        self, inference_steps: int = 20, knn: int = 3, lambda_regularization: float = 0.7
    ) -> None:
        if inference_steps < 1 or knn < 1 or lambda_regularization < 0:
            raise ValueError(
                "laplacianshot: need inference_steps >= 1, knn >= 1, lambda_regularization >= 0; "
                f"got inference_steps={inference_steps}, knn={knn}, "
                f"lambda_regularization={lambda_regularization}"
            )
        self.inference_steps, self.knn = int(inference_steps), int(knn)
        self.lambda_regularization = float(lambda_regularization)

    def predict(self, query: EpisodeFeatures) -> torch.Tensor:
        """(B, n_query, N) soft assignments (rows sum to 1)."""
        prototypes = self._fitted("prototypes")
        q = to_compute(query.embeddings)
        rectified = rectify_prototypes(self.support, self.support_onehot, q, prototypes)
        return bound_updates(
            squared_euclidean(q, rectified),
            knn_neighbours(q, self.knn),
            self.lambda_regularization,
            self.inference_steps,
        )
