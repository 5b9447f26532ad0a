"""Logistic-regression probe fitted on each episode's support set, all episodes at once.

The linear probe of few-shot evaluation: Tian et al., "Rethinking Few-Shot Image Classification:
a Good Embedding Is All You Need?", ECCV 2020, https://arxiv.org/abs/2003.11539 (there with
scikit-learn; here in torch, batched). Features are L2-normalised; per episode the objective is

    mean_i CE(x_i W + b, y_i) + weight_decay / 2 * ||W||^2          W: (D, N), b: (N,)

By the representer theorem its minimiser lies in the span of the support features X (n, D); with
X^T = Q R (QR decomposition, Q orthonormal) we solve the same problem for W' = Q^T W on the n-dim
features R^T, with ||W'|| = ||W||: a (B, n, N) weight tensor instead of (B, D, N), at a fraction of
the cost. `steps` of Adam from zero on the summed (separable) objective, so each episode is
optimised as it would be alone. The bias is unpenalised, so it (and the logits) is
defined up to a constant shared by all ways; softmax and argmax are not affected.
"""

from __future__ import annotations

import torch

from baselines.base import EpisodeFeatures, Learner, check_support, one_hot, to_compute
from baselines.registry import register


@register
class LogRegProbe(Learner):
    """Multinomial logistic regression on L2-normalised features, Adam, batched over episodes."""

    name = "logreg"
    paper = "Tian et al. 2020, Rethinking Few-Shot Image Classification (arXiv:2003.11539)"

    def __init__(self, steps: int = 300, lr: float = 0.1, weight_decay: float = 1e-3) -> None:
        if steps < 1 or lr <= 0 or weight_decay < 0:
            raise ValueError(
                f"logreg: need steps >= 1, lr > 0, weight_decay >= 0; got "
                f"steps={steps}, lr={lr}, weight_decay={weight_decay}"
            )
        self.steps, self.lr, self.weight_decay = int(steps), float(lr), float(weight_decay)
        self.weight: torch.Tensor | None = None  # (B, D, N)
        self.bias: torch.Tensor | None = None  # (B, 1, N)

    def fit(self, support: EpisodeFeatures, labels: torch.Tensor, n_way: int) -> "LogRegProbe":
        check_support(support, labels, n_way, self.name)
        x = _normalise(support.embeddings)  # (B, n, D)
        # X^T = Q R with Q (B, D, r) orthonormal, r = min(n, D): Z = X Q = R^T are the support
        # features in an orthonormal basis of their span, and ||W|| = ||W'|| for W = Q W'.
        basis, upper = torch.linalg.qr(x.transpose(1, 2))
        z = upper.transpose(1, 2)  # (B, n, r)
        targets = one_hot(labels, n_way)  # (B, n, N)
        # Works under torch.no_grad() / inference_mode() too: the probe needs its own autograd.
        with torch.inference_mode(False), torch.enable_grad():
            z, targets = z.clone(), targets.clone()
            weight = z.new_zeros(z.shape[0], z.shape[2], n_way, requires_grad=True)  # W'
            bias = z.new_zeros(z.shape[0], 1, n_way, requires_grad=True)
            optimiser = torch.optim.Adam([weight, bias], lr=self.lr)
            for _ in range(self.steps):
                optimiser.zero_grad(set_to_none=True)
                logits = torch.baddbmm(bias, z, weight)  # (B, n, N)
                ce = -(targets * logits.log_softmax(-1)).sum(-1).mean(-1)  # (B,)
                penalty = 0.5 * self.weight_decay * weight.pow(2).sum((1, 2))  # (B,)
                (ce + penalty).sum().backward()
                optimiser.step()
        self.weight = torch.bmm(basis, weight.detach())  # (B, D, N)
        self.bias = bias.detach()
        return self

    def predict(self, query: EpisodeFeatures) -> torch.Tensor:
        """(B, n_query, N) logits."""
        weight = self._fitted("weight")
        return torch.baddbmm(self.bias, _normalise(query.embeddings), weight)


def _normalise(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(to_compute(x), dim=-1)
