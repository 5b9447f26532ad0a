"""MAML's inner loop on a linear head over frozen features, one episode at a time.

Finn, Abbeel & Levine, "Model-Agnostic Meta-Learning for Fast Adaptation of Deep Networks",
ICML 2017, https://arxiv.org/abs/1703.03400; adapting only the head over a fixed body is ANIL
(Raghu et al., ICLR 2020, https://arxiv.org/abs/1909.09157). Adaptation uses learn2learn's
`learn2learn.algorithms.MAML` (clone + adapt). The head starts at zero, the "zeroing trick" of
Kao et al. (ICLR 2022, https://arxiv.org/abs/2106.15367): with way order random per episode a
meta-learned head initialisation has no class-specific content to keep, and zero is what it
should converge to, so no meta-training on the train split is done. Features are L2-normalised.
With `init_std > 0` the head starts instead at N(0, init_std^2) weights drawn from each episode's
own generator (Learner.episode_generators), for studying the zeroing trick.
"""

from __future__ import annotations

import torch

from baselines.base import EpisodeFeatures, Learner, check_support, to_compute
from baselines.registry import register


@register
class MAMLHead(Learner):
    """`steps` SGD steps (lr `inner_lr`) of cross-entropy on the support set from a zero head
    (or, with init_std > 0, a random one seeded per episode)."""

    name = "maml"
    paper = "Finn et al. 2017, MAML (arXiv:1703.03400); head-only as in ANIL (arXiv:1909.09157)"

    def __init__(
        self, steps: int = 10, inner_lr: float = 1.0, init_std: float = 0.0, seed: int = 0
    ) -> None:
        if steps < 1 or inner_lr <= 0 or init_std < 0:
            raise ValueError(
                f"maml: need steps >= 1, inner_lr > 0 and init_std >= 0; got "
                f"steps={steps}, inner_lr={inner_lr}, init_std={init_std}"
            )
        self.steps, self.inner_lr = int(steps), float(inner_lr)
        self.init_std, self.seed = float(init_std), int(seed)
        self.stochastic = self.init_std > 0  # a zero head draws nothing
        self.weight: torch.Tensor | None = None  # (B, N, D) adapted head weights
        self.bias: torch.Tensor | None = None  # (B, N)

    def fit(self, support: EpisodeFeatures, labels: torch.Tensor, n_way: int) -> "MAMLHead":
        # Lazy: learn2learn imports gym, which prints a deprecation banner and takes seconds;
        # only a run that uses this learner should pay for it (`benchmark list` must stay quiet).
        from learn2learn.algorithms import MAML

        check_support(support, labels, n_way, self.name)
        x_all = _normalise(support.embeddings)
        weights, biases = [], []
        starts = self._initial_weights(x_all.shape[0], n_way, x_all.shape[-1])
        with torch.inference_mode(False), torch.enable_grad():
            for x, y, start in zip(x_all.clone(), labels.long(), starts):  # one task at a time
                head = torch.nn.Linear(x_all.shape[-1], n_way, device=x_all.device)
                with torch.no_grad():
                    head.weight.copy_(start)
                    head.bias.zero_()
                learner = MAML(head, lr=self.inner_lr, first_order=True).clone()
                for _ in range(self.steps):
                    learner.adapt(torch.nn.functional.cross_entropy(learner(x), y))
                weights.append(learner.module.weight.detach())
                biases.append(learner.module.bias.detach())
        self.weight, self.bias = torch.stack(weights), torch.stack(biases)
        return self

    def _initial_weights(self, n_episodes: int, n_way: int, dim: int) -> torch.Tensor:
        """(B, N, D) starting head weights: zeros, or N(0, init_std^2) from each episode's generator."""
        if not self.stochastic:
            return torch.zeros(n_episodes, n_way, dim)  # the zeroing trick
        return torch.stack(
            [
                torch.randn(n_way, dim, generator=g) * self.init_std
                for g in self.episode_generators(n_episodes)
            ]
        )

    def predict(self, query: EpisodeFeatures) -> torch.Tensor:
        """(B, n_query, N) logits of the adapted heads."""
        weight = self._fitted("weight")
        x = _normalise(query.embeddings)
        return torch.baddbmm(self.bias.unsqueeze(1), x, weight.transpose(1, 2))


def _normalise(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(to_compute(x), dim=-1)
