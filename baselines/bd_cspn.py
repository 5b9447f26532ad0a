"""BD-CSPN: prototypes rectified with the episode's queries, then cosine nearest prototype.

Liu, Song & Qin, "Prototype Rectification for Few-Shot Learning", ECCV 2020,
https://arxiv.org/abs/1911.10713. Transductive: predict() uses all queries of an episode.

Two steps on the class means of the support set (as easyfsl 1.5.0's `BDCSPN`):

1. Feature shifting (the cross-set bias): every query is moved by mean(support) - mean(query).
2. Label propagation (the intra-class bias): each shifted query joins the class of its nearest
   prototype (cosine); a class's new prototype is the weighted mean of its support images and its
   pseudo-labelled queries, with weights exp(temperature * cos(x, prototype)) normalised over the
   class's members.

Queries are then scored by cosine similarity to the rectified prototypes; the unshifted queries
are scored, as in easyfsl. `rectify_prototypes` is shared with LaplacianShot, which starts from
the same prototypes.
"""

from __future__ import annotations

import torch

from baselines.base import (
    EpisodeFeatures,
    one_hot,
    to_compute,
)
from baselines.registry import register
from baselines.transductive import TransductiveLearner


def cosine(x: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
    """Cosine similarities: x (B, m, D), prototypes (B, N, D) -> (B, m, N)."""
    unit = torch.nn.functional.normalize
    return torch.bmm(unit(x, dim=-1), unit(prototypes, dim=-1).transpose(1, 2))


def rectify_prototypes(
    support: torch.Tensor,
    support_onehot: torch.Tensor,
    query: torch.Tensor,
    prototypes: torch.Tensor,
    temperature: float = 1.0,
) -> torch.Tensor:
    """BD-CSPN's rectified prototypes (B, N, D), all episodes at once.

    support (B, n, D), support_onehot (B, n, N), query (B, m, D), prototypes (B, N, D) (the
    support class means). The weights of a class's members sum to 1, so a rectified prototype is
    a convex combination of its support images and shifted pseudo-labelled queries.
    """
    n_way = prototypes.shape[1]
    unit = torch.nn.functional.normalize(prototypes, dim=-1)  # (B, N, D)
    shift = support.mean(1, keepdim=True) - query.mean(1, keepdim=True)  # (B, 1, D)
    # The shifted queries q + shift are never formed: their dot products with the unit
    # prototypes and their norms follow from the queries' (one product over the queries for
    # q . p and q . shift together, one norm pass), |q + s|^2 = |q|^2 + 2 q . s + |s|^2.
    dots = torch.bmm(query, torch.cat([unit, shift], 1).transpose(1, 2))  # (B, m, N + 1)
    q_sq = torch.linalg.vector_norm(query, dim=-1, keepdim=True).square_()  # (B, m, 1)
    s_sq = torch.linalg.vector_norm(shift, dim=-1, keepdim=True).square_()  # (B, 1, 1)
    shifted_norm = (q_sq + 2 * dots[..., n_way:] + s_sq).clamp_min_(0).sqrt_().clamp_min_(1e-12)
    shifted_cos = (dots[..., :n_way] + torch.bmm(shift, unit.transpose(1, 2))) / shifted_norm
    support_weight = (temperature * cosine(support, prototypes)).exp() * support_onehot
    query_logits = (temperature * shifted_cos).exp()  # (B, m, N)
    query_weight = query_logits * one_hot(query_logits.argmax(-1), n_way)
    # per class: the sum over its members; a class always has its support images, so never 0
    total = support_weight.sum(1) + query_weight.sum(1)  # (B, N)
    # sum_j w_j (q_j + shift) = sum_j w_j q_j + (sum_j w_j) shift
    rectified = torch.bmm(support_weight.transpose(1, 2), support)
    rectified = rectified.baddbmm_(query_weight.transpose(1, 2), query)
    rectified = rectified.add_(query_weight.sum(1).unsqueeze(-1) * shift)
    return rectified / total.unsqueeze(-1)


@register
class BDCSPN(TransductiveLearner):
    """Cosine nearest prototype after BD-CSPN rectification with the queries; no episode loop.

    Options: `temperature` (1.0, easyfsl's; the paper's epsilon in exp(epsilon * cos)) scales the
    cosine before the exponential of the propagation weights.
    """

    name = "bd_cspn"
    paper = "Liu et al. 2020, Prototype Rectification for Few-Shot Learning (arXiv:1911.10713)"

    def __init__(self, temperature: float = 1.0) -> None:
        if not temperature > 0:
            raise ValueError(f"bd_cspn: need temperature > 0, got {temperature}")
        self.temperature = float(temperature)

    def predict(self, query: EpisodeFeatures) -> torch.Tensor:
        """(B, n_query, N) cosine similarity of each query to the rectified prototypes."""
        prototypes = self._fitted("prototypes")
        q = to_compute(query.embeddings)
        rectified = rectify_prototypes(
            self.support, self.support_onehot, q, prototypes, self.temperature
        )
        # cosine(q, rectified) without writing out the normalised queries: divide the products
        unit = torch.nn.functional.normalize(rectified, dim=-1)
        norms = torch.linalg.vector_norm(q, dim=-1, keepdim=True).clamp_min_(1e-12)
        return torch.bmm(q, unit.transpose(1, 2)).div_(norms)
