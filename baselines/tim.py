"""TIM (gradient version): prototypes fine-tuned to maximise the queries' mutual information.

Boudiaf, Ziko, Rony, Dolz, Piantanida & Ben Ayed, "Transductive Information Maximization For
Few-Shot Learning", NeurIPS 2020, https://arxiv.org/abs/2008.11297. Transductive: predict() uses
all queries of an episode.

As easyfsl 1.5.0's `TIM`: the prototypes W (B, N, D) start at the support class means and take
`fine_tuning_steps` of Adam on, per episode,

    cross_entropy_weight * CE(support)
      - (marginal_entropy_weight * H(mean_q p_q) - conditional_entropy_weight * mean_q H(p_q))

with p = softmax(temperature * cos(x, W)). The queries are then scored by cos(q, W). The
objective is a sum over episodes of terms that each read only their own episode's prototypes,
and Adam is elementwise, so one optimiser over the (B, N, D) tensor runs every episode exactly as
it would run alone. The gradient is written out by hand (`TIM.gradient`, checked against
autograd in the tests): two products over the features per step instead of autograd's four.
Deterministic: no random numbers.
"""

from __future__ import annotations

import torch

from baselines.base import (
    EpisodeFeatures,
    to_compute,
)
from baselines.bd_cspn import cosine
from baselines.registry import register
from baselines.transductive import TransductiveLearner


@register
class TIM(TransductiveLearner):
    """Cosine prototypes fine-tuned by TIM's loss with Adam, batched over episodes.

    Options (easyfsl's defaults): `fine_tuning_steps=50`, `fine_tuning_lr=1e-4`,
    `cross_entropy_weight=1.0`, `marginal_entropy_weight=1.0`, `conditional_entropy_weight=0.1`,
    `temperature=10.0` (multiplies the cosine before softmax and cross-entropy).
    """

    name = "tim"
    paper = "Boudiaf et al. 2020, Transductive Information Maximization (arXiv:2008.11297)"

    def __init__(
        self,
        fine_tuning_steps: int = 50,
        fine_tuning_lr: float = 1e-4,
        cross_entropy_weight: float = 1.0,
        marginal_entropy_weight: float = 1.0,
        conditional_entropy_weight: float = 0.1,
        temperature: float = 10.0,
    ) -> None:
        if fine_tuning_steps < 0 or fine_tuning_lr <= 0 or temperature <= 0:
            raise ValueError(
                "tim: need fine_tuning_steps >= 0, fine_tuning_lr > 0, temperature > 0; got "
                f"fine_tuning_steps={fine_tuning_steps}, fine_tuning_lr={fine_tuning_lr}, "
                f"temperature={temperature}"
            )
        self.fine_tuning_steps, self.fine_tuning_lr = int(fine_tuning_steps), float(fine_tuning_lr)
        self.cross_entropy_weight = float(cross_entropy_weight)
        self.marginal_entropy_weight = float(marginal_entropy_weight)
        self.conditional_entropy_weight = float(conditional_entropy_weight)
        self.temperature = float(temperature)

    def loss(
        self,
        prototypes: torch.Tensor,
        support: torch.Tensor,
        support_onehot: torch.Tensor,
        query: torch.Tensor,
    ) -> torch.Tensor:
        """(B,) TIM loss per episode, by autograd-able ops (the reference for `gradient`).

        support (B, n, D) and query (B, m, D) unit-norm, support_onehot (B, n, N), prototypes
        (B, N, D)."""
        unit = torch.nn.functional.normalize(prototypes, dim=-1).transpose(1, 2)
        support_logits = self.temperature * torch.bmm(support, unit)  # (B, n, N)
        query_probs = (self.temperature * torch.bmm(query, unit)).softmax(-1)  # (B, m, N)
        cross_entropy = -(support_onehot * support_logits.log_softmax(-1)).sum(-1).mean(-1)
        conditional = -(query_probs * (query_probs + 1e-12).log()).sum(-1).mean(-1)
        marginal = query_probs.mean(1)  # (B, N)
        # no epsilon inside this log, as easyfsl: a mean of softmax outputs is never 0 in practice
        marginal_entropy = -(marginal * marginal.log()).sum(-1)
        return self.cross_entropy_weight * cross_entropy - (
            self.marginal_entropy_weight * marginal_entropy
            - self.conditional_entropy_weight * conditional
        )

    def gradient(
        self, prototypes: torch.Tensor, features: torch.Tensor, support_onehot: torch.Tensor
    ) -> torch.Tensor:
        """d loss(...).sum() / d prototypes (B, N, D), written out by hand.

        features: (B, n + m, D) the unit-norm support then query features. Autograd would take
        four passes over the features per step (two products forward, two backward, support and
        query apart); by hand it is one product forward and one backward over both at once, and
        a few small (B, n + m, N) tensors in between. tests/test_transductive.py checks it
        against autograd on `loss`.
        """
        n = support_onehot.shape[1]
        m = features.shape[1] - n
        norms = torch.linalg.vector_norm(prototypes, dim=-1, keepdim=True).clamp_min(1e-12)
        unit = prototypes / norms  # (B, N, D), as F.normalize
        logits = torch.bmm(features, unit.transpose(1, 2)).mul_(self.temperature)  # (B, n+m, N)
        grad = logits.softmax(-1)  # becomes d loss / d logits, row block by row block
        # support rows: cross_entropy_weight * (softmax - onehot) / n
        grad[:, :n].sub_(support_onehot).mul_(self.cross_entropy_weight / n)
        probs = grad[:, n:].clone()  # (B, m, N)
        marginal = probs.mean(1, keepdim=True)  # (B, 1, N)
        # d loss / d probs: -w_me * dH(marginal) + w_ce * dH(conditional), each / m
        shifted = probs + 1e-12
        d_probs = (self.marginal_entropy_weight / m) * (marginal.log() + 1) - (
            self.conditional_entropy_weight / m
        ) * (shifted.log() + probs / shifted)
        # back through the softmax: p * (g - <p, g>)
        grad[:, n:] = probs * (d_probs - (probs * d_probs).sum(-1, keepdim=True))
        d_unit = torch.bmm(grad.transpose(1, 2), features).mul_(self.temperature)  # (B, N, D)
        # back through the normalisation: (g - u <u, g>) / |w|
        radial = (unit * d_unit).sum(-1, keepdim=True)
        return (d_unit - unit * radial) / norms

    def predict(self, query: EpisodeFeatures) -> torch.Tensor:
        """(B, n_query, N) cosine similarity of each query to the fine-tuned prototypes."""
        start = self._fitted("prototypes")
        q = to_compute(query.embeddings)
        unit = torch.nn.functional.normalize
        features = torch.cat([unit(self.support, dim=-1), unit(q, dim=-1)], 1)  # (B, n + m, D)
        # The gradient is computed by hand (no autograd graph), so this works under no_grad()
        # and inference_mode() alike; Adam is torch's, its state per element.
        prototypes = start.clone()
        prototypes.grad = None
        optimiser = torch.optim.Adam([prototypes], lr=self.fine_tuning_lr)
        for _ in range(self.fine_tuning_steps):
            prototypes.grad = self.gradient(prototypes, features, self.support_onehot)
            optimiser.step()
        return cosine(q, prototypes)
