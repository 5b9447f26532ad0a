"""PT-MAP: power-transformed features, queries mapped to prototypes by Sinkhorn optimal transport.

Hu, Gripon & Pateux, "Leveraging the Feature Distribution in Transfer-based Few-Shot Learning",
2020, https://arxiv.org/abs/2006.03806. Transductive: predict() uses all queries of an episode.

As easyfsl 1.5.0's `PTMAP`: features x -> (relu(x) + 1e-6) ** power_factor (the paper's Eq. 1);
prototypes start at the support class means; `fine_tuning_steps` times, the queries' soft
assignments are the Sinkhorn transport plan (the paper's Eq. 3) of the cost
lambda_regularization * squared distance to the prototypes, with every query carrying mass 1 and
every class m // N (balanced queries assumed, as in the paper), and each prototype moves by
fine_tuning_lr towards the assignment-weighted mean of the support (one-hot) and query features
(Eq. 6). The scores are the final transport plan.

Sinkhorn stops per episode when no row sum moves by `SINKHORN_TOLERANCE` in an iteration (at
most `MAX_SINKHORN_ITERATIONS`), each episode as it would alone.

One departure from easyfsl, for numerical stability only: each query's row of the cost has its
minimum subtracted before the exponential. Sinkhorn's first row normalisation cancels any
per-row factor, so the plan is the same in exact arithmetic. easyfsl's exp(-lambda * cost)
underflows in float32 once lambda * cost passes about 87-103: entries, or a whole row (a query
left with no mass, as in a few 1-shot episodes of normalised features), or every entry (0 / 0:
NaN, on raw 512-d features with squared distances in the hundreds); this one stays finite and
keeps every query's row. `normalize=True` L2-normalises the
power-transformed features, as the paper does and easyfsl does not (off by default).
"""

from __future__ import annotations

import torch

from baselines.base import (
    EpisodeFeatures,
    squared_euclidean,
    to_compute,
)
from baselines.registry import register
from baselines.transductive import TransductiveLearner

MAX_SINKHORN_ITERATIONS = 1000  # easyfsl's
SINKHORN_TOLERANCE = 1e-6  # easyfsl's epsilon: largest change of a row sum at convergence


def sinkhorn(cost: torch.Tensor, lam: float) -> torch.Tensor:
    """Transport plans from the queries (mass 1 each) to the classes (m // N each), (B, N, m).

    cost: (B, N, m), classes first: the plans are kept transposed, so that the sum over the N
    classes is a strided, vectorised add over m and the sum over the m queries is contiguous
    (2.5x faster than the (B, m, N) layout, whose rows of 5 vectorise badly). easyfsl's
    iteration (queries then classes, 1e-10 guards), on all episodes at once. An episode that has
    converged leaves the working set with the plan it converged to, so the others go on without
    it: the iterations needed vary a lot between episodes (a median of a few to a few hundred, a
    tail at the 1000 cap), and the batch costs their sum, not B times their maximum.
    """
    per_class = cost.shape[2] // cost.shape[1]
    plan = torch.exp(-lam * (cost - cost.amin(1, keepdim=True)))  # query factor: see the module
    plan = plan / plan.sum((1, 2), keepdim=True)
    out = torch.empty_like(plan)
    todo = torch.arange(cost.shape[0], device=cost.device)  # episodes still iterating
    query_sums = plan.sum(1)  # (b, m)
    for _ in range(MAX_SINKHORN_ITERATIONS):
        plan = plan * (1 / (query_sums + 1e-10)).unsqueeze(1)
        plan = plan * (per_class / (plan.sum(2) + 1e-10)).unsqueeze(2)
        # the query sums after this iteration are the next iteration's: computed once
        updated = plan.sum(1)
        done = (query_sums - updated).abs().amax(1) < SINKHORN_TOLERANCE  # (b,)
        query_sums = updated
        if bool(done.any()):
            out[todo[done]] = plan[done]
            keep = ~done
            todo, plan, query_sums = todo[keep], plan[keep], query_sums[keep]
            if len(todo) == 0:
                return out
    out[todo] = plan  # the cap reached: their last iterate, as easyfsl
    return out


def power_transform(x: torch.Tensor, power: float) -> torch.Tensor:
    """(relu(x) + 1e-6) ** power, elementwise (the 1e-6 keeps the power's gradient finite at 0)."""
    return (x.relu() + 1e-6).pow(power)


@register
class PTMAP(TransductiveLearner):
    """Power transform + Sinkhorn mapping with prototype updates, batched over episodes.

    Options (easyfsl's defaults): `fine_tuning_steps=10`, `fine_tuning_lr=0.2`,
    `lambda_regularization=10.0` (Sinkhorn's inverse temperature), `power_factor=0.5`;
    `normalize=False` (True: L2-normalise after the power transform, as in the paper).
    """

    name = "pt_map"
    paper = "Hu et al. 2020, Leveraging the Feature Distribution (PT-MAP, arXiv:2006.03806)"

    def __init__(
        self,
        fine_tuning_steps: int = 10,
        fine_tuning_lr: float = 0.2,
        lambda_regularization: float = 10.0,
        power_factor: float = 0.5,
        normalize: bool = False,
    ) -> None:
        if fine_tuning_steps < 0 or fine_tuning_lr <= 0 or lambda_regularization <= 0:
            raise ValueError(
                "pt_map: need fine_tuning_steps >= 0, fine_tuning_lr > 0, "
                f"lambda_regularization > 0; got fine_tuning_steps={fine_tuning_steps}, "
                f"fine_tuning_lr={fine_tuning_lr}, lambda_regularization={lambda_regularization}"
            )
        self.fine_tuning_steps, self.fine_tuning_lr = int(fine_tuning_steps), float(fine_tuning_lr)
        self.lambda_regularization = float(lambda_regularization)
        self.power_factor, self.normalize = float(power_factor), bool(normalize)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Power transform of (B, n, D) features (then L2 normalisation if `normalize`)."""
        x = power_transform(to_compute(x), self.power_factor)
        return torch.nn.functional.normalize(x, dim=-1) if self.normalize else x

    def assign(self, query: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
        """(B, N, m) transport plan of the transformed queries (B, m, D) onto the prototypes
        (B, N, D), classes first (see sinkhorn)."""
        return sinkhorn(squared_euclidean(prototypes, query), self.lambda_regularization)

    def predict(self, query: EpisodeFeatures) -> torch.Tensor:
        """(B, n_query, N) soft assignments: each row sums to 1, each class to n_query // N."""
        prototypes = self._fitted("prototypes")
        q = self.features(query.embeddings)
        features = torch.cat([self.support, q], 1)  # (B, n + m, D)
        support_t = self.support_onehot.transpose(1, 2)  # (B, N, n)
        for _ in range(self.fine_tuning_steps):
            assignments = torch.cat([support_t, self.assign(q, prototypes)], 2)  # (B, N, n + m)
            means = torch.bmm(assignments, features) / assignments.sum(2, keepdim=True)
            prototypes = prototypes + self.fine_tuning_lr * (means - prototypes)  # sums >= 1
        return self.assign(q, prototypes).transpose(1, 2)
