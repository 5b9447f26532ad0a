"""MAML's inner loop on a linear head over frozen features, one episode at a time.

Finn, Abbeel & Levine, "Model-Agnostic Meta-Learning for Fast Adaptation of Deep Networks",
ICML 2017, https://arxiv.org/abs/1703.03400; adapting only the head over a fixed body is ANIL
(Raghu et al., ICLR 2020, https://arxiv.org/abs/1909.09157). Adaptation uses learn2learn's
`learn2learn.algorithms.MAML` (clone + adapt). The head starts at zero, the "zeroing trick" of
Kao et al. (ICLR 2022, https://arxiv.org/abs/2106.15367): with way order random per episode a
meta-learned head initialisation has no class-specific content to keep, and zero is what it
should converge to, so no meta-training on the train split is done. Features are L2-normalised.
"""

from __future__ import annotations

import torch

from baselines.base import EpisodeFeatures, Learner, check_support, to_compute
from baselines.registry import register


@register
class MAMLHead(Learner):
    """`steps` SGD steps (lr `inner_lr`) of cross-entropy on the support set from a zero head."""

    name = "maml"
    paper = "Finn et al. 2017, MAML (arXiv:1703.03400); head-only as in ANIL (arXiv:1909.09157)"

    def __init__(self, steps: int = 10, inner_lr: float = 1.0) -> None:
        if steps < 1 or inner_lr <= 0:
            raise ValueError(f"maml: need steps >= 1 and inner_lr > 0; got steps={steps}, "
                             f"inner_lr={inner_lr}")
        self.steps, self.inner_lr = int(steps), float(inner_lr)
        self.weight: torch.Tensor | None = None  # (B, N, D) adapted head weights
        self.bias: torch.Tensor | None = None  # (B, N)

    def fit(self, support: EpisodeFeatures, labels: torch.Tensor, n_way: int) -> "MAMLHead":
        # Lazy: learn2learn imports gym, which prints a deprecation banner and takes seconds;
        # only a run that uses this learner should pay for it (`benchmark list` must stay quiet).
        from learn2learn.algorithms import MAML

        check_support(support, labels, n_way, self.name)
        x_all = _normalise(support.embeddings)
        head = torch.nn.Linear(x_all.shape[-1], n_way, device=x_all.device)
        torch.nn.init.zeros_(head.weight)
        torch.nn.init.zeros_(head.bias)
        maml = MAML(head, lr=self.inner_lr, first_order=True)
        weights, biases = [], []
        with torch.inference_mode(False), torch.enable_grad():
            for x, y in zip(x_all.clone(), labels.long()):  # learn2learn adapts one task at a time
                learner = maml.clone()
                for _ in range(self.steps):
                    learner.adapt(torch.nn.functional.cross_entropy(learner(x), y))
                weights.append(learner.module.weight.detach())
                biases.append(learner.module.bias.detach())
        self.weight, self.bias = torch.stack(weights), torch.stack(biases)
        return self

    def predict(self, query: EpisodeFeatures) -> torch.Tensor:
        """(B, n_query, N) logits of the adapted heads."""
        weight = self._fitted("weight")
        x = _normalise(query.embeddings)
        return torch.baddbmm(self.bias.unsqueeze(1), x, weight.transpose(1, 2))


def _normalise(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(to_compute(x), dim=-1)
