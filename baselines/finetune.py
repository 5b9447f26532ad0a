"""Fine-tuning with a cosine classifier on each episode's support images (Baseline++).

Chen, Liu, Kira, Wang & Huang, "A Closer Look at Few-shot Classification", ICLR 2019,
https://arxiv.org/abs/1904.04232: at test time a new classifier is trained on the support set
over the pre-trained backbone. Baseline++ uses a cosine classifier: logits = scale * cos(f(x),
w_j). Chen et al. train it with SGD (lr 0.01, momentum 0.9, weight decay 1e-3) on batches of 4
support images. Here each of `steps` steps draws a batch of the support set and a random
augmentation of it (a resized crop of 80-100 % of the side and a horizontal flip) from the
episode's own generator, so an episode's result does not depend on the run's batching. Two
choices differ from the paper and are options: the head starts at the normalised class means
of the support embeddings (imprinting, Qi et al. 2018, arXiv:1712.07136) instead of at random
(`init="random"` restores the paper's), and the backbone's last stage may be fine-tuned too
(`last_stage=True`, with the backbone's BatchNorm statistics frozen: 4 images give no usable
batch statistics). The run's backbone is never changed: a copy is fine-tuned.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from baselines.image_learner import ImageLearner, check_images
from baselines.registry import register

INITS = ("prototypes", "random")


@register
class FineTune(ImageLearner):
    """Baseline++ fine-tuning: a cosine head (and optionally the last stage) on augmented support."""

    name = "finetune"
    paper = (
        "Chen et al. 2019, A Closer Look at Few-shot Classification (arXiv:1904.04232), Baseline++"
    )
    stochastic = True

    def __init__(
        self,
        steps: int = 100,
        lr: float = 0.01,
        batch_size: int = 4,
        scale: float = 10.0,
        init: str = "prototypes",
        last_stage: bool = False,
        augment: bool = True,
        weight_decay: float = 1e-3,
    ) -> None:
        if steps < 0 or lr <= 0 or batch_size < 1 or scale <= 0 or weight_decay < 0:
            raise ValueError(
                f"finetune: need steps >= 0, lr > 0, batch_size >= 1, scale > 0, "
                f"weight_decay >= 0; got steps={steps}, lr={lr}, "
                f"batch_size={batch_size}, scale={scale}, weight_decay={weight_decay}"
            )
        if init not in INITS:
            raise ValueError(f"finetune: init must be one of {', '.join(INITS)}, got {init!r}")
        self.steps, self.lr, self.batch_size = int(steps), float(lr), int(batch_size)
        self.scale, self.init, self.last_stage = float(scale), init, bool(last_stage)
        self.augment, self.weight_decay = bool(augment), float(weight_decay)
        self.body: nn.Module | None = None
        self.weight: torch.Tensor | None = None  # (N, D) cosine classifier

    def fit(
        self,
        support_images: torch.Tensor,
        labels: torch.Tensor,
        n_way: int,
        backbone: nn.Module,
        masks: torch.Tensor | None = None,
    ) -> "FineTune":
        check_images(support_images, labels, n_way, self.name)
        generator = self._generator()
        labels = labels.long().to(support_images.device)
        with torch.inference_mode(False), torch.enable_grad():
            images = support_images.clone()  # a normal tensor even if made under inference mode
            body, trainable = self._body(backbone)
            with torch.no_grad():
                embeddings = body(images).float()
            weight = nn.Parameter(self._initial_weight(embeddings, labels, n_way, generator))
            optimiser = torch.optim.SGD(
                [weight, *trainable], lr=self.lr, momentum=0.9, weight_decay=self.weight_decay
            )
            for _ in range(self.steps):
                batch = torch.randperm(len(images), generator=generator)[: self.batch_size]
                batch = batch.to(images.device)
                x = augment(images[batch], generator) if self.augment else images[batch]
                with torch.set_grad_enabled(bool(trainable)):
                    features = body(x).float()
                loss = F.cross_entropy(self._logits(features, weight), labels[batch])
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
        self.body, self.weight = body, weight.detach()
        return self

    def predict(self, query_images: torch.Tensor) -> torch.Tensor:
        """(n_query, N) cosine logits of the fine-tuned classifier."""
        if self.weight is None:
            raise RuntimeError(f"{self.name}: call fit(...) before predict()")
        with torch.no_grad():
            return self._logits(self.body(query_images).float(), self.weight)

    def _logits(self, features: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return self.scale * F.normalize(features, dim=-1) @ F.normalize(weight, dim=-1).T

    def _body(self, backbone: nn.Module) -> tuple[nn.Module, list[nn.Parameter]]:
        """The module to embed with and its trainable parameters (none: head only)."""
        if not self.last_stage:
            return backbone, []
        stage_of = getattr(backbone, "last_stage", None)
        if stage_of is None:
            raise ValueError(
                "finetune: last_stage=True needs a backbone with a last_stage() "
                "method naming its last stage; use last_stage=False"
            )
        body = copy.deepcopy(backbone).eval()  # eval: BatchNorm keeps its running statistics
        for p in body.parameters():
            p.requires_grad_(False)
        trainable = list(body.last_stage().parameters())
        for p in trainable:
            p.requires_grad_(True)
        return body, trainable

    def _initial_weight(
        self, embeddings: torch.Tensor, labels: torch.Tensor, n_way: int, generator: torch.Generator
    ) -> torch.Tensor:
        """(N, D): normalised support class means, or Chen et al.'s random init."""
        if self.init == "random":
            bound = 1 / math.sqrt(embeddings.shape[1])  # nn.Linear's default range
            weight = (torch.rand(n_way, embeddings.shape[1], generator=generator) * 2 - 1) * bound
            return weight.to(embeddings.device)
        onehot = F.one_hot(labels, n_way).float()
        means = onehot.T @ F.normalize(embeddings, dim=-1) / onehot.sum(0)[:, None]
        return F.normalize(means, dim=-1)


def augment(
    images: torch.Tensor, generator: torch.Generator, min_scale: float = 0.8
) -> torch.Tensor:
    """A random resized crop (side min_scale..1 of the image, anywhere inside it) and a random
    horizontal flip per image of (n, 3, H, W), drawn from `generator` on the CPU, so the draws
    are the same on every device; one grid_sample for the batch."""
    n = images.shape[0]
    draws = torch.rand(n, 4, generator=generator)  # scale, x shift, y shift, flip
    scale = min_scale + (1 - min_scale) * draws[:, 0]
    shift = (draws[:, 1:3] * 2 - 1) * (1 - scale)[:, None]  # keep the crop inside the image
    flip = torch.where(draws[:, 3] < 0.5, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = scale * flip
    theta[:, 1, 1] = scale
    theta[:, :, 2] = shift
    theta = theta.to(device=images.device, dtype=images.dtype)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
